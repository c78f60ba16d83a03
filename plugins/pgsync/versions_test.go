package pgsync_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/pgtest"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/pgsync"
	"github.com/pbac-gateway/pbac/wasm"
)

func openVersions(t *testing.T, dsn string) *pgsync.Versions {
	t.Helper()
	v, err := pgsync.OpenVersions(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func record(i int) plugins.Record {
	return plugins.Record{
		Version: fmt.Sprintf("v%d", i), Kind: "activated", Source: "test", Author: fmt.Sprintf("author %d", i),
		At: time.Date(2026, 12, 3, 0, 0, i, 0, time.UTC), Bundle: fmt.Appendf(nil, "bundle %d", i),
	}
}

// TestVersionsStore: records come back in order with their bundles through
// another connection (another replica, or a restart); the newest version
// appended again is not recorded twice; the bound drops the oldest.
func TestVersionsStore(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name           string
		appends        []int
		wantVersions   []int
		wantFirstFound bool
	}{
		{"in order", []int{1, 2, 3}, []int{1, 2, 3}, true},
		{"the newest again is one record", []int{1, 2, 2, 2}, []int{1, 2}, true},
		{"an older version again is a new record", []int{1, 2, 1}, []int{1, 2, 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := pgtest.FreshSchema(t)
			w := openVersions(t, dsn)
			var last uint64
			for _, i := range tc.appends {
				got, err := w.Append(ctx, record(i))
				if err != nil {
					t.Fatal(err)
				}
				if got.Seq < last || got.Version != record(i).Version {
					t.Fatalf("append %d: %+v after seq %d", i, got, last)
				}
				last = got.Seq
			}
			r := openVersions(t, dsn)
			hist, err := r.History(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(hist) != len(tc.wantVersions) {
				t.Fatalf("%d records, want %d: %+v", len(hist), len(tc.wantVersions), hist)
			}
			for k, h := range hist {
				want := record(tc.wantVersions[k])
				if h.Version != want.Version || h.Author != want.Author || h.Source != want.Source || !h.At.Equal(want.At) {
					t.Fatalf("record %d = %+v, want %+v", k, h, want)
				}
				if b, err := r.Bundle(ctx, h.Seq); err != nil || !bytes.Equal(b, want.Bundle) {
					t.Fatalf("bundle %d: %q %v", h.Seq, b, err)
				}
			}
			if _, err := r.Bundle(ctx, last+100); !errors.Is(err, pgsync.ErrNoVersion) {
				t.Fatalf("bundle of no record: %v", err)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		w := openVersions(t, pgtest.FreshSchema(t))
		n := pgsync.KeepVersions + 3
		for i := 1; i <= n; i++ {
			if _, err := w.Append(ctx, record(i)); err != nil {
				t.Fatal(err)
			}
		}
		hist, err := w.History(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != pgsync.KeepVersions || hist[0].Version != record(4).Version || hist[len(hist)-1].Version != record(n).Version {
			t.Fatalf("%d records from %s to %s", len(hist), hist[0].Version, hist[len(hist)-1].Version)
		}
	})
}

// TestRegistryStartsFromVersionsOnPostgres: a data change kept on
// PostgreSQL is what a registry started afterwards (a restart, or a new
// replica with an empty data dir) runs, with its author.
func TestRegistryStartsFromVersionsOnPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.FreshSchema(t)
	start := func() *plugins.Registry {
		e, err := wasm.NewEngine(ctx, wasm.NewConfig())
		if err != nil {
			t.Fatal(err)
		}
		reg := plugins.New(e, plugins.WithStore(openVersions(t, dsn)))
		t.Cleanup(func() { _ = reg.Close(ctx); _ = e.Close(ctx) })
		if _, err := reg.Start(ctx, policytest.Versioned(t, 1, "alice"), "shipped"); err != nil {
			t.Fatal(err)
		}
		return reg
	}
	a := start()
	changed, err := a.SetData(plugins.WithAuthor(ctx, "admin token"), []byte(`{"marker": 5, "allowed": ["alice"]}`), "admin data update")
	if err != nil {
		t.Fatal(err)
	}
	b := start()
	info, ok := b.Active()
	if !ok || info.Version != changed.Version || info.Author != "admin token" || info.Source != "admin data update" {
		t.Fatalf("started on %+v, want the data change %s", info, changed.Version)
	}
}
