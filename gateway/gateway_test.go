package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/audit/index"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/internal/policytest"
	system "github.com/pbac-gateway/pbac/internal/stack"
	"github.com/pbac-gateway/pbac/plugins"
)

var shipped = policytest.Shipped

// stack is the whole product in process, as internal/stack builds it:
// policy, AS, gateway, audit, the demo backends, each on its own 127.0.0.1
// listener.
type stack struct {
	t        testing.TB
	base     string
	resource string
	registry *plugins.Registry
	index    *index.Index
	trail    *audit.Trail
	store    asrv.Store
	issuer   *asrv.IssuerKey
	gw       *gateway.Gateway
	// direct maps a backend name to its own URL, for baselines.
	direct map[string]string
	// adminURL is the admin listener's, when the test configured one.
	adminURL string
}

func newStack(t testing.TB) *stack { return newStackWith(t, stackOptions{}) }

// stackOptions vary the stack of one test.
type stackOptions struct {
	// backendURL, when set, is the URL the gateway gets for a backend
	// (a recording proxy in front of it, say).
	backendURL func(name, url string) string
	// config adjusts the system's configuration.
	config func(*system.Config)
	// users are the people who sign in (default: the demo users).
	users asrv.UserSource
	// captured, when set, gets the system as built.
	captured **system.Stack
}

