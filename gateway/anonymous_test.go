package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/gateway"
)

// setAnonymousBackends makes the active policy's data admit callers
// without a token to backends (none when empty): a new policy version.
func (s *stack) setAnonymousBackends(backends ...string) string {
	s.t.Helper()
	b, err := shipped()
	if err != nil {
		s.t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(b.Data, &data); err != nil {
		s.t.Fatal(err)
	}
	if backends == nil {
		backends = []string{} // none: the data schema wants a list
	}
	data["anonymous"] = map[string]any{"backends": backends}
	raw, _ := json.Marshal(data)
	info, err := s.registry.SetData(context.Background(), raw, "test")
	if err != nil {
		s.t.Fatal(err)
	}
	return info.Version
}

// raw makes one request to the gateway and returns the status, the
// WWW-Authenticate header and the body.
func (s *stack) raw(method, path, body string, header map[string]string) (int, string, string) {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []byte
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		out, _ = io.ReadAll(resp.Body)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(out)
}

// connectAnonymous opens an MCP session without a token, recording the
// gateway's session id.
func (s *stack) connectAnonymous(backend string, sid *string) (*mcp.ClientSession, error) {
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && resp.Header.Get("Mcp-Session-Id") != "" {
			*sid = resp.Header.Get("Mcp-Session-Id")
		}
		return resp, err
	})}
	client := mcp.NewClient(&mcp.Implementation{Name: "anonymous", Version: "1"}, nil)
	return client.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: s.base + "/mcp/" + backend, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true,
	}, nil)
}

