package plugins_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

func decide(t testing.TB, r *plugins.Registry, user string) (plugins.Decision, int) {
	t.Helper()
	d, err := r.Decide(context.Background(), "pbac/tool_call", fmt.Appendf(nil, `{"user":%q}`, user))
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Marker int }
	if err := d.Decode(&res); err != nil {
		t.Fatal(err)
	}
	return d, res.Marker
}

func TestNoPolicyIsADeny(t *testing.T) {
	r := policytest.Empty(t)
	if _, err := r.Decide(context.Background(), "pbac/tool_call", []byte(`{}`)); !errors.Is(err, plugins.ErrNoPolicy) {
		t.Fatalf("err = %v, want ErrNoPolicy", err)
	}
	if _, ok := r.Active(); ok {
		t.Fatal("Active() reports a version on an empty registry")
	}
}

func TestActivateAndDecide(t *testing.T) {
	r := policytest.Empty(t)
	b := policytest.Versioned(t, 1, "alice")
	info, err := r.Activate(context.Background(), b, "test")
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != b.Revision || info.Source != "test" || info.ActivatedAt.IsZero() || len(info.Entrypoints) != len(contract.Names()) {
		t.Fatalf("unexpected info %+v", info)
	}
	d, marker := decide(t, r, "alice")
	if !d.Allow || marker != 1 || d.Version != b.Revision || d.Reasons[0] != "user allowed" {
		t.Fatalf("alice: %+v marker %d", d, marker)
	}
	if d, _ := decide(t, r, "mallory"); d.Allow {
		t.Fatal("mallory allowed")
	}
}

