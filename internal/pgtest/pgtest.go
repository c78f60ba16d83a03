// Package pgtest gives tests a PostgreSQL schema of their own: the database
// PBAC_TEST_POSTGRES names, with a fresh schema as search_path, dropped when
// the test ends, so tests and runs never see each other's rows. Without the
// variable a test skips and says how to start a server.
package pgtest

import (
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Env names the test database.
const Env = "PBAC_TEST_POSTGRES"

// SkipHint is what a skipped test says.
const SkipHint = "set " + Env + "=postgres://… to run against PostgreSQL; start one with:\n" +
	"  . .ci/postgres.sh   # as root: initdb into /tmp as the postgres user, 127.0.0.1 only, exports " + Env + "\n" +
	"or by hand:\n" +
	"  mkdir /tmp/pg && chown postgres /tmp/pg\n" +
	"  runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D /tmp/pg/data --auth=trust -U postgres\n" +
	"  runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D /tmp/pg/data -l /tmp/pg/log -w start -o '-c listen_addresses=127.0.0.1 -p 5432 -k /tmp/pg'\n" +
	"  psql -h 127.0.0.1 -U postgres -c 'CREATE ROLE pbac LOGIN' -c 'CREATE DATABASE pbac_test OWNER pbac'\n" +
	"  export " + Env + "='postgres://pbac@127.0.0.1:5432/pbac_test?sslmode=disable'"

// DSN returns the test database's URL, or skips t.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(Env)
	if dsn == "" {
		t.Skip(SkipHint)
	}
	return dsn
}

// FreshSchema creates an empty schema, dropped when t ends, and returns the
// URL that works in it; or skips t.
func FreshSchema(t testing.TB) string {
	t.Helper()
	dsn := DSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", Env, err)
	}
	defer conn.Close(ctx)
	schema := "pbac_test_" + strings.ToLower(rand.Text())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("connect to drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return WithParam(t, dsn, "search_path", schema)
}

// WithParam adds a connection parameter to a postgres:// URL.
func WithParam(t testing.TB, dsn, key, val string) string {
	t.Helper()
	u := parse(t, dsn)
	q := u.Query()
	q.Set(key, val)
	u.RawQuery = q.Encode()
	return u.String()
}

// WithPassword sets the URL's password (one a trust-authenticated test
// server ignores), for tests that check it is never shown.
func WithPassword(t testing.TB, dsn, password string) string {
	t.Helper()
	u := parse(t, dsn)
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String()
}

func parse(t testing.TB, dsn string) *url.URL {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL", Env)
	}
	return u
}
