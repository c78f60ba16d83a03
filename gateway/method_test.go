package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/audit"
)

// backendLog records what reached each backend: "POST <json-rpc method>"
// (or "POST response"), "GET", "DELETE".
type backendLog struct {
	t    testing.TB
	mu   sync.Mutex
	seen map[string][]string
}

func newBackendLog(t testing.TB) *backendLog { return &backendLog{t: t, seen: map[string][]string{}} }

// proxy puts a recording reverse proxy in front of a backend and returns
// its URL.
func (l *backendLog) proxy(name, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		l.t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		what := r.Method
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var m struct {
				Method string `json:"method"`
			}
			_ = json.Unmarshal(body, &m)
			what += " " + orResponse(m.Method)
		}
		l.mu.Lock()
		l.seen[name] = append(l.seen[name], what)
		l.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	l.t.Cleanup(srv.Close)
	return srv.URL + u.Path
}

func orResponse(m string) string {
	if m == "" {
		return "response"
	}
	return m
}

func (l *backendLog) of(name string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen[name])
}

// rpc sends one request with a token (and a session when sid is set) and
// returns the status, the session id answered and the body.
func (s *stack) rpc(token, method, path, sid, body string) (int, string, string) {
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
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
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
	return resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), string(out)
}

const initBody = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// rpcBody is a request (id set) or a notification of method m.
func rpcBody(m string, notification bool) string {
	switch {
	case m == "response":
		return `{"jsonrpc":"2.0","id":"s-1","result":{}}`
	case notification:
		return `{"jsonrpc":"2.0","method":"` + m + `"}`
	case m == "completion/complete":
		// Decided by what it completes: jira's catalogued prompt.
		return `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"triage_issue"},"argument":{"name":"key","value":"SEC"}}}`
	case m == "logging/setLevel":
		return `{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"debug"}}`
	}
	return `{"jsonrpc":"2.0","id":1,"method":"` + m + `","params":{}}`
}