// newStackWith builds the system through internal/stack (package
// gateway_test, so the composition root may import the gateway): the
// shipped policy, an in-memory token store and audit index, and the demo
// backends as configured URL backends, started here so a test may put a
// recording proxy in front of them.
func newStackWith(t testing.TB, opts stackOptions) *stack {
	t.Helper()
	ctx := context.Background()
	bundle, err := shipped()
	if err != nil {
		t.Fatal(err)
	}
	runs, err := demo.StartAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range runs {
			_ = r.Close(context.Background())
		}
	})
	var backends []config.Backend
	direct := map[string]string{}
	for _, r := range runs {
		direct[r.Name] = r.URL
		u := r.URL
		if opts.backendURL != nil {
			u = opts.backendURL(r.Name, r.URL)
		}
		backends = append(backends, config.Backend{Name: r.Name, URL: u})
	}
	dir := t.TempDir()
	// The gateway's own client at the AS, for RFC 7662 over HTTP.
	secretFile := filepath.Join(dir, "introspector-secret")
	if err := os.WriteFile(secretFile, []byte(testIntrospectorSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	users := opts.users
	if users == nil {
		// The demo backends' people: a test tenant signs them in
		// explicitly (the stack gives the demo users to the demo tenant
		// alone).
		users = asrv.DemoUsers{}
	}
	cfg := system.Config{
		Logger: slog.New(slog.DiscardHandler), DataDir: dir, Ephemeral: true, Listen: "127.0.0.1:0",
		Policy: system.Policy{Bundle: bundle},
		AuthServer: system.AuthServer{Settings: &config.ASrv{
			IntrospectionClients: []config.IntrospectionClient{{ClientID: testIntrospectorID, ClientSecretFile: secretFile}}},
			Users: users},
		Gateway:  &system.Gateway{},
		Backends: backends,
	}
	if opts.config != nil {
		opts.config(&cfg)
	}
	st, err := system.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if opts.captured != nil {
		*opts.captured = st
	}
	t.Cleanup(func() {
		// A connection the client's pool dialled but never used keeps
		// fasthttp's Shutdown waiting for its read timeout (60 s): close
		// them first.
		http.DefaultClient.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := st.Close(ctx); err != nil {
			// fasthttp waits out the read timeout of a connection that was
			// dialled and never used; bounded here (10 s), it is not the
			// test's subject.
			t.Logf("stack close: %v", err)
		}
	})
	return &stack{t: t, base: st.URL(), resource: st.URL() + "/mcp", registry: st.Registry(), index: st.Index(), trail: st.Trail(),
		store: st.Store(), issuer: st.StatementKey(), gw: st.Gateway(), direct: direct, adminURL: st.AdminURL()}
}

func (s *stack) statement(provider string, singleUse bool) string {
	jws, err := s.issuer.Sign(asrv.StatementClaims{AgentProvider: provider, AgentModel: "test", SingleUseAccessTokens: singleUse,
		Audience: []string{s.base}, TTL: time.Hour}, time.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	return jws
}

// humanAgent registers a public agent for provider and returns the demo
// user's token for it, through the sign-in page.
func (s *stack) humanAgent(provider, user string, scopes ...string) string {
	s.t.Helper()
	return s.personAgent(provider, user, asrv.DemoPassword, scopes...)
}

// personAgent registers a public agent for provider and returns user's
// token for it, signing in with password.
func (s *stack) personAgent(provider, user, password string, scopes ...string) string {
	s.t.Helper()
	ctx := context.Background()
	redirect := "http://127.0.0.1:45001/cb"
	reg, err := oauthtest.Register(ctx, s.base, map[string]any{
		"client_name": provider, "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "software_statement": s.statement(provider, false),
	})
	if err != nil {
		s.t.Fatal(err)
	}
	tok, err := oauthtest.CodeFlow(ctx, s.base, reg["client_id"].(string), redirect, user, password, s.resource, scopes...)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok.AccessToken
}

// machineAgent registers a confidential agent and returns a client
// credentials token.
func (s *stack) machineAgent(provider string, singleUse bool, scopes ...string) string {
	s.t.Helper()
	ctx := context.Background()
	reg, err := oauthtest.Register(ctx, s.base, map[string]any{
		"client_name": provider, "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "software_statement": s.statement(provider, singleUse),
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return s.tokenFor([2]string{reg["client_id"].(string), reg["client_secret"].(string)}, scopes...)
}

// machineAgentReg registers a confidential agent and returns its id and
// secret.
func (s *stack) machineAgentReg(provider string) [2]string {
	s.t.Helper()
	reg, err := oauthtest.Register(context.Background(), s.base, map[string]any{
		"client_name": provider, "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "software_statement": s.statement(provider, false),
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return [2]string{reg["client_id"].(string), reg["client_secret"].(string)}
}

// tokenFor gets a client credentials token for a registered agent.
func (s *stack) tokenFor(reg [2]string, scopes ...string) string {
	s.t.Helper()
	tok, err := oauthtest.ClientCredentials(context.Background(), s.base, reg[0], reg[1], s.resource, scopes...)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok.AccessToken
}

func auditFilterClient(clientID, decision string) audit.Filter {
	return audit.Filter{ClientID: clientID, Decision: decision, Limit: 10}
}

// connect opens an MCP session to one backend through the gateway.
func (s *stack) connect(token, backend string) (*mcp.ClientSession, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "pbac-test", Version: "1"}, nil)
	return client.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint:             s.base + "/mcp/" + backend,
		HTTPClient:           &http.Client{Transport: &oauthtest.BearerTransport{Token: token}},
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
	}, nil)
}

// call makes one tools/call and reports allowed (a result) or denied.
func (s *stack) call(token, backend, tool string, args map[string]any) (bool, string) {
	s.t.Helper()
	sess, err := s.connect(token, backend)
	if err != nil {
		return false, "connect: " + err.Error()
	}
	defer sess.Close()
	res, err := sess.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return false, err.Error()
	}
	if res.Meta[contract.DenialMetaKey] != nil {
		return false, demo.ResultText(res)
	}
	if res.IsError {
		return true, "tool error"
	}
	return true, ""
}

func TestUnauthenticatedRequestGets401WithResourceMetadata(t *testing.T) {
	s := newStack(t)
	resp, err := http.Post(s.base+"/mcp/jira", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := `resource_metadata="` + s.base + `/.well-known/oauth-protected-resource/mcp/jira"`
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), want) {
		t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	prm, err := http.Get(s.base + "/.well-known/oauth-protected-resource/mcp/jira")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(prm.Body)
	prm.Body.Close()
	if !strings.Contains(string(body), `"resource":"`+s.base+`/mcp/jira"`) || !strings.Contains(string(body), `"authorization_servers":["`+s.base+`"]`) {
		t.Fatalf("protected resource metadata: %s", body)
	}
}

// TestSeedMatrixOverHTTP is DESIGN.md's seed trust-tier matrix, end to end:
// real tokens, real MCP sessions through the gateway, real backends.
func TestSeedMatrixOverHTTP(t *testing.T) {
	s := newStack(t)
	all := []string{"drive:read", "drive:write", "jira:read", "jira:write", "slack:read", "slack:write", "database:read", "database:ddl"}
	agents := []struct {
		name  string
		token string
		want  string // drive read/write, jira read/write, slack read/write, ddl (h: held for an approval)
	}{
		{"alice's claude code (developer)", s.humanAgent("claude-code", "alice", all...), "rw rw rw h"},
		{"ci bot (ci_agent)", s.machineAgent("ci-bot", false, "drive:read", "jira:read", "jira:write", "database:read"), "r- rw -- -"},
		{"security scanner (read_only)", s.machineAgent("security-scanner", false, "drive:read", "jira:read", "database:read"), "r- r- -- -"},
		{"autonomous planner (internal_trusted)", s.humanAgent("claude-code-trusted", "alice", all...), "rw rw rw -"},
	}
	calls := []struct {
		backend, tool string
		args          map[string]any
	}{
		{"drive", "read_file", map[string]any{"path": "/public/handbook.md"}},
		{"drive", "write_file", map[string]any{"path": "/team/notes.txt", "content": "note"}},
		{"jira", "search_issues", map[string]any{"query": "SEC"}},
		{"jira", "create_issue", map[string]any{"project": "SEC", "summary": "s", "description": "d"}},
		{"slack", "read_history", map[string]any{"channel": "general"}},
		{"slack", "post_message", map[string]any{"channel": "general", "text": "hi"}},
		{"database", "execute_ddl", map[string]any{"sql": "CREATE TABLE t (id int)"}},
	}
	for _, a := range agents {
		t.Run(a.name, func(t *testing.T) {
			var got []byte
			for i, c := range calls {
				ok, why := s.call(a.token, c.backend, c.tool, c.args)
				mark := byte('-')
				switch {
				case ok && i == 6:
					mark = 'x' // DDL is never allowed without a DBA's approval
				case ok:
					mark = "rwrwrwd"[i]
				case strings.Contains(why, "approval required: "):
					mark = 'h'
				}
				got = append(got, mark)
				if i%2 == 1 || i == 6 {
					got = append(got, ' ')
				}
				t.Logf("%s.%s: allowed=%v %s", c.backend, c.tool, ok, why)
			}
			if g := strings.TrimSpace(string(got)); g != a.want {
				t.Fatalf("matrix row %q, want %q", g, a.want)
			}
		})
	}
}

func TestDeniedCallIsAToolErrorWithReasonAndNeverReachesBackend(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "jira:read", "drive:read")
	body := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/prod/secrets/db.env"}}}`
	req, _ := http.NewRequest(http.MethodPost, s.base+"/mcp/drive", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The agent is told the policy's public reason and the request id, not
	// the rule (issue 14, Low #16), as a tool result with isError (the
	// default denials: tool_error); the audit record has the full reasons.
	var answer struct {
		Result json.RawMessage `json:"result"`
	}
	_ = json.Unmarshal(out, &answer)
	d, denied := contract.DenialOf(answer.Result)
	rid := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusOK || !denied || len(d.Reasons) != 1 || d.Reasons[0] != "the arguments name data protected by policy" ||
		!strings.Contains(string(answer.Result), `"text":"denied by policy: the arguments name data protected by policy (request id `+rid+`)"`) ||
		strings.Contains(string(out), "prod-secrets") || d.RequestID != rid || rid == "" {
		t.Fatalf("got %d %s", resp.StatusCode, out)
	}
	recs, err := s.waitAudit(audit.Filter{Decision: "deny", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Tool != "drive.read_file" || !strings.HasPrefix(recs[0].ArgsDigest, "sha256:") || recs[0].PolicyVersion == "" ||
		recs[0].RequestID != d.RequestID || !strings.Contains(strings.Join(recs[0].Reasons, ";"), "protected by rule prod-secrets") {
		t.Fatalf("audit record %+v", recs[0])
	}
}

func TestDuplicateKeysAndHeaderMismatchAreRejected(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "drive:read")
	for _, tc := range []struct {
		name, body string
		header     map[string]string
		want       int
	}{
		{"duplicate argument keys", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/public/handbook.md","path":"/prod/secrets/db.env"}}}`, nil, 400},
		{"Mcp-Method header disagrees with the body", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/public/handbook.md"}}}`, map[string]string{"Mcp-Method": "tools/list"}, 400},
		{"Mcp-Name header disagrees with the body", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/public/handbook.md"}}}`, map[string]string{"Mcp-Name": "list_files"}, 400},
		{"foreign Origin", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Origin": "http://evil.example"}, 403},
		{"2026-07-28 request without Mcp-Method", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/public/handbook.md"}}}`,
			map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Name": "read_file"}, 400},
		{"2026-07-28 tools/call without Mcp-Name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/public/handbook.md"}}}`,
			map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call"}, 400},
		{"protocol header disagrees with the body's _meta", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/public/handbook.md"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}`,
			map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "read_file"}, 400},
		{"base64 Mcp-Name that decodes to another tool", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/public/handbook.md"}}}`,
			map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "=?base64?d3JpdGVfZmlsZQ==?="}, 400},
		{"base64 Mcp-Name that matches passes the header check", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/prod/secrets/db.env"}}}`,
			// and is decided: denied, answered as a tool result (denials: tool_error)
			map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "=?base64?cmVhZF9maWxl?="}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, s.base+"/mcp/drive", strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, out, tc.want)
			}
			if strings.Contains(tc.name, "header") || strings.Contains(tc.name, "Mcp-") {
				if tc.want == 400 && !strings.Contains(string(out), "-32020") {
					t.Fatalf("a header mismatch must answer HeaderMismatch (-32020): %s", out)
				}
			}
		})
	}
}

