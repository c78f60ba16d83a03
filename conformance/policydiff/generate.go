package policydiff

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Domain is what generated inputs are drawn from: the agents, humans,
// scopes, tools and arguments of a tenant, with adversarial values mixed
// in (unknown providers, uncatalogued tools, secret paths in disguise).
type Domain struct {
	// Providers are agent_provider claims; the first ones should be known
	// to the policy's trust tiers so that coherent inputs are allowed.
	Providers []string
	// KnownProviders are the providers the policy data names (a subset of
	// Providers), used for well-formed inputs.
	KnownProviders []string
	ClientIDs      []string
	// Subjects are humans: {"sub": …, "roles": […]}.
	Subjects []map[string]any
	Scopes   []string
	// Tools are "<backend>.<tool>" names; CatalogueTools those the
	// policy's catalogue lists (well-formed inputs call these).
	Tools          []string
	CatalogueTools []string
	Paths          []string
	Jobs           []string
	SQL            []string
	Audiences      []string
	// ApprovalRules are ids of data.approval_rules; a granted approval
	// names one of them (or a bogus one).
	ApprovalRules []string
}

// DefaultDomain is the shipped demo tenant's domain.
func DefaultDomain() Domain {
	catalogue := []string{"drive.list_files", "drive.search_files", "drive.read_file", "drive.write_file",
		"drive.share_file", "jira.search_issues", "jira.get_issue", "jira.create_issue",
		"jira.add_comment", "jira.transition_issue", "slack.list_channels", "slack.read_history",
		"slack.post_message", "jenkins.list_jobs", "jenkins.get_build_log", "jenkins.trigger_build",
		"jenkins.trigger_deploy", "gitlab.list_merge_requests", "gitlab.get_merge_request",
		"gitlab.get_diff", "gitlab.create_merge_request", "gitlab.approve_merge_request",
		"gitlab.merge_merge_request", "database.query", "database.execute_ddl"}
	known := []string{"claude-code", "ci-bot", "security-scanner", "claude-code-trusted", "our-internal-scanner"}
	return Domain{
		Providers:      append(slices.Clone(known), "cursor", "", "CLAUDE-CODE"),
		KnownProviders: known,
		ClientIDs:      []string{"c-alice-cc", "c-ci", "c-scan", "c-plan", "c-other"},
		Subjects: []map[string]any{
			{"sub": "alice", "roles": []any{"engineering", "dba"}},
			{"sub": "bob", "roles": []any{"analytics", "release"}},
			{"sub": "carol", "roles": []any{"contractor"}},
			{"sub": "dave", "roles": []any{"engineering", "analytics"}},
			{"sub": "erin", "roles": []any{}},
			{"sub": "frank", "roles": []any{"admin"}},
		},
		Scopes: []string{"drive:read", "drive:write", "jira:read", "jira:write", "slack:read",
			"slack:write", "gitlab:read", "gitlab:write", "gitlab:approve", "gitlab:merge",
			"jenkins:read", "jenkins:build", "jenkins:deploy", "database:read", "database:ddl", "bogus:x"},
		Tools:          append(slices.Clone(catalogue), "drive.delete_everything", "shell.exec", ""),
		CatalogueTools: catalogue,
		Paths: []string{"/public/handbook.md", "/prod/secrets/db.env", "/PROD/Secrets/x",
			"/public/../prod/secrets/key", "//prod//secrets/k", "/prod/secrets", "/prod/secretsX/y",
			"%2fprod%2fsecrets%2fk", "\\prod\\secrets\\k", "/team/notes.txt", "/public/./a/../b", "",
			// spellings two parsers read differently (issue 14): Unicode
			// look-alikes, invisible and separator characters, NFC/NFKC
			" /prod/secrets/db.env", "\t/prod/secrets/k", "/prod\uff0fsecrets/k", "/prod/secr\u200bets/k",
			"/prod/\u017fecrets/k", "/prod/secrets\u3000", "/docs/caf\u00e9.md", "/docs/cafe\u0301.md", "/prod/secrets/",
			// beyond the BMP: a tag character (refused), a letter of
			// another plane, an emoji; Input sometimes escapes them as
			// UTF-16 surrogate pairs.
			"/docs/a\U000e0001.md", "/public/\U00020000.md", "/public/\U0001f600.md"},
		Jobs: []string{"build-api", "deploy-prod", "credentials/aws", "rotate-secrets", "nightly"},
		SQL: []string{"select 1", "select * from pg_shadow", "SELECT password FROM credentials",
			"drop table users", "create index i on t(x)"},
		Audiences:     []string{"http://127.0.0.1:8080/mcp"},
		ApprovalRules: []string{"deploy-needs-release", "ddl-needs-dba"},
	}
}

