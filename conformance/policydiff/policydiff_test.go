package policydiff_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pbac-gateway/pbac/conformance/policydiff"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/rego"
)

var shipped = sync.OnceValues(func() (*rego.Bundle, error) {
	return rego.BuildShipped(context.Background())
})

func shippedBundle(t *testing.T) *rego.Bundle {
	t.Helper()
	b, err := shipped()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGeneratorIsDeterministic(t *testing.T) {
	a := policydiff.NewGenerator(7, 8, policydiff.DefaultDomain())
	b := policydiff.NewGenerator(7, 8, policydiff.DefaultDomain())
	c := policydiff.NewGenerator(7, 9, policydiff.DefaultDomain())
	same := 0
	for i := range 200 {
		x, y, z := a.Input("pbac/tool_call"), b.Input("pbac/tool_call"), c.Input("pbac/tool_call")
		if !bytes.Equal(x, y) {
			t.Fatalf("input %d differs between two generators with the same seeds", i)
		}
		if !json.Valid(x) {
			t.Fatalf("input %d is not JSON: %s", i, x)
		}
		if bytes.Equal(x, z) {
			same++
		}
	}
	if same > 20 {
		t.Fatalf("%d of 200 inputs equal under another seed", same)
	}
}

// TestGeneratorEscapesSomeInputs: some inputs come as a client that
// escapes non-ASCII writes them, characters beyond the BMP as surrogate
// pairs (which OPA's Wasm parser misread before the engine decoded them),
// and Go reads them as the same JSON values.
func TestGeneratorEscapesSomeInputs(t *testing.T) {
	g := policydiff.NewGenerator(3, 4, policydiff.DefaultDomain())
	escaped, pairs := 0, 0
	for i := range 2000 {
		in := g.Input("pbac/tool_call")
		var v any
		if err := json.Unmarshal(in, &v); err != nil {
			t.Fatalf("input %d: %v: %s", i, err, in)
		}
		if bytes.Contains(in, []byte(`\u00e9`)) || bytes.Contains(in, []byte(`\u200b`)) {
			escaped++
		}
		if bytes.Contains(in, []byte(`\udb40\udc01`)) {
			pairs++
		}
	}
	if escaped == 0 || pairs == 0 {
		t.Fatalf("%d inputs with escaped BMP characters, %d with an escaped tag character: want some of each", escaped, pairs)
	}
	t.Logf("%d of 2000 inputs with escaped BMP characters, %d with an escaped tag character", escaped, pairs)
}

func TestGeneratorFallsBackOnAnEmptyDomain(t *testing.T) {
	g := policydiff.NewGenerator(1, 2, policydiff.Domain{})
	for range 100 {
		if in := g.Input(""); !json.Valid(in) {
			t.Fatalf("not JSON: %s", in)
		}
	}
}

func TestDomainFromData(t *testing.T) {
	data := []byte(`{
		"agents": {"trust_tiers": {"gold": ["acme-agent"], "bad": "not a list"}},
		"tiers": {"gold": {"grants": {"wiki": ["read", "edit"]}}},
		"roles": {"editor": {"grants": {"wiki": ["edit", 3]}}},
		"catalogue": {"wiki.get_page": {"resource": "wiki", "access": "read"}},
		"anonymous": {"backends": ["public"]},
		"protected_arguments": [{"path_prefixes": ["/private/"]}]
	}`)
	tests := []struct {
		name string
		data []byte
		has  func(policydiff.Domain) bool
	}{
		{"provider from trust tiers", data, func(d policydiff.Domain) bool {
			return slices.Contains(d.KnownProviders, "acme-agent") && slices.Contains(d.Providers, "acme-agent")
		}},
		{"scopes from grants", data, func(d policydiff.Domain) bool {
			return slices.Contains(d.Scopes, "wiki:read") && slices.Contains(d.Scopes, "wiki:edit")
		}},
		{"a human per role", data, func(d policydiff.Domain) bool {
			return slices.ContainsFunc(d.Subjects, func(s map[string]any) bool { return s["sub"] == "user-editor" })
		}},
		{"catalogue tools", data, func(d policydiff.Domain) bool {
			return slices.Contains(d.CatalogueTools, "wiki.get_page") && slices.Contains(d.Tools, "wiki.get_page")
		}},
		{"anonymous backends", data, func(d policydiff.Domain) bool { return slices.Contains(d.Tools, "public.any_tool") }},
		{"protected paths", data, func(d policydiff.Domain) bool { return slices.Contains(d.Paths, "/private/x") }},
		{"approval rules", []byte(`{"approval_rules": [{"id": "r1"}, {"id": 3}]}`), func(d policydiff.Domain) bool {
			return slices.Contains(d.ApprovalRules, "r1") && slices.Contains(d.ApprovalRules, "deploy-needs-release")
		}},
		{"the demo domain stays", data, func(d policydiff.Domain) bool { return slices.Contains(d.Tools, "jira.create_issue") }},
		{"not an object", []byte(`[1]`), func(d policydiff.Domain) bool {
			return len(d.Tools) == len(policydiff.DefaultDomain().Tools)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.has(policydiff.DomainFromData(tt.data)) {
				t.Fatalf("%+v", policydiff.DomainFromData(tt.data))
			}
		})
	}
}

// fixed answers the same decision to everything.
func fixed(out string, err error) policydiff.Evaluator {
	return policydiff.EvaluatorFunc(func(context.Context, string, []byte) ([]byte, error) {
		return []byte(out), err
	})
}

func TestCompare(t *testing.T) {
	deny := `{"allow": false, "reasons": ["no"]}`
	tests := []struct {
		name      string
		got, want policydiff.Evaluator
		wantErr   string
	}{
		{"agree", fixed(deny, nil), fixed(`{"reasons":["no"],"allow":false}`, nil), ""},
		{"differ", fixed(deny, nil), fixed(`{"allow": true, "reasons": ["no"]}`, nil), "decisions differ"},
		{"wasm error", fixed("", errors.New("boom")), fixed(deny, nil), "wasm: boom"},
		{"reference error", fixed(deny, nil), fixed("", errors.New("undefined")), "reference: undefined"},
		{"not an object", fixed(`[1]`, nil), fixed(`[1]`, nil), "not an object"},
		{"no boolean allow", fixed(`{"allow": "yes"}`, nil), fixed(`{"allow": "yes"}`, nil), "no boolean allow"},
		{"not JSON", fixed(`{`, nil), fixed(deny, nil), "wasm result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := policydiff.Compare(context.Background(), tt.got, tt.want, "pbac/x", []byte(`{}`))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	var dd *policydiff.DecisionsDiffer
	if err := policydiff.Compare(context.Background(), fixed(deny, nil), fixed(`{"allow": true}`, nil), "e", nil); !errors.As(err, &dd) {
		t.Fatalf("err = %v, want DecisionsDiffer", err)
	}
}

func TestRunCountsAndKeeps(t *testing.T) {
	flip := policydiff.EvaluatorFunc(func(_ context.Context, _ string, in []byte) ([]byte, error) {
		if len(in)%2 == 0 {
			return []byte(`{"allow": true}`), nil
		}
		return []byte(`{"allow": false}`), nil
	})
	rep, err := policydiff.Run(context.Background(), flip, fixed(`{"allow": false}`, nil),
		policydiff.Options{Inputs: 50, Entrypoints: []string{"a", "b"}, Keep: 2,
			Extra: map[string][][]byte{"a": {[]byte(`{}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 || rep.Results[0].Inputs != 51 || rep.Results[1].Inputs != 50 {
		t.Fatalf("%+v", rep.Results)
	}
	for _, r := range rep.Results {
		if r.Agreements+r.Disagreed != r.Inputs || r.Disagreed == 0 || len(r.Disagreements) != 2 || r.Allows != 0 {
			t.Fatalf("%+v", r)
		}
	}
	if rep.OK() || rep.Disagreed() != rep.Results[0].Disagreed+rep.Results[1].Disagreed {
		t.Fatal("a report with disagreements is OK")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := policydiff.Run(ctx, flip, flip, policydiff.Options{Inputs: 5}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v on a cancelled context", err)
	}
}

// TestCheckBundleShipped: the shipped bundle, through the tar.gz pbac policy
// build writes, agrees on every entrypoint, its vectors included.
func TestCheckBundleShipped(t *testing.T) {
	b := shippedBundle(t)
	var buf bytes.Buffer
	if err := b.WriteTarGz(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := rego.ReadTarGz(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var vectors []rego.Vector
	if err := json.Unmarshal(b.Vectors, &vectors); err != nil {
		t.Fatal(err)
	}
	perEP := map[string]int{}
	for _, v := range vectors {
		perEP[v.Entrypoint]++
	}
	const n = 60
	rep, err := policydiff.CheckBundle(context.Background(), back, policydiff.Options{Inputs: n})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Revision != b.Revision {
		t.Fatalf("the shipped bundle disagrees with itself: %+v", rep)
	}
	if got, want := len(rep.Results), len(contract.Names()); got != want {
		t.Fatalf("%d results, want %d", got, want)
	}
	for _, r := range rep.Results {
		if r.Inputs != n+perEP[r.Entrypoint] {
			t.Errorf("%s: %d inputs, want %d generated + %d vectors", r.Entrypoint, r.Inputs, n, perEP[r.Entrypoint])
		}
	}
}

// TestCheckBundleApprovals: with data under which the shipped approval
// rules hold calls (ci_agent and developer granted what the rules hold),
// the Wasm module and the reference agree on pbac/tool_call, whose
// generated inputs present approvals granted, refused, for other rules and
// by the requester; some of the decisions hold a call.
func TestCheckBundleApprovals(t *testing.T) {
	b := shippedBundle(t)
	var data map[string]any
	if err := json.Unmarshal(b.Data, &data); err != nil {
		t.Fatal(err)
	}
	tiers := data["tiers"].(map[string]any)
	ci := tiers["ci_agent"].(map[string]any)
	ci["grants"].(map[string]any)["jenkins"] = []any{"read", "build", "deploy"}
	ci["separation_of_duties"] = []any{"approve", "merge"}
	tiers["developer"].(map[string]any)["grants"].(map[string]any)["database"] = []any{"read", "ddl"}
	raw, _ := json.Marshal(data)
	gated := &rego.Bundle{Wasm: b.Wasm, Data: raw, Modules: b.Modules, Revision: rego.Revision(b.Wasm, raw)}

	// The generated inputs do reach a hold under this data.
	ref, err := rego.NewReferenceFromBundle(context.Background(), gated)
	if err != nil {
		t.Fatal(err)
	}
	// Coherent inputs call the held tools as the agents whose tiers the
	// rules name (the wild ones still draw from every tool).
	d := policydiff.DomainFromData(raw)
	d.CatalogueTools = []string{"jenkins.trigger_deploy", "database.execute_ddl"}
	d.KnownProviders = []string{"ci-bot", "claude-code"}
	const n = 400
	g := policydiff.NewGenerator(20, 26, d)
	held := 0
	for range n {
		out, err := ref.Decide(context.Background(), string(contract.ToolCall), g.Input(string(contract.ToolCall)))
		if err != nil {
			t.Fatal(err)
		}
		if err := contract.CheckToolCallResult(out); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if bytes.Contains(out, []byte(`"required":true`)) {
			held++
		}
	}
	if held == 0 {
		t.Fatalf("none of %d generated inputs is held", n)
	}
	t.Logf("%d of %d generated inputs held", held, n)

	rep, err := policydiff.CheckBundle(context.Background(), gated, policydiff.Options{Inputs: n, Domain: &d, Entrypoints: []string{string(contract.ToolCall)}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("Wasm and the reference disagree: %+v", rep)
	}
}

// TestCheckBundleFindsDisagreements: Wasm compiled from one policy and
// sources of another disagree, and the check says where.
func TestCheckBundleFindsDisagreements(t *testing.T) {
	b := shippedBundle(t)
	tampered := maps.Clone(b.Modules)
	src := string(tampered["register.rego"])
	if !strings.Contains(src, `" may not register"`) {
		t.Fatal("register.rego changed; adjust this test")
	}
	// The reference now lets a tier with may_register: false register.
	tampered["register.rego"] = []byte(strings.Replace(src, "data.tiers[tier].may_register == false", "data.tiers[tier].may_register == \"never\"", 1))
	var data map[string]any
	if err := json.Unmarshal(b.Data, &data); err != nil {
		t.Fatal(err)
	}
	data["tiers"].(map[string]any)["developer"].(map[string]any)["may_register"] = false
	raw, _ := json.Marshal(data)
	bad := &rego.Bundle{Wasm: b.Wasm, Data: raw, Modules: tampered, Revision: rego.Revision(b.Wasm, raw)}
	rep, err := policydiff.CheckBundle(context.Background(), bad, policydiff.Options{Inputs: 200, Entrypoints: []string{"pbac/register", "pbac/list"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Results) != 2 {
		t.Fatalf("tampered sources agreed: %+v", rep)
	}
	reg, list := rep.Results[0], rep.Results[1]
	if reg.Disagreed == 0 || len(reg.Disagreements) == 0 || !strings.Contains(reg.Disagreements[0].Error, "decisions differ") {
		t.Fatalf("register: %+v", reg)
	}
	if !list.OK() {
		t.Fatalf("list should agree: %+v", list)
	}
}

func TestCheckBundleRefusals(t *testing.T) {
	b := shippedBundle(t)
	notExported, err := rego.Build(context.Background(), rego.Sources())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		b       *rego.Bundle
		opts    policydiff.Options
		wantErr error
		missing string
	}{
		{"no sources", &rego.Bundle{Wasm: b.Wasm, Data: b.Data}, policydiff.Options{}, policydiff.ErrNoSources, ""},
		{"no wasm", &rego.Bundle{Data: b.Data, Modules: b.Modules}, policydiff.Options{}, nil, ""},
		{"an entrypoint the module lacks", notExported, policydiff.Options{Inputs: 5, Entrypoints: []string{"pbac/list", "pbac/audit"}}, nil, "pbac/audit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := policydiff.CheckBundle(context.Background(), tt.b, tt.opts)
			switch {
			case tt.missing != "":
				if err != nil {
					t.Fatal(err)
				}
				if rep.OK() || !rep.Results[1].Missing || rep.Results[1].Entrypoint != tt.missing || !rep.Results[0].OK() {
					t.Fatalf("%+v", rep)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			default:
				if err == nil {
					t.Fatal("no error")
				}
			}
		})
	}
}
