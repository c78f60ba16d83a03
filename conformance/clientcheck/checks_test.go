package clientcheck

import (
	"encoding/json"
	"io/fs"
	"net/url"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/conformance"
)

const mcp = "/mcp/conformance"
const resource = "http://127.0.0.1:PORT" + mcp

func q(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

func authorize(scope string) Event {
	return Event{Method: "GET", Path: "/oauth2/authorize", Status: 303, Query: q("client_id", "c1", "code_challenge", "x",
		"code_challenge_method", "S256", "resource", resource, "scope", scope, "redirect_uri", "http://localhost:3000/callback")}
}

func tokenReq(grantType, at, rt string) Event {
	f := q("grant_type", grantType, "resource", resource)
	if grantType == "authorization_code" {
		f.Set("code_verifier", "v")
	}
	return Event{Method: "POST", Path: "/oauth2/token", Status: 200, Form: f, AccessToken: at, RefreshToken: rt}
}

// compliant is what a client following the specification does in each
// phase.
func compliant() []Run {
	discovery := []Event{
		{Method: "POST", Path: mcp, RPC: "initialize", Status: 401, WWWAuthenticate: `Bearer resource_metadata="x"`},
		{Method: "GET", Path: "/.well-known/oauth-protected-resource" + mcp, Status: 200},
		{Method: "GET", Path: "/.well-known/oauth-authorization-server", Status: 200},
		{Method: "POST", Path: "/oauth2/register", Status: 201},
		authorize("conformance:read"),
		tokenReq("authorization_code", "at1", "rt1"),
		{Method: "POST", Path: mcp, RPC: "initialize", Bearer: "at1", Status: 200},
		{Method: "POST", Path: mcp, RPC: "tools/list", Bearer: "at1", Session: "s1", Status: 200},
	}
	flow := append(append([]Event(nil), discovery...),
		Event{Method: "POST", Path: mcp, RPC: "tools/call", Bearer: "at1", Session: "s1", Status: 403,
			WWWAuthenticate: `Bearer error="insufficient_scope", scope="conformance:write"`},
		authorize("conformance:read conformance:write"),
		tokenReq("authorization_code", "at2", "rt2"),
		Event{Method: "POST", Path: mcp, RPC: "tools/call", Bearer: "at2", Session: "s1", Status: 200})
	expiry := append(append([]Event(nil), discovery...),
		tokenReq("refresh_token", "at3", "rt3"),
		Event{Method: "POST", Path: mcp, RPC: "tools/call", Bearer: "at3", Session: "s1", Status: 200})
	session := append(append([]Event(nil), discovery...),
		Event{Method: "POST", Path: mcp, RPC: "tools/call", Bearer: "at1", Session: "s1", Status: 404},
		Event{Method: "POST", Path: mcp, RPC: "initialize", Bearer: "at1", Status: 200},
		Event{Method: "POST", Path: mcp, RPC: "tools/call", Bearer: "at1", Session: "s2", Status: 200})
	run := func(p Phase, ev []Event) Run {
		return Run{Phase: p, MCPPath: mcp, Resource: resource, StepUpScope: "conformance:write", Events: ev}
	}
	return []Run{run(PhaseFlow, flow), run(PhaseExpiry, expiry), run(PhaseSession, session)}
}

// A refreshed token or a new session the gateway takes passes its check even
// when the call it carries needs a scope the client has yet to step up to.
func TestRefreshThenInsufficientScope(t *testing.T) {
	runs := compliant()
	ev := runs[1].Events
	ev[len(ev)-1].Status = 403
	ev[len(ev)-1].WWWAuthenticate = `Bearer error="insufficient_scope", scope="conformance:write"`
	ev = runs[2].Events
	ev[len(ev)-1].Status = 403
	ev[len(ev)-1].WWWAuthenticate = `Bearer error="insufficient_scope", scope="conformance:write"`
	for _, r := range Evaluate(runs) {
		if (r.Name == "refreshes an expired token" || r.Name == "starts a new session after 404 on an expired session") && !r.Pass {
			t.Errorf("%s, then 403 insufficient_scope: %s", r.Name, r.Message)
		}
	}
}

func TestCompliantClientPassesEveryCheck(t *testing.T) {
	for _, r := range Evaluate(compliant()) {
		if !r.Pass {
			t.Errorf("%s [%s]: %s", r.Name, r.Phase, r.Message)
		}
	}
}

// Each mutation of the compliant sequence breaks the check it names.
func TestEachStepIsChecked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		phase  Phase
		mutate func(ev []Event) []Event
		check  string
	}{
		{"no metadata after the 401", PhaseFlow, func(ev []Event) []Event { return append(ev[:1], ev[2:]...) }, "reads protected resource metadata"},
		{"plain PKCE", PhaseFlow, func(ev []Event) []Event { ev[4].Query.Set("code_challenge_method", "plain"); return ev }, "PKCE with S256"},
		{"no code_verifier", PhaseFlow, func(ev []Event) []Event { ev[5].Form.Del("code_verifier"); return ev }, "PKCE with S256"},
		{"no resource", PhaseFlow, func(ev []Event) []Event { ev[4].Query.Del("resource"); return ev }, "sends resource"},
		{"wrong resource", PhaseFlow, func(ev []Event) []Event { ev[5].Form.Set("resource", "http://elsewhere/mcp"); return ev }, "sends resource"},
		{"token sent to the AS", PhaseFlow, func(ev []Event) []Event { ev[2].Bearer = "at1"; return ev }, "never sends the token elsewhere"},
		{"no step-up", PhaseFlow, func(ev []Event) []Event { return ev[:9] }, "steps up"},
		{"step-up without the scope", PhaseFlow, func(ev []Event) []Event { ev[9].Query.Set("scope", "conformance:read"); return ev }, "steps up"},
		{"no refresh", PhaseExpiry, func(ev []Event) []Event { return ev[:8] }, "refreshes"},
		{"refreshed token refused", PhaseExpiry, func(ev []Event) []Event { ev[9].Status = 401; return ev }, "refreshes"},
		{"refreshed token unused", PhaseExpiry, func(ev []Event) []Event { return ev[:9] }, "refreshes"},
		{"a refresh for the step-up", PhaseFlow, func(ev []Event) []Event {
			return append(ev[:9], tokenReq("refresh_token", "at2", "rt2"), Event{Method: "POST", Path: mcp, RPC: "tools/call", Bearer: "at2", Session: "s1", Status: 403})
		}, "steps up"},
		{"step-up refused", PhaseFlow, func(ev []Event) []Event { ev[9].AuthorizeError = "invalid_scope"; return ev }, "steps up"},
		{"new session refused", PhaseSession, func(ev []Event) []Event { ev[10].Status = 400; return ev }, "starts a new session"},
		{"no new session", PhaseSession, func(ev []Event) []Event { return ev[:9] }, "starts a new session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs := compliant()
			for i := range runs {
				if runs[i].Phase == tc.phase {
					runs[i].Events = tc.mutate(runs[i].Events)
				}
			}
			var failed []string
			for _, r := range Evaluate(runs) {
				if !r.Pass {
					failed = append(failed, r.Name)
				}
			}
			// The named check fails first; a later check that needs its
			// step (AS discovery after the metadata) may fail with it.
			if len(failed) == 0 || len(failed) > 2 || !strings.HasPrefix(failed[0], tc.check) {
				t.Fatalf("failed checks %q, want %q", failed, tc.check)
			}
		})
	}
}

