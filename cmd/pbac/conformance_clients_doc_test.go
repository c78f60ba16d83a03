package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/realclients"
	"github.com/pbac-gateway/pbac/connect"
)

// TestClientsSection: the generated section has a row per client with
// every column, a harness client's steps from its checks and requests, a
// real CLI's with its probes' results (or that they were not measured), and the
// paste table holds the dashboard's snippet of every connect client,
// the GUI ones marked not run here.
func TestClientsSection(t *testing.T) {
	rep := ClientReport{Client: "mcp-remote 0.15.1", Version: "0.15.1", Results: []clientcheck.Result{
		{Name: "reads protected resource metadata after the 401", Pass: true},
		{Name: "finds the authorization server (RFC 8414 metadata)", Pass: true},
		{Name: "registers (DCR) or uses a pre-registered client", Pass: true, Message: "DCR"},
		{Name: "PKCE with S256", Pass: true},
		{Name: "sends resource (the MCP server's URL) in authorization and token requests", Pass: true},
		{Name: "uses the token in the Authorization header", Pass: true},
		{Name: "never sends the token elsewhere", Pass: true},
		{Name: "steps up on 403 insufficient_scope", Pass: false, Message: "no new authorization after the 403"},
		{Name: "refreshes an expired token", Pass: true},
	}, Runs: []clientcheck.Run{{Phase: clientcheck.PhaseFlow, Events: []clientcheck.Event{{RPC: "tools/call", Status: 200}}}}}
	row := realclients.Row{Driver: "opencode", Client: "OpenCode", Version: "1.18.33", Discovery: "pass (a)", Registration: "pass (pre-registered id)",
		SignIn: "pass", Token: "pass", ToolsList: "pass", Allowed: "pass", Denied: "pass (a tool error; audit: deny)",
		ModelSawDenied: "denied by policy | prod", DeniedHTTP: "HTTP 200, a tool result with isError", Refresh: "no refresh: the expired token was refused (401)",
		StepUp: "pass (re-authorized with scope \"drive:read drive:write\")", NewSession: "after the 404 the client did not initialize a new session", Snippet: "{}"}
	cimd := realclients.Row{Driver: "claude-code-cimd", Client: "Claude Code, by its client ID metadata document (pinned)", Version: "2",
		Registration: "pass (client ID metadata document: client_id https://claude.ai/x, pinned; no registration)", Snippet: "claude mcp add --transport http pbac http://127.0.0.1:8080/mcp"}
	codex, _ := connect.Lookup("codex")
	pasted := realclients.Row{Driver: "codex", Client: "Codex", Snippet: codex.Snippet(docTarget)}
	s := clientsSection([]ClientReport{rep}, []realclients.Row{row, cimd, pasted}, 90*time.Second, []string{"all"})
	for _, want := range []string{
		"<!-- " + clientsMarker + " -->", "<!-- /" + clientsMarker + " -->", "--client all --markdown-file", "(it took 1m30s)",
		"| OpenCode | 1.18.33 | real CLI (`--client opencode`) | ✅ (a) |",
		"✅ (a tool error; audit: deny); the model saw: `denied by policy \\| prod` (HTTP 200, a tool result with isError)",
		"| ✅ (re-authorized with scope \"drive:read drive:write\") | ❌ no refresh: the expired token was refused (401) | ❌ after the 404 the client did not initialize a new session |",
		// A row without a probe's result says it was not measured.
		"| — (not measured) | — (not measured) | — (not measured) |",
		"| mcp-remote 0.15.1 | 0.15.1 | harness (phases flow, expiry, session) |", "✅ (DCR)", "❌ no new authorization after the 403", harnessNoDeny,
		"— (its script makes no tools/list) | ✅ (tools/call answered 200, after the step-up)", "— (phase not run) |",
		"yes: `--client opencode`, but it pasted `{}`", "| yes: `--client codex` pasted this snippet |", "| nothing: client ID metadata document: client_id https://claude.ai/x, pinned | yes: `--client claude-code-cimd` |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("the section lacks %q:\n%s", want, s)
		}
	}
	for _, c := range connect.Clients() {
		if !strings.Contains(s, codeCell(c.Snippet(docTarget))) {
			t.Errorf("the paste table lacks %s's snippet as the dashboard shows it", c.ID)
		}
		if !c.RunHere && !strings.Contains(s, "not run here (from its public docs: "+c.Source) {
			t.Errorf("%s is not marked not run here", c.ID)
		}
	}
}

// TestReplaceSection: the section replaces the one between the markers
// and leaves the prose around it; a file without markers gets it at its
// end; a file with one marker is refused.
func TestReplaceSection(t *testing.T) {
	begin, end := "<!-- "+clientsMarker+" -->", "<!-- /"+clientsMarker+" -->"
	section := begin + "\nnew\n" + end + "\n"
	for _, tc := range []struct{ name, before, after, err string }{
		{"replaced", "# T\n\nprose\n\n" + begin + "\nold\nolder\n" + end + "\n\nnotes\n", "# T\n\nprose\n\n" + section + "\nnotes\n", ""},
		{"appended", "# T\n\nprose\n", "# T\n\nprose\n\n" + section, ""},
		{"one marker", "# T\n" + begin + "\n", "", "only one of the markers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "CLIENTS.md")
			if err := os.WriteFile(p, []byte(tc.before), 0o644); err != nil {
				t.Fatal(err)
			}
			err := replaceSection(p, section)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			got, _ := os.ReadFile(p)
			if err != nil || string(got) != tc.after {
				t.Fatalf("err %v, file:\n%s\nwant:\n%s", err, got, tc.after)
			}
		})
	}
}
