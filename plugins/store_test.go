package plugins_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/policystore"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// restart opens the store in dir and a registry on it, as a process start
// does, with signatures required when v is set, and starts it with first.
// stop closes everything (Badger lets one owner open a directory); it runs
// when the test ends at the latest.
func restart(t *testing.T, dir string, v *rego.Verifier, first *rego.Bundle) (r *plugins.Registry, info plugins.Info, stop func(), err error) {
	t.Helper()
	ctx := context.Background()
	st, err := policystore.Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig().WithEvalTimeout(plugins.DefaultDecisionTimeout))
	if err != nil {
		t.Fatal(err)
	}
	r = plugins.New(engine, plugins.WithStore(st))
	stop = sync.OnceFunc(func() {
		_ = r.Close(ctx)
		_ = engine.Close(ctx)
		_ = st.Close()
	})
	t.Cleanup(stop)
	if v != nil {
		r.RequireSignatures(v)
	}
	info, err = r.Start(ctx, first, "shipped")
	return r, info, stop, err
}

// TestStoredVersionsSurviveARestart: every kind of change — a bundle, a
// data change, a rollback — is what starts after a restart, with the
// history (source, author) and the rollback history behind it.
func TestStoredVersionsSurviveARestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	first := policytest.Versioned(t, 1, "alice")

	t.Run("fresh data dir starts the first version", func(t *testing.T) {
		r, info, stop, err := restart(t, dir, nil, first)
		if err != nil || info.Version != first.Revision || info.Source != "shipped" {
			t.Fatalf("start: %+v %v", info, err)
		}
		if _, err := r.Activate(plugins.WithAuthor(ctx, "admin token"), policytest.Versioned(t, 2, "alice"), "admin upload"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.SetData(plugins.WithAuthor(ctx, "bob"), []byte(`{"marker": 3, "allowed": ["alice"]}`), "dashboard (bob): data edit"); err != nil {
			t.Fatal(err)
		}
		stop()
	})
	var dataVersion string
	t.Run("the data change starts", func(t *testing.T) {
		r, info, stop, err := restart(t, dir, nil, first)
		if err != nil {
			t.Fatal(err)
		}
		dataVersion = info.Version
		if _, m := decide(t, r, "alice"); m != 3 || info.Author != "bob" || info.Source != "dashboard (bob): data edit" {
			t.Fatalf("after restart: marker %d, %+v", m, info)
		}
		var got []string
		for _, e := range r.Events() {
			got = append(got, e.Kind+"/"+e.Source+"/"+e.Author)
		}
		want := []string{"activated/shipped/", "activated/admin upload/admin token", "data_updated/dashboard (bob): data edit/bob", "restored/dashboard (bob): data edit/bob"}
		if !slices.Equal(got, want) {
			t.Fatalf("events after restart:\n got %q\nwant %q", got, want)
		}
		// The rollback history came back too.
		info, err = r.Rollback(plugins.WithAuthor(ctx, "carol"))
		if err != nil || info.Version != policytest.Versioned(t, 2, "alice").Revision || info.Author != "carol" {
			t.Fatalf("rollback after restart: %+v %v", info, err)
		}
		stop()
	})
	t.Run("the rollback starts, and can go one further back", func(t *testing.T) {
		r, info, stop, err := restart(t, dir, nil, first)
		if err != nil || info.Version != policytest.Versioned(t, 2, "alice").Revision || info.Author != "carol" || info.Source != "rollback:admin upload" {
			t.Fatalf("after restart: %+v %v", info, err)
		}
		if info, err := r.Rollback(ctx); err != nil || info.Version != first.Revision {
			t.Fatalf("second rollback: %+v %v", info, err)
		}
		if _, err := r.Rollback(ctx); !errors.Is(err, plugins.ErrNoRollback) {
			t.Fatalf("third rollback: %v, want ErrNoRollback", err)
		}
		if info.Version == dataVersion {
			t.Fatal("rollback did not change the version")
		}
		stop()
	})
}

