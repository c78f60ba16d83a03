// Package policytest gives tests a policy registry running the shipped
// policy, built once per test binary.
package policytest

import (
	"context"
	"sync"
	"testing"

	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// Shipped is the shipped policy bundle (its vectors included), compiled once.
var Shipped = sync.OnceValues(func() (*rego.Bundle, error) {
	return rego.BuildShipped(context.Background())
})

// Registry returns a registry on a fresh engine with the shipped policy
// active; both close when the test ends.
func Registry(t testing.TB) *plugins.Registry {
	t.Helper()
	b, err := Shipped()
	if err != nil {
		t.Fatal(err)
	}
	reg := Empty(t)
	if _, err := reg.Activate(context.Background(), b, "shipped"); err != nil {
		t.Fatal(err)
	}
	return reg
}

// Empty returns a registry on a fresh engine with no version active (every
// decision a deny until one is); both close when the test ends. An
// evaluation may take up to the registry's decision timeout (1 s) rather
// than the engine's production default (100 ms): tests run under the race
// detector beside others on two cores, and a test of deadlines sets its
// own.
func Empty(t testing.TB) *plugins.Registry {
	t.Helper()
	ctx := context.Background()
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig().WithEvalTimeout(plugins.DefaultDecisionTimeout))
	if err != nil {
		t.Fatal(err)
	}
	reg := plugins.New(engine)
	t.Cleanup(func() {
		_ = reg.Close(ctx)
		_ = engine.Close(ctx)
	})
	return reg
}
