package badger_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/approvals/store/badger"
	"github.com/pbac-gateway/pbac/approvals/storetest"
)

func open(t *testing.T, dir string) *badger.Store {
	t.Helper()
	s, err := badger.Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestStoreContract runs the approvals store contract in memory and on disk.
func TestStoreContract(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) approvals.Store { return open(t, "") })
	})
	t.Run("disk", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) approvals.Store { return open(t, t.TempDir()) })
	})
}

func TestReopenKeeps(t *testing.T) {
	dir := t.TempDir()
	storetest.Reopen(t, func(t *testing.T) approvals.Store { return open(t, dir) })
}

func TestClosedStoreRefuses(t *testing.T) {
	s := open(t, "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	a := storetest.NewApproval("apr_x", "ci-bot", "b1:x", storetest.T0)
	if err := s.Create(context.Background(), a); err == nil {
		t.Fatal("Create on a closed store succeeded")
	}
	if _, err := s.Get(context.Background(), "apr_x"); err == nil || errors.Is(err, approvals.ErrNotFound) {
		t.Fatalf("Get on a closed store: %v, want an error that is not ErrNotFound", err)
	}
}
