package rego

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/wasm"
)

var (
	refOnce sync.Once
	refErr  error
	ref     *Reference
)

// shippedReference is the Reference over the shipped policy, built once.
func shippedReference(t testing.TB) *Reference {
	t.Helper()
	refOnce.Do(func() {
		ref, refErr = NewReference(context.Background(), Sources(), nil)
	})
	if refErr != nil {
		t.Fatal(refErr)
	}
	return ref
}

func decide(t testing.TB, r *Reference, entrypoint string, input any) map[string]any {
	t.Helper()
	in, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Decide(context.Background(), entrypoint, in)
	if err != nil {
		t.Fatalf("%s: %v", entrypoint, err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%s: result is not an object: %s", entrypoint, out)
	}
	return m
}

func TestRegoUnitTests(t *testing.T) {
	var buf bytes.Buffer
	passed, failed, err := Test(context.Background(), Sources(), &buf, testing.Verbose())
	t.Log("\n" + buf.String())
	if err != nil {
		t.Fatal(err)
	}
	if failed != 0 || passed == 0 {
		t.Fatalf("rego unit tests: %d passed, %d failed", passed, failed)
	}
}

func TestRegoTestFailuresAreReported(t *testing.T) {
	fsys := fstest.MapFS{
		"p.rego":      {Data: []byte("package p\n\nx := 1\n")},
		"p_test.rego": {Data: []byte("package p_test\n\ntest_ok if data.p.x == 1\n\ntest_bad if data.p.x == 2\n")},
	}
	var buf bytes.Buffer
	passed, failed, err := Test(context.Background(), fsys, &buf, false)
	if err != nil {
		t.Fatal(err)
	}
	if passed != 1 || failed != 1 || !strings.Contains(buf.String(), "test_bad") {
		t.Fatalf("passed=%d failed=%d report:\n%s", passed, failed, buf.String())
	}
}

func TestVectorsReference(t *testing.T) {
	r := shippedReference(t)
	sub, err := fs.Sub(vectorsFS, "testdata/vectors")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := LoadVectors(sub)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) < 60 {
		t.Fatalf("only %d vectors", len(vs))
	}
	per := map[string]int{}
	for _, v := range vs {
		per[v.Entrypoint]++
		out, err := r.Decide(context.Background(), v.Entrypoint, v.Input)
		if err != nil {
			t.Errorf("%s: %v", v.Name, err)
			continue
		}
		var got, want map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Errorf("%s: %v", v.Name, err)
			continue
		}
		if err := json.Unmarshal(v.Want, &want); err != nil {
			t.Errorf("%s: want: %v", v.Name, err)
			continue
		}
		if _, ok := want["allow"]; !ok {
			t.Errorf("%s: want has no allow", v.Name)
		}
		if diff := subsetDiff(want, got); diff != "" {
			t.Errorf("%s (%s): %s\n got %s", v.Name, v.Entrypoint, diff, out)
		}
		checkShape(t, v.Name, v.Entrypoint, got)
	}
	for _, e := range entrypoints {
		if per[e] == 0 {
			t.Errorf("no vectors for %s", e)
		}
	}
	t.Logf("%d vectors: %v", len(vs), per)
}

// subsetDiff describes the first field of want missing from or different
// in got ("" when want ⊆ got).
func subsetDiff(want, got map[string]any) string {
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			return fmt.Sprintf("field %q missing", k)
		}
		if !reflect.DeepEqual(w, g) {
			return fmt.Sprintf("field %q = %v, want %v", k, g, w)
		}
	}
	return ""
}

