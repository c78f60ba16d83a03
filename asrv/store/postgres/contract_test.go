package postgres_test

import (
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/storetest"
	"github.com/pbac-gateway/pbac/internal/pgtest"
)

// TestStoreContract runs the store contract against the PostgreSQL store
// when PBAC_TEST_POSTGRES is set; otherwise it says how to start one and
// skips.
func TestStoreContract(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		pgtest.DSN(t)
		storetest.Run(t, func(t *testing.T) asrv.Store { return openStore(t, pgtest.FreshSchema(t)) })
	})
}
