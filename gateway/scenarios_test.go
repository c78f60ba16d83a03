package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// TestFailureModes: DESIGN.md's five failure modes, each a scenario the
// gateway stops (the fifth, a broad scope persisting, is
// TestPolicyDataChangeAppliesToTheNextCall).
func TestFailureModes(t *testing.T) {
	s := newStack(t)
	all := []string{"drive:read", "drive:write", "jira:read", "jira:write", "gitlab:read", "gitlab:write",
		"gitlab:approve", "jenkins:read", "jenkins:build"}
	dev := s.humanAgent("claude-code", "alice", all...)
	planner := s.humanAgent("claude-code-trusted", "alice", all...)
	ci := s.machineAgent("ci-bot", false, "gitlab:read", "gitlab:write", "jenkins:read", "jenkins:build", "jenkins:deploy")

	for _, tc := range []struct {
		name, token, backend, tool string
		args                       map[string]any
		wantAllowed                bool
		wantReason                 string
	}{
		// The agent is told that the data is protected, not which rule
		// protects it (issue 14, Low #16); a traversal is not even a
		// canonical path (High #2).
		{"1. an agent reads production secrets", dev, "drive", "read_file", map[string]any{"path": "/prod/secrets/db.env"}, false, "protected by policy"},
		{"1. ... through a traversal", planner, "drive", "read_file", map[string]any{"path": "/public/../prod/secrets/db.env"}, false, "not a canonical path"},
		{"1. ... or a Jenkins credential job", dev, "jenkins", "get_build_log", map[string]any{"job": "credentials/aws-rotate"}, false, "protected by policy"},
		// The author of record comes from the token: the gateway fills it in
		// (High #3).
		{"2. the CI bot opens a merge request", ci, "gitlab", "create_merge_request", map[string]any{"project": "platform/api",
			"source_branch": "fix", "target_branch": "main", "title": "fix"}, true, ""},
		{"2. ... but may not approve it", ci, "gitlab", "approve_merge_request", map[string]any{"project": "platform/api", "iid": 7}, false, "separation of duties"},
		{"2. ... and its deploy waits for someone in release", ci, "jenkins", "trigger_deploy", map[string]any{"job": "deploy-prod", "environment": "production"}, false,
			"approval required: deploys need someone from release who is not the requester"},
		{"4. a tool nobody reviewed is denied even for the most trusted tier", planner, "jenkins", "delete_job", map[string]any{"job": "nightly-tests"}, false, "not in the catalogue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := s.call(tc.token, tc.backend, tc.tool, tc.args)
			if ok != tc.wantAllowed || !strings.Contains(why, tc.wantReason) {
				t.Fatalf("allowed=%v (%s), want allowed=%v with %q", ok, why, tc.wantAllowed, tc.wantReason)
			}
		})
	}

	t.Run("3. a scanner token is short-lived", func(t *testing.T) {
		reg, err := oauthtest.Register(context.Background(), s.base, map[string]any{
			"client_name": "scanner", "grant_types": []string{"client_credentials"},
			"token_endpoint_auth_method": "client_secret_basic", "software_statement": s.statement("security-scanner", false)})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := oauthtest.ClientCredentials(context.Background(), s.base, reg["client_id"].(string), reg["client_secret"].(string), s.resource, "jira:read")
		if err != nil {
			t.Fatal(err)
		}
		if life := time.Until(tok.Expiry); life > 300*time.Second {
			t.Fatalf("scanner token lives %v, want at most 300 s", life)
		}
	})
}