// checkShape verifies the fixed parts of the contract on a decision.
func checkShape(t *testing.T, name, entrypoint string, got map[string]any) {
	t.Helper()
	allow, ok := got["allow"].(bool)
	if !ok {
		t.Errorf("%s: allow is not a bool: %v", name, got)
		return
	}
	reasons, ok := got["reasons"].([]any)
	if !ok || len(reasons) == 0 {
		t.Errorf("%s: reasons must be a non-empty array: %v", name, got)
		return
	}
	prev := ""
	for i, r := range reasons {
		s, ok := r.(string)
		if !ok || s == "" || (i > 0 && s < prev) {
			t.Errorf("%s: reasons must be sorted non-empty strings: %v", name, reasons)
		}
		prev = s
	}
	fields := map[string][]string{
		"pbac/register":   {"tier"},
		"pbac/token":      {"tier", "scopes", "ttl_seconds", "single_use", "refused_for_every_subject"},
		"pbac/introspect": {"tier", "jit_single_use", "scopes"},
		"pbac/exchange":   {"scopes", "ttl_seconds"},
		"pbac/tool_call":  {"tier", "resource", "access", "insufficient_scope"},
		"pbac/list":       {"tools"},
		"pbac/anonymous":  {"tools"},
		"pbac/method":     {"tier"},
	}[entrypoint]
	for _, f := range fields {
		if _, ok := got[f]; !ok {
			t.Errorf("%s: field %q missing: %v", name, f, got)
		}
	}
	if entrypoint == "pbac/tool_call" && got["resource"] != "" {
		if _, ok := got["required_scope"]; !ok {
			t.Errorf("%s: required_scope missing for a catalogued tool", name)
		}
	}
	if !allow && entrypoint == "pbac/tool_call" && got["insufficient_scope"] == true && len(reasons) != 1 {
		t.Errorf("%s: insufficient_scope with several reasons", name)
	}
}

// The seed trust-tier matrix of DESIGN.md, for machine clients and for
// alice (engineering).
func TestSeedMatrix(t *testing.T) {
	r := shippedReference(t)
	type col struct{ tool, scope string }
	cols := []col{
		{"drive.read_file", "drive:read"}, {"drive.write_file", "drive:write"},
		{"jira.get_issue", "jira:read"}, {"jira.create_issue", "jira:write"},
		{"slack.read_history", "slack:read"}, {"slack.post_message", "slack:write"},
		{"database.execute_ddl", "database:ddl"},
	}
	rows := []struct {
		provider, tier string
		allow          [7]bool
	}{
		{"claude-code", "developer", [7]bool{true, true, true, true, true, true, false}},
		{"ci-bot", "ci_agent", [7]bool{true, false, true, true, false, false, false}},
		{"security-scanner", "read_only", [7]bool{true, false, true, false, false, false, false}},
		{"claude-code-trusted", "internal_trusted", [7]bool{true, true, true, true, true, true, false}},
		{"our-internal-scanner", "internal_trusted", [7]bool{true, true, true, true, true, true, false}},
	}
	allScopes := []string{}
	for _, c := range cols {
		allScopes = append(allScopes, c.scope)
	}
	for _, human := range []bool{false, true} {
		for _, row := range rows {
			for i, c := range cols {
				name := fmt.Sprintf("%s/%s/human=%v", row.provider, c.tool, human)
				t.Run(name, func(t *testing.T) {
					clientID := row.provider + "-client"
					tok := map[string]any{
						"client_id": clientID, "scp": allScopes, "aud": []string{"https://gw.example/mcp"},
						"iat": 1700000000, "exp": 1700000300,
					}
					in := map[string]any{
						"client":  map[string]any{"client_id": clientID, "agent_provider": row.provider, "verified": true},
						"token":   tok,
						"request": map[string]any{"backend": strings.Split(c.tool, ".")[0], "method": "tools/call", "tool": c.tool, "arguments": map[string]any{"path": "/docs/a.md"}},
						"now":     1700000100,
					}
					if human {
						in["subject"] = map[string]any{"sub": "alice", "roles": []string{"engineering"}}
						tok["sub"] = "alice"
					}
					got := decide(t, r, "pbac/tool_call", in)
					if got["allow"] != row.allow[i] || got["tier"] != row.tier || got["required_scope"] != c.scope {
						t.Fatalf("got %v, want allow=%v tier=%s", got, row.allow[i], row.tier)
					}
					// The same client unverified gets nothing.
					in["client"].(map[string]any)["verified"] = false
					if got := decide(t, r, "pbac/tool_call", in); got["allow"] != false || got["tier"] != "unverified" {
						t.Fatalf("unverified: got %v", got)
					}
				})
			}
		}
	}
}

