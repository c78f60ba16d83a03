package wasm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/conformance/policydiff"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/latency"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// sharedNames are the members splitInput gives as shared: the token's part
// of an input.
var sharedNames = []string{"client", "subject", "token"}

// splitInput splits an input object into its token's part and the rest, as
// the gateway gives them to EvalShared; ok is false when input is not an
// object.
func splitInput(t testing.TB, input []byte) (shared []wasm.Member, rest []byte, ok bool) {
	t.Helper()
	var members map[string]json.RawMessage
	if err := json.Unmarshal(input, &members); err != nil || members == nil {
		return nil, nil, false
	}
	for _, name := range sharedNames {
		if v, ok := members[name]; ok {
			shared = append(shared, wasm.Member{Name: name, Value: v})
			delete(members, name)
		}
	}
	rest, err := json.Marshal(members)
	if err != nil {
		t.Fatal(err)
	}
	return shared, rest, true
}

// sharedPolicy is the shipped policy with one instance, so that every
// evaluation of a test meets what the one before left in it.
func sharedPolicy(t *testing.T) *wasm.Policy {
	t.Helper()
	ctx := context.Background()
	b, err := rego.BuildShipped(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e, err := wasm.NewEngine(ctx, wasm.NewConfig().WithMaxInstances(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(ctx) })
	p, err := e.Load(ctx, b.Wasm, b.Data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEvalSharedMatchesEval: on the shipped policy's decision vectors and
// on generated inputs, every entrypoint, EvalShared decides byte for byte
// as Eval does on the whole input: the first time (the whole input
// evaluated), the second (the shared members parsed apart to be held), the
// third (held), with the shared members of one input and the rest of
// another, and with whole inputs evaluated between, on the same instance.
func TestEvalSharedMatchesEval(t *testing.T) {
	ctx := context.Background()
	p := sharedPolicy(t)
	raw, err := rego.ShippedVectors()
	if err != nil {
		t.Fatal(err)
	}
	var vectors []rego.Vector
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	type call struct {
		ep    string
		input []byte
	}
	var calls []call
	for _, v := range vectors {
		calls = append(calls, call{v.Entrypoint, v.Input})
	}
	g := policydiff.NewGenerator(7, 3, policydiff.DefaultDomain())
	for i := range 300 {
		eps := contract.Names()
		ep := eps[i%len(eps)]
		calls = append(calls, call{ep, g.Input(ep)})
	}
	same := func(what, ep string, input []byte, got []byte, gotErr error) {
		t.Helper()
		want, wantErr := p.Eval(ctx, ep, input)
		if (gotErr != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("%s, %s: EvalShared = %s, %v; Eval = %s, %v\ninput: %s", what, ep, got, gotErr, want, wantErr, input)
		}
	}
	split := 0
	for i, c := range calls {
		shared, rest, ok := splitInput(t, c.input)
		if !ok || len(shared) == 0 {
			continue
		}
		split++
		for _, what := range []string{"first: the whole input", "second: parsed apart", "third: held"} {
			got, err := p.EvalShared(ctx, time.Time{}, c.ep, shared, rest)
			same(what, c.ep, c.input, got, err)
		}
		// The shared members of this call with the rest of the next.
		next := calls[(i+1)%len(calls)]
		if _, otherRest, ok := splitInput(t, next.input); ok {
			merged, err := wasm.MergeInput(shared, otherRest)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.EvalShared(ctx, time.Time{}, next.ep, shared, otherRest)
			same("mixed", next.ep, merged, got, err)
		}
	}
	if split < 400 {
		t.Fatalf("only %d inputs had a token's part to share", split)
	}
}

// TestEvalSharedRefuses: what EvalShared cannot evaluate is an error (the
// caller denies), and the instance is replaced where it was used, so the
// next evaluation decides as before.
func TestEvalSharedRefuses(t *testing.T) {
	ctx := context.Background()
	p := sharedPolicy(t)
	token := wasm.Member{Name: "token", Value: []byte(`{"client_id":"c","scp":["jira:read"]}`)}
	rest := []byte(`{"request":{"backend":"jira","method":"tools/call","tool":"jira.search_issues"},"now":1700000000}`)
	for _, tt := range []struct {
		name   string
		shared []wasm.Member
		rest   string
	}{
		{"a name given twice", []wasm.Member{token, token}, string(rest)},
		{"a shared value that is not JSON", []wasm.Member{{Name: "token", Value: []byte(`{"a":`)}}, string(rest)},
		{"a shared value that is not UTF-8", []wasm.Member{{Name: "token", Value: []byte("\"\xff\"")}}, string(rest)},
		{"a rest that is not JSON", []wasm.Member{token}, `{"now":`},
		{"a rest that is not an object", []wasm.Member{token}, `[1,2]`},
		{"a rest that is a string", []wasm.Member{token}, `"now"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := p.EvalShared(ctx, time.Time{}, string(contract.ToolCall), tt.shared, []byte(tt.rest))
			if !errors.Is(err, wasm.ErrInvalidInput) {
				t.Fatalf("EvalShared = %s, %v; want ErrInvalidInput", out, err)
			}
			merged, _ := wasm.MergeInput([]wasm.Member{token}, rest)
			want, err := p.Eval(ctx, string(contract.ToolCall), merged)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.EvalShared(ctx, time.Time{}, string(contract.ToolCall), []wasm.Member{token}, rest)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("after it: EvalShared = %s, %v; Eval = %s", got, err, want)
			}
		})
	}
}

// TestMergeInput: the rest's members, then the shared ones; a name in
// both is decided as the shared one's, as EvalShared decides it.
func TestMergeInput(t *testing.T) {
	ctx := context.Background()
	p := sharedPolicy(t)
	for _, tt := range []struct {
		name, rest, want string
		shared           []wasm.Member
	}{
		{"empty rest", `{}`, `{"token":{"a":1}}`, []wasm.Member{{Name: "token", Value: []byte(`{"a":1}`)}}},
		{"spaced empty rest", " { \n } ", `{"token":1,"client":2}`, []wasm.Member{{Name: "token", Value: []byte(`1`)}, {Name: "client", Value: []byte(`2`)}}},
		{"rest and shared", `{"now":1}`, `{"now":1,"token":{}}`, []wasm.Member{{Name: "token", Value: []byte(`{}`)}}},
		{"a name to escape", `{"now":1}`, `{"now":1,"a\"b":true}`, []wasm.Member{{Name: `a"b`, Value: []byte(`true`)}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wasm.MergeInput(tt.shared, []byte(tt.rest))
			if err != nil || string(got) != tt.want {
				t.Fatalf("MergeInput = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
	if _, err := wasm.MergeInput(nil, []byte(`[1]`)); !errors.Is(err, wasm.ErrInvalidInput) {
		t.Fatalf("MergeInput of an array: %v", err)
	}
	// A member in both: the shared one decides, in both paths.
	shared := []wasm.Member{{Name: "token", Value: []byte(`{"client_id":"c","scp":["jira:read"]}`)}}
	rest := []byte(`{"token":{"client_id":"c","scp":[]},"request":{"backend":"jira","method":"tools/call","tool":"jira.search_issues"},"now":1700000000}`)
	merged, err := wasm.MergeInput(shared, rest)
	if err != nil {
		t.Fatal(err)
	}
	want, err := p.Eval(ctx, string(contract.ToolCall), merged)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.EvalShared(ctx, time.Time{}, string(contract.ToolCall), shared, rest)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a name in both: EvalShared = %s, %v; Eval of the merged input = %s", got, err, want)
	}
}

// BenchmarkEvalShared: a pbac/tool_call decision on the shipped policy of a
// developer agent's search call, the whole input parsed each time (Eval)
// against the token's part held by the instance and the call's part parsed
// (EvalShared), with the CPU's caches warm and evicted before each
// decision (as between calls a millisecond apart):
// go test -run '^$' -bench EvalShared -benchtime 3000x ./wasm/
func BenchmarkEvalShared(b *testing.B) {
	ctx := context.Background()
	sp := shippedForTest(b)
	input := []byte(`{"client":{"client_id":"c-alice-cc","agent_provider":"claude-code","agent_model":"claude-opus-4","single_use_access_tokens":false,"verified":true},` +
		`"subject":{"sub":"alice","roles":["engineering"]},` +
		`"token":{"client_id":"c-alice-cc","sub":"alice","scp":["drive:read","drive:write","jira:read","jira:write","slack:read"],"aud":["http://127.0.0.1:8080/mcp"],"iat":1700000000,"exp":1700003600},` +
		`"request":{"backend":"jira","method":"tools/call","tool":"jira.search_issues","arguments":{"query":"project = SEC"}},"now":1700000100}`)
	shared, rest, _ := splitInput(b, input)
	ep := string(contract.ToolCall)
	want, err := sp.wasm.Eval(ctx, ep, input)
	if err != nil || !bytes.Contains(want, []byte(`"allow":true`)) {
		b.Fatalf("%s %v", want, err)
	}
	// Another token of the same agent: calls alternating between the two
	// find the instance holding the other's part, every time.
	other := slices.Clone(shared)
	other[len(other)-1].Value = bytes.Replace(other[len(other)-1].Value, []byte(`"iat":1700000000`), []byte(`"iat":1700000001`), 1)
	tokens := [2][]wasm.Member{shared, other}
	evict := latency.EvictCaches()
	var calls int
	for _, path := range []struct {
		name string
		eval func() ([]byte, error)
	}{
		{"Eval", func() ([]byte, error) { return sp.wasm.Eval(ctx, ep, input) }},
		{"EvalShared", func() ([]byte, error) { return sp.wasm.EvalShared(ctx, time.Time{}, ep, shared, rest) }},
		{"EvalShared-two-tokens", func() ([]byte, error) {
			calls++
			return sp.wasm.EvalShared(ctx, time.Time{}, ep, tokens[calls%2], rest)
		}},
	} {
		for _, cold := range []bool{false, true} {
			name := path.name
			if cold {
				name += "/cold"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				samples := make([]time.Duration, 0, 1<<14)
				for i := 0; b.Loop(); i++ {
					if cold {
						evict(i)
					}
					start := time.Now()
					got, err := path.eval()
					samples = append(samples, time.Since(start))
					if err != nil || !bytes.Equal(got, want) {
						b.Fatalf("%s %v", got, err)
					}
				}
				latency.Report(b, samples)
			})
		}
	}
}

// sharedTestPolicy is testdata/shared.rego with one instance and cfg.
func sharedTestPolicy(t *testing.T, cfg wasm.Config) *wasm.Policy {
	t.Helper()
	return load(t, newEngine(t, cfg.WithMaxInstances(1)), compileRego(t, "testdata/shared.rego", "s/allow", "s/maybe", "s/echo"), "")
}

// TestEvalSharedChecksAsEval: the whole input's limits hold for the parts
// (the hostile review found the first version let an input a few bytes
// over the size limit, or one level too deep, through): at the limit both
// paths evaluate, past it both refuse, on the first, second and third
// evaluation alike.
func TestEvalSharedChecksAsEval(t *testing.T) {
	ctx := context.Background()
	shared := []wasm.Member{{Name: "user", Value: []byte(`"alice"`)}, {Name: "a", Value: []byte(`1`)}, {Name: "b", Value: []byte(`2`)}}
	rest := []byte(`{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	merged, err := wasm.MergeInput(shared, rest)
	if err != nil {
		t.Fatal(err)
	}
	nested := func(depth int) []byte {
		return append(bytes.Repeat([]byte("["), depth), bytes.Repeat([]byte("]"), depth)...)
	}
	for _, tt := range []struct {
		name   string
		max    int
		shared []wasm.Member
		rest   []byte
		refuse bool
	}{
		{"at the size limit", len(merged), shared, rest, false},
		{"a byte over the size limit", len(merged) - 1, shared, rest, true},
		{"an empty rest at the size limit", len(`{"user":"alice"}`), shared[:1], []byte(` { } `), false},
		{"an empty rest a byte over", len(`{"user":"alice"}`) - 1, shared[:1], []byte(` { } `), true},
		{"nested to the depth limit", 0, []wasm.Member{shared[0], {Name: "deep", Value: nested(9999)}}, []byte(`{}`), false},
		{"nested a level deeper", 0, []wasm.Member{shared[0], {Name: "deep", Value: nested(10000)}}, []byte(`{}`), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := wasm.NewConfig()
			if tt.max > 0 {
				cfg = cfg.WithMaxInputBytes(tt.max)
			}
			p := sharedTestPolicy(t, cfg)
			whole, err := wasm.MergeInput(tt.shared, tt.rest)
			if err != nil {
				if !tt.refuse {
					t.Fatal(err)
				}
				// MergeInput checks as EvalShared does: put it together
				// by hand, for Eval to judge.
				whole = []byte(`{"user":"alice","deep":` + string(tt.shared[1].Value) + `}`)
			}
			want, wantErr := p.Eval(ctx, "s/allow", whole)
			if (wantErr != nil) != tt.refuse {
				t.Fatalf("Eval of the whole input = %s, %v; want refused %v", want, wantErr, tt.refuse)
			}
			for i := range 3 {
				got, err := p.EvalShared(ctx, time.Time{}, "s/allow", tt.shared, tt.rest)
				if tt.refuse != errors.Is(err, wasm.ErrInvalidInput) || (err == nil && !bytes.Equal(got, want)) {
					t.Fatalf("evaluation %d: EvalShared = %s, %v; Eval = %s, %v", i+1, got, err, want, wantErr)
				}
			}
		})
	}
}

// TestEvalSharedKeepsItsInstance: an undefined decision, and a rest that is
// not an object, are errors that leave the instance as it was (the review
// found the first version killed it the second time, so a caller could
// make the gateway instantiate the policy again every other call).
func TestEvalSharedKeepsItsInstance(t *testing.T) {
	ctx := context.Background()
	p := sharedTestPolicy(t, wasm.NewConfig())
	shared := []wasm.Member{{Name: "user", Value: []byte(`"alice"`)}}
	for i := range 4 {
		if out, err := p.EvalShared(ctx, time.Time{}, "s/maybe", shared, []byte(`{"x":2}`)); !errors.Is(err, wasm.ErrUndefined) || errors.Is(err, wasm.ErrAborted) {
			t.Fatalf("evaluation %d: %s, %v; want ErrUndefined alone", i+1, out, err)
		}
		if out, err := p.EvalShared(ctx, time.Time{}, "s/maybe", shared, []byte(`[{"x":1}]`)); !errors.Is(err, wasm.ErrInvalidInput) {
			t.Fatalf("evaluation %d of an array: %s, %v; want ErrInvalidInput", i+1, out, err)
		}
		if created, idle, _ := wasm.PoolStateForTest(p); created != 1 || idle != 1 {
			t.Fatalf("evaluation %d: %d instances, %d idle; want the one, idle", i+1, created, idle)
		}
	}
	if out, err := p.EvalShared(ctx, time.Time{}, "s/maybe", shared, []byte(`{"x":1}`)); err != nil || string(out) != "true" {
		t.Fatalf("then: %s, %v", out, err)
	}
}

// TestEvalSharedBoundsTheInputAsGiven: escaped surrogates shrink when they
// are decoded (twelve bytes a pair, four after), but the size limit bounds
// the input as given, as Eval bounds it.
func TestEvalSharedBoundsTheInputAsGiven(t *testing.T) {
	ctx := context.Background()
	shared := []wasm.Member{{Name: "user", Value: []byte(`"alice"`)}}
	rest := []byte(`{"pad":"` + strings.Repeat(`\udb40\udc01`, 20) + `"}`)
	given := []byte(`{"pad":"` + strings.Repeat(`\udb40\udc01`, 20) + `","user":"alice"}`)
	for _, tt := range []struct {
		name   string
		max    int
		refuse bool
	}{
		{"at the size limit", len(given), false},
		{"a byte over it", len(given) - 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := sharedTestPolicy(t, wasm.NewConfig().WithMaxInputBytes(tt.max))
			_, errWhole := p.Eval(ctx, "s/allow", given)
			_, errParts := p.EvalShared(ctx, time.Time{}, "s/allow", shared, rest)
			for what, err := range map[string]error{"Eval": errWhole, "EvalShared": errParts} {
				if refused := errors.Is(err, wasm.ErrInvalidInput); refused != tt.refuse {
					t.Errorf("%s: %v, want refused %v", what, err, tt.refuse)
				}
			}
		})
	}
}
