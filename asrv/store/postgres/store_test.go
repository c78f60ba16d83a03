package postgres_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store/postgres"
	"github.com/pbac-gateway/pbac/asrv/storetest"
	"github.com/pbac-gateway/pbac/internal/pgtest"
)

// The PostgreSQL store's tests run when PBAC_TEST_POSTGRES names a database
// the tests may create schemas in (internal/pgtest): each test gets a
// schema of its own.

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openStore(t testing.TB, dsn string, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, append([]postgres.Option{postgres.WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// openReplicas opens n stores on one schema, each with its own connection
// pool: n replicas of the authorization server. They start together, so
// they also race to migrate.
func openReplicas(t *testing.T, dsn string, n int) []*postgres.Store {
	t.Helper()
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = postgres.Open(context.Background(), pgtest.WithParam(t, dsn, "pool_max_conns", "4"),
				postgres.WithLogger(quietLogger()))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: Open: %v", i, err)
		}
		t.Cleanup(func() { _ = stores[i].Close() })
	}
	return stores
}

// TestPostgresReplicasRace: replicas, each with its own connection pool,
// race to consume one single-use access token, to rotate one refresh token
// and to redeem one authorization code. Exactly one wins each race, and
// every loser gets the error fosite expects.
func TestPostgresReplicasRace(t *testing.T) {
	dsn := pgtest.FreshSchema(t)
	const replicas, perReplica = 8, 4
	stores := openReplicas(t, dsn, replicas)
	ctx := context.Background()
	c := storetest.NewClient("agent-race")
	if err := stores[0].CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}

	race := func(name string, fn func(s *postgres.Store) error, loserOK func(error) bool) {
		t.Helper()
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			mu     sync.Mutex
			wins   int
			losers []error
		)
		for _, s := range stores {
			for range perReplica {
				wg.Go(func() {
					<-start
					err := fn(s)
					mu.Lock()
					defer mu.Unlock()
					if err == nil {
						wins++
					} else {
						losers = append(losers, err)
					}
				})
			}
		}
		close(start)
		wg.Wait()
		if wins != 1 {
			t.Errorf("%s: %d of %d callers on %d replicas won, want exactly 1", name, wins, replicas*perReplica, replicas)
		}
		for _, err := range losers {
			if !loserOK(err) {
				t.Errorf("%s: a loser got %v", name, err)
			}
		}
	}

	for round := range 5 {
		r := storetest.NewRequest(c, fmt.Sprintf("req-%d", round))
		r.Session.(*asrv.Session).SingleUse = true
		at, rt, code := rand.Text(), rand.Text(), rand.Text()
		creator := stores[round%replicas]
		for _, err := range []error{
			creator.CreateAccessTokenSession(ctx, at, r),
			creator.CreateRefreshTokenSession(ctx, rt, at, r),
			creator.CreateAuthorizeCodeSession(ctx, code, r),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		race(fmt.Sprintf("round %d: consume single-use access token", round), func(s *postgres.Store) error {
			_, err := s.ConsumeAccessToken(ctx, at)
			return err
		}, func(err error) bool { return errors.Is(err, fosite.ErrNotFound) || errors.Is(err, asrv.ErrConsumed) })
		race(fmt.Sprintf("round %d: rotate refresh token", round), func(s *postgres.Store) error {
			return s.RotateRefreshToken(ctx, r.ID, rt)
		}, func(err error) bool { return errors.Is(err, fosite.ErrInactiveToken) })
		race(fmt.Sprintf("round %d: redeem authorization code", round), func(s *postgres.Store) error {
			return s.InvalidateAuthorizeCodeSession(ctx, code)
		}, func(err error) bool { return errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) })

		for i, s := range stores {
			if _, err := s.GetAccessTokenSession(ctx, at, nil); !errors.Is(err, fosite.ErrNotFound) {
				t.Errorf("replica %d: consumed token: %v", i, err)
			}
			if _, err := s.GetRefreshTokenSession(ctx, rt, nil); !errors.Is(err, fosite.ErrInactiveToken) {
				t.Errorf("replica %d: rotated refresh token: %v", i, err)
			}
			if _, err := s.GetAuthorizeCodeSession(ctx, code, nil); !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
				t.Errorf("replica %d: redeemed code: %v", i, err)
			}
		}
	}
}

