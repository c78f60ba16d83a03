package wasm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// The differential test: the shipped policy compiled to Wasm and run by this
// package must decide exactly as OPA's own evaluator does, on every
// entrypoint, for inputs drawn from the domain (agents, users, tokens, tools,
// arguments) with a share of broken and mistyped fields.

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

// inputGen draws policy inputs from the demo domain.
type inputGen struct{ r *rand.Rand }

func (g inputGen) pick(xs ...any) any    { return xs[g.r.IntN(len(xs))] }
func (g inputGen) chance(p float64) bool { return g.r.Float64() < p }

var (
	genProviders = []any{"claude-code", "ci-bot", "security-scanner", "claude-code-trusted",
		"our-internal-scanner", "cursor", "", "CLAUDE-CODE"}
	genClientIDs = []any{"c-alice-cc", "c-ci", "c-scan", "c-plan", "c-other"}
	genSubjects  = []any{
		map[string]any{"sub": "alice", "roles": []any{"engineering"}},
		map[string]any{"sub": "bob", "roles": []any{"analytics"}},
		map[string]any{"sub": "carol", "roles": []any{"contractor"}},
		map[string]any{"sub": "dave", "roles": []any{"engineering", "analytics"}},
		map[string]any{"sub": "erin", "roles": []any{}},
		map[string]any{"sub": "frank", "roles": []any{"admin"}},
	}
	genScopes = []string{"drive:read", "drive:write", "jira:read", "jira:write", "slack:read",
		"slack:write", "gitlab:read", "gitlab:write", "gitlab:approve", "gitlab:merge",
		"jenkins:read", "jenkins:build", "jenkins:deploy", "database:read", "database:ddl", "bogus:x"}
	genTools = []any{"drive.list_files", "drive.search_files", "drive.read_file", "drive.write_file",
		"drive.share_file", "jira.search_issues", "jira.get_issue", "jira.create_issue",
		"jira.add_comment", "jira.transition_issue", "slack.list_channels", "slack.read_history",
		"slack.post_message", "jenkins.list_jobs", "jenkins.get_build_log", "jenkins.trigger_build",
		"jenkins.trigger_deploy", "gitlab.list_merge_requests", "gitlab.get_merge_request",
		"gitlab.get_diff", "gitlab.create_merge_request", "gitlab.approve_merge_request",
		"gitlab.merge_merge_request", "database.query", "database.execute_ddl",
		"drive.delete_everything", "shell.exec", ""}
	genPaths = []any{"/public/handbook.md", "/prod/secrets/db.env", "/PROD/Secrets/x",
		"/public/../prod/secrets/key", "//prod//secrets/k", "/prod/secrets", "/prod/secretsX/y",
		"%2fprod%2fsecrets%2fk", "\\prod\\secrets\\k", "/team/notes.txt", "/public/./a/../b", ""}
	genJobs = []any{"build-api", "deploy-prod", "credentials/aws", "rotate-secrets", "nightly"}
	genSQL  = []any{"select 1", "select * from pg_shadow", "SELECT password FROM credentials",
		"drop table users", "create index i on t(x)"}
)

func (g inputGen) client() any {
	if g.chance(0.05) {
		return g.pick(nil, "c", 7.0, []any{})
	}
	c := map[string]any{
		"client_id":                g.pick(genClientIDs...),
		"agent_provider":           g.pick(genProviders...),
		"agent_model":              g.pick("claude-opus-4", "gpt-5", ""),
		"single_use_access_tokens": g.chance(0.2),
		"verified":                 g.pick(true, true, true, false, "true", nil),
	}
	if g.chance(0.1) {
		delete(c, "agent_provider")
	}
	return c
}

func (g inputGen) scopes() any {
	if g.chance(0.1) {
		return "drive:read jira:write slack:read"
	}
	var out []any
	for _, s := range genScopes {
		if g.chance(0.4) {
			out = append(out, s)
		}
	}
	if out == nil {
		out = []any{}
	}
	return out
}

func (g inputGen) act(depth int) any {
	if depth == 0 {
		return nil
	}
	a := map[string]any{"sub": g.pick(genClientIDs...)}
	if inner := g.act(depth - 1); inner != nil {
		a["act"] = inner
	}
	return a
}