// TestStoredBundlesAreVerifiedAtStart: a stored signed bundle starts again
// only while it verifies with the keys configured at start; otherwise the
// one before it that does (here the first, trusted as built in) starts.
func TestStoredBundlesAreVerifiedAtStart(t *testing.T) {
	ctx := context.Background()
	priv, pub := policytest.SigningKeys(t)
	_, otherPub := policytest.SigningKeys(t)
	first := policytest.Versioned(t, 1, "alice")
	signed := policytest.Versioned(t, 2, "alice")
	for _, tc := range []struct {
		name   string
		keys   []byte
		marker int
	}{
		{"same key: the signed bundle starts", pub, 2},
		{"other key: falls back to the first", otherPub, 1},
		{"no keys required: the signed bundle starts", nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			func() {
				st, err := policystore.Open(ctx, dir, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				engine, err := wasm.NewEngine(ctx, wasm.NewConfig())
				if err != nil {
					t.Fatal(err)
				}
				defer engine.Close(ctx)
				r := plugins.New(engine, plugins.WithStore(st))
				defer r.Close(ctx)
				r.RequireSignatures(verifier(t, pub))
				if _, err := r.Start(ctx, first, "shipped"); err != nil {
					t.Fatal(err)
				}
				if _, err := r.Activate(ctx, readBack(t, signedTarGz(t, signed, priv)), "admin upload"); err != nil {
					t.Fatal(err)
				}
			}()
			var v *rego.Verifier
			if tc.keys != nil {
				v = verifier(t, tc.keys)
			}
			r, _, _, err := restart(t, dir, v, first)
			if err != nil {
				t.Fatal(err)
			}
			if _, m := decide(t, r, "alice"); m != tc.marker {
				t.Fatalf("marker %d after restart, want %d", m, tc.marker)
			}
			rejected := slices.ContainsFunc(r.Events(), func(e plugins.Event) bool { return e.Kind == "rejected" })
			if rejected != (tc.marker == 1) {
				t.Fatalf("a rejection recorded: %v; events %+v", rejected, r.Events())
			}
		})
	}
}

