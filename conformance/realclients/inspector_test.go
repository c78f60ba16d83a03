package realclients

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/modelapi"
	"github.com/pbac-gateway/pbac/connect"
)

// TestInspectorCLIFromSnippet: the driver runs the command line connect's
// Inspector snippet offers, each run with its own method.
func TestInspectorCLIFromSnippet(t *testing.T) {
	preset, ok := connect.Lookup("inspector")
	if !ok {
		t.Fatal("connect has no inspector preset")
	}
	got := inspectorCLI(preset.Snippet(connect.Target{MCPURL: "http://127.0.0.1:8080/mcp", ClientID: "agent-1"}))
	want := []string{"--cli", "http://127.0.0.1:8080/mcp", "--transport", "http", "--client-id", "agent-1"}
	if !slices.Equal(got, want) {
		t.Errorf("inspectorCLI = %q, want %q", got, want)
	}
	if got := inspectorCLI("npx @modelcontextprotocol/inspector\n# Streamable HTTP: http://x/mcp"); got != nil {
		t.Errorf("a snippet without a --cli line: %q, want nil", got)
	}
}

// TestPrintedResult: the result is found after Inspector's notices and
// sign-in prompt, on a terminal's CRLF lines, with what followed it.
func TestPrintedResult(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		// shown is what the person read from the result on ("": no
		// result found).
		shown, isError string
	}{
		{"after notices, on a pty",
			"[mcp-inspector] Secrets are stored unencrypted (file mode 0600).\r\nPlease navigate to: http://gw/authorize?x={y}\r\n{\r\n  \"content\": [],\r\n  \"isError\": true\r\n}\r\n{\"error\":{\"code\":\"tool_is_error\"}}\r\n",
			"{\n  \"content\": [],\n  \"isError\": true\n}\n{\"error\":{\"code\":\"tool_is_error\"}}", "true"},
		{"the first line", "{\n  \"tools\": []\n}\n", "{\n  \"tools\": []\n}", ""},
		{"no result", "Error: connection refused\r\n", "", ""},
		{"a brace on a line that is no JSON", "x\n{\nnot json\n", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shown, res, err := printedResult(tc.out)
			if tc.shown == "" {
				if err == nil {
					t.Fatalf("found %q, want an error", shown)
				}
				return
			}
			if err != nil || shown != tc.shown {
				t.Fatalf("printedResult = %q, %v; want %q", shown, err, tc.shown)
			}
			var r callResult
			if err := json.Unmarshal(res, &r); err != nil || (tc.isError == "true") != r.IsError {
				t.Errorf("result %s: isError %v, %v", res, r.IsError, err)
			}
		})
	}
}

// TestJudgePersonSight: for a client without a model, the steps are judged
// on what the person was shown, and say so.
func TestJudgePersonSight(t *testing.T) {
	events, _, results, audit := goodRun()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var lines []string
	for _, a := range audit {
		raw, _ := json.Marshal(a)
		lines = append(lines, string(raw))
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	target := Target{ClientID: "agent", AuditFile: path}
	shown := sight{who: "the person", offered: gatewayTool, allowed: &results[0], denied: &results[1]}
	var row Row
	judgeSight(t.Context(), &row, target, events, shown)
	if f := row.Failed(); len(f) > 0 || !strings.Contains(row.ToolsList, "the person was offered "+gatewayTool) ||
		!strings.Contains(row.Allowed, "the person saw the file") {
		t.Errorf("row %+v, failed %q", row, f)
	}
	for _, tc := range []struct {
		name   string
		change func(*sight)
		step   func(Row) string
		want   string
	}{
		{"not listed", func(s *sight) { s.offered = "" }, func(r Row) string { return r.ToolsList }, "the person was never offered"},
		{"nothing shown for the denied call", func(s *sight) { s.denied = nil }, func(r Row) string { return r.Denied }, "the person never got a result"},
		{"shown without the policy's word", func(s *sight) { s.denied = &modelapi.ToolResult{Content: "Error: 403"} },
			func(r Row) string { return r.Denied }, "the person was not told"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := shown
			tc.change(&s)
			var row Row
			judgeSight(t.Context(), &row, target, events, s)
			if got := tc.step(row); strings.HasPrefix(got, "pass") || !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want a failure saying %q", got, tc.want)
			}
		})
	}
}

