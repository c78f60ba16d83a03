package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/gateway"
	system "github.com/pbac-gateway/pbac/internal/stack"
)

// rpcCall is one JSON-RPC request over raw HTTP, so the test sees the
// status, the challenge and the body exactly as a client would.
func (s *stack) rpcCall(path, token, protocol, session, body string, header ...string) (int, string, string, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	if protocol != "" {
		req.Header.Set("Mcp-Protocol-Version", protocol)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Mcp-Session-Id"), out.String()
}

// initialized opens a session at path and returns its id.
func (s *stack) initialized(path, token string) string {
	s.t.Helper()
	status, _, sid, body := s.rpcCall(path, token, "2025-11-25", "",
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if status != http.StatusOK || sid == "" {
		s.t.Fatalf("initialize at %s: %d %s", path, status, body)
	}
	s.rpcCall(path, token, "2025-11-25", sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return sid
}

// TestStepUpNamesTheResourceTheClientConnectedTo: a call a scope would
// fix is a 403 insufficient_scope whose resource_metadata is that of the
// endpoint the client connected to (issue 18: the aggregated /mcp named
// /mcp/jira, which the TypeScript SDK refuses), and whose scope keeps the
// token's scopes for clients of revisions that replace theirs, or names
// only what the call needs from 2026-07-28 (SEP-2350).
func TestStepUpNamesTheResourceTheClientConnectedTo(t *testing.T) {
	s := newStack(t)
	tok := s.humanAgent("claude-code", "alice", "jira:read", "drive:read")
	create := func(name string) string {
		return `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + name + `","arguments":{"project":"SEC","summary":"s","description":"d"}}}`
	}
	for _, tc := range []struct {
		name, path, tool, metadata string
	}{
		{"aggregated", "/mcp", "jira.create_issue", "/.well-known/oauth-protected-resource/mcp\""},
		{"per backend", "/mcp/jira", "create_issue", "/.well-known/oauth-protected-resource/mcp/jira\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sid := s.initialized(tc.path, tok)
			status, challenge, _, body := s.rpcCall(tc.path, tok, "2025-11-25", sid, create(tc.tool))
			if status != http.StatusForbidden || !strings.Contains(challenge, `error="insufficient_scope"`) ||
				!strings.Contains(challenge, `resource_metadata="`+s.base+tc.metadata) {
				t.Fatalf("got %d %q %s", status, challenge, body)
			}
			if !strings.Contains(challenge, `scope="jira:read drive:read jira:write"`) && !strings.Contains(challenge, `scope="drive:read jira:read jira:write"`) {
				t.Errorf("2025-11-25 challenge %q: want the token's scopes and jira:write", challenge)
			}
		})
	}
	status, challenge, _, body := s.rpcCall("/mcp", tok, "2026-07-28", "", create("jira.create_issue"), "Mcp-Method", "tools/call", "Mcp-Name", "jira.create_issue")
	if status != http.StatusForbidden || !strings.Contains(challenge, `scope="jira:write"`) || !strings.Contains(challenge, `oauth-protected-resource/mcp"`) {
		t.Fatalf("2026-07-28: %d %q %s", status, challenge, body)
	}
}

// TestDenialModes: a denial no scope fixes is by default (denials:
// tool_error) a 200 CallToolResult with isError whose text carries the
// policy's public reasons and the request id, and with denials: http_403
// a 403 JSON-RPC error; a
// step-up denial stays a 403 challenge in both modes. The audit record is
// a deny either way.
func TestDenialModes(t *testing.T) {
	ddl := func(name string) string {
		return `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"` + name + `","arguments":{"sql":"CREATE TABLE t (id int)"}}}`
	}
	for _, mode := range []string{"", gateway.DenialHTTP403, gateway.DenialToolError} {
		t.Run("mode="+mode, func(t *testing.T) {
			s := newStackWith(t, stackOptions{config: func(c *system.Config) { c.Gateway.Denials = mode }})
			tok := s.humanAgent("claude-code", "alice", "jira:read", "database:read")
			// bob's roles grant no DDL: no scope his token could get fixes it
			bob := s.humanAgent("claude-code", "bob", "database:read")
			for _, path := range []string{"/mcp", "/mcp/database"} {
				name := "execute_ddl"
				if path == "/mcp" {
					name = "database.execute_ddl"
				}
				sid := s.initialized(path, bob)
				status, challenge, _, body := s.rpcCall(path, bob, "2025-11-25", sid, ddl(name))
				if challenge != "" {
					t.Errorf("%s: a denial no scope fixes carries a challenge %q", path, challenge)
				}
				var msg struct {
					Result *struct {
						IsError bool `json:"isError"`
						Content []struct {
							Type, Text string
						} `json:"content"`
					} `json:"result"`
					Error *struct {
						Code    int    `json:"code"`
						Message string `json:"message"`
					} `json:"error"`
				}
				if err := json.Unmarshal([]byte(body), &msg); err != nil {
					t.Fatalf("%s: %v: %s", path, err, body)
				}
				if mode != gateway.DenialHTTP403 {
					if status != http.StatusOK || msg.Result == nil || !msg.Result.IsError || len(msg.Result.Content) != 1 ||
						!strings.HasPrefix(msg.Result.Content[0].Text, "denied by policy: ") || !strings.Contains(msg.Result.Content[0].Text, "request id ") {
						t.Fatalf("%s tool_error: %d %s", path, status, body)
					}
				} else if status != http.StatusForbidden || msg.Error == nil || msg.Error.Code != -32001 || !strings.HasPrefix(msg.Error.Message, "denied by policy: ") {
					t.Fatalf("%s http_403: %d %s", path, status, body)
				}
			}
			// step-up stays a 403 challenge
			sid := s.initialized("/mcp/jira", tok)
			status, challenge, _, body := s.rpcCall("/mcp/jira", tok, "2025-11-25", sid,
				`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"create_issue","arguments":{"project":"SEC","summary":"s","description":"d"}}}`)
			if status != http.StatusForbidden || !strings.Contains(challenge, "insufficient_scope") {
				t.Fatalf("step-up in mode %q: %d %q %s", mode, status, challenge, body)
			}
		})
	}
}