func TestReferenceCustomData(t *testing.T) {
	data, err := fs.ReadFile(Sources(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	// Remove slack from the developer tier: the same input flips to deny.
	delete(doc["tiers"].(map[string]any)["developer"].(map[string]any)["grants"].(map[string]any), "slack")
	changed, _ := json.Marshal(doc)
	r2, err := NewReference(context.Background(), Sources(), changed)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]any{
		"client":  map[string]any{"client_id": "c", "agent_provider": "claude-code", "verified": true},
		"token":   map[string]any{"client_id": "c", "scp": []string{"slack:write"}, "aud": "gw", "iat": 1700000000, "exp": 1700000300},
		"request": map[string]any{"tool": "slack.post_message"},
		"now":     1700000100,
	}
	if got := decide(t, shippedReference(t), "pbac/tool_call", in); got["allow"] != true {
		t.Fatalf("shipped data: %v", got)
	}
	if got := decide(t, r2, "pbac/tool_call", in); got["allow"] != false {
		t.Fatalf("changed data: %v", got)
	}
	if _, err := NewReference(context.Background(), Sources(), []byte(`[1]`)); err == nil {
		t.Fatal("non-object data accepted")
	}
}

func TestReferenceErrors(t *testing.T) {
	r := shippedReference(t)
	if _, err := r.Decide(context.Background(), "pbac/nope", []byte(`{}`)); err == nil {
		t.Fatal("unknown entrypoint accepted")
	}
	if _, err := r.Decide(context.Background(), "pbac/tool_call", []byte(`{`)); err == nil {
		t.Fatal("invalid JSON accepted")
	}
}

func TestBuildDeterministic(t *testing.T) {
	ctx := context.Background()
	b1, err := BuildShipped(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := BuildShipped(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Wasm, b2.Wasm) || !bytes.Equal(b1.Data, b2.Data) || b1.Revision != b2.Revision {
		t.Fatal("two builds differ")
	}
	if len(b1.Wasm) < 8 || string(b1.Wasm[:4]) != "\x00asm" {
		t.Fatal("not a Wasm module")
	}
	if len(b1.Revision) != 64 || b1.Revision != revision(b1.Wasm, b1.Data) {
		t.Fatalf("bad revision %q", b1.Revision)
	}
	if !json.Valid(b1.Vectors) || !json.Valid(b1.Data) {
		t.Fatal("vectors or data not JSON")
	}
	var t1, t2 bytes.Buffer
	if err := b1.WriteTarGz(&t1); err != nil {
		t.Fatal(err)
	}
	if err := b2.WriteTarGz(&t2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(t1.Bytes(), t2.Bytes()) {
		t.Fatal("two tarballs differ")
	}
	back, err := ReadTarGz(bytes.NewReader(t1.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Wasm, b1.Wasm) || !bytes.Equal(back.Data, b1.Data) ||
		!bytes.Equal(back.Vectors, b1.Vectors) || back.Revision != b1.Revision {
		t.Fatal("ReadTarGz does not round-trip")
	}
	if len(b1.Modules) == 0 || !reflect.DeepEqual(back.Modules, b1.Modules) {
		t.Fatalf("the Rego sources do not round-trip: %d modules built, %d read", len(b1.Modules), len(back.Modules))
	}
	for p := range b1.Modules {
		if isTestFile(p) {
			t.Errorf("test file %s in the bundle", p)
		}
	}
	var t3 bytes.Buffer
	if err := back.WriteTarGz(&t3); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(t1.Bytes(), t3.Bytes()) {
		t.Fatal("re-written tarball differs")
	}

	// Without vectors: no /pbac/vectors.json, Vectors stays nil.
	plain, err := Build(ctx, Sources())
	if err != nil {
		t.Fatal(err)
	}
	if plain.Vectors != nil || plain.Revision != b1.Revision {
		t.Fatal("Build and BuildShipped differ in more than vectors")
	}
	var t4 bytes.Buffer
	if err := plain.WriteTarGz(&t4); err != nil {
		t.Fatal(err)
	}
	back, err = ReadTarGz(&t4)
	if err != nil || back.Vectors != nil {
		t.Fatalf("plain round trip: %v", err)
	}
	if os.Getenv("PBAC_WRITE_BUNDLE") != "" {
		_ = os.WriteFile(os.Getenv("PBAC_WRITE_BUNDLE"), t1.Bytes(), 0o644)
	}
}

func TestBuildErrorLocation(t *testing.T) {
	fsys := fstest.MapFS{
		"ok.rego":     {Data: []byte("package pbac\n\nregister := {\"allow\": true, \"reasons\": [\"x\"]}\n")},
		"broken.rego": {Data: []byte("package pbac\n\nx := 1\n\ny if {\n\tx ==\n}\n")},
		"data.json":   {Data: []byte(`{}`)},
	}
	_, err := Build(context.Background(), fsys)
	if err == nil {
		t.Fatal("broken policy built")
	}
	var se SourceErrors
	if !errors.As(err, &se) || len(se) == 0 {
		t.Fatalf("not SourceErrors: %T %v", err, err)
	}
	if !strings.Contains(err.Error(), "broken.rego:7:1: ") {
		t.Fatalf("error without location: %v", err)
	}
	if se[0].File != "broken.rego" || se[0].Row != 7 || se[0].Col != 1 {
		t.Fatalf("bad location: %+v", se[0])
	}

	// A compile (not parse) error carries its location too.
	fsys["broken.rego"] = &fstest.MapFile{Data: []byte("package pbac\n\ny if {\n\tundefined_fn(1)\n}\n")}
	_, err = Build(context.Background(), fsys)
	if err == nil || !strings.Contains(err.Error(), "broken.rego:4:2:") {
		t.Fatalf("compile error location: %v", err)
	}

	// Invalid data.json is reported against the file.
	fsys["broken.rego"] = &fstest.MapFile{Data: []byte("package pbac\n")}
	fsys["data.json"] = &fstest.MapFile{Data: []byte(`[`)}
	if _, err := Build(context.Background(), fsys); err == nil || !strings.Contains(err.Error(), "data.json") {
		t.Fatalf("bad data.json: %v", err)
	}
}

func TestShippedPolicyUsesOnlyNativeBuiltins(t *testing.T) {
	// Builtins that OPA's Wasm target implements natively (checked against
	// OPA v1.22's Wasm compiler). Anything else would need the host.
	native := map[string]bool{}
	for _, n := range strings.Fields(`and or minus plus mul div rem count sum min max sort
		array.concat array.slice concat contains startswith endswith lower upper split replace
		trim trim_space trim_prefix trim_suffix format_int substring indexof regex.match
		base64.encode json.marshal
		equal neq gt gte lt lte internal.member_2 internal.member_3 is_array is_boolean
		is_number is_object is_string is_null is_set numbers.range object.get object.union
		object.keys object.remove object.filter walk`) {
		native[n] = true
	}
	used, err := builtinsUsed(context.Background(), Sources())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range used {
		if !native[b] {
			t.Errorf("builtin %s is not Wasm-native", b)
		}
	}
	t.Logf("builtins used: %v", used)
	// The compiled module itself is the authority: it imports no builtin
	// from the host.
	b, err := BuildShipped(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e, err := wasm.NewEngine(context.Background(), wasm.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	p, err := e.Load(context.Background(), b.Wasm, b.Data)
	if err != nil {
		t.Fatal(err)
	}
	if host := p.Builtins(); len(host) != 0 {
		t.Errorf("the shipped policy calls builtins on the host: %v", host)
	}
}

func TestEntrypointsAndSources(t *testing.T) {
	want := []string{"pbac/register", "pbac/token", "pbac/introspect", "pbac/exchange", "pbac/tool_call", "pbac/list", "pbac/anonymous", "pbac/method"}
	if got := entrypoints; !reflect.DeepEqual(got, want) {
		t.Fatalf("entrypoints = %v", got)
	}
	contract.Names()[0] = "mutated"
	if contract.Names()[0] != want[0] {
		t.Fatal("contract.Names exposes internal state")
	}
	if _, err := fs.Stat(Sources(), "data.json"); err != nil {
		t.Fatal(err)
	}
}

func FuzzReferenceDecide(f *testing.F) {
	r := shippedReference(f)
	seeds := []string{`{}`, `[]`, `null`, `1`, `"x"`, `{"client":{"verified":true,"agent_provider":"claude-code"}}`,
		`{"token":{"exp":1,"act":{"act":{}}},"now":0,"request":{"tool":"jira.get_issue","arguments":{"path":"/../"}}}`,
		`{"subject":{"roles":"engineering"},"request":{"scopes":"a b","tools":[1,"x.y"]}}`}
	for _, s := range seeds {
		for i := range entrypoints {
			f.Add(s, i)
		}
	}
	f.Fuzz(func(t *testing.T, input string, ep int) {
		if !json.Valid([]byte(input)) {
			t.Skip()
		}
		if ep < 0 {
			ep = -ep
		}
		e := entrypoints[ep%len(entrypoints)]
		out, err := r.Decide(context.Background(), e, []byte(input))
		if err != nil {
			t.Fatalf("%s(%s): %v", e, input, err)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s(%s): not an object: %s", e, input, out)
		}
		if _, ok := m["allow"].(bool); !ok {
			t.Fatalf("%s(%s): allow not bool: %s", e, input, out)
		}
		if rs, ok := m["reasons"].([]any); !ok || len(rs) == 0 {
			t.Fatalf("%s(%s): no reasons: %s", e, input, out)
		}
	})
}

// TestReferenceFromBundle: OPA's evaluator over the sources a bundle
// carries decides every shipped vector as the reference over the policy
// directory does; a bundle without sources says so.
func TestReferenceFromBundle(t *testing.T) {
	ctx := context.Background()
	b, err := BuildShipped(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := b.WriteTarGz(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadTarGz(&buf)
	if err != nil {
		t.Fatal(err)
	}
	fromBundle, err := NewReferenceFromBundle(ctx, back)
	if err != nil {
		t.Fatal(err)
	}
	fromDir := shippedReference(t)
	sub, err := fs.Sub(vectorsFS, "testdata/vectors")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := LoadVectors(sub)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		got, err1 := fromBundle.Decide(ctx, v.Entrypoint, v.Input)
		want, err2 := fromDir.Decide(ctx, v.Entrypoint, v.Input)
		if err1 != nil || err2 != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: from the bundle %s (%v), from the directory %s (%v)", v.Name, got, err1, want, err2)
		}
	}

	tests := []struct {
		name string
		b    *Bundle
		want error
	}{
		{"nil bundle", nil, ErrNoSources},
		{"no sources", &Bundle{Wasm: b.Wasm, Data: b.Data}, ErrNoSources},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewReferenceFromBundle(ctx, tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	broken := &Bundle{Wasm: b.Wasm, Data: b.Data, Modules: map[string][]byte{"x.rego": []byte("package pbac\n\nx := \n")}}
	var se SourceErrors
	if _, err := NewReferenceFromBundle(ctx, broken); !errors.As(err, &se) {
		t.Fatalf("a source that does not parse: err = %v, want SourceErrors", err)
	}
}