// TestJudgeSignInInBrowser: in a real browser the harness does not sign
// in; the person posts the sign-in page's form, and the step passes only
// when it was alice and the AS redirected back without an error.
func TestJudgeSignInInBrowser(t *testing.T) {
	form := func(user string) url.Values {
		return url.Values{"username": {user}, "csrf_token": {"c"}, "decision": {"approve"}}
	}
	q := url.Values{"client_id": {"agent"}, "redirect_uri": {"http://127.0.0.1:6274/oauth/callback"}}
	for _, tc := range []struct {
		name string
		post clientcheck.Event
		want string
	}{
		{"alice signs in", clientcheck.Event{Method: "POST", Path: "/oauth2/authorize", Query: q, Form: form("alice"), Status: 303},
			"pass (alice, on the sign-in page in the browser; redirect_uri http://127.0.0.1:6274/oauth/callback)"},
		{"someone else signs in", clientcheck.Event{Method: "POST", Path: "/oauth2/authorize", Query: q, Form: form("bob"), Status: 303},
			`signed in as "bob"`},
		{"the AS refuses", clientcheck.Event{Method: "POST", Path: "/oauth2/authorize", Query: q, Form: form("alice"), Status: 303,
			AuthorizeError: "access_denied"}, "refused: access_denied"},
		{"the form is shown again", clientcheck.Event{Method: "POST", Path: "/oauth2/authorize", Query: q, Form: form("alice"), Status: 200},
			"answered 200"},
		{"no form posted", clientcheck.Event{Method: "GET", Path: "/oauth2/authorize", Query: q, Status: 200},
			"never reached the sign-in page"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events, _, _, _ := goodRun()
			events[3] = clientcheck.Event{Method: "GET", Path: "/oauth2/authorize", Query: q, Status: 200}
			events = append(events[:4], append([]clientcheck.Event{tc.post}, events[4:]...)...)
			var row Row
			judgeSight(t.Context(), &row, Target{ClientID: "agent", AuditFile: filepath.Join(t.TempDir(), "none.jsonl")}, events, sight{who: "the person"})
			if !strings.Contains(row.SignIn, tc.want) || (strings.HasPrefix(tc.want, "pass") != strings.HasPrefix(row.SignIn, "pass")) {
				t.Errorf("sign-in: %q, want %q", row.SignIn, tc.want)
			}
		})
	}
}

// TestWebRunSight: what the web UI's results panel showed becomes what
// the person saw, a "Tool Error" box an error.
func TestWebRunSight(t *testing.T) {
	raw := `{"tools": ["database.query", "drive.read_file"], "calls": [
		{"marker": "pbac-allowed-call", "shown": "Results\n/team/roadmap.md (222 bytes, owner alice)\n\n# Platform roadmap (H2)"},
		{"marker": "pbac-denied-call", "shown": "Results\nTool Error\ndenied by policy: the arguments name data protected by policy (request id R)"}]}`
	path := filepath.Join(t.TempDir(), "run.json")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := readWebRun(path)
	if err != nil {
		t.Fatal(err)
	}
	s := w.sight()
	if s.offered != gatewayTool || s.allowed == nil || s.denied == nil {
		t.Fatalf("sight %+v", s)
	}
	if s.allowed.IsError || !strings.HasPrefix(s.allowed.Content, "/team/roadmap.md") {
		t.Errorf("allowed: %+v", *s.allowed)
	}
	if !s.denied.IsError || s.denied.Content != "Tool Error\ndenied by policy: the arguments name data protected by policy (request id R)" {
		t.Errorf("denied: %+v", *s.denied)
	}
	w.Tools = []string{"drive.read_files"}
	w.Calls = nil
	if s := w.sight(); s.offered != "" || s.allowed != nil || s.denied != nil {
		t.Errorf("a list without the tool and no results: %+v", s)
	}
	if _, err := readWebRun(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("a run that wrote nothing: no error")
	}
}