func TestValidationRejects(t *testing.T) {
	ctx := context.Background()
	r := policytest.Empty(t)
	good := policytest.Versioned(t, 1, "alice")
	if _, err := r.Activate(ctx, good, "good"); err != nil {
		t.Fatal(err)
	}

	failingVectors := policytest.Versioned(t, 3, "alice")
	failingVectors.Vectors = []byte(`[{"name": "bob is allowed", "entrypoint": "pbac/tool_call",
		"input": {"user": "bob"}, "want": {"allow": true}}]`)

	tests := []struct {
		name    string
		b       *rego.Bundle
		wantMsg string
	}{
		{"no module", &rego.Bundle{Data: []byte(`{}`)}, "no Wasm module"},
		{"not wasm", &rego.Bundle{Wasm: []byte("garbage"), Data: []byte(`{}`)}, "invalid policy module"},
		{"data not an object", &rego.Bundle{Wasm: good.Wasm, Data: []byte(`[1`)}, "invalid policy data"},
		{"a failing vector", failingVectors, `vector "bob is allowed"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Activate(ctx, tc.b, tc.name)
			if !errors.Is(err, plugins.ErrValidation) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v, want ErrValidation mentioning %q", err, tc.wantMsg)
			}
			if info, _ := r.Active(); info.Version != good.Revision {
				t.Fatalf("active version changed to %s after a rejected bundle", info.Version)
			}
		})
	}
	var rejected int
	for _, e := range r.Events() {
		if e.Kind == "rejected" {
			rejected++
		}
	}
	if rejected != len(tests) {
		t.Fatalf("%d rejected events, want %d", rejected, len(tests))
	}
}

func TestMissingEntrypointIsRejected(t *testing.T) {
	ctx := context.Background()
	e, err := wasm.NewEngine(ctx, wasm.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	r := plugins.New(e, plugins.WithEntrypoints(append(contract.Names(), "pbac/audit")...))
	defer r.Close(ctx)
	_, err = r.Activate(ctx, policytest.Versioned(t, 1), "test")
	if !errors.Is(err, plugins.ErrValidation) || !strings.Contains(err.Error(), "missing entrypoint pbac/audit") {
		t.Fatalf("err = %v, want a missing-entrypoint validation error", err)
	}
}

func TestFailOpenPolicyIsRejected(t *testing.T) {
	ctx := context.Background()
	r := policytest.Empty(t)
	b, err := rego.Build(ctx, fstest.MapFS{"p.rego": {Data: []byte(`package pbac
d := {"allow": true, "reasons": ["everything goes"]}
register := d
token := d
introspect := d
exchange := d
tool_call := d
list := d
anonymous := d
method := d
`)}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Activate(ctx, b, "allow-all")
	if !errors.Is(err, plugins.ErrValidation) || !strings.Contains(err.Error(), "fail closed") {
		t.Fatalf("err = %v, want a fail-closed validation error", err)
	}
}

func TestSetDataAppliesToNextDecision(t *testing.T) {
	ctx := context.Background()
	r := policytest.Empty(t)
	first, err := r.Activate(ctx, policytest.Versioned(t, 1, "alice"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := decide(t, r, "alice"); !d.Allow {
		t.Fatal("alice denied before the data change")
	}
	second, err := r.SetData(ctx, []byte(`{"marker": 2, "allowed": []}`), "admin")
	if err != nil {
		t.Fatal(err)
	}
	if second.ModuleHash != first.ModuleHash || second.Version == first.Version {
		t.Fatalf("data update: module %s→%s, version %s→%s", first.ModuleHash, second.ModuleHash, first.Version, second.Version)
	}
	d, marker := decide(t, r, "alice")
	if d.Allow || marker != 2 || d.Version != second.Version {
		t.Fatalf("after the data change: %+v marker %d", d, marker)
	}
}

func TestRollback(t *testing.T) {
	ctx := context.Background()
	r := policytest.Empty(t)
	if _, err := r.Rollback(ctx); !errors.Is(err, plugins.ErrNoRollback) {
		t.Fatalf("rollback on empty registry: %v", err)
	}
	v1, _ := r.Activate(ctx, policytest.Versioned(t, 1, "alice"), "v1")
	if _, err := r.Activate(ctx, policytest.Versioned(t, 2), "v2"); err != nil {
		t.Fatal(err)
	}
	info, err := r.Rollback(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != v1.Version || info.Source != "rollback:v1" {
		t.Fatalf("rolled back to %+v", info)
	}
	if d, marker := decide(t, r, "alice"); !d.Allow || marker != 1 {
		t.Fatalf("after rollback: %+v marker %d", d, marker)
	}
}

// TestHotSwapUnderLoad swaps versions repeatedly while 32 goroutines decide:
// no decision fails, none mixes versions (the data a decision saw belongs to
// the version that reports it), and a decision that starts after Activate
// returned never sees an older version.
func TestHotSwapUnderLoad(t *testing.T) {
	ctx := context.Background()
	r := policytest.Empty(t)
	const swaps = 40
	bundles := make([]*rego.Bundle, swaps+1)
	markerOf := map[string]int{}
	for i := range bundles {
		bundles[i] = policytest.Versioned(t, i, "alice")
		markerOf[bundles[i].Revision] = i
	}
	if _, err := r.Activate(ctx, bundles[0], "v0"); err != nil {
		t.Fatal(err)
	}
	var published atomic.Int64 // highest marker whose Activate has returned
	stop := make(chan struct{})
	var (
		wg        sync.WaitGroup
		decisions atomic.Int64
		failures  = make(chan string, 64)
	)
	for range 32 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := published.Load()
				d, err := r.Decide(ctx, "pbac/tool_call", []byte(`{"user":"alice"}`))
				if err != nil {
					failures <- err.Error()
					return
				}
				var res struct{ Marker int }
				if err := d.Decode(&res); err != nil {
					failures <- err.Error()
					return
				}
				decisions.Add(1)
				switch {
				case !d.Allow:
					failures <- fmt.Sprintf("alice denied by %s", d.Version)
				case res.Marker != markerOf[d.Version]:
					failures <- fmt.Sprintf("mixed versions: %s decided with the data of marker %d", d.Version[:12], res.Marker)
				case int64(res.Marker) < floor:
					failures <- fmt.Sprintf("stale decision: marker %d after %d was activated", res.Marker, floor)
				default:
					continue
				}
				return
			}
		})
	}
	for i := 1; i <= swaps; i++ {
		var err error
		if i%2 == 0 {
			_, err = r.Activate(ctx, bundles[i], fmt.Sprintf("v%d", i))
		} else {
			_, err = r.SetData(ctx, bundles[i].Data, fmt.Sprintf("v%d", i))
		}
		if err != nil {
			t.Fatal(err)
		}
		published.Store(int64(i))
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	if decisions.Load() < swaps {
		t.Fatalf("only %d decisions during %d swaps", decisions.Load(), swaps)
	}
	t.Logf("%d decisions across %d swaps", decisions.Load(), swaps)
}

func TestShadowCountsDisagreements(t *testing.T) {
	ctx := context.Background()
	r := policytest.Empty(t)
	if _, err := r.Activate(ctx, policytest.Versioned(t, 1, "alice", "bob"), "active"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetShadow(ctx, policytest.Versioned(t, 2, "alice"), "candidate"); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"alice", "bob", "bob", "carol"} {
		d, marker := decide(t, r, user)
		if marker != 1 {
			t.Fatalf("the shadow enforced: marker %d", marker)
		}
		if user == "bob" && !d.Allow {
			t.Fatal("the shadow's deny was enforced")
		}
	}
	stats, ok := r.ClearShadow(ctx)
	if !ok {
		t.Fatal("no shadow stats")
	}
	if stats.Evaluated != 4 || stats.Agreed != 2 || stats.Disagreed != 2 || len(stats.Recent) != 2 {
		t.Fatalf("stats %+v", stats)
	}
	dis := stats.Recent[0]
	if !dis.ActiveAllow || dis.ShadowAllow || string(dis.Input) != `{"user":"bob"}` {
		t.Fatalf("disagreement %+v", dis)
	}
	if _, ok := r.Shadow(); ok {
		t.Fatal("shadow still running after ClearShadow")
	}
}

func TestWatchDirActivatesDroppedBundles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := policytest.Empty(t)
	dir := t.TempDir()
	drop := func(name string, b *rego.Bundle) {
		t.Helper()
		tmp := filepath.Join(dir, ".incoming")
		f, err := os.Create(tmp)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.WriteTarGz(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	first := policytest.Versioned(t, 1, "alice")
	drop("first.tar.gz", first)

	done := make(chan error, 1)
	go func() { done <- r.WatchDir(ctx, dir) }()
	waitFor(t, "the bundle present at start", func() bool {
		info, ok := r.Active()
		return ok && info.Version == first.Revision
	})

	second := policytest.Versioned(t, 2, "bob")
	drop("second.tar.gz", second)
	waitFor(t, "the dropped bundle", func() bool {
		info, _ := r.Active()
		return info.Version == second.Revision
	})

	if err := os.WriteFile(filepath.Join(dir, "broken.tar.gz"), []byte("not a bundle"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the broken bundle to be rejected", func() bool {
		for _, e := range r.Events() {
			if e.Kind == "rejected" && strings.Contains(e.Source, "broken.tar.gz") {
				return true
			}
		}
		return false
	})
	if info, _ := r.Active(); info.Version != second.Revision {
		t.Fatalf("active changed to %s after a broken bundle", info.Version)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestWatchDirMissing(t *testing.T) {
	r := policytest.Empty(t)
	if err := r.WatchDir(context.Background(), filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Fatal("watching a missing directory succeeded")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSubscribeHearsEveryChange: a subscriber hears of an activation, a
// data update and a rollback, changes faster than it reads collapse into
// one, and after cancel it hears nothing.
func TestSubscribeHearsEveryChange(t *testing.T) {
	r := policytest.Empty(t)
	ctx := context.Background()
	changes, cancel := r.Subscribe()
	heard := func() bool {
		select {
		case <-changes:
			return true
		default:
			return false
		}
	}
	if heard() {
		t.Fatal("a change before any")
	}
	if _, err := r.Activate(ctx, policytest.Versioned(t, 1, "alice"), "test"); err != nil {
		t.Fatal(err)
	}
	if !heard() {
		t.Error("no change heard after Activate")
	}
	if _, err := r.SetData(ctx, []byte(`{"marker": 2, "allowed": []}`), "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if !heard() || heard() {
		t.Error("a data update and a rollback: want one pending change, then none")
	}
	if _, err := r.Activate(ctx, &rego.Bundle{Wasm: []byte("not wasm")}, "bad"); err == nil {
		t.Fatal("a bad bundle was activated")
	}
	if heard() {
		t.Error("a refused bundle was heard as a change")
	}
	cancel()
	if _, err := r.Activate(ctx, policytest.Versioned(t, 3, "alice"), "test"); err != nil {
		t.Fatal(err)
	}
	if heard() {
		t.Error("heard a change after cancel")
	}
}

// TestActivateReusesTheCompiledModuleForSameModule: a bundle with the
// active module and other data (a data change distributed as a bundle)
// keeps the module hash and decides with its own data.
func TestActivateReusesTheCompiledModuleForSameModule(t *testing.T) {
	r := policytest.Empty(t)
	ctx := context.Background()
	first, err := r.Activate(ctx, policytest.Versioned(t, 1, "alice"), "test")
	if err != nil {
		t.Fatal(err)
	}
	second, err := r.Activate(ctx, policytest.Versioned(t, 2, "bob"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if second.ModuleHash != first.ModuleHash || second.Version == first.Version {
		t.Fatalf("versions %+v and %+v: want the same module, other versions", first, second)
	}
	if _, marker := decide(t, r, "bob"); marker != 2 {
		t.Errorf("marker %d after the second activation, want 2", marker)
	}
	if d, _ := decide(t, r, "alice"); d.Allow {
		t.Error("alice allowed under data that lists only bob")
	}
}