// DomainFromData widens the default domain with the names a policy's data
// uses, when it follows the shipped data model (rego/README.md): the
// providers of agents.trust_tiers, a human per role of roles, the scopes the
// tiers and roles grant, the catalogue's tools, the backends of
// anonymous.backends, the path prefixes of protected_arguments and the ids
// of approval_rules. A user's
// tenant then gets inputs that its policy can allow, not only the demo's.
// Data that is not a JSON object yields the default domain.
func DomainFromData(data []byte) Domain {
	d := DefaultDomain()
	var doc struct {
		Agents struct {
			TrustTiers map[string]any `json:"trust_tiers"`
		} `json:"agents"`
		Tiers map[string]struct {
			Grants map[string]any `json:"grants"`
		} `json:"tiers"`
		Roles map[string]struct {
			Grants map[string]any `json:"grants"`
		} `json:"roles"`
		Catalogue map[string]struct {
			Resource any `json:"resource"`
			Access   any `json:"access"`
		} `json:"catalogue"`
		Anonymous struct {
			Backends []any `json:"backends"`
		} `json:"anonymous"`
		ProtectedArguments []struct {
			PathPrefixes []any `json:"path_prefixes"`
		} `json:"protected_arguments"`
		ApprovalRules []struct {
			ID any `json:"id"`
		} `json:"approval_rules"`
	}
	// Best effort: a data model of another shape adds nothing.
	_ = json.Unmarshal(data, &doc)

	for _, tier := range sortedKeys(doc.Agents.TrustTiers) {
		provs, _ := doc.Agents.TrustTiers[tier].([]any)
		for _, p := range provs {
			if s, ok := p.(string); ok && s != "" {
				d.KnownProviders = appendNew(d.KnownProviders, s)
				d.Providers = appendNew(d.Providers, s)
			}
		}
	}
	grants := func(g map[string]any) {
		for _, res := range sortedKeys(g) {
			accs, _ := g[res].([]any)
			for _, a := range accs {
				if s, ok := a.(string); ok {
					d.Scopes = appendNew(d.Scopes, res+":"+s)
				}
			}
		}
	}
	for _, t := range sortedKeys(doc.Tiers) {
		grants(doc.Tiers[t].Grants)
	}
	for _, r := range sortedKeys(doc.Roles) {
		grants(doc.Roles[r].Grants)
		sub := "user-" + r
		if !slices.ContainsFunc(d.Subjects, func(s map[string]any) bool { return s["sub"] == sub }) {
			d.Subjects = append(d.Subjects, map[string]any{"sub": sub, "roles": []any{r}})
		}
	}
	for _, tool := range sortedKeys(doc.Catalogue) {
		d.Tools = appendNew(d.Tools, tool)
		d.CatalogueTools = appendNew(d.CatalogueTools, tool)
		e := doc.Catalogue[tool]
		if res, ok := e.Resource.(string); ok {
			if acc, ok := e.Access.(string); ok {
				d.Scopes = appendNew(d.Scopes, res+":"+acc)
			}
		}
	}
	for _, b := range doc.Anonymous.Backends {
		if s, ok := b.(string); ok && s != "" {
			d.Tools = appendNew(d.Tools, s+".any_tool")
		}
	}
	for _, ar := range doc.ApprovalRules {
		if s, ok := ar.ID.(string); ok && s != "" {
			d.ApprovalRules = appendNew(d.ApprovalRules, s)
		}
	}
	for _, pa := range doc.ProtectedArguments {
		for _, p := range pa.PathPrefixes {
			if s, ok := p.(string); ok && s != "" {
				d.Paths = appendNew(d.Paths, strings.TrimSuffix(s, "/")+"/x")
			}
		}
	}
	return d
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func appendNew(xs []string, x string) []string {
	if slices.Contains(xs, x) {
		return xs
	}
	return append(xs, x)
}

// Generator draws policy inputs from a Domain: half of them well formed end
// to end (the token belongs to the client and the human, is live and
// carries scopes, so allows are common), a share of those with one field
// replaced by a wild value, and the rest with every field drawn
// independently, broken and mistyped ones included; three in ten of all
// are written with every character beyond ASCII escaped (asciiEscaped).
// The same seeds and domain give the same inputs. A Generator is not safe for concurrent use.
type Generator struct {
	r *rand.Rand
	d Domain
}

// NewGenerator returns a generator seeded with seed1, seed2 (PCG).
func NewGenerator(seed1, seed2 uint64, d Domain) *Generator {
	if len(d.ClientIDs) == 0 || len(d.Tools) == 0 || len(d.Providers) == 0 {
		def := DefaultDomain()
		if len(d.ClientIDs) == 0 {
			d.ClientIDs = def.ClientIDs
		}
		if len(d.Tools) == 0 {
			d.Tools = def.Tools
		}
		if len(d.Providers) == 0 {
			d.Providers = def.Providers
		}
	}
	if len(d.KnownProviders) == 0 {
		d.KnownProviders = d.Providers
	}
	if len(d.CatalogueTools) == 0 {
		d.CatalogueTools = d.Tools
	}
	for _, xs := range []*[]string{&d.Paths, &d.Jobs, &d.SQL, &d.Audiences} {
		if len(*xs) == 0 {
			*xs = []string{""}
		}
	}
	if len(d.Subjects) == 0 {
		d.Subjects = []map[string]any{{"sub": "someone", "roles": []any{}}}
	}
	return &Generator{r: rand.New(rand.NewPCG(seed1, seed2)), d: d}
}

func (g *Generator) pick(xs ...any) any    { return xs[g.r.IntN(len(xs))] }
func (g *Generator) chance(p float64) bool { return g.r.Float64() < p }

func (g *Generator) str(xs []string) string { return xs[g.r.IntN(len(xs))] }

func (g *Generator) subject() map[string]any {
	s := g.d.Subjects[g.r.IntN(len(g.d.Subjects))]
	roles, _ := s["roles"].([]any)
	return map[string]any{"sub": s["sub"], "roles": slices.Clone(roles)}
}

func (g *Generator) client() any {
	if g.chance(0.05) {
		return g.pick(nil, "c", 7.0, []any{})
	}
	c := map[string]any{
		"client_id":                g.str(g.d.ClientIDs),
		"agent_provider":           g.str(g.d.Providers),
		"agent_model":              g.pick("claude-opus-4", "gpt-5", ""),
		"single_use_access_tokens": g.chance(0.2),
		"verified":                 g.pick(true, true, true, false, "true", nil),
	}
	if g.chance(0.1) {
		delete(c, "agent_provider")
	}
	return c
}

func (g *Generator) scopes() any {
	if g.chance(0.1) && len(g.d.Scopes) >= 3 {
		return strings.Join([]string{g.str(g.d.Scopes), g.str(g.d.Scopes), g.str(g.d.Scopes)}, " ")
	}
	out := []any{}
	for _, s := range g.d.Scopes {
		if g.chance(0.4) {
			out = append(out, s)
		}
	}
	return out
}

func (g *Generator) act(depth int) any {
	if depth == 0 {
		return nil
	}
	a := map[string]any{"sub": g.str(g.d.ClientIDs)}
	if inner := g.act(depth - 1); inner != nil {
		a["act"] = inner
	}
	return a
}

func (g *Generator) audience() any {
	aud := g.str(g.d.Audiences)
	return g.pick([]any{aud}, aud, []any{}, "", nil)
}

func (g *Generator) token(now int, client, subject any) any {
	if g.chance(0.05) {
		return g.pick(nil, "opaque", 1.0)
	}
	iat := now - g.r.IntN(4000)
	t := map[string]any{
		"client_id": g.str(g.d.ClientIDs),
		"scp":       g.scopes(),
		"aud":       g.audience(),
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

func (g *Generator) arguments() any {
	if g.chance(0.05) {
		return g.pick(nil, "args", []any{1})
	}
	a := map[string]any{}
	if g.chance(0.8) {
		a["path"] = g.str(g.d.Paths)
	}
	if g.chance(0.5) {
		a["job"] = g.str(g.d.Jobs)
	}
	if g.chance(0.5) {
		a["sql"] = g.str(g.d.SQL)
	}
	if g.chance(0.4) {
		a["author"] = g.str(g.d.ClientIDs)
	}
	if g.chance(0.2) {
		a["path"] = g.pick(3, []any{"/prod/secrets/x"}, nil)
	}
	if g.chance(0.3) {
		a["content"] = "quarterly report"
	}
	if g.chance(0.1) {
		a[g.pick("Path", "PATH", "pa\u200bth", "\u017fql", "Content-Type").(string)] = g.str(g.d.Paths)
	}
	if g.chance(0.2) {
		a["project"] = g.pick("platform/api", " platform/api", "platform//api", 7)
	}
	return a
}

// resourceAttributes draws what the gateway looked up for a call (the
// author of a merge request), sometimes broken or missing.
func (g *Generator) resourceAttributes() any {
	return g.pick(map[string]any{"author": g.str(g.d.ClientIDs)}, map[string]any{"author": "alice"},
		map[string]any{"author": " C-CI"}, map[string]any{"author": 7}, map[string]any{}, "x", nil)
}

// approval draws the approval a gateway would present on a retried call
// (input.approval): usually none; else granted or not, for a rule of the
// data or a bogus one, by a person of the domain or by the requester
// (requester, which may be nil), through some channel; sometimes broken.
func (g *Generator) approval(requester any) any {
	if g.chance(0.6) {
		return nil
	}
	approver := any(g.subject())
	if requester != nil && g.chance(0.3) {
		approver = requester
	}
	if a, ok := approver.(map[string]any); ok && g.chance(0.3) {
		a = maps.Clone(a)
		a["groups"] = []any{g.pick("release", "dba", "engineering", "nobody")}
		approver = a
	}
	rule := "no-such-rule"
	if len(g.d.ApprovalRules) > 0 && g.chance(0.8) {
		rule = g.str(g.d.ApprovalRules)
	}
	a := map[string]any{
		"id": "apr_x", "rule": rule, "granted": g.chance(0.85), "approver": approver,
		"via": g.pick("dashboard", "link", "admin", "client", nil), "granted_at": 1700000000,
	}
	if g.chance(0.1) {
		return g.pick("yes", true, map[string]any{"granted": true}, map[string]any{"rule": rule, "granted": true, "approver": "bob"})
	}
	return a
}

// backendOf is the "<backend>" of "<backend>.<tool>" (the whole name when
// it has no dot).
func backendOf(tool string) string {
	b, _, _ := strings.Cut(tool, ".")
	return b
}

// coherent draws an input that is well formed end to end, so that allows
// are common and the deny one perturbed field causes is what gets compared.
func (g *Generator) coherent() map[string]any {
	now := 1700000000 + g.r.IntN(100000)
	clientID := g.str(g.d.ClientIDs)
	client := map[string]any{"client_id": clientID, "agent_provider": g.str(g.d.KnownProviders),
		"agent_model": "claude-opus-4", "single_use_access_tokens": g.chance(0.2), "verified": true}
	var subject any
	tok := map[string]any{"client_id": clientID, "scp": g.scopes(),
		"aud": []any{g.str(g.d.Audiences)}, "iat": now - 60, "exp": now + 240}
	if g.chance(0.7) {
		s := g.subject()
		subject = s
		tok["sub"] = s["sub"]
	}
	tool := g.str(g.d.CatalogueTools)
	audience := map[string]any{"client_id": "c-sub-agent", "agent_provider": g.str(g.d.KnownProviders),
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
	for range 1 + g.r.IntN(5) {
		tools = append(tools, g.str(g.d.Tools))
	}
	return map[string]any{
		"client":  client,
		"subject": subject,
		"token":   tok,
		"request": map[string]any{
			"backend": backendOf(tool), "tool": tool,
			"method":     g.pick("tools/call", "tools/call", "tools/call", "tools/call", "tools/call", "tools/call", "tools/list", "initialize", "GET"),
			"arguments":  map[string]any{"path": g.str(g.d.Paths[:min(len(g.d.Paths), 2)]), "job": g.str(g.d.Jobs[:1]), "sql": g.str(g.d.SQL[:1])},
			"grant_type": g.pick("authorization_code", "client_credentials", "refresh_token"),
			"scopes":     requested, "actor": client, "audience_client": audience, "tools": tools,
			"resource_attributes": g.resourceAttributes(),
		},
		"approval": g.approval(subject),
		"now":      now,
	}
}

// Input draws one input document (JSON). entrypoint is accepted for
// symmetry with the evaluators; every entrypoint gets inputs from the same
// distribution, so that a field one entrypoint ignores is still varied.
func (g *Generator) Input(entrypoint string) []byte {
	_ = entrypoint
	in := g.input()
	if g.chance(0.3) {
		// As a client that escapes non-ASCII writes it (Python's
		// json.dumps): beyond the BMP as UTF-16 surrogate pairs.
		return asciiEscaped(in)
	}
	return in
}

func (g *Generator) input() []byte {
	if g.chance(0.5) {
		in := g.coherent()
		if g.chance(0.4) {
			// Perturb one field with a value from the wild generator.
			wild := g.wildDoc()
			k := g.pick("client", "subject", "token", "request", "approval", "now").(string)
			if v, ok := wild[k]; ok {
				in[k] = v
			} else {
				delete(in, k)
			}
		}
		return mustJSON(in)
	}
	return mustJSON(g.wildDoc())
}

// wildDoc draws every field independently, broken or mistyped ones
// included.
func (g *Generator) wildDoc() map[string]any {
	now := 1700000000 + g.r.IntN(100000)
	client := g.client()
	var subject any
	if g.chance(0.75) {
		subject = g.subject()
	}
	tool := g.str(g.d.Tools)
	backend := any(nil)
	if tool != "" && g.chance(0.7) {
		backend = backendOf(tool)
		if g.chance(0.1) {
			backend = backendOf(g.str(g.d.CatalogueTools))
		}
	}
	req := map[string]any{
		"backend":   backend,
		"method":    g.pick("tools/call", "tools/call", "tools/list", "ping", "DELETE", nil),
		"tool":      g.pick(tool, tool, tool, tool, 7, nil),
		"arguments": g.arguments(),
		"grant_type": g.pick("authorization_code", "client_credentials", "refresh_token",
			"urn:ietf:params:oauth:grant-type:token-exchange", "password", nil),
		"scopes":          g.scopes(),
		"actor":           g.client(),
		"audience_client": g.pick(g.client(), nil),
	}
	if g.chance(0.5) {
		req["resource_attributes"] = g.resourceAttributes()
	}
	var tools []any
	for range g.r.IntN(6) {
		tools = append(tools, g.pick(g.str(g.d.Tools), g.str(g.d.Tools), 3))
	}
	req["tools"] = tools
	in := map[string]any{
		"client":   client,
		"subject":  subject,
		"token":    g.token(now, client, subject),
		"request":  req,
		"approval": g.approval(subject),
		"now":      now,
	}
	for _, k := range []string{"client", "subject", "token", "request", "now"} {
		if g.chance(0.03) {
			delete(in, k)
		}
	}
	if g.chance(0.02) {
		in["now"] = "yesterday"
	}
	return in
}

// asciiEscaped is doc, JSON, with every character beyond ASCII written as
// a \u escape: one beyond the BMP as a UTF-16 surrogate pair.
func asciiEscaped(doc []byte) []byte {
	var b strings.Builder
	for _, r := range string(doc) {
		switch {
		case r < utf8.RuneSelf:
			b.WriteRune(r)
		case r > 0xffff:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(&b, "\\u%04x\\u%04x", hi, lo)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return []byte(b.String())
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Unreachable: the generator builds plain JSON values.
		panic(fmt.Errorf("policydiff: encoding a generated input: %w", err))
	}
	return b
}