func TestToolsListIsFiltered(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("security-scanner", false, "drive:read")
	sess, err := s.connect(token, "drive")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	res, err := sess.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	if got := strings.Join(names, ","); strings.Contains(got, "write_file") || strings.Contains(got, "share_file") || !strings.Contains(got, "read_file") {
		t.Fatalf("scanner sees tools %s", got)
	}
}

func TestPolicyDataChangeAppliesToTheNextCall(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "jira:read", "jira:write")
	args := map[string]any{"project": "SEC", "summary": "s", "description": "d"}
	if ok, why := s.call(token, "jira", "create_issue", args); !ok {
		t.Fatalf("ci bot cannot create an issue before the change: %s", why)
	}
	// Move ci-bot to read_only in the active policy's data.
	b, _ := shipped()
	var data map[string]any
	if err := json.Unmarshal(b.Data, &data); err != nil {
		t.Fatal(err)
	}
	tiers := data["agents"].(map[string]any)["trust_tiers"].(map[string]any)
	tiers["ci_agent"] = []any{}
	tiers["read_only"] = []any{"security-scanner", "ci-bot"}
	changed, _ := json.Marshal(data)
	if _, err := s.registry.SetData(context.Background(), changed, "test"); err != nil {
		t.Fatal(err)
	}
	if ok, why := s.call(token, "jira", "create_issue", args); ok {
		t.Fatal("the same token still writes after ci-bot moved to read_only")
	} else {
		t.Log(why)
	}
}

