package plugins_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/policystore"
	"github.com/pbac-gateway/pbac/wasm"
)

// heard collects what WithEvents hands over.
type heard struct {
	mu     sync.Mutex
	events []plugins.Event
}

func (h *heard) hear(_ context.Context, e plugins.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

func (h *heard) take() []plugins.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.events
	h.events = nil
	return out
}

// newHeardRegistry is a registry whose events h hears.
func newHeardRegistry(t *testing.T, st plugins.Store, h *heard) *plugins.Registry {
	t.Helper()
	r, stop := newHeardRegistryStop(t, st, h)
	t.Cleanup(stop)
	return r
}

// newHeardRegistryStop is a registry on st (none when nil) whose events h
// hears, and what closes it.
func newHeardRegistryStop(t *testing.T, st plugins.Store, h *heard) (*plugins.Registry, func()) {
	t.Helper()
	ctx := context.Background()
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig().WithEvalTimeout(plugins.DefaultDecisionTimeout))
	if err != nil {
		t.Fatal(err)
	}
	opts := []plugins.Option{plugins.WithEvents(h.hear)}
	if st != nil {
		opts = append(opts, plugins.WithStore(st))
	}
	r := plugins.New(engine, opts...)
	return r, sync.OnceFunc(func() {
		_ = r.Close(ctx)
		_ = engine.Close(ctx)
	})
}

// TestEventsSayWhoChangedWhatFromWhat: every change of policy is handed
// to WithEvents as it happens, with its author, its source and the
// versions before and after; a refused candidate says why and that the
// active version stays; the history read back at a restart is not handed
// over again, only the restore.
func TestEventsSayWhoChangedWhatFromWhat(t *testing.T) {
	ctx := context.Background()
	var h heard
	r := newHeardRegistry(t, nil, &h)
	as := func(who string) context.Context { return plugins.WithAuthor(ctx, who) }

	v1, err := r.Activate(as("alice"), policytest.Versioned(t, 1, "alice"), "upload")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := r.SetData(as("bob"), []byte(`{"marker": 2, "allowed": []}`), "dashboard data")
	if err != nil {
		t.Fatal(err)
	}
	bad := policytest.Versioned(t, 3, "alice")
	bad.Vectors = []byte(`[{"name": "bob is allowed", "entrypoint": "pbac/tool_call", "input": {"user": "bob"}, "want": {"allow": true}}]`)
	if _, err := r.Activate(as("mallory"), bad, "bad upload"); err == nil {
		t.Fatal("a bundle failing its vectors was activated")
	}
	sh, err := r.SetShadow(as("carol"), policytest.Versioned(t, 4), "candidate")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.ClearShadow(as("carol")); !ok {
		t.Fatal("no shadow to clear")
	}
	if _, err := r.Rollback(as("dave")); err != nil {
		t.Fatal(err)
	}

	type view struct{ Kind, Version, Previous, Source, Author string }
	want := []view{
		{"activated", v1.Version, "", "upload", "alice"},
		{"data_updated", v2.Version, v1.Version, "dashboard data", "bob"},
		{"rejected", "", v2.Version, "bad upload", "mallory"},
		{"shadow_set", sh.Version, "", "candidate", "carol"},
		{"shadow_cleared", sh.Version, "", "candidate", "carol"},
		{"rolled_back", v1.Version, v2.Version, "rollback:upload", "dave"},
	}
	got := h.take()
	var seen []view
	for _, e := range got {
		seen = append(seen, view{e.Kind, e.Version, e.Previous, e.Source, e.Author})
		if e.At.IsZero() || (e.Kind == "rejected") != (e.Error != "") {
			t.Errorf("event %+v: no time, or an error where there is none", e)
		}
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("events\n got  %+v\n want %+v", seen, want)
	}
	if hist := r.Events(); !slices.Equal(hist[len(hist)-len(got):], got) {
		t.Errorf("the history differs from what was handed over:\n%+v\n%+v", hist, got)
	}

	t.Run("a restart hands over the restore only", func(t *testing.T) {
		dir := t.TempDir()
		// open starts a registry on the store in dir, as a process does;
		// stop closes both (Badger lets one owner open a directory).
		open := func() (*plugins.Registry, *heard, func()) {
			st, err := policystore.Open(ctx, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			var h heard
			r, stop := newHeardRegistryStop(t, st, &h)
			return r, &h, sync.OnceFunc(func() { stop(); _ = st.Close() })
		}
		r, h, stop := open()
		t.Cleanup(stop)
		if _, err := r.Start(ctx, policytest.Versioned(t, 1, "alice"), "shipped"); err != nil {
			t.Fatal(err)
		}
		second, err := r.Activate(as("alice"), policytest.Versioned(t, 2), "upload")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(h.take()); n != 2 {
			t.Fatalf("%d events for a start and an activation, want 2", n)
		}
		stop()

		r, h, stop = open()
		t.Cleanup(stop)
		if _, err := r.Start(ctx, policytest.Versioned(t, 1, "alice"), "shipped"); err != nil {
			t.Fatal(err)
		}
		got := h.take()
		if len(got) != 1 || got[0].Kind != "restored" || got[0].Version != second.Version || got[0].Author != "alice" {
			t.Fatalf("events at a restart: %+v, want the restore of %s alone", got, second.Version)
		}
		if n := len(r.Events()); n != 3 {
			t.Errorf("the history after a restart has %d events, want 3 (two read back, the restore)", n)
		}
	})
}