func (g inputGen) token(now int, client, subject any) any {
	if g.chance(0.05) {
		return g.pick(nil, "opaque", 1.0)
	}
	iat := now - g.IntN(4000)
	t := map[string]any{
		"client_id": g.pick(genClientIDs...),
		"scp":       g.scopes(),
		"aud":       g.pick([]any{"http://127.0.0.1:8080/mcp"}, "http://127.0.0.1:8080/mcp", []any{}, "", nil),
		"iat":       iat,
		"exp":       iat + g.pick(300, 900, 3600, 86400*3).(int),
	}
	if c, ok := client.(map[string]any); ok && g.chance(0.7) {
		t["client_id"] = c["client_id"]
	}
	if s, ok := subject.(map[string]any); ok && g.chance(0.85) {
		t["sub"] = s["sub"]
	} else if g.chance(0.3) {
		t["sub"] = t["client_id"]
	}
	if d := g.pick(0, 0, 0, 1, 2, 3, 4).(int); d > 0 {
		t["act"] = g.act(d)
	}
	if g.chance(0.1) {
		delete(t, "exp")
	}
	if g.chance(0.05) {
		t["iat"] = now + 3600
	}
	return t
}

func (g inputGen) IntN(n int) int { return g.r.IntN(n) }

func (g inputGen) arguments(tool any) any {
	if g.chance(0.05) {
		return g.pick(nil, "args", []any{1})
	}
	a := map[string]any{}
	if g.chance(0.8) {
		a["path"] = g.pick(genPaths...)
	}
	if g.chance(0.5) {
		a["job"] = g.pick(genJobs...)
	}
	if g.chance(0.5) {
		a["sql"] = g.pick(genSQL...)
	}
	if g.chance(0.4) {
		a["author"] = g.pick(genClientIDs...)
	}
	if g.chance(0.2) {
		a["path"] = g.pick(3, []any{"/prod/secrets/x"}, nil)
	}
	if g.chance(0.3) {
		a["content"] = "quarterly report"
	}
	return a
}

// coherent draws an input that is well formed end to end (the token belongs
// to the client and subject, is live and carries scopes), so that allows are
// common and the deny that one perturbed field causes is what gets compared.
func (g inputGen) coherent() map[string]any {
	now := 1700000000 + g.IntN(100000)
	provider := g.pick("claude-code", "ci-bot", "security-scanner", "claude-code-trusted", "our-internal-scanner")
	clientID := g.pick(genClientIDs...)
	client := map[string]any{"client_id": clientID, "agent_provider": provider,
		"agent_model": "claude-opus-4", "single_use_access_tokens": g.chance(0.2), "verified": true}
	var subject any
	tok := map[string]any{"client_id": clientID, "scp": g.scopes(),
		"aud": []any{"http://127.0.0.1:8080/mcp"}, "iat": now - 60, "exp": now + 240}
	if g.chance(0.7) {
		subject = g.pick(genSubjects...)
		tok["sub"] = subject.(map[string]any)["sub"]
	}
	tool := g.pick(genTools[:25]...).(string)
	backend := tool[:len(tool)-len(tool[indexDot(tool):])]
	audience := map[string]any{"client_id": "c-sub-agent", "agent_provider": g.pick("claude-code", "ci-bot", "security-scanner"),
		"verified": true}
	var requested []any
	if scp, ok := tok["scp"].([]any); ok {
		for _, sc := range scp {
			if g.chance(0.5) {
				requested = append(requested, sc)
			}
		}
	}
	var tools []any
	for range 1 + g.IntN(5) {
		tools = append(tools, g.pick(genTools...))
	}
	return map[string]any{
		"client":  client,
		"subject": subject,
		"token":   tok,
		"request": map[string]any{
			"backend": backend, "method": "tools/call", "tool": tool,
			"arguments":  map[string]any{"path": g.pick("/public/handbook.md", "/team/notes.txt", "/prod/secrets/db.env"), "job": "build-api", "sql": "select 1"},
			"grant_type": g.pick("authorization_code", "client_credentials", "refresh_token"),
			"scopes":     requested, "actor": client, "audience_client": audience, "tools": tools,
		},
		"now": now,
	}
}

func indexDot(s string) int {
	for i := range s {
		if s[i] == '.' {
			return i
		}
	}
	return len(s)
}

func (g inputGen) input(entrypoint string) []byte {
	if g.chance(0.5) {
		in := g.coherent()
		if g.chance(0.4) {
			// Perturb one field with a value from the wild generator.
			wild := map[string]any{}
			_ = json.Unmarshal(g.wild(), &wild)
			k := g.pick("client", "subject", "token", "request", "now").(string)
			in[k] = wild[k]
		}
		b, err := json.Marshal(in)
		if err != nil {
			panic(err)
		}
		return b
	}
	return g.wild()
}