func TestSingleUseTokenWorksOnce(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("security-scanner", true, "jira:read")
	req := func() int {
		r, _ := http.NewRequest(http.MethodPost, s.base+"/mcp/jira", strings.NewReader(
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"SEC"}}}`))
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := req(); got == http.StatusUnauthorized || got == http.StatusForbidden {
		t.Fatalf("first use: %d", got)
	}
	if got := req(); got != http.StatusUnauthorized {
		t.Fatalf("second use: %d, want 401", got)
	}
}

func (s *stack) waitAudit(f audit.Filter) ([]audit.Record, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, err := s.index.Query(context.Background(), f)
		if err != nil || len(recs) > 0 || time.Now().After(deadline) {
			if err == nil && len(recs) == 0 {
				err = fmt.Errorf("no audit record matches %+v", f)
			}
			return recs, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMetricsExposeDecisionsAndPolicyVersion(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "jira:read")
	if ok, why := s.call(token, "jira", "search_issues", map[string]any{"query": "SEC"}); !ok {
		t.Fatal(why)
	}
	body := s.scrape()
	info, _ := s.registry.Active()
	for _, want := range []string{
		`pbac_decisions_total{decision="allow",method="tools/call"} 1`,
		`pbac_stage_seconds_bucket{stage="policy"`,
		`pbac_policy_version_info{version="` + info.Version + `"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
	// The agents' listener does not serve them (they are the operator's).
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics on the agents' listener: %d, want 404", resp.StatusCode)
	}
}

// scrape reads the gateway's metrics as the admin listener serves them.
func (s *stack) scrape() string {
	rec := httptest.NewRecorder()
	s.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		s.t.Fatalf("metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

// TestStandaloneStreamAndSessionEnd: a client that opens the GET stream
// and ends its session with DELETE works through the gateway, and another
// agent cannot use its session id.
func TestStandaloneStreamAndSessionEnd(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "jira:read")
	other := s.machineAgent("security-scanner", false, "jira:read")
	client := mcp.NewClient(&mcp.Implementation{Name: "stream", Version: "1"}, nil)
	var sid string
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && resp.Header.Get("Mcp-Session-Id") != "" {
			sid = resp.Header.Get("Mcp-Session-Id")
		}
		return resp, err
	})}
	sess, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: s.base + "/mcp/jira", HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.CallTool(context.Background(), &mcp.CallToolParams{Name: "search_issues", Arguments: map[string]any{"query": "SEC"}}); err != nil {
		t.Fatal(err)
	}
	// The same session id with another agent's token is refused.
	req, _ := http.NewRequest(http.MethodPost, s.base+"/mcp/jira", strings.NewReader(`{"jsonrpc":"2.0","id":5,"method":"ping"}`))
	req.Header.Set("Authorization", "Bearer "+other)
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sid == "" || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another agent with session %q: %d, want 403", sid, resp.StatusCode)
	}
	if err := sess.Close(); err != nil {
		t.Fatal(err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