// TestPostgresReplicasSeeWrites: there is no read cache, so a write on one
// replica is what every other replica reads next: a revocation, a
// consumption, a client's deletion.
func TestPostgresReplicasSeeWrites(t *testing.T) {
	stores := openReplicas(t, pgtest.FreshSchema(t), 3)
	a, b, c := stores[0], stores[1], stores[2]
	ctx := context.Background()
	cl := storetest.NewClient("agent-1")
	if err := a.CreateClient(ctx, cl); err != nil {
		t.Fatal(err)
	}
	issue := func(id string) string {
		sig := rand.Text()
		if err := a.CreateAccessTokenSession(ctx, sig, storetest.NewRequest(cl, id)); err != nil {
			t.Fatal(err)
		}
		for i, s := range stores {
			for range 2 {
				if _, err := s.GetAccessTokenSession(ctx, sig, nil); err != nil {
					t.Fatalf("replica %d reads a new token: %v", i, err)
				}
			}
		}
		return sig
	}
	gone := func(what, sig string) {
		t.Helper()
		for i, s := range stores {
			if _, err := s.GetAccessTokenSession(ctx, sig, nil); !errors.Is(err, fosite.ErrNotFound) {
				t.Errorf("replica %d after %s: %v, want not found", i, what, err)
			}
		}
	}
	sig := issue("r-revoke")
	if err := b.RevokeAccessToken(ctx, "r-revoke"); err != nil {
		t.Fatal(err)
	}
	gone("a revocation on another replica", sig)

	sig = issue("r-consume")
	if _, err := c.ConsumeAccessToken(ctx, sig); err != nil {
		t.Fatal(err)
	}
	gone("a consumption on another replica", sig)

	sig = issue("r-client")
	if err := b.DeleteClient(ctx, cl.ID); err != nil {
		t.Fatal(err)
	}
	gone("the client's deletion on another replica", sig)
	if _, err := c.Client(ctx, cl.ID); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("deleted client on another replica: %v", err)
	}
}

// rawConn opens a plain connection into the schema of dsn.
func rawConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// TestPostgresNoSecretsAtRest: no raw token, secret or credential reaches
// any row; tokens are found by signature.
func TestPostgresNoSecretsAtRest(t *testing.T) {
	dsn := pgtest.FreshSchema(t)
	s := openStore(t, dsn)
	defer s.Close()
	ctx := context.Background()
	c := storetest.NewClient("agent-1")
	c.SecretHash = []byte("sha256$0123")
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	storetest.WriteEveryKind(t, s, c, 10)
	conn := rawConn(t, dsn)
	var dump string
	if err := conn.QueryRow(ctx, `SELECT
		(SELECT coalesce(string_agg(t::text, E'\n'), '') FROM asrv_tokens t) || E'\n' ||
		(SELECT coalesce(string_agg(c::text, E'\n'), '') FROM asrv_clients c) || E'\n' ||
		(SELECT coalesce(string_agg(j::text, E'\n'), '') FROM asrv_jtis j)`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(dump, "req-"); n < 40 {
		t.Fatalf("the dump holds %d requests, want 40", n)
	}
	for _, secret := range storetest.SensitiveValues() {
		if strings.Contains(dump, secret) {
			t.Errorf("a row holds %q", secret)
		}
	}
	if !strings.Contains(dump, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") {
		t.Error("the code_challenge was not persisted")
	}
}

func TestPostgresClockExpiryAndSweep(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.FreshSchema(t)
	clk := storetest.NewClock(time.Now())
	s := openStore(t, dsn, postgres.WithClock(clk.Now), postgres.WithSweepInterval(0))
	defer s.Close()
	c := storetest.NewClient("agent-1")
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	r := storetest.NewRequest(c, "r1")
	r.Session.(*asrv.Session).SetExpiresAt(fosite.AccessToken, clk.Now().Add(time.Hour))
	r.Session.(*asrv.Session).SetExpiresAt(fosite.RefreshToken, clk.Now().Add(48*time.Hour))
	r.Session.(*asrv.Session).SetExpiresAt(fosite.AuthorizeCode, clk.Now().Add(time.Minute))
	at, rt, code := rand.Text(), rand.Text(), rand.Text()
	for _, err := range []error{
		s.CreateAccessTokenSession(ctx, at, r),
		s.CreateRefreshTokenSession(ctx, rt, at, r),
		s.CreateAuthorizeCodeSession(ctx, code, r),
		s.SetClientAssertionJWT(ctx, "jti", clk.Now().Add(time.Hour)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(2 * time.Hour)
	if _, err := s.GetAccessTokenSession(ctx, at, nil); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("expired access token: %v", err)
	}
	if _, err := s.ConsumeAccessToken(ctx, at); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("consuming expired access token: %v", err)
	}
	if err := s.InvalidateAuthorizeCodeSession(ctx, code); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("redeeming an expired code: %v", err)
	}
	if _, err := s.GetRefreshTokenSession(ctx, rt, nil); err != nil {
		t.Errorf("refresh token within its lifetime: %v", err)
	}
	if err := s.ClientAssertionJWTValid(ctx, "jti"); err != nil {
		t.Errorf("expired jti: %v", err)
	}
	n, err := s.SweepExpired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 { // access token, code, jti
		t.Errorf("swept %d rows, want 3", n)
	}
	if _, err := s.GetRefreshTokenSession(ctx, rt, nil); err != nil {
		t.Errorf("live refresh token after a sweep: %v", err)
	}
	clk.Add(48 * time.Hour)
	if err := s.RotateRefreshToken(ctx, "r1", rt); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("rotating an expired refresh token: %v", err)
	}
	if n, err := s.SweepExpired(ctx); err != nil || n != 1 {
		t.Errorf("second sweep: %d rows, %v; want 1", n, err)
	}
}

