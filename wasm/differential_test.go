package wasm_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/pbac-gateway/pbac/conformance/policydiff"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// The differential test: the shipped policy compiled to Wasm and run by this
// package must decide exactly as OPA's own evaluator does, on every
// entrypoint, for inputs drawn from the domain (agents, users, tokens, tools,
// arguments) with a share of broken and mistyped fields. The input
// generator and the comparison are conformance/policydiff's, which
// `pbac conformance policy` runs on any bundle.

type shippedPair struct {
	wasm *wasm.Policy
	ref  *rego.Reference
}

var shippedPolicy = sync.OnceValues(func() (*shippedPair, error) {
	ctx := context.Background()
	b, err := rego.BuildShipped(ctx)
	if err != nil {
		return nil, err
	}
	e, err := wasm.NewEngine(ctx, wasm.NewConfig())
	if err != nil {
		return nil, err
	}
	p, err := e.Load(ctx, b.Wasm, b.Data)
	if err != nil {
		return nil, err
	}
	ref, err := rego.NewReference(ctx, rego.Sources(), nil)
	if err != nil {
		return nil, err
	}
	return &shippedPair{wasm: p, ref: ref}, nil
})

func shippedForTest(t testing.TB) *shippedPair {
	t.Helper()
	sp, err := shippedPolicy()
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// TestDifferentialWasmVsReference runs generated inputs through both
// evaluators on every entrypoint and requires identical decisions: under
// the shipped data, and under the data of a tenant that admits anonymous
// callers to two backends (the shipped data admits none, so
// pbac/anonymous would only ever be compared on denies).
func TestDifferentialWasmVsReference(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 150
	}
	sp := shippedForTest(t)
	ctx := context.Background()
	shipped := sp.wasm.Data()
	var doc map[string]any
	if err := json.Unmarshal(shipped, &doc); err != nil {
		t.Fatal(err)
	}
	doc["anonymous"] = map[string]any{"backends": []any{"jira", "everything"}}
	open, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		data   []byte
		inputs int
		// neverAllowed are entrypoints this data allows nothing on.
		neverAllowed []string
	}{
		{"shipped data", shipped, n, []string{"pbac/anonymous"}},
		{"anonymous backends", open, n / 4, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sp.wasm.WithData(ctx, tt.data)
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close(ctx)
			want, err := rego.NewReference(ctx, rego.Sources(), tt.data)
			if err != nil {
				t.Fatal(err)
			}
			d := policydiff.DomainFromData(tt.data)
			rep, err := policydiff.Run(ctx, policydiff.EvaluatorFunc(got.Eval), want,
				policydiff.Options{Inputs: tt.inputs, Seed: uint64(i + 1), Domain: &d})
			if err != nil {
				t.Fatal(err)
			}
			for _, res := range rep.Results {
				for _, dis := range res.Disagreements {
					t.Errorf("%s: %s\ninput: %s", res.Entrypoint, dis.Error, dis.Input)
				}
				// A generator that only produced denies would prove little.
				if res.Allows == 0 && !slices.Contains(tt.neverAllowed, res.Entrypoint) {
					t.Errorf("%s: no generated input was allowed", res.Entrypoint)
				}
				t.Logf("%s: %d of %d agreed, %d allowed", res.Entrypoint, res.Agreements, res.Inputs, res.Allows)
			}
			if len(rep.Results) != len(contract.Names()) || !rep.OK() {
				t.Fatalf("%d disagreements over %d entrypoints", rep.Disagreed(), len(rep.Results))
			}
		})
	}
}

// FuzzShippedPolicy feeds arbitrary input documents to the shipped policy:
// the Wasm engine never panics, rejects what is not JSON, and on JSON decides
// allow or deny exactly as OPA's evaluator does.
func FuzzShippedPolicy(f *testing.F) {
	vectors, err := rego.ShippedVectors()
	if err != nil {
		f.Fatal(err)
	}
	var vs []rego.Vector
	if err := json.Unmarshal(vectors, &vs); err != nil {
		f.Fatal(err)
	}
	for i, v := range vs {
		if i%4 == 0 {
			f.Add(uint8(i), []byte(v.Input))
		}
	}
	g := policydiff.NewGenerator(3, 4, policydiff.DefaultDomain())
	for i := range 20 {
		f.Add(uint8(i), g.Input(""))
	}
	f.Add(uint8(0), []byte(`{"token": {"scp": "a b"}, "now": 1e400}`))
	f.Add(uint8(1), []byte(`[1, 2, {"client": null}]`))
	f.Add(uint8(2), []byte(`{"request": {"arguments": {"path": "\u002fprod\u002fsecrets\u002fx"}}}`))
	f.Fuzz(func(t *testing.T, which uint8, input []byte) {
		sp := shippedForTest(t)
		eps := contract.Names()
		ep := eps[int(which)%len(eps)]
		ctx := context.Background()
		if !json.Valid(input) || !utf8.Valid(input) {
			if _, err := sp.wasm.Eval(ctx, ep, input); !errors.Is(err, wasm.ErrInvalidInput) {
				t.Fatalf("invalid JSON: err = %v, want ErrInvalidInput", err)
			}
			return
		}
		if err := policydiff.Compare(ctx, policydiff.EvaluatorFunc(sp.wasm.Eval), sp.ref, ep, input); err != nil {
			t.Fatalf("%s: %v\ninput: %s", ep, err, input)
		}
	})
}
