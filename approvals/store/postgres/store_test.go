package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/approvals/store/postgres"
	"github.com/pbac-gateway/pbac/approvals/storetest"
	"github.com/pbac-gateway/pbac/internal/pgtest"
)

// The tests run when PBAC_TEST_POSTGRES names a database the tests may
// create schemas in (internal/pgtest; `. .ci/postgres.sh` starts one); each
// test gets a schema of its own. Without it they skip.

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestStoreContract(t *testing.T) {
	pgtest.DSN(t)
	storetest.Run(t, func(t *testing.T) approvals.Store { return open(t, pgtest.FreshSchema(t)) })
}

// TestReopenKeeps: a second store on the same schema (a restart, or
// another replica) reads what the first wrote.
func TestReopenKeeps(t *testing.T) {
	dsn := pgtest.FreshSchema(t)
	storetest.Reopen(t, func(t *testing.T) approvals.Store { return open(t, dsn) })
}

// TestReplicasOneWins: replicas, each with its own connection pool, race
// to use one granted approval; exactly one wins.
func TestReplicasOneWins(t *testing.T) {
	dsn := pgtest.FreshSchema(t)
	replicas := make([]approvals.Store, 4)
	for i := range replicas {
		replicas[i] = open(t, pgtest.WithParam(t, dsn, "pool_max_conns", "4"))
	}
	storetest.RaceReplicas(t, replicas)
}

func TestOpenErrorHidesPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Port 1: nothing listens there.
	_, err := postgres.Open(ctx, "postgres://pbac:s3cret-pw@127.0.0.1:1/pbac_test?sslmode=disable&connect_timeout=5", nil)
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("error shows the password: %v", err)
	}
}

func TestSchemaVersion(t *testing.T) {
	if v := postgres.SchemaVersion(); v != 3 {
		t.Fatalf("SchemaVersion = %d, want 3", v)
	}
}

func BenchmarkLife(b *testing.B) {
	s, err := postgres.Open(context.Background(), pgtest.FreshSchema(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkLife(b, s)
}
