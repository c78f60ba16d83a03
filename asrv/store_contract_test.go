package asrv_test

import (
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/storetest"
	"github.com/pbac-gateway/pbac/internal/pgtest"
)

// TestStoreContract runs the one store contract against every store: Badger
// (in memory and on disk, always) and PostgreSQL (when PBAC_TEST_POSTGRES
// is set; otherwise that half says how to start one and skips).
func TestStoreContract(t *testing.T) {
	t.Run("badger-memory", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) asrv.Store { return bgOpenMem(t) })
	})
	t.Run("badger-disk", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) asrv.Store { return bgOpenDisk(t, t.TempDir()) })
	})
	t.Run("postgres", func(t *testing.T) {
		pgtest.DSN(t)
		storetest.Run(t, func(t *testing.T) asrv.Store { return pgOpen(t, pgtest.FreshSchema(t)) })
	})
}
