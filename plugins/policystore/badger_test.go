package policystore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/policystore"
)

func open(t *testing.T, dir string, opts ...policystore.Option) *policystore.Store {
	t.Helper()
	st, err := policystore.Open(context.Background(), dir, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func rec(i int) plugins.Record {
	return plugins.Record{
		Version: fmt.Sprintf("v%d", i), Kind: "activated", Source: "test", Author: fmt.Sprintf("author %d", i),
		At: time.Date(2026, 12, 3, 0, 0, i, 0, time.UTC), Bundle: fmt.Appendf(nil, "bundle %d", i),
	}
}

// TestStoreKeepsRecordsAcrossReopen: what Append returned is there, in
// order with its bundle, after the store is closed and opened again; the
// bound drops the oldest.
func TestStoreKeepsRecordsAcrossReopen(t *testing.T) {
	for _, tc := range []struct {
		name        string
		keep, n     int
		wantOldest  int
		wantRecords int
	}{
		{"below the bound", 5, 3, 1, 3},
		{"at the bound", 3, 3, 1, 3},
		{"past the bound drops the oldest", 3, 7, 5, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			st := open(t, dir, policystore.WithKeep(tc.keep))
			var last uint64
			for i := 1; i <= tc.n; i++ {
				got, err := st.Append(ctx, rec(i))
				if err != nil {
					t.Fatal(err)
				}
				if got.Seq <= last {
					t.Fatalf("append %d: seq %d after %d", i, got.Seq, last)
				}
				last = got.Seq
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st = open(t, dir, policystore.WithKeep(tc.keep))
			defer st.Close()
			hist, err := st.History(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(hist) != tc.wantRecords {
				t.Fatalf("%d records, want %d", len(hist), tc.wantRecords)
			}
			for k, h := range hist {
				want := rec(tc.wantOldest + k)
				if h.Version != want.Version || h.Author != want.Author || h.Kind != want.Kind || h.Source != want.Source || !h.At.Equal(want.At) || h.Bundle != nil {
					t.Fatalf("record %d = %+v, want %+v without bundle", k, h, want)
				}
				b, err := st.Bundle(ctx, h.Seq)
				if err != nil || !bytes.Equal(b, want.Bundle) {
					t.Fatalf("bundle of %d = %q, %v; want %q", h.Seq, b, err, want.Bundle)
				}
			}
			if tc.wantOldest > 1 {
				if _, err := st.Bundle(ctx, 1); !errors.Is(err, policystore.ErrNotFound) {
					t.Fatalf("bundle of a dropped record: %v, want ErrNotFound", err)
				}
			}
			// Seqs keep increasing after a reopen.
			got, err := st.Append(ctx, rec(99))
			if err != nil || got.Seq <= last {
				t.Fatalf("append after reopen: seq %d (last %d), %v", got.Seq, last, err)
			}
		})
	}
}

func TestStoreRefuses(t *testing.T) {
	st := open(t, "")
	defer st.Close()
	ctx := context.Background()
	if _, err := st.Append(ctx, plugins.Record{Version: "v1"}); err == nil {
		t.Fatal("a record without a bundle was stored")
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := st.Append(done, rec(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("append on a done context: %v", err)
	}
	if hist, err := st.History(ctx); err != nil || len(hist) != 0 {
		t.Fatalf("history after refusals: %v, %v", hist, err)
	}
}

// BenchmarkAppendShipped measures what storing a version adds to an
// activation: the shipped bundle, synced to disk.
func BenchmarkAppendShipped(b *testing.B) {
	shipped, err := policytest.Shipped()
	if err != nil {
		b.Fatal(err)
	}
	raw, err := shipped.TarGz()
	if err != nil {
		b.Fatal(err)
	}
	st, err := policystore.Open(context.Background(), b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.SetBytes(int64(len(raw)))
	r := rec(1)
	r.Bundle = raw
	for b.Loop() {
		if _, err := st.Append(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
}
