package plugins_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// introspectInputs are the shipped pbac/introspect vectors' inputs, each
// also at a later second, and once more with the subject's roles changed:
// questions that differ in a byte or in a field policy reads.
func introspectInputs(t *testing.T) [][]byte {
	t.Helper()
	raw, err := rego.ShippedVectors()
	if err != nil {
		t.Fatal(err)
	}
	var vs []rego.Vector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, v := range vs {
		if v.Entrypoint != string(contract.Introspect) {
			continue
		}
		var in map[string]any
		if err := json.Unmarshal(v.Input, &in); err != nil {
			t.Fatal(err)
		}
		for _, change := range []func(map[string]any){
			func(map[string]any) {},
			func(in map[string]any) {
				n, _ := in["now"].(float64)
				in["now"] = n + 1
			},
			func(in map[string]any) {
				if s, ok := in["subject"].(map[string]any); ok {
					s["roles"] = []string{"contractor"}
				}
			},
		} {
			change(in)
			b, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	if len(out) < 12 {
		t.Fatalf("only %d introspect inputs from the shipped vectors", len(out))
	}
	return out
}

// tierChanges are data changes that change pbac/introspect's decisions:
// the developer tier loses, then regains, its Jira grants; the CI tier's
// token lifetime moves.
func tierChanges() []func(data map[string]any) {
	tier := func(data map[string]any, name string) map[string]any {
		return data["tiers"].(map[string]any)[name].(map[string]any)
	}
	return []func(map[string]any){
		func(d map[string]any) { delete(tier(d, "developer")["grants"].(map[string]any), "jira") },
		func(d map[string]any) { tier(d, "developer")["grants"].(map[string]any)["jira"] = []string{"read"} },
		func(d map[string]any) { delete(tier(d, "read_only")["grants"].(map[string]any), "slack") },
	}
}

// TestMemoAgreesWithEvaluation is differential: every pbac/introspect
// decision the registry gives, remembered or not, is the one a fresh
// evaluation of the active bundle gives, across data changes made between
// decisions. Four seeds of 300 steps.
func TestMemoAgreesWithEvaluation(t *testing.T) {
	ctx := context.Background()
	inputs := introspectInputs(t)
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close(ctx) })
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := policytest.Registry(t)
			info, _ := r.Active()
			if !slices.Equal(info.Memoized, []contract.Entrypoint{contract.Introspect}) {
				t.Fatalf("the shipped policy's memoized entrypoints = %v, want pbac/introspect", info.Memoized)
			}
			rng := rand.New(rand.NewPCG(seed, 21))
			var ref *wasm.Policy
			reload := func() {
				if ref != nil {
					_ = ref.Close(ctx)
				}
				b, _ := r.ActiveBundle()
				if ref, err = engine.Load(ctx, b.Wasm, b.Data); err != nil {
					t.Fatal(err)
				}
			}
			reload()
			t.Cleanup(func() { _ = ref.Close(ctx) })
			changes, hits, asked := tierChanges(), 0, map[string]bool{}
			for step := range 300 {
				if rng.IntN(25) == 0 {
					change := changes[rng.IntN(len(changes))]
					if _, err := r.UpdateData(ctx, func(active []byte) ([]byte, error) {
						var data map[string]any
						if err := json.Unmarshal(active, &data); err != nil {
							return nil, err
						}
						change(data)
						return json.Marshal(data)
					}, "test"); err != nil {
						t.Fatal(err)
					}
					reload()
					clear(asked)
					if n := plugins.MemoLenForTest(r); n != 0 {
						t.Fatalf("step %d: a new data version starts remembering %d decisions", step, n)
					}
					continue
				}
				in := inputs[rng.IntN(len(inputs))]
				if asked[string(in)] {
					hits++
				}
				asked[string(in)] = true
				got, err := r.Decide(ctx, contract.Introspect, in)
				if err != nil {
					t.Fatal(err)
				}
				raw, err := ref.Eval(ctx, string(contract.Introspect), in)
				if err != nil {
					t.Fatal(err)
				}
				want, err := plugins.ParseDecision(got.Version, raw)
				if err != nil {
					t.Fatal(err)
				}
				if got.Allow != want.Allow || !slices.Equal(got.Reasons, want.Reasons) || string(got.Result) != string(want.Result) {
					t.Fatalf("step %d: input %s\nregistry: %v %q %s\nevaluated: %v %q %s", step, in,
						got.Allow, got.Reasons, got.Result, want.Allow, want.Reasons, want.Result)
				}
				// What the caller does with its copy is not remembered.
				got.Reasons = append(got.Reasons[:0:0], "changed by the caller")
				if len(got.Result) > 0 {
					got.Result[0] = 'X'
				}
			}
			if hits < 100 {
				t.Fatalf("only %d of 300 steps asked a question again: the test does not exercise the memo", hits)
			}
		})
	}
}

// TestMemoRemembersTheSameQuestionOnce: asking the same question again adds
// nothing; a different second is a different question; tools/call is never
// remembered.
func TestMemoRemembersTheSameQuestionOnce(t *testing.T) {
	ctx := context.Background()
	r := policytest.Registry(t)
	inputs := introspectInputs(t)
	for range 3 {
		if _, err := r.Decide(ctx, contract.Introspect, inputs[0]); err != nil {
			t.Fatal(err)
		}
	}
	if n := plugins.MemoLenForTest(r); n != 1 {
		t.Fatalf("after one question asked three times the memo holds %d decisions, want 1", n)
	}
	if _, err := r.Decide(ctx, contract.Introspect, inputs[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Decide(ctx, contract.ToolCall, []byte(benchInput)); err != nil {
		t.Fatal(err)
	}
	if n := plugins.MemoLenForTest(r); n != 2 {
		t.Fatalf("after the next second's question and a tools/call the memo holds %d decisions, want 2", n)
	}
}

// TestNondeterministicPolicyIsNotMemoized: a module that calls a builtin
// OPA marks nondeterministic (here time.now_ns, anywhere in what the
// entrypoints reach) may decide differently on the same input, so none of
// its decisions is remembered.
func TestNondeterministicPolicyIsNotMemoized(t *testing.T) {
	ctx := context.Background()
	files := fstest.MapFS{"clock.rego": {Data: []byte("package pbac\n\n" +
		"introspect_deny contains \"the clock is before 1970\" if time.now_ns() < 0\n")}}
	src := rego.Sources()
	if err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(src, p)
		files[p] = &fstest.MapFile{Data: b}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	b, err := rego.Build(ctx, files)
	if err != nil {
		t.Fatal(err)
	}
	r := policytest.Empty(t)
	info, err := r.Activate(ctx, b, "clocked")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Builtins, "time.now_ns") {
		t.Fatalf("the clocked module's host builtins %v lack time.now_ns: the test proves nothing", info.Builtins)
	}
	if len(info.Memoized) != 0 {
		t.Fatalf("a module calling time.now_ns memoizes %v", info.Memoized)
	}
	in := introspectInputs(t)[0]
	for range 2 {
		if _, err := r.Decide(ctx, contract.Introspect, in); err != nil {
			t.Fatal(err)
		}
	}
	if n := plugins.MemoLenForTest(r); n != 0 {
		t.Fatalf("the memo holds %d decisions of a nondeterministic module", n)
	}
}
