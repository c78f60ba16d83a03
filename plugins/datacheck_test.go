package plugins_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pbac-gateway/pbac/internal/logtest"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// TestWatchDirRefusesBadData: a bundle dropped in the watched directory
// whose data its own schema refuses is rejected — logged with the
// problem's JSON path — and the active version stays; each of the shared
// bad documents alike.
func TestWatchDirRefusesBadData(t *testing.T) {
	shipped, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig().WithEvalTimeout(plugins.DefaultDecisionTimeout))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	r := plugins.New(engine, plugins.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	t.Cleanup(func() {
		_ = r.Close(context.Background())
		_ = engine.Close(context.Background())
	})
	if _, err := r.Activate(ctx, shipped, "shipped"); err != nil {
		t.Fatal(err)
	}
	before, _ := r.Active()

	dir := t.TempDir()
	done := make(chan error, 1)
	go func() { done <- r.WatchDir(ctx, dir) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	bad := policytest.BadDataDocuments(t)
	names := make([]string, len(bad))
	for i, tc := range bad {
		b := &rego.Bundle{Wasm: shipped.Wasm, Data: tc.Data, Schema: shipped.Schema, Vectors: shipped.Vectors, ContractVersion: shipped.ContractVersion}
		b.Revision = rego.Revision(b.Wasm, b.Data)
		var buf bytes.Buffer
		if err := b.WriteTarGz(&buf); err != nil {
			t.Fatal(err)
		}
		names[i] = fmt.Sprintf("bad-%02d.tar.gz", i)
		tmp := filepath.Join(dir, "."+names[i])
		if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, names[i])); err != nil {
			t.Fatal(err)
		}
	}
	rejected := func(name string) (plugins.Event, bool) {
		for _, e := range r.Events() {
			if e.Kind == "rejected" && strings.HasSuffix(e.Source, name) {
				return e, true
			}
		}
		return plugins.Event{}, false
	}
	waitFor(t, "every bad bundle to be rejected", func() bool {
		for _, n := range names {
			if _, ok := rejected(n); !ok {
				return false
			}
		}
		return true
	})
	for i, tc := range bad {
		e, _ := rejected(names[i])
		if !strings.Contains(e.Error, tc.Path+": ") {
			t.Errorf("%s: the rejection does not name %q: %s", tc.Name, tc.Path, e.Error)
		}
		if !strings.Contains(logs.String(), names[i]) {
			t.Errorf("%s: the rejection of %s is not logged", tc.Name, names[i])
		}
	}
	if !strings.Contains(logs.String(), "/tiers/developer/grants/files/0") {
		t.Errorf("the log does not name the problem's path:\n%s", logs.String())
	}
	if now, _ := r.Active(); now.Version != before.Version {
		t.Fatalf("a refused bundle became active: %s, was %s", now.Version, before.Version)
	}
}

// TestEveryDataPathIsChecked: Activate, SetData and SetShadow refuse the
// same document with the same DataError, wrapped in ErrValidation.
func TestEveryDataPathIsChecked(t *testing.T) {
	r := policytest.Registry(t)
	shipped, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	bad := []byte(`{"agents":{}}`)
	b := &rego.Bundle{Wasm: shipped.Wasm, Data: bad, Schema: shipped.Schema, ContractVersion: shipped.ContractVersion}
	b.Revision = rego.Revision(b.Wasm, b.Data)
	var want string
	for name, change := range map[string]func() error{
		"activate": func() error { _, err := r.Activate(t.Context(), b, "test"); return err },
		"set data": func() error { _, err := r.SetData(t.Context(), bad, "test"); return err },
		"shadow":   func() error { _, err := r.SetShadow(t.Context(), b, "test"); return err },
	} {
		err := change()
		de, ok := errors.AsType[*rego.DataError](err)
		if !ok || !errors.Is(err, plugins.ErrValidation) {
			t.Fatalf("%s: %v, want a DataError wrapped in ErrValidation", name, err)
		}
		if want == "" {
			want = de.Error()
		} else if de.Error() != want {
			t.Fatalf("%s: %s, want %s", name, de, want)
		}
	}
}