// wild draws every field independently, broken or mistyped ones included.
func (g inputGen) wild() []byte {
	now := 1700000000 + g.IntN(100000)
	client := g.client()
	var subject any
	if g.chance(0.75) {
		subject = g.pick(genSubjects...)
	}
	tool := g.pick(genTools...)
	backend := any(nil)
	if s, ok := tool.(string); ok && g.chance(0.7) {
		for i := range s {
			if s[i] == '.' {
				backend = s[:i]
				break
			}
		}
		if g.chance(0.1) {
			backend = "slack"
		}
	}
	req := map[string]any{
		"backend":   backend,
		"method":    g.pick("tools/call", "tools/call", "tools/list", nil),
		"tool":      tool,
		"arguments": g.arguments(tool),
		"grant_type": g.pick("authorization_code", "client_credentials", "refresh_token",
			"urn:ietf:params:oauth:grant-type:token-exchange", "password", nil),
		"scopes":          g.scopes(),
		"actor":           g.client(),
		"audience_client": g.pick(g.client(), nil),
	}
	var tools []any
	for range g.IntN(6) {
		tools = append(tools, g.pick(genTools...))
	}
	req["tools"] = tools
	in := map[string]any{
		"client":  client,
		"subject": subject,
		"token":   g.token(now, client, subject),
		"request": req,
		"now":     now,
	}
	for _, k := range []string{"client", "subject", "token", "request", "now"} {
		if g.chance(0.03) {
			delete(in, k)
		}
	}
	if g.chance(0.02) {
		in["now"] = "yesterday"
	}
	b, err := json.Marshal(in)
	if err != nil {
		panic(err)
	}
	return b
}

// TestDifferentialWasmVsReference runs generated inputs through both
// evaluators on every entrypoint and requires identical decisions.
func TestDifferentialWasmVsReference(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 150
	}
	sp := shippedForTest(t)
	ctx := context.Background()
	g := inputGen{r: rand.New(rand.NewPCG(1, 2))}
	allows := map[string]int{}
	for _, ep := range rego.Entrypoints() {
		for i := range n {
			input := g.input(ep)
			if err := compareDecisions(ctx, sp, ep, input); err != nil {
				t.Fatalf("%s #%d: %v\ninput: %s", ep, i, err, input)
			}
			var d struct{ Allow bool }
			got, _ := sp.wasm.Eval(ctx, ep, input)
			_ = json.Unmarshal(got, &d)
			if d.Allow {
				allows[ep]++
			}
		}
	}
	// A generator that only produced denies would prove little.
	for _, ep := range rego.Entrypoints() {
		if allows[ep] == 0 {
			t.Errorf("%s: no generated input was allowed", ep)
		}
		t.Logf("%s: %d of %d allowed", ep, allows[ep], n)
	}
}

func compareDecisions(ctx context.Context, sp *shippedPair, ep string, input []byte) error {
	got, err := sp.wasm.Eval(ctx, ep, input)
	if err != nil {
		return fmt.Errorf("wasm: %w", err)
	}
	want, err := sp.ref.Decide(ctx, ep, input)
	if err != nil {
		return fmt.Errorf("reference: %w", err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		return fmt.Errorf("wasm result %s: %w", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		return fmt.Errorf("reference result %s: %w", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		return fmt.Errorf("decisions differ\n wasm:      %s\n reference: %s", got, want)
	}
	obj, ok := g.(map[string]any)
	if !ok {
		return fmt.Errorf("result is not an object: %s", got)
	}
	if _, ok := obj["allow"].(bool); !ok {
		return fmt.Errorf("result has no boolean allow: %s", got)
	}
	return nil
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
	g := inputGen{r: rand.New(rand.NewPCG(3, 4))}
	for i := range 20 {
		f.Add(uint8(i), g.input(""))
	}
	f.Add(uint8(0), []byte(`{"token": {"scp": "a b"}, "now": 1e400}`))
	f.Add(uint8(1), []byte(`[1, 2, {"client": null}]`))
	f.Add(uint8(2), []byte(`{"request": {"arguments": {"path": "\u002fprod\u002fsecrets\u002fx"}}}`))
	f.Fuzz(func(t *testing.T, which uint8, input []byte) {
		sp := shippedForTest(t)
		eps := rego.Entrypoints()
		ep := eps[int(which)%len(eps)]
		ctx := context.Background()
		if !json.Valid(input) || !utf8.Valid(input) {
			if _, err := sp.wasm.Eval(ctx, ep, input); !errors.Is(err, wasm.ErrInvalidInput) {
				t.Fatalf("invalid JSON: err = %v, want ErrInvalidInput", err)
			}
			return
		}
		if err := compareDecisions(ctx, sp, ep, input); err != nil {
			t.Fatalf("%s: %v\ninput: %s", ep, err, input)
		}
	})
}