// TestEveryMethodIsDecided: a CI token (jira and drive scopes, no slack
// grant) gets 403 for every method on /mcp/slack — initialize, ping, the
// lists, completion, logging, notifications, its answers, the GET stream and
// DELETE — and slack never sees a byte; on jira the same methods pass; an
// unknown method is refused everywhere; a data change bites the next
// request of an open session; the aggregated server opens backend sessions
// only where the caller has a grant.
func TestEveryMethodIsDecided(t *testing.T) {
	log := newBackendLog(t)
	s := newStackWith(t, stackOptions{backendURL: log.proxy})
	ci := s.machineAgent("ci-bot", false, "jira:read", "jira:write", "drive:read")

	methods := []struct {
		name         string
		notification bool
	}{
		{"initialize", false}, {"ping", false}, {"tools/list", false}, {"resources/list", false},
		{"resources/templates/list", false}, {"prompts/list", false}, {"completion/complete", false},
		{"logging/setLevel", false}, {"notifications/initialized", true}, {"notifications/cancelled", true},
		{"response", false},
	}
	t.Run("no grant on slack: every method is 403 and slack sees nothing", func(t *testing.T) {
		for _, m := range methods {
			status, sid, body := s.rpc(ci, http.MethodPost, "/mcp/slack", "", rpcBody(m.name, m.notification))
			// A completion is decided by what it completes (pbac/tool_call):
			// slack has no such prompt; every other method by pbac/method.
			why := []string{"holds no", "on slack"}
			if m.name == "completion/complete" {
				why = []string{"slack.prompt:triage_issue is not in the catalogue"}
			}
			if status != http.StatusForbidden || sid != "" || !strings.Contains(body, `"code":-32001`) ||
				!strings.Contains(body, why[0]) || !strings.Contains(body, why[len(why)-1]) ||
				!strings.Contains(body, `"request_id":"`) {
				t.Errorf("%s on slack: %d session %q %s", m.name, status, sid, body)
			}
		}
		for _, hm := range []string{http.MethodGet, http.MethodDelete} {
			if status, _, body := s.rpc(ci, hm, "/mcp/slack", "", ""); status != http.StatusForbidden || !strings.Contains(body, "holds no access on slack") {
				t.Errorf("%s on slack: %d %s", hm, status, body)
			}
		}
		if got := log.of("slack"); len(got) != 0 {
			t.Fatalf("slack saw %v", got)
		}
		// The trail is asynchronous: wait for the records to be indexed.
		want := []string{"initialize", "logging/setLevel", "GET", "DELETE"}
		seen := map[string]bool{}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			recs, err := s.index.Query(context.Background(), audit.Filter{Decision: "deny", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.Backend == "slack" && r.Status == http.StatusForbidden {
					seen[r.Method] = true
				}
			}
			if !slices.ContainsFunc(want, func(m string) bool { return !seen[m] }) {
				break
			}
		}
		for _, m := range want {
			if !seen[m] {
				t.Errorf("no audited deny of %s on slack (have %v)", m, seen)
			}
		}
	})

	t.Run("a grant on jira: the same methods reach jira", func(t *testing.T) {
		status, sid, body := s.rpc(ci, http.MethodPost, "/mcp/jira", "", initBody)
		if status != http.StatusOK || sid == "" {
			t.Fatalf("initialize on jira: %d %q %s", status, sid, body)
		}
		for _, m := range methods[1:] {
			if status, _, body := s.rpc(ci, http.MethodPost, "/mcp/jira", sid, rpcBody(m.name, m.notification)); status == http.StatusForbidden {
				t.Errorf("%s on jira: %d %s", m.name, status, body)
			}
		}
		want := []string{"POST initialize", "POST ping", "POST tools/list", "POST resources/list", "POST prompts/list", "POST logging/setLevel", "POST notifications/initialized", "POST response"}
		got := log.of("jira")
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("jira did not get %s (got %v)", w, got)
			}
		}
	})

	t.Run("an unknown method is refused before any backend", func(t *testing.T) {
		status, sid, _ := s.rpc(ci, http.MethodPost, "/mcp/jira", "", initBody)
		if status != http.StatusOK {
			t.Fatal(status)
		}
		before := len(log.of("jira"))
		for _, m := range []string{"tasks/list", "sampling/createMessage", "Ping", "x/y"} {
			status, _, body := s.rpc(ci, http.MethodPost, "/mcp/jira", sid, rpcBody(m, false))
			if status != http.StatusForbidden || !strings.Contains(body, "method "+m+" is not allowed") {
				t.Errorf("%s: %d %s", m, status, body)
			}
		}
		if after := len(log.of("jira")); after != before {
			t.Fatalf("jira saw %v", log.of("jira")[before:])
		}
	})

	t.Run("a data change bites the next request of an open session", func(t *testing.T) {
		status, sid, _ := s.rpc(ci, http.MethodPost, "/mcp/jira", "", initBody)
		if status != http.StatusOK {
			t.Fatal(status)
		}
		if status, _, _ := s.rpc(ci, http.MethodPost, "/mcp/jira", sid, rpcBody("ping", false)); status != http.StatusOK {
			t.Fatalf("ping before: %d", status)
		}
		restore := s.patchData(func(d map[string]any) { delete(d["methods"].(map[string]any), "ping") })
		defer restore()
		if status, _, body := s.rpc(ci, http.MethodPost, "/mcp/jira", sid, rpcBody("ping", false)); status != http.StatusForbidden || !strings.Contains(body, "method ping is not allowed") {
			t.Fatalf("ping after the change: %d %s", status, body)
		}
	})

	t.Run("the aggregated server fans out only where the caller has a grant", func(t *testing.T) {
		before := map[string]int{}
		for _, b := range []string{"drive", "jira", "slack", "gitlab", "jenkins", "database"} {
			before[b] = len(log.of(b))
		}
		status, sid, body := s.rpc(ci, http.MethodPost, "/mcp", "", initBody)
		if status != http.StatusOK || sid == "" {
			t.Fatalf("initialize on /mcp: %d %s", status, body)
		}
		status, _, body = s.rpc(ci, http.MethodPost, "/mcp", sid, rpcBody("tools/list", false))
		if status != http.StatusOK || !strings.Contains(body, "jira.search_issues") || strings.Contains(body, "slack.") {
			t.Fatalf("tools/list on /mcp: %d %s", status, body)
		}
		var reached []string
		for b, n := range before {
			if len(log.of(b)) > n {
				reached = append(reached, b)
			}
		}
		slices.Sort(reached)
		if !slices.Equal(reached, []string{"drive", "jira"}) {
			t.Fatalf("the aggregated tools/list reached %v, want [drive jira]", reached)
		}
	})
}

// patchData changes the active policy data and returns the undo.
func (s *stack) patchData(change func(map[string]any)) func() {
	s.t.Helper()
	b, ok := s.registry.ActiveBundle()
	if !ok {
		s.t.Fatal("no active policy")
	}
	orig := b.Data
	var data map[string]any
	if err := json.Unmarshal(orig, &data); err != nil {
		s.t.Fatal(err)
	}
	change(data)
	raw, _ := json.Marshal(data)
	if _, err := s.registry.SetData(context.Background(), raw, "test"); err != nil {
		s.t.Fatal(err)
	}
	return func() {
		if _, err := s.registry.SetData(context.Background(), orig, "test undo"); err != nil {
			s.t.Fatal(err)
		}
	}
}
