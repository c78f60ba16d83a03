# shellcheck shell=bash
# Starts a throwaway PostgreSQL on 127.0.0.1 for the token-store tests and
# exports PBAC_TEST_POSTGRES. Source it (from .ci/run, or by hand as root):
#
#	. .ci/postgres.sh
#
# It installs Debian's postgresql when no server binaries are present, runs
# initdb into a fresh /tmp directory as the postgres user (the server
# refuses to run as root), listens on 127.0.0.1 only, on the first free
# port from 54320 (its Unix socket stays in that directory), creates role
# pbac and database pbac_test (trust authentication: a throwaway server
# reachable from this machine only), and stops the server when the sourcing
# shell exits. The tests create and drop a schema per test in pbac_test.

pbac_pg_bindir() {
	ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if [ ! -x "$(pbac_pg_bindir)/initdb" ]; then
	echo "ci: installing postgresql from Debian"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PBAC_PG_BIN="$(pbac_pg_bindir)"

if [ "$(id -u)" = 0 ]; then
	id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
	pbac_pg_as() { runuser -u postgres -- "$@"; }
else
	pbac_pg_as() { "$@"; }
fi

PBAC_PG_DIR="$(mktemp -d /tmp/pbac-pg.XXXXXX)"
chmod 0755 "$PBAC_PG_DIR"
if [ "$(id -u)" = 0 ]; then chown postgres "$PBAC_PG_DIR"; fi

PBAC_PG_PORT=54320
while (exec 3<>"/dev/tcp/127.0.0.1/$PBAC_PG_PORT") 2>/dev/null; do PBAC_PG_PORT=$((PBAC_PG_PORT + 1)); done

echo "ci: postgresql $("$PBAC_PG_BIN/postgres" --version | awk '{print $3}') in $PBAC_PG_DIR on 127.0.0.1:$PBAC_PG_PORT"
pbac_pg_as "$PBAC_PG_BIN/initdb" -D "$PBAC_PG_DIR/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
pbac_pg_as "$PBAC_PG_BIN/pg_ctl" -D "$PBAC_PG_DIR/data" -l "$PBAC_PG_DIR/log" -w -t 60 start \
	-o "-c listen_addresses=127.0.0.1 -p $PBAC_PG_PORT -k $PBAC_PG_DIR -c max_connections=200" >/dev/null

pbac_pg_stop() {
	pbac_pg_as "$PBAC_PG_BIN/pg_ctl" -D "$PBAC_PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$PBAC_PG_DIR"
}
# Stop the server on exit, after whatever EXIT trap the sourcing shell had.
pbac_pg_prev_trap="$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT\$/\\1/")"
trap "${pbac_pg_prev_trap:+$pbac_pg_prev_trap; }pbac_pg_stop" EXIT

"$PBAC_PG_BIN/psql" -h 127.0.0.1 -p "$PBAC_PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
	-c "CREATE ROLE pbac LOGIN" -c "CREATE DATABASE pbac_test OWNER pbac"

export PBAC_TEST_POSTGRES="postgres://pbac@127.0.0.1:$PBAC_PG_PORT/pbac_test?sslmode=disable"
echo "ci: PBAC_TEST_POSTGRES=$PBAC_TEST_POSTGRES"