// TestDelegatedSubAgent: alice's agent delegates jira:read to a sub-agent
// (RFC 8693); the sub-agent reads Jira, is refused a write, and the audit
// names alice and the delegating agent.
func TestDelegatedSubAgent(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	redirect := "http://127.0.0.1:45002/cb"
	parent, err := oauthtest.Register(ctx, s.base, map[string]any{"client_name": "parent", "redirect_uris": []string{redirect},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", asrv.GrantTypeExchange},
		"software_statement": s.statement("claude-code", false)})
	if err != nil {
		t.Fatal(err)
	}
	child, err := oauthtest.Register(ctx, s.base, map[string]any{"client_name": "child", "redirect_uris": []string{redirect},
		"token_endpoint_auth_method": "none", "software_statement": s.statement("claude-code", false)})
	if err != nil {
		t.Fatal(err)
	}
	parentID, childID := parent["client_id"].(string), child["client_id"].(string)
	tok, err := oauthtest.CodeFlow(ctx, s.base, parentID, redirect, "alice", "demo", s.resource, "jira:read", "jira:write")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(s.base+asrv.PathToken, url.Values{
		"grant_type": {asrv.GrantTypeExchange}, "client_id": {parentID}, "subject_token": {tok.AccessToken},
		"subject_token_type": {asrv.TokenTypeAccess}, "audience": {childID}, "scope": {"jira:read"}})
	if err != nil {
		t.Fatal(err)
	}
	var ex struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&ex)
	resp.Body.Close()
	if ex.AccessToken == "" {
		t.Fatalf("exchange failed: %d", resp.StatusCode)
	}
	if ok, why := s.call(ex.AccessToken, "jira", "search_issues", map[string]any{"query": "SEC"}); !ok {
		t.Fatalf("delegated read refused: %s", why)
	}
	if ok, _ := s.call(ex.AccessToken, "jira", "create_issue", map[string]any{"project": "SEC", "summary": "x"}); ok {
		t.Fatal("delegated token wrote outside its narrowed scope")
	}
	recs, err := s.waitAudit(audit.Filter{ClientID: childID, Decision: "deny", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	var act struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(recs[0].Act, &act)
	if recs[0].Subject != "alice" || act.Sub != parentID {
		t.Fatalf("audit record sub=%q act=%s, want alice and %s", recs[0].Subject, recs[0].Act, parentID)
	}
}

// TestHotSwapUnderConcurrentCalls swaps policy versions while agents call
// through the gateway: no call fails, and every decision is recorded with a
// version that was active.
func TestHotSwapUnderConcurrentCalls(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "jira:read")
	base, _ := shipped()
	var data map[string]any
	if err := json.Unmarshal(base.Data, &data); err != nil {
		t.Fatal(err)
	}
	versions := map[string]bool{}
	if info, ok := s.registry.Active(); ok {
		versions[info.Version] = true
	}
	const workers, calls = 4, 25
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			sess, err := s.connect(token, "jira")
			if err != nil {
				failed.Add(1)
				t.Error(err)
				return
			}
			defer sess.Close()
			for i := range calls {
				res, err := sess.CallTool(context.Background(), &mcp.CallToolParams{Name: "search_issues",
					Arguments: map[string]any{"query": fmt.Sprintf("SEC %d-%d", w, i)}})
				if err != nil || res.IsError {
					failed.Add(1)
				}
			}
		})
	}
	for i := range 10 {
		data["swap_marker"] = i // data that changes the version, not the decisions
		raw, _ := json.Marshal(data)
		info, err := s.registry.SetData(context.Background(), raw, fmt.Sprintf("swap %d", i))
		if err != nil {
			t.Fatal(err)
		}
		versions[info.Version] = true
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d calls failed during hot swaps", n)
	}
	recs, err := s.index.Query(context.Background(), audit.Filter{Tool: "jira.search_issues", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < workers*calls {
		// the trail writes asynchronously; give it a moment
		time.Sleep(500 * time.Millisecond)
		recs, _ = s.index.Query(context.Background(), audit.Filter{Tool: "jira.search_issues", Limit: 1000})
	}
	if len(recs) != workers*calls {
		t.Fatalf("%d audit records, want %d", len(recs), workers*calls)
	}
	for _, r := range recs {
		if !versions[r.PolicyVersion] {
			t.Fatalf("decision recorded with version %q that was never active", r.PolicyVersion)
		}
	}
}

// TestSingleUseTokenIsNotSpentAtTheWrongResource: a single-use token bound
// to /mcp/jira, shown at /mcp/slack, is refused there without being
// consumed, and still works once at Jira.
func TestSingleUseTokenIsNotSpentAtTheWrongResource(t *testing.T) {
	s := newStack(t)
	reg, err := oauthtest.Register(context.Background(), s.base, map[string]any{
		"client_name": "scanner", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "software_statement": s.statement("security-scanner", true)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := oauthtest.ClientCredentials(context.Background(), s.base, reg["client_id"].(string), reg["client_secret"].(string),
		s.base+"/mcp/jira", "jira:read")
	if err != nil {
		t.Fatal(err)
	}
	ping := func(backend string) int {
		req, _ := http.NewRequest(http.MethodPost, s.base+"/mcp/"+backend, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := ping("slack"); got != http.StatusUnauthorized {
		t.Fatalf("at the wrong resource: %d, want 401", got)
	}
	if got := ping("jira"); got == http.StatusUnauthorized {
		t.Fatal("the single-use token was spent at the wrong resource")
	}
	if got := ping("jira"); got != http.StatusUnauthorized {
		t.Fatalf("second use at its resource: %d, want 401", got)
	}
}
