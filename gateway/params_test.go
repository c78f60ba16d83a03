package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestMcpParamHeadersAgreeWithTheBody: on a 2026-07-28 tools/call the
// Mcp-Param-* headers must say what the arguments say, by the tool's
// x-mcp-header declarations as its backend listed them; a disagreement is
// refused (400, -32020) before policy and never reaches the backend.
func TestMcpParamHeadersAgreeWithTheBody(t *testing.T) {
	jira := &craftedJira{}
	s := newStackBehind(t, jira, nil)
	token := s.machineAgent("ci-bot", false, "jira:read")
	tool := `{"name":"search_issues","description":"Search issues.","inputSchema":{"type":"object","properties":{` +
		`"query":{"type":"string","x-mcp-header":"Query"},"limit":{"type":"integer","x-mcp-header":"Limit"},` +
		`"opts":{"type":"object","properties":{"open":{"type":"boolean","x-mcp-header":"Open"}}}}}}`
	jira.set("application/json", `{"jsonrpc":"2.0","id":%ID%,"result":{"tools":[`+tool+`]}}`)
	// The gateway learns the declarations when the tools are listed.
	if status, _, _, body := s.rpcCall("/mcp/jira", token, "2025-11-25", "", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`); status != http.StatusOK {
		t.Fatalf("tools/list: %d %s", status, body)
	}
	call := func(args string, headers ...string) (int, string) {
		t.Helper()
		h := append([]string{"Mcp-Method", "tools/call", "Mcp-Name", "search_issues"}, headers...)
		status, _, _, body := s.rpcCall("/mcp/jira", token, "2026-07-28", "",
			`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"name":"search_issues","arguments":`+args+`}}`, h...)
		return status, body
	}
	for _, tc := range []struct {
		name, args string
		headers    []string
		ok         bool
	}{
		{"all agree", `{"query":"SEC","limit":5,"opts":{"open":true}}`, []string{"Mcp-Param-Query", "SEC", "Mcp-Param-Limit", "5.0", "Mcp-Param-Open", "true"}, true},
		{"base64 sentinel", `{"query":" SEC "}`, []string{"Mcp-Param-Query", "=?base64?IFNFQyA=?="}, true},
		{"header names in any case", `{"query":"SEC"}`, []string{"mcp-param-query", "SEC"}, true},
		{"absent and null need none", `{"limit":null}`, nil, true},
		{"another value", `{"query":"SEC"}`, []string{"Mcp-Param-Query", "PLAT"}, false},
		{"header missing", `{"query":"SEC"}`, nil, false},
		{"header for an absent argument", `{}`, []string{"Mcp-Param-Query", "SEC"}, false},
		{"an undeclared header", `{"query":"SEC"}`, []string{"Mcp-Param-Query", "SEC", "Mcp-Param-Tenant", "acme"}, false},
		{"another number", `{"limit":5}`, []string{"Mcp-Param-Limit", "6"}, false},
		{"a huge exponent is just another number", `{"limit":5}`, []string{"Mcp-Param-Limit", "1e999999999"}, false},
		{"nested boolean", `{"opts":{"open":false}}`, []string{"Mcp-Param-Open", "true"}, false},
		{"bad base64", `{"query":"SEC"}`, []string{"Mcp-Param-Query", "=?base64?***?="}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := call(tc.args, tc.headers...)
			if tc.ok && (status != http.StatusOK || !strings.Contains(body, `"ok"`)) {
				t.Errorf("%d %s, want the call through", status, body)
			}
			if !tc.ok && (status != http.StatusBadRequest || !strings.Contains(body, "-32020") || !strings.Contains(body, "Mcp-Param")) {
				t.Errorf("%d %s, want 400 with -32020", status, body)
			}
		})
	}
	// Before 2026-07-28 nothing checks such headers: they are refused.
	status, _, _, body := s.rpcCall("/mcp/jira", token, "2025-11-25", "",
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"SEC"}}}`, "Mcp-Param-Query", "SEC")
	if status != http.StatusBadRequest || !strings.Contains(body, "not a 2026-07-28 tools/call") {
		t.Errorf("Mcp-Param on 2025-11-25: %d %s", status, body)
	}
}