// TestUnstoredChangeDoesNotTakeEffect: an activation, a data change or a
// rollback the store cannot keep is refused and the active version stays.
func TestUnstoredChangeDoesNotTakeEffect(t *testing.T) {
	ctx := context.Background()
	mem, err := policystore.Open(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	st := &switchable{Store: mem}
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close(ctx)
	r := plugins.New(engine, plugins.WithStore(st))
	defer r.Close(ctx)
	if _, err := r.Start(ctx, policytest.Versioned(t, 1, "alice"), "shipped"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Activate(ctx, policytest.Versioned(t, 2, "alice"), "v2"); err != nil {
		t.Fatal(err)
	}
	st.fail = true
	for name, change := range map[string]func() error{
		"activate": func() error { _, err := r.Activate(ctx, policytest.Versioned(t, 3, "alice"), "v3"); return err },
		"data": func() error {
			_, err := r.SetData(ctx, []byte(`{"marker": 4, "allowed": ["alice"]}`), "data")
			return err
		},
		"rollback": func() error { _, err := r.Rollback(ctx); return err },
	} {
		if err := change(); !errors.Is(err, plugins.ErrStore) {
			t.Errorf("%s: %v, want ErrStore", name, err)
		}
		if _, m := decide(t, r, "alice"); m != 2 {
			t.Errorf("%s: marker %d after a refused change, want 2", name, m)
		}
	}
	if !r.CanRollback() {
		t.Error("a refused rollback used up the history")
	}
}

// switchable fails its appends once fail is set.
type switchable struct {
	plugins.Store
	fail bool
}

func (s *switchable) Append(ctx context.Context, rec plugins.Record) (plugins.Record, error) {
	if s.fail {
		return plugins.Record{}, errors.New("disk full")
	}
	return s.Store.Append(ctx, rec)
}

// TestDroppedBundleAtStartYieldsToANewerStoredHead: at start, the newest
// bundle in the watched directory replaces the stored head only when the
// file is newer than it, so a restart does not undo a later change made
// through the admin API with an old file.
func TestDroppedBundleAtStartYieldsToANewerStoredHead(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fileAge  time.Duration // relative to the stored head
		wantFile bool
		shipped  bool // the head is the first version, no upload
	}{
		{"file older than the stored head stays out", -time.Hour, false, false},
		{"file newer than the stored head activates", time.Hour, true, false},
		{"the shipped head yields to any file", -time.Hour, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store, policies := t.TempDir(), t.TempDir()
			first := policytest.Versioned(t, 1, "alice")
			r, _, stop, err := restart(t, store, nil, first)
			if err != nil {
				t.Fatal(err)
			}
			head := policytest.Versioned(t, 2, "alice")
			if tc.shipped {
				head = first
			} else if _, err := r.Activate(plugins.WithAuthor(ctx, "admin token"), head, "admin upload"); err != nil {
				t.Fatal(err)
			}
			stop()

			file := policytest.Versioned(t, 3, "alice")
			path := filepath.Join(policies, "dropped.tar.gz")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := file.WriteTarGz(f); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			r, info, _, err := restart(t, store, nil, first)
			if err != nil || info.Version != head.Revision {
				t.Fatalf("restart: %+v %v", info, err)
			}
			mod := time.Now().Add(tc.fileAge)
			if err := os.Chtimes(path, mod, mod); err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- r.WatchDir(wctx, policies) }()
			// A bundle dropped while watching always activates: once it
			// is live, the start's choice is made.
			later := policytest.Versioned(t, 4, "alice")
			if tc.wantFile {
				waitFor(t, "the newer file", func() bool { cur, _ := r.Active(); return cur.Version == file.Revision })
			}
			tmp := filepath.Join(policies, ".later")
			lf, err := os.Create(tmp)
			if err != nil {
				t.Fatal(err)
			}
			if err := later.WriteTarGz(lf); err != nil {
				t.Fatal(err)
			}
			_ = lf.Close()
			if err := os.Rename(tmp, filepath.Join(policies, "later.tar.gz")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the bundle dropped while watching", func() bool { cur, _ := r.Active(); return cur.Version == later.Revision })
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			fileActivated := slices.ContainsFunc(r.Events(), func(e plugins.Event) bool {
				return e.Kind == "activated" && e.Version == file.Revision
			})
			if fileActivated != tc.wantFile {
				t.Fatalf("the file in the directory at start activated: %v, want %v; events %+v", fileActivated, tc.wantFile, r.Events())
			}
		})
	}
}

// TestNewShippedPolicyReplacesOnlyAnUnchangedOne: a binary that ships
// another policy starts it when nobody changed the earlier one (which stays
// in the rollback history), and keeps an operator's change otherwise.
func TestNewShippedPolicyReplacesOnlyAnUnchangedOne(t *testing.T) {
	ctx := context.Background()
	oldShipped, newShipped := policytest.Versioned(t, 1, "alice"), policytest.Versioned(t, 5, "alice")
	for _, tc := range []struct {
		name       string
		change     bool
		wantMarker int
	}{
		{"unchanged: the new shipped policy starts", false, 5},
		{"changed: the change stays", true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r, _, stop, err := restart(t, dir, nil, oldShipped)
			if err != nil {
				t.Fatal(err)
			}
			if tc.change {
				if _, err := r.SetData(plugins.WithAuthor(ctx, "admin token"), []byte(`{"marker": 3, "allowed": ["alice"]}`), "admin data update"); err != nil {
					t.Fatal(err)
				}
			}
			stop()
			r, _, _, err = restart(t, dir, nil, newShipped)
			if err != nil {
				t.Fatal(err)
			}
			if _, m := decide(t, r, "alice"); m != tc.wantMarker {
				t.Fatalf("marker %d after the upgrade, want %d", m, tc.wantMarker)
			}
			if info, err := r.Rollback(ctx); err != nil || (!tc.change && info.Version != oldShipped.Revision) {
				t.Fatalf("rollback after the upgrade: %+v %v", info, err)
			}
		})
	}
}
