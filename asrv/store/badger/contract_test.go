package badger_test

import (
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/storetest"
)

// TestStoreContract runs the store contract against the Badger store, in
// memory and on disk.
func TestStoreContract(t *testing.T) {
	t.Run("badger-memory", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) asrv.Store { return openMem(t) })
	})
	t.Run("badger-disk", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) asrv.Store { return openDisk(t, t.TempDir()) })
	})
}