// shippedDataWith returns the shipped data changed by mutate.
func shippedDataWith(t *testing.T, mutate func(d map[string]any)) []byte {
	t.Helper()
	b, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(b.Data, &d); err != nil {
		t.Fatal(err)
	}
	mutate(d)
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestDataUpdateRunsInvariantVectors: a data update runs the bundle's
// invariant vectors (decisions no data may change) besides the schema and
// the fail-closed checks: moving a provider to another tier — which
// changes what the other vectors pin — passes them, while dropping the
// protection of production secrets is refused, naming the vector.
func TestDataUpdateRunsInvariantVectors(t *testing.T) {
	r := policytest.Registry(t)
	shipped, _ := policytest.Shipped()
	inv, err := rego.InvariantVectors(shipped.Vectors)
	if err != nil {
		t.Fatal(err)
	}
	var invariant []rego.Vector
	if err := json.Unmarshal(inv, &invariant); err != nil {
		t.Fatal(err)
	}
	if len(invariant) == 0 {
		t.Fatal("the shipped vectors mark no invariant")
	}
	if all, _ := r.Active(); all.Vectors <= len(invariant) {
		t.Fatalf("the shipped bundle ran %d vectors, its invariants alone are %d", all.Vectors, len(invariant))
	}

	moved := shippedDataWith(t, func(d map[string]any) {
		tt := d["agents"].(map[string]any)["trust_tiers"].(map[string]any)
		tt["read_only"] = append(tt["read_only"].([]any), "ci-bot")
		tt["ci_agent"] = []any{}
	})
	info, err := r.SetData(t.Context(), moved, "test")
	if err != nil {
		t.Fatalf("a provider moved to another tier: %v", err)
	}
	if info.Vectors != len(invariant) {
		t.Fatalf("the data update ran %d vectors, want the %d invariant ones", info.Vectors, len(invariant))
	}

	// The most a data change can grant: every tier and role everything
	// the catalogue has, no separation of duties or argument constraints,
	// deep delegation, every backend open without a token. The invariants
	// must hold even so (they are not the data's decisions).
	permissive := shippedDataWith(t, func(d map[string]any) {
		grants := map[string][]string{}
		var backends []string
		for name, e := range d["catalogue"].(map[string]any) {
			e := e.(map[string]any)
			res, acc := e["resource"].(string), e["access"].(string)
			if !slices.Contains(grants[res], acc) {
				grants[res] = append(grants[res], acc)
			}
			if b, _, _ := strings.Cut(name, "."); !slices.Contains(backends, b) {
				backends = append(backends, b)
			}
		}
		for _, tier := range d["tiers"].(map[string]any) {
			tier := tier.(map[string]any)
			tier["grants"], tier["separation_of_duties"] = grants, []string{}
			tier["may_delegate"], tier["max_delegation_depth"], tier["user_attestation"] = true, 8, true
			tier["token_ttl_seconds"], tier["max_token_ttl_seconds"] = 86400, 86400
		}
		for _, role := range d["roles"].(map[string]any) {
			role.(map[string]any)["grants"], role.(map[string]any)["arg_constraints"] = grants, map[string]any{}
		}
		d["delegation"] = map[string]any{"max_chain_depth": 8}
		d["anonymous"] = map[string]any{"backends": backends}
	})
	if _, err := r.SetData(t.Context(), permissive, "test"); err != nil {
		t.Fatalf("the most permissive data: %v", err)
	}
	if info, err = r.SetData(t.Context(), moved, "test"); err != nil {
		t.Fatal(err)
	}

	unprotected := shippedDataWith(t, func(d map[string]any) {
		d["protected_arguments"] = d["protected_arguments"].([]any)[1:] // drops prod-secrets
	})
	_, err = r.SetData(t.Context(), unprotected, "test")
	if !errors.Is(err, plugins.ErrValidation) || !strings.Contains(err.Error(), `vector "fm1 prod secrets`) {
		t.Fatalf("dropping the prod-secrets rule: %v, want a refusal naming its vectors", err)
	}
	if now, _ := r.Active(); now.Version != info.Version {
		t.Fatalf("the refused update became active")
	}
	// A data update of a data update still runs them: the version carries
	// its invariants.
	if _, err := r.SetData(t.Context(), unprotected, "test again"); err == nil {
		t.Fatal("the second data update dropped the invariant vectors")
	}
}

// TestDataUpdateMustFailClosed: the fail-closed rule (an empty input is
// denied by every entrypoint) holds data updates too: data that would
// open a policy whose decisions follow it is refused.
func TestDataUpdateMustFailClosed(t *testing.T) {
	r := policytest.Empty(t)
	b, err := rego.Build(t.Context(), fstest.MapFS{
		"p.rego": {Data: []byte(`package pbac
default allow := false
allow if data.open == true
d := {"allow": allow, "reasons": ["as the data says"]}
register := d
token := d
introspect := d
exchange := d
tool_call := d
list := d
anonymous := d
method := d
`)},
		"data.json": {Data: []byte(`{"open": false}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Activate(t.Context(), b, "closed"); err != nil {
		t.Fatal(err)
	}
	_, err = r.SetData(t.Context(), []byte(`{"open": true}`), "open it")
	if !errors.Is(err, plugins.ErrValidation) || !strings.Contains(err.Error(), "fail closed") {
		t.Fatalf("err = %v, want a fail-closed validation error", err)
	}
}