// TestAnonymousAccessIsAPolicyDecision: with the shipped data a request
// without a token is a 401 everywhere; once the data admits anonymous
// callers to jira, an MCP client without a token works there (every tool,
// listed and called) and is audited as client "anonymous" with the
// policy's decision, while other backends and the aggregate still answer
// 401; revoking it in the data bites the next request of the same session.
func TestAnonymousAccessIsAPolicyDecision(t *testing.T) {
	s := newStack(t)
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	if status, challenge, _ := s.raw(http.MethodPost, "/mcp/jira", ping, nil); status != http.StatusUnauthorized || !strings.Contains(challenge, "resource_metadata=") {
		t.Fatalf("shipped data, no token: %d %q", status, challenge)
	}

	version := s.setAnonymousBackends("jira")
	var sid string
	sess, err := s.connectAnonymous("jira", &sid)
	if err != nil {
		t.Fatalf("anonymous initialize on an admitted backend: %v", err)
	}
	defer sess.Close()
	tools, err := sess.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	if !slices.Contains(names, "search_issues") || !slices.Contains(names, "create_issue") {
		t.Fatalf("anonymous tools/list on jira: %v", names)
	}
	res, err := sess.CallTool(context.Background(), &mcp.CallToolParams{Name: "search_issues", Arguments: map[string]any{"query": "SEC"}})
	if err != nil || res.IsError {
		t.Fatalf("anonymous call: %v %+v", err, res)
	}

	// The trail indexes records asynchronously: wait for the call's own.
	recs, err := s.waitAudit(audit.Filter{ClientID: gateway.AnonymousClientID, Tool: "jira.search_issues", Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	var call *audit.Record
	for i := range recs {
		if recs[i].Method == "tools/call" {
			call = &recs[i]
		}
	}
	if call == nil {
		t.Fatalf("no anonymous tools/call in the audit: %+v", recs)
	}
	if call.Tool != "jira.search_issues" || call.Decision != "allow" || call.PolicyVersion != version ||
		call.Backend != "jira" || !slices.Contains(call.Reasons, "backend jira admits anonymous callers") || call.Subject != "" {
		t.Fatalf("anonymous audit record: %+v", call)
	}

	// The client's answer to a server request (sampling, elicitation) has
	// no method; policy is asked about it as "response".
	answer := `{"jsonrpc":"2.0","id":99,"result":{}}`
	if status, _, body := s.raw(http.MethodPost, "/mcp/jira", answer, map[string]string{"Mcp-Session-Id": sid}); status == http.StatusUnauthorized || status == http.StatusForbidden {
		t.Fatalf("an anonymous response in an admitted session: %d %s", status, body)
	}

	other := s.machineAgent("ci-bot", false, "jira:read")
	refused := []struct {
		name   string
		method string
		path   string
		body   string
		header map[string]string
		want   int
		wantIn string // in the WWW-Authenticate header
	}{
		{"another backend", http.MethodPost, "/mcp/slack", ping, nil, http.StatusUnauthorized, "/mcp/slack"},
		{"another backend's stream", http.MethodGet, "/mcp/slack", "", nil, http.StatusUnauthorized, "/mcp/slack"},
		{"the aggregate", http.MethodPost, "/mcp", ping, nil, http.StatusUnauthorized, "resource_metadata="},
		{"a tool of another backend", http.MethodPost, "/mcp/slack",
			`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"post_message","arguments":{}}}`, nil, http.StatusUnauthorized, "/mcp/slack"},
		{"a token that is not valid is not downgraded", http.MethodPost, "/mcp/jira", ping,
			map[string]string{"Authorization": "Bearer not-a-token"}, http.StatusUnauthorized, `error="invalid_token"`},
		{"an agent with a token on the anonymous session", http.MethodPost, "/mcp/jira", ping,
			map[string]string{"Authorization": "Bearer " + other, "Mcp-Session-Id": sid}, http.StatusForbidden, ""},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			status, challenge, body := s.raw(tt.method, tt.path, tt.body, tt.header)
			if status != tt.want || !strings.Contains(challenge, tt.wantIn) {
				t.Fatalf("%d %q %s, want %d with %q", status, challenge, body, tt.want, tt.wantIn)
			}
		})
	}

	// Revoked: the next request of the same session, with no new token
	// and no reconnect, is refused.
	s.setAnonymousBackends()
	if _, err := sess.CallTool(context.Background(), &mcp.CallToolParams{Name: "search_issues", Arguments: map[string]any{"query": "SEC"}}); err == nil {
		t.Fatal("an anonymous call went through after the data revoked anonymous access")
	}
	for _, r := range []struct{ method, body string }{
		{http.MethodPost, ping}, {http.MethodPost, answer}, {http.MethodGet, ""}, {http.MethodDelete, ""},
	} {
		if status, challenge, _ := s.raw(r.method, "/mcp/jira", r.body, map[string]string{"Mcp-Session-Id": sid}); status != http.StatusUnauthorized || !strings.Contains(challenge, "/mcp/jira") {
			t.Fatalf("%s %s after revocation: %d %q", r.method, r.body, status, challenge)
		}
	}
}

// TestAnonymousSessionStreamAndEnd: an admitted anonymous caller opens the
// GET stream and ends its session with DELETE, like an agent with a token.
func TestAnonymousSessionStreamAndEnd(t *testing.T) {
	s := newStack(t)
	s.setAnonymousBackends("jira")
	var sid string
	sess, err := s.connectAnonymous("jira", &sid)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if sid == "" {
		t.Fatal("no session id")
	}
	tests := []struct {
		name   string
		method string
		want   int
	}{
		{"stream", http.MethodGet, http.StatusOK},
		{"end", http.MethodDelete, http.StatusNoContent},
		{"ended", http.MethodGet, http.StatusNotFound},
	}
	for _, tt := range tests {
		if status, _, body := s.raw(tt.method, "/mcp/jira", "", map[string]string{"Mcp-Session-Id": sid}); status != tt.want {
			t.Fatalf("%s: %d %s, want %d", tt.name, status, body, tt.want)
		}
	}
}

// TestShutdownEndsQuietStreams: a GET stream on which the backend sends
// nothing does not hold Shutdown until its deadline (a client that went
// away is only noticed on the next write, which may never come).
func TestShutdownEndsQuietStreams(t *testing.T) {
	s := newStack(t)
	s.setAnonymousBackends("jira")
	var sid string
	sess, err := s.connectAnonymous("jira", &sid)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	req, _ := http.NewRequest(http.MethodGet, s.base+"/mcp/jira", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.gw.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an open stream: %v after %v", err, time.Since(start))
	}
}
