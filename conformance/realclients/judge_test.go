package realclients

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/modelapi"
)

// A run as a CLI that does everything right leaves it: what each case
// changes is one way a CLI or the gateway can fail a step.
func goodRun() ([]clientcheck.Event, []modelapi.Request, []modelapi.ToolResult, []AuditRecord) {
	events := []clientcheck.Event{
		{Method: "POST", Path: "/mcp", RPC: "initialize", Status: 401},
		{Method: "GET", Path: "/.well-known/oauth-protected-resource/mcp", Status: 200},
		{Method: "GET", Path: "/.well-known/oauth-authorization-server", Status: 200},
		{Method: "GET", Path: "/oauth2/authorize", SignedIn: true, Status: 303,
			Query: url.Values{"client_id": {"agent"}, "redirect_uri": {"http://localhost:33418/callback"}}},
		{Method: "POST", Path: "/oauth2/token", Status: 200, Form: url.Values{"grant_type": {"authorization_code"}}, AccessToken: "T", Scope: "drive:read"},
		{Method: "POST", Path: "/mcp", RPC: "initialize", Bearer: "T", Status: 200},
		{Method: "POST", Path: "/mcp", RPC: "tools/list", Bearer: "T", Status: 200},
		{Method: "POST", Path: "/mcp", RPC: "tools/call", Bearer: "T", Status: 200},
		{Method: "POST", Path: "/mcp", RPC: "tools/call", Bearer: "T", Status: 403},
	}
	requests := []modelapi.Request{{API: "anthropic", Tools: []string{"Bash", "mcp__pbac__drive_read_file"}}}
	results := []modelapi.ToolResult{
		{Marker: markerAllowed, Content: `{"content":"# Platform roadmap (H2)"}`},
		{Marker: markerDenied, Content: `Error POSTing to endpoint: {"error":{"code":-32001,"message":"denied by policy: the arguments name data protected by policy"}}`, IsError: true},
	}
	audit := []AuditRecord{
		{ClientID: "agent", Subject: "alice", Method: "tools/call", Tool: gatewayTool, Decision: "allow", Status: 200},
		{ClientID: "agent", Subject: "alice", Method: "tools/call", Tool: gatewayTool, Decision: "deny", Status: 403, Reasons: []string{"prod-secrets"}},
	}
	return events, requests, results, audit
}

// TestJudge: each step passes only on the evidence it names, and says what
// went wrong otherwise.
func TestJudge(t *testing.T) {
	type run struct {
		events   []clientcheck.Event
		requests []modelapi.Request
		results  []modelapi.ToolResult
		audit    []AuditRecord
	}
	for _, tc := range []struct {
		name   string
		change func(*run)
		// failed are the steps that must fail, each with a word of its
		// message; every other step passes.
		failed map[string]string
	}{
		{"everything right", func(*run) {}, nil},
		{"no protected resource metadata", func(r *run) { r.events = append(r.events[:1], r.events[2:]...) },
			map[string]string{"discovery": "without the protected resource metadata"}},
		{"registered itself", func(r *run) {
			r.events = append(r.events, clientcheck.Event{Method: "POST", Path: "/oauth2/register", Status: 201})
		}, map[string]string{"registration": "DCR"}},
		{"another client id", func(r *run) { r.events[3].Query = url.Values{"client_id": {"other"}} },
			map[string]string{"registration": `"other"`}},
		{"sign-in refused", func(r *run) { r.events[3].AuthorizeError = "access_denied" },
			map[string]string{"sign-in": "access_denied"}},
		{"token never used", func(r *run) {
			for i := range r.events {
				if r.events[i].Bearer == "T" {
					r.events[i].Bearer = "other"
				}
			}
		}, map[string]string{"token": "never used"}},
		{"tool not offered to the model", func(r *run) { r.requests[0].Tools = []string{"Bash"} },
			map[string]string{"tools/list": "never offered"}},
		{"the tool offered under Gemini CLI's name", func(r *run) { r.requests[0].Tools = []string{"mcp_pbac_drive.read_file"} }, nil},
		{"the tool offered under Codex's namespace", func(r *run) { r.requests[0].Tools = []string{"mcp__pbac.drive_read_file"} }, nil},
		{"only a tool whose name goes on", func(r *run) { r.requests[0].Tools = []string{"mcp_pbac_drive.read_files"} },
			map[string]string{"tools/list": "never offered"}},
		{"allowed call's result is an error", func(r *run) { r.results[0].Content = "Error POSTing to endpoint" },
			map[string]string{"allowed": "the model saw: Error"}},
		{"the model saw the secret", func(r *run) { r.results[1].Content = "DB_HOST=prod-db.internal.example" },
			map[string]string{"denied": "secret"}},
		{"the audit trail has no deny", func(r *run) { r.audit[1].Decision = "allow" },
			map[string]string{"denied": "no deny"}},
		{"the audit trail's calls are another client's", func(r *run) {
			for i := range r.audit {
				r.audit[i].ClientID = "other"
			}
		}, map[string]string{"allowed": "no allow", "denied": "no deny"}},
		{"no result for the denied call", func(r *run) { r.results = r.results[:1] },
			map[string]string{"denied": "never got a result"}},
		{"the model was not told why", func(r *run) { r.results[1].Content = "Error POSTing to endpoint: 403" },
			map[string]string{"denied": "not told the policy denied"}},
		{"the denial answered as a tool result (denials: tool_error)", func(r *run) {
			r.events[len(r.events)-1].Status = 200
			r.audit[1].Status = 200
			r.results[1].Content = "denied by policy: the arguments name data protected by policy (request id R)"
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r run
			r.events, r.requests, r.results, r.audit = goodRun()
			tc.change(&r)
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			var lines []string
			for _, a := range r.audit {
				raw, _ := json.Marshal(a)
				lines = append(lines, string(raw))
			}
			if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			row := Row{}
			judgeSight(t.Context(), &row, Target{ClientID: "agent", AuditFile: path}, r.events, modelSight(r.requests, r.results))
			steps := map[string]string{"discovery": row.Discovery, "registration": row.Registration, "sign-in": row.SignIn,
				"token": row.Token, "tools/list": row.ToolsList, "allowed": row.Allowed, "denied": row.Denied}
			for step, got := range steps {
				want, fails := tc.failed[step]
				switch {
				case !fails && !strings.HasPrefix(got, "pass"):
					t.Errorf("%s: %q, want a pass", step, got)
				case fails && (strings.HasPrefix(got, "pass") || !strings.Contains(got, want)):
					t.Errorf("%s: %q, want a failure saying %q", step, got, want)
				}
			}
			if len(row.Failed()) != len(tc.failed) {
				t.Errorf("Failed() = %q, want %d steps", row.Failed(), len(tc.failed))
			}
			wantHTTP := "HTTP 403"
			if r.audit[1].Status == 200 {
				wantHTTP = "HTTP 200, a tool result with isError"
			}
			if r.audit[1].Decision == "deny" && r.audit[1].ClientID == "agent" && row.DeniedHTTP != wantHTTP {
				t.Errorf("DeniedHTTP = %q, want %q", row.DeniedHTTP, wantHTTP)
			}
		})
	}
}