// TestRecordedGoSDK evaluates the Go SDK everything-client's recorded
// requests (conformance/testdata/client-go-sdk-v1.8.0.json): the results
// are those published in conformance/CLIENTS.md.
func TestRecordedGoSDK(t *testing.T) {
	raw, err := fs.ReadFile(conformance.Vectors(), "client-go-sdk-v1.8.0.json")
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Runs []Run `json:"runs"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"reads protected resource metadata after the 401":    true,
		"finds the authorization server (RFC 8414 metadata)": true,
		"registers (DCR) or uses a pre-registered client":    true,
		"PKCE with S256": true,
		"sends resource (the MCP server's URL) in authorization and token requests": true,
		"uses the token in the Authorization header":                                true,
		"steps up on 403 insufficient_scope":                                        false, // re-registers, then reuses the session of the old client id
		"never sends the token elsewhere":                                           true,
		"refreshes an expired token":                                                false, // registers without refresh_token
		"starts a new session after 404 on an expired session":                      false,
	}
	for _, r := range Evaluate(rec.Runs) {
		w, ok := want[r.Name]
		if !ok {
			continue // the exit status rows
		}
		if r.Pass != w {
			t.Errorf("%s: pass=%v (%s), want %v", r.Name, r.Pass, r.Message, w)
		}
	}
}