// TestPostgresTamperedRows: a row whose request does not decode, or names
// another client than its row, reads as not found.
func TestPostgresTamperedRows(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.FreshSchema(t)
	s := openStore(t, dsn)
	defer s.Close()
	for _, id := range []string{"agent-1", "agent-2"} {
		if err := s.CreateClient(ctx, storetest.NewClient(id)); err != nil {
			t.Fatal(err)
		}
	}
	conn := rawConn(t, dsn)
	for i, v := range []string{"null", "{}", `{"v":1}`, `{"v":2,"id":"r","client_id":"agent-1"}`,
		`{"v":1,"id":"r","client_id":"agent-1","session":7}`, `{"v":1,"id":"r","client_id":"agent-2"}`, `[1,2]`} {
		sig := fmt.Sprintf("sig-%d", i)
		if _, err := conn.Exec(ctx, `INSERT INTO asrv_tokens (kind, sig, request_id, client_id, request) VALUES ('at', $1, 'r', 'agent-1', $2)`, sig, v); err != nil {
			t.Fatal(err)
		}
		if r, err := s.GetAccessTokenSession(ctx, sig, nil); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("tampered %q: got %v, %v; want fosite.ErrNotFound", v, r, err)
		}
		if _, err := s.ConsumeAccessToken(ctx, sig); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("consume tampered %q: %v", v, err)
		}
	}
	if _, err := conn.Exec(ctx, `UPDATE asrv_clients SET doc = '{"client_id":"someone-else"}' WHERE id = 'agent-2'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client(ctx, "agent-2"); err == nil {
		t.Error("a client row whose document names another id was served")
	}
}

// TestPostgresMigrations: the schema is versioned; opening again applies
// nothing; a database migrated by a newer binary is refused.
func TestPostgresMigrations(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.FreshSchema(t)
	openStore(t, dsn).Close()
	openStore(t, dsn).Close()
	conn := rawConn(t, dsn)
	var n, maxV int
	if err := conn.QueryRow(ctx, `SELECT count(*), max(version) FROM asrv_schema_migrations`).Scan(&n, &maxV); err != nil {
		t.Fatal(err)
	}
	if want := postgres.SchemaVersion(); n != want || maxV != want {
		t.Errorf("asrv_schema_migrations has %d rows up to version %d, want %d", n, maxV, want)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO asrv_schema_migrations (version, name) VALUES ($1, 'from_the_future')`, maxV+1); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.Open(ctx, dsn, postgres.WithLogger(quietLogger()))
	if err == nil {
		s.Close()
		t.Fatal("opened a database whose schema is newer than the binary")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

// TestPostgresErrorsHidePassword: a failed connection's error names the
// database but never its password.
func TestPostgresErrorsHidePassword(t *testing.T) {
	const pw = "s3cr3t-Pa55word"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, dsn := range []string{
		"postgres://pbac:" + pw + "@127.0.0.1:1/pbac?sslmode=disable&connect_timeout=2",
		"host=127.0.0.1 port=1 user=pbac password=" + pw + " dbname=pbac sslmode=disable connect_timeout=2",
		"postgres://pbac:" + pw + "@127.0.0.1:1/pbac?sslmode=bogus",
	} {
		s, err := postgres.Open(ctx, dsn)
		if err == nil {
			s.Close()
			t.Fatalf("opened %q", dsn)
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestPostgresClosed(t *testing.T) {
	s := openStore(t, pgtest.FreshSchema(t), postgres.WithSweepInterval(time.Millisecond))
	time.Sleep(20 * time.Millisecond) // a few sweeps
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.GetAccessTokenSession(context.Background(), "x", nil); err == nil {
		t.Error("a closed store answered")
	}
	if !strings.HasPrefix(s.String(), "postgres://") {
		t.Errorf("String() = %q", s.String())
	}
}

// TestPostgresMigrationFillsSubjects: tokens stored before migration 4
// (no subject column) get their person from the stored request, so
// revoking that person finds them after the upgrade.
func TestPostgresMigrationFillsSubjects(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.FreshSchema(t)
	s := openStore(t, dsn)
	c := storetest.NewClient("agent-1")
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	storetest.WriteEveryKind(t, s, c, 2) // alice's
	s.Close()
	// Back to the schema of version 3, rows and all.
	conn := rawConn(t, dsn)
	for _, q := range []string{`ALTER TABLE asrv_tokens DROP COLUMN subject`, `DROP TABLE asrv_revoked_subjects`,
		`ALTER TABLE asrv_tokens DROP COLUMN rotated_at`, `DELETE FROM asrv_schema_migrations WHERE version >= 4`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, dsn)
	defer s.Close()
	got, err := s.RevokeSubject(ctx, "alice", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := (asrv.SubjectRevocation{AccessTokens: 2, RefreshTokens: 2, Codes: 2}); got != want {
		t.Fatalf("after the upgrade, RevokeSubject(alice) = %+v, want %+v", got, want)
	}
}
