package contract

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestEntrypointsCompilationOrder: the order is the Wasm module's
// entrypoint ids, so it never changes; a new entrypoint goes last.
func TestEntrypointsCompilationOrder(t *testing.T) {
	want := []string{"pbac/register", "pbac/token", "pbac/introspect", "pbac/exchange", "pbac/tool_call", "pbac/list",
		"pbac/anonymous", "pbac/method"}
	if got := Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for i, ep := range Entrypoints() {
		if string(ep) != want[i] || !Known(ep) {
			t.Fatalf("Entrypoints()[%d] = %s", i, ep)
		}
	}
	if Known("pbac/future") {
		t.Fatal("an unknown entrypoint is known")
	}
}

// TestRequiredByContractVersion: a bundle must export the entrypoints its
// own version introduced, never one newer than it (those fall back), and a
// bundle newer than this binary must export what this binary uses.
func TestRequiredByContractVersion(t *testing.T) {
	v1 := []Entrypoint{Register, Token, Introspect, Exchange, ToolCall, List, Anonymous}
	all := Entrypoints()
	for _, tc := range []struct {
		name     string
		declared int
		required []Entrypoint
		optional []Entrypoint
		err      bool
	}{
		{name: "no declared version is version 1", declared: 0, required: v1, optional: []Entrypoint{Method}},
		{name: "version 1", declared: 1, required: v1, optional: []Entrypoint{Method}},
		{name: "this binary's version", declared: Version, required: all},
		{name: "a newer bundle needs what this binary uses", declared: Version + 1, required: all},
		{name: "older than the oldest this binary runs", declared: -1, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := BundleVersion(tc.declared)
			got, err := Required(v)
			if tc.err {
				if !errors.Is(err, ErrContractVersion) {
					t.Fatalf("Required(%d) = %v, %v; want ErrContractVersion", v, got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.required) {
				t.Fatalf("Required(%d) = %v, %v; want %v", v, got, err, tc.required)
			}
			if opt := Optional(v); !slices.Equal(opt, tc.optional) {
				t.Fatalf("Optional(%d) = %v, want %v", v, opt, tc.optional)
			}
		})
	}
}

// TestEveryOptionalEntrypointHasAFallback: every entrypoint a supported
// bundle may lack is decided by a built-in fallback, which denies an empty
// input (fails closed, as validation asks of every policy).
func TestEveryOptionalEntrypointHasAFallback(t *testing.T) {
	for v := OldestVersion; v <= Version; v++ {
		for _, ep := range Optional(v) {
			raw, ok := Fallback(ep, []byte(`{}`))
			if !ok {
				t.Fatalf("%s (optional at version %d) has no fallback", ep, v)
			}
			var d Decision
			if err := json.Unmarshal(raw, &d); err != nil || d.Allow || len(d.Reasons) == 0 {
				t.Fatalf("%s fallback on {}: %s (%v)", ep, raw, err)
			}
		}
	}
	if _, ok := Fallback(ToolCall, []byte(`{}`)); ok {
		t.Fatal("pbac/tool_call has a fallback: a bundle must always decide calls")
	}
}

// TestMethodFallbackAllowsOnlyWhatASessionNeeds: the pbac/method fallback
// lets a caller with a token start a session, keep it alive and list tools
// on a backend it holds a scope for, and denies every other method, every
// backend it holds no scope for and every caller without a token.
func TestMethodFallbackAllowsOnlyWhatASessionNeeds(t *testing.T) {
	tok := &TokenClaims{ClientID: "c", Scp: []string{"jira:read"}}
	for _, tc := range []struct {
		backend, method string
		token           *TokenClaims
		now             int64
		allow           bool
	}{
		{"jira", "initialize", tok, 1, true},
		{"jira", "notifications/initialized", tok, 1, true},
		{"jira", "ping", tok, 1, true},
		{"jira", "tools/list", tok, 1, true},
		{"jira", "GET", tok, 1, true},
		{"jira", "DELETE", tok, 1, true},
		{"", "initialize", tok, 1, true},
		{"slack", "initialize", tok, 1, false},
		{"slack", "tools/list", tok, 1, false},
		{"", "initialize", &TokenClaims{ClientID: "c"}, 1, false},
		{"jira", "resources/list", tok, 1, false},
		{"jira", "prompts/list", tok, 1, false},
		{"jira", "completion/complete", tok, 1, false},
		{"jira", "logging/setLevel", tok, 1, false},
		{"jira", "response", tok, 1, false},
		{"jira", "sampling/createMessage", tok, 1, false},
		{"jira", "tools/call", tok, 1, false},
		{"jira", "", tok, 1, false},
		{"jira", "initialize", nil, 1, false},
		{"jira", "initialize", tok, 0, false},
	} {
		in, _ := json.Marshal(Input{Token: tc.token, Now: tc.now, Request: Request{Backend: tc.backend, Method: tc.method}})
		raw, ok := Fallback(Method, in)
		var d Decision
		if !ok || json.Unmarshal(raw, &d) != nil || d.Allow != tc.allow || len(d.Reasons) == 0 {
			t.Errorf("%q on %q (token %v, now %d): %s, want allow=%v", tc.method, tc.backend, tc.token != nil, tc.now, raw, tc.allow)
		}
	}
	var d Decision
	if raw, _ := Fallback(Method, []byte(`not json`)); json.Unmarshal(raw, &d) != nil || d.Allow {
		t.Fatalf("malformed input: %s", raw)
	}
}

// TestDataScopes: the scopes are every catalogued tool's and every tier
// and role grant's, once each, sorted.
func TestDataScopes(t *testing.T) {
	d, err := ParseData([]byte(`{
		"tiers": {"t": {"rank": 1, "grants": {"jira": ["read"], "drive": ["read", "write"]}}},
		"roles": {"r": {"grants": {"jira": ["write"]}, "arg_constraints": {"drive": {"arg": "path", "path_prefixes": ["/public"]}}}},
		"catalogue": {"gitlab.merge": {"resource": "gitlab", "access": "merge", "actor_arg": "author",
			"author_lookup": {"tool": "get", "arguments": ["iid"], "field": "author"}},
			"drive.list": {"resource": "drive", "access": "read", "reach": {"arg": "path", "default": "/"}},
			"odd.tool": {"resource": "odd"}},
		"protected_arguments": [{"id": "p", "resources": ["drive"], "args": ["path"], "path_prefixes": ["/prod"]}]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"drive:read", "drive:write", "gitlab:merge", "jira:read", "jira:write"}
	if got := d.Scopes(); !slices.Equal(got, want) {
		t.Fatalf("Scopes() = %v, want %v", got, want)
	}
	if s := d.Catalogue["gitlab.merge"].Scope(); s != "gitlab:merge" {
		t.Fatalf("Scope() = %q", s)
	}
	if s := d.Catalogue["odd.tool"].Scope(); s != "" {
		t.Fatalf("a tool without access has scope %q", s)
	}
	if got := d.ProtectedArgs("drive"); !slices.Equal(got, []string{"path"}) {
		t.Fatalf("ProtectedArgs(drive) = %v", got)
	}
	if d.Catalogue["drive.list"].Reach.Default != "/" || d.Catalogue["gitlab.merge"].AuthorLookup.Field != "author" ||
		d.Roles["r"].ArgConstraints["drive"].PathPrefixes[0] != "/public" {
		t.Fatalf("view %+v", d)
	}
	if _, err := ParseData([]byte(`{"catalogue": []}`)); err == nil {
		t.Fatal("a catalogue that is not an object was read")
	}
}

// TestIdentityPolicyClient: the token's client goes to policy with the
// agent's verified claims, and with none when it has none.
func TestIdentityPolicyClient(t *testing.T) {
	id := Identity{ClientID: "c1", Agent: AgentClaims{Verified: true, AgentProvider: "p", AgentModel: "m", SoftwareID: "s", SingleUseAccessTokens: true}}
	want := Client{ClientID: "c1", AgentProvider: "p", AgentModel: "m", SoftwareID: "s", SingleUseAccessTokens: true, Verified: true}
	if got := id.PolicyClient(); *got != want {
		t.Fatalf("PolicyClient() = %+v, want %+v", got, want)
	}
	if got := (Identity{ClientID: "c2"}).PolicyClient(); *got != (Client{ClientID: "c2"}) {
		t.Fatalf("unverified PolicyClient() = %+v", got)
	}
}

// TestDataRolesOf: a person's roles are their own, then those
// identity.group_roles gives their groups, each once; a group the data
// does not name gives nothing (roles_of in tiers.rego).
func TestDataRolesOf(t *testing.T) {
	d, err := ParseData([]byte(`{"identity": {"group_roles": {"eng": ["engineering"], "ops": ["engineering", "oncall"], "empty": []}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		roles, groups []string
		want          []string
	}{
		{"no roles, no groups", nil, nil, []string{}},
		{"own roles only", []string{"analytics"}, nil, []string{"analytics"}},
		{"a group gives its roles", nil, []string{"eng"}, []string{"engineering"}},
		{"each role once, own first", []string{"oncall"}, []string{"eng", "ops"}, []string{"oncall", "engineering"}},
		{"an unnamed group gives nothing", nil, []string{"visitors", "empty"}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := d.RolesOf(tc.roles, tc.groups); !slices.Equal(got, tc.want) {
				t.Fatalf("RolesOf(%v, %v) = %v, want %v", tc.roles, tc.groups, got, tc.want)
			}
		})
	}
	if got := (&Data{}).RolesOf([]string{"r"}, []string{"g"}); !slices.Equal(got, []string{"r"}) {
		t.Fatalf("without identity data: %v", got)
	}
}

// TestCheckToolCallResult: pbac/tool_call's result may ask for an approval
// only with a deny (fail closed for a binary that does not know
// approvals).
func TestCheckToolCallResult(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want error
	}{
		{"an allow without approval", `{"allow": true, "reasons": ["ok"]}`, nil},
		{"a deny without approval", `{"allow": false}`, nil},
		{"a null approval", `{"allow": true, "approval": null}`, nil},
		{"approval required with a deny", `{"allow": false, "approval": {"required": true, "rule": "r", "approvers": {"groups": ["release"], "not": ["bob"]}, "ttl_seconds": 900}}`, nil},
		{"approval not required with an allow", `{"allow": true, "approval": {"required": false}}`, nil},
		{"approval required with an allow", `{"allow": true, "approval": {"required": true}}`, ErrApprovalAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckToolCallResult([]byte(tc.raw)); !errors.Is(err, tc.want) {
				t.Fatalf("CheckToolCallResult(%s) = %v, want %v", tc.raw, err, tc.want)
			}
		})
	}
	for _, raw := range []string{`{"allow": true, "approval": "yes"}`, `{"allow": true, "approval": {"required": "true"}}`, `[`} {
		if err := CheckToolCallResult([]byte(raw)); err == nil || errors.Is(err, ErrApprovalAllowed) {
			t.Errorf("CheckToolCallResult(%s) = %v, want an error reading it", raw, err)
		}
	}
}

// TestApprovalRoundTrip: the approval result and the granted approval of
// the input keep their wire names (rego/README.md, the policy reads them).
func TestApprovalRoundTrip(t *testing.T) {
	res := ToolCallResult{Approval: &Approval{Required: true, Rule: "deploy-needs-release", Reason: "r",
		Approvers: Approvers{Groups: []string{"release"}, Not: []string{"ci-bot-client"}}, TTLSeconds: 900}}
	raw, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	const wantRes = `"approval":{"required":true,"rule":"deploy-needs-release","reason":"r","approvers":{"groups":["release"],"not":["ci-bot-client"]},"ttl_seconds":900}`
	if !strings.Contains(string(raw), wantRes) {
		t.Fatalf("result %s lacks %s", raw, wantRes)
	}
	in := Input{Approval: &GrantedApproval{ID: "apr_1", Rule: "deploy-needs-release", Granted: true,
		Approver: ApprovalPerson{Sub: "bob", Roles: []string{"release"}, Groups: []string{}}, Via: "dashboard", GrantedAt: 1764745200}}
	raw, err = json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const wantIn = `"approval":{"id":"apr_1","rule":"deploy-needs-release","granted":true,"approver":{"sub":"bob","roles":["release"],"groups":[]},"via":"dashboard","granted_at":1764745200}`
	if !strings.Contains(string(raw), wantIn) {
		t.Fatalf("input %s lacks %s", raw, wantIn)
	}
	if raw, _ := json.Marshal(Input{}); strings.Contains(string(raw), "approval") {
		t.Fatalf("an input without approval names one: %s", raw)
	}
}
