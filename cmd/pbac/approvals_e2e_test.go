package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/rego"
)

// The end-to-end tests of issue 20 drive the real `pbac up` over HTTP on
// 127.0.0.1 with go-sdk clients: the shipped policy holds the CI bot's
// production deploy for someone of release who is not the bot
// (deploy-needs-release) and a developer's DDL for a DBA who is not the
// person the agent acts for (ddl-needs-dba); approvers decide through the
// admin API.

// apDeployArgs is the deploy every test asks for.
var apDeployArgs = map[string]any{"job": "deploy-prod", "environment": "production"}

// apCodeApprovalRequired is the gateway's JSON-RPC error for a held call
// whose client takes no URL elicitation.
const apCodeApprovalRequired = -32010

// apTimeout bounds each test's waits: every MCP call and admin request is
// made under it.
const apTimeout = 2 * time.Minute

// apUp is one running `pbac up` as these tests use it.
type apUp struct {
	base  string // the gateway as clients reach it
	mcp   string // the aggregated endpoint, the tokens' resource
	out   string // what it printed (the demo agents' credentials)
	admin apAdmin
	// mcpConns carries the MCP sessions; its connections are closed
	// before pbac is stopped: a connection the client dialled but never
	// used (net/http does, under concurrent requests) holds the gateway's
	// graceful shutdown for its whole timeout.
	mcpConns *http.Transport
}

// apAdmin is an admin API, every request bounded.
type apAdmin struct {
	base, token string
	client      *http.Client
}

// startApprovalUp runs `pbac up` on dataDir with extra arguments; base is
// where it listens when --listen names the address (the printed gateway
// URL is then the public one).
func startApprovalUp(t *testing.T, dataDir, base string, extra ...string) apUp {
	t.Helper()
	printed, out := startUp(t, dataDir, extra...)
	if base == "" {
		base = printed
	}
	m := adminLine.FindStringSubmatch(out.String())
	tok, err := os.ReadFile(filepath.Join(dataDir, adminTokenFile))
	if m == nil || err != nil || base == "" {
		t.Fatalf("no gateway or admin API in the output, or no admin token (%v):\n%s", err, out)
	}
	conns := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(conns.CloseIdleConnections) // before startUp's: pbac stops after
	return apUp{base: base, mcp: base + "/mcp", out: out.String(), mcpConns: conns,
		admin: apAdmin{base: m[1], token: strings.TrimSpace(string(tok)), client: &http.Client{Timeout: 20 * time.Second}}}
}

func (a apAdmin) do(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	code, raw, err := a.request(method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, raw
}

// request is do for a goroutine that must not stop the test (a client's
// elicitation handler).
func (a apAdmin) request(method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.base+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// decide is approver's decision on approval id through the admin API.
func (a apAdmin) decide(t *testing.T, id, approver, comment string) (int, []byte) {
	t.Helper()
	return a.do(t, http.MethodPost, "/admin/approvals/"+id+"/approve", map[string]string{"approver": approver, "comment": comment})
}

// approve is approver's approval, which must be taken.
func (a apAdmin) approve(t *testing.T, id, approver string) {
	t.Helper()
	if code, body := a.decide(t, id, approver, "approved by the e2e test"); code != http.StatusOK {
		t.Fatalf("%s approving %s: %d %s", approver, id, code, body)
	}
}

func (a apAdmin) approval(t *testing.T, id string) approvals.Approval {
	t.Helper()
	code, body := a.do(t, http.MethodGet, "/admin/approvals/"+id, nil)
	var x approvals.Approval
	if code != http.StatusOK || json.Unmarshal(body, &x) != nil {
		t.Fatalf("GET /admin/approvals/%s: %d %s", id, code, body)
	}
	return x
}

// apRecord is an audit record as the admin API answers it.
type apRecord struct {
	Event      string `json:"event"`
	Method     string `json:"method"`
	Decision   string `json:"decision"`
	Tool       string `json:"tool"`
	ApprovalID string `json:"approval_id"`
	Approver   string `json:"approver"`
	Comment    string `json:"comment"`
}

// audit polls the records of approval id until done says they are all
// there (the audit index is written asynchronously), or fails.
func (a apAdmin) audit(t *testing.T, id string, done func([]apRecord) bool) []apRecord {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := a.do(t, http.MethodGet, "/admin/audit?limit=200&approval_id="+id, nil)
		var out struct {
			Records []apRecord `json:"records"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
			t.Fatalf("GET /admin/audit?approval_id=%s: %d %s", id, code, body)
		}
		if done(out.Records) {
			return out.Records
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit trail of %s is incomplete after 15 s: %+v", id, out.Records)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setRules replaces the active policy data with the shipped data whose
// approval rules edit changed (nil: the shipped data as it is).
func (a apAdmin) setRules(t *testing.T, edit func(rule map[string]any)) {
	t.Helper()
	shipped, err := rego.BuildShipped(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(shipped.Data, &data); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		for _, r := range data["approval_rules"].([]any) {
			edit(r.(map[string]any))
		}
	}
	if code, body := a.do(t, http.MethodPut, "/admin/policy/data", data); code != http.StatusOK {
		t.Fatalf("PUT /admin/policy/data: %d %s", code, body)
	}
}

var apCIBot = regexp.MustCompile(`ci-bot\s+ci-bot\s+client_id=(\S+) client_secret=(\S+)`)

// ciBot is a token of the CI bot pbac up printed, for deploys.
func (u apUp) ciBot(t *testing.T, ctx context.Context) string {
	t.Helper()
	m := apCIBot.FindStringSubmatch(u.out)
	if m == nil {
		t.Fatalf("no ci-bot credentials in the output:\n%s", u.out)
	}
	tok, err := oauthtest.ClientCredentials(ctx, u.base, m[1], m[2], u.mcp, "jenkins:read", "jenkins:build", "jenkins:deploy")
	if err != nil {
		t.Fatalf("the CI bot's token: %v", err)
	}
	return tok.AccessToken
}

// connect opens a go-sdk session on the aggregated endpoint (revision:
// the go-sdk's default when empty).
func (u apUp) connect(t *testing.T, ctx context.Context, token string, opts *mcp.ClientOptions, revision string) *mcp.ClientSession {
	t.Helper()
	var sopts *mcp.ClientSessionOptions
	if revision != "" {
		sopts = &mcp.ClientSessionOptions{ProtocolVersion: revision}
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "pbac-approvals-e2e", Version: "1"}, opts).Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             u.mcp,
		HTTPClient:           &http.Client{Transport: &oauthtest.BearerTransport{Token: token, Base: u.mcpConns}},
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
	}, sopts)
	if err != nil {
		t.Fatalf("connecting to %s: %v", u.mcp, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func apURLCaps() *mcp.ClientCapabilities {
	return &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}}
}

// apManual is a 2026-07-28 client taking URL elicitation whose MRTR the
// test handles by hand.
func apManual() *mcp.ClientOptions {
	return &mcp.ClientOptions{Capabilities: apURLCaps(), MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}}
}

// apID is the approval id an approval page's URL ends in.
func apID(pageURL string) (string, error) {
	id := path.Base(pageURL)
	if !approvals.ValidID(id) {
		return "", fmt.Errorf("the approval URL %q does not end in an approval id", pageURL)
	}
	return id, nil
}

// apDeployed reports whether a tools/call result is the deploy's own: the
// backend started deploy-prod.
func apDeployed(res *mcp.CallToolResult) bool {
	if res == nil || res.IsError || res.NeedsInput() {
		return false
	}
	b, _ := json.Marshal(res.Content)
	return strings.Contains(string(b), "Started deploy-prod #")
}

// apHeld makes a call with MRTR handled by hand, which must be held, and
// returns its approval id and requestState.
func apHeld(t *testing.T, ctx context.Context, cs *mcp.ClientSession, tool string, args map[string]any) (id, state string) {
	t.Helper()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s %v: %v, want held", tool, args, err)
	}
	return apInputRequired(t, res)
}

// apInputRequired reads an input_required result asking to open the
// approval page.
func apInputRequired(t *testing.T, res *mcp.CallToolResult) (id, state string) {
	t.Helper()
	if !res.NeedsInput() {
		b, _ := json.Marshal(res)
		t.Fatalf("the call was not held: %s", b)
	}
	ep, ok := res.InputRequests["pbac_approval"].(*mcp.ElicitParams)
	if !ok || ep.Mode != "url" {
		t.Fatalf("input request = %#v, want a URL elicitation", res.InputRequests["pbac_approval"])
	}
	id, err := apID(ep.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.RequestState, approvals.StatePrefix) {
		t.Fatalf("requestState %q is not the gateway's", res.RequestState)
	}
	return id, res.RequestState
}

// apRetry retries a held call with the approval accepted and state.
func apRetry(ctx context.Context, cs *mcp.ClientSession, tool string, args map[string]any, state string) (*mcp.CallToolResult, error) {
	return cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args, RequestState: state,
		InputResponses: mcp.InputResponseMap{"pbac_approval": &mcp.ElicitResult{Action: "accept"}}})
}

// apFlip changes one base64url character in the middle of a state.
func apFlip(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// lastDeploy is deploy-prod's latest build number at the demo Jenkins:
// the backend's own count of the deploys it ran.
func lastDeploy(t *testing.T, ctx context.Context, cs *mcp.ClientSession) int {
	t.Helper()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "jenkins.list_jobs", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("jenkins.list_jobs: %+v, %v", res, err)
	}
	var out struct {
		Jobs []struct {
			Name      string `json:"name"`
			LastBuild int    `json:"last_build"`
		} `json:"jobs"`
	}
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("jenkins.list_jobs: %s: %v", raw, err)
	}
	for _, j := range out.Jobs {
		if j.Name == "deploy-prod" {
			return j.LastBuild
		}
	}
	t.Fatalf("no deploy-prod in %s", raw)
	return 0
}

// TestUpApprovalMRTR: the CI bot's production deploy, through a default
// go-sdk client (2026-07-28, MRTR handled by the SDK) that takes URL
// elicitation. The gateway answers input_required with the approval page;
// the client's handler has bob (release) approve it through the admin API
// and accepts; the SDK's retry deploys. The approval is then used, bob's,
// through the admin API, and the audit trail tells it as one story.
func TestUpApprovalMRTR(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	ctx, cancel := context.WithTimeout(t.Context(), apTimeout)
	defer cancel()
	up := startApprovalUp(t, t.TempDir(), "")
	const comment = "release window open, ship it"
	var (
		mu    sync.Mutex
		asked []string
	)
	cs := up.connect(t, ctx, up.ciBot(t, ctx), &mcp.ClientOptions{Capabilities: apURLCaps(),
		ElicitationHandler: func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			if req.Params.Mode != "url" {
				return nil, fmt.Errorf("asked in mode %q, want url", req.Params.Mode)
			}
			id, err := apID(req.Params.URL)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			asked = append(asked, id)
			mu.Unlock()
			// The person opens the page; bob approves.
			code, body, err := up.admin.request(http.MethodPost, "/admin/approvals/"+id+"/approve", map[string]string{"approver": "bob", "comment": comment})
			if err != nil || code != http.StatusOK {
				return nil, fmt.Errorf("bob approving %s: %d %s %v", id, code, body, err)
			}
			return &mcp.ElicitResult{Action: "accept"}, nil
		}}, "")
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Fatalf("the session speaks %s, want 2026-07-28", v)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: apDeployArgs})
	if err != nil || !apDeployed(res) {
		t.Fatalf("the approved deploy = %+v, %v; want the deploy's result", res, err)
	}
	mu.Lock()
	ids := slices.Clone(asked)
	mu.Unlock()
	if len(ids) != 1 {
		t.Fatalf("the client was asked %d times (%v), want once", len(ids), ids)
	}
	id := ids[0]

	a := up.admin.approval(t, id)
	if a.Status != approvals.Used || a.Approver == nil || a.Approver.Sub != "bob" || a.Via != approvals.ViaAdmin ||
		a.Comment != comment || a.Tool != "jenkins.trigger_deploy" || a.Rule != "deploy-needs-release" {
		t.Fatalf("GET /admin/approvals/%s = %+v, want used, approved by bob via admin with the comment", id, a)
	}

	// One story: requested, approved (by bob, with the comment), used;
	// the gateway's decisions on the call: held, then allowed.
	has := func(recs []apRecord, event, what string) bool {
		return slices.ContainsFunc(recs, func(r apRecord) bool {
			return r.Event == event && (r.Method == what || r.Decision == what)
		})
	}
	recs := up.admin.audit(t, id, func(recs []apRecord) bool {
		return has(recs, "approval", "approval/requested") && has(recs, "approval", "approval/approved") &&
			has(recs, "approval", "approval/used") && has(recs, "decision", "hold") && has(recs, "decision", "allow")
	})
	for _, r := range recs {
		if r.ApprovalID != id || r.Tool != "jenkins.trigger_deploy" {
			t.Errorf("a record of %s: %+v", id, r)
		}
		if r.Method == "approval/approved" && (r.Approver != "bob" || r.Comment != comment) {
			t.Errorf("the approval step: %+v, want bob's with the comment", r)
		}
	}
	t.Logf("audit of %s: %d records", id, len(recs))
}

// TestUpApprovalRefusals drives the retry by hand (MRTR disabled) against
// the real binary: a tampered requestState, a retry with other arguments,
// self-approval and an approver outside the rule are refused; eight
// concurrent retries of one approval deploy once; a policy change between
// approval and retry holds the call again for a new approval; an expired
// approval allows nothing.
func TestUpApprovalRefusals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	// A retry presenting a pending approval waits this long for it.
	t.Setenv("PBAC_APPROVALS_WAIT", "1s")
	ctx, cancel := context.WithTimeout(t.Context(), apTimeout)
	defer cancel()
	up := startApprovalUp(t, t.TempDir(), "")
	token := up.ciBot(t, ctx)
	cs := up.connect(t, ctx, token, apManual(), "")
	const deploy = "jenkins.trigger_deploy"
	id, state := apHeld(t, ctx, cs, deploy, apDeployArgs)

	t.Run("a tampered or foreign requestState is refused", func(t *testing.T) {
		for _, tc := range []struct {
			name, state string
			args        map[string]any
			want        string
		}{
			{"tampered", apFlip(state), apDeployArgs, "requestState refused"},
			{"truncated", state[:len(state)-4], apDeployArgs, "requestState refused"},
			{"other arguments", state, map[string]any{"job": "deploy-prod", "environment": "staging"}, "another request"},
		} {
			res, err := apRetry(ctx, cs, deploy, tc.args, tc.state)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: retry = %+v, %v; want refused saying %q", tc.name, res, err, tc.want)
			}
		}
		if a := up.admin.approval(t, id); a.Status != approvals.Pending {
			t.Fatalf("after refused retries the approval is %s, want still pending", a.Status)
		}
	})

	t.Run("only release approves the deploy", func(t *testing.T) {
		for _, who := range []string{"carol", "alice"} { // contractor; engineering and dba
			if code, body := up.admin.decide(t, id, who, "let me"); code != http.StatusForbidden {
				t.Errorf("%s approving the CI bot's deploy: %d %s, want 403", who, code, body)
			}
		}
		if a := up.admin.approval(t, id); a.Status != approvals.Pending {
			t.Fatalf("after refused approvers the approval is %s, want pending", a.Status)
		}
	})

	t.Run("alice cannot approve her own agent's DDL", func(t *testing.T) {
		m := regexp.MustCompile(`claude-code\s+claude-code\s+client_id=(\S+)`).FindStringSubmatch(up.out)
		if m == nil {
			t.Fatalf("no claude-code agent in the output:\n%s", up.out)
		}
		tok, err := oauthtest.CodeFlow(ctx, up.base, m[1], "http://127.0.0.1:48001/callback", "alice", "demo", up.mcp, "database:read", "database:ddl")
		if err != nil {
			t.Fatalf("alice's token for claude-code: %v", err)
		}
		alice := up.connect(t, ctx, tok.AccessToken, apManual(), "")
		ddl, _ := apHeld(t, ctx, alice, "database.execute_ddl", map[string]any{"sql": "CREATE TABLE approvals_e2e (id integer)"})
		code, body := up.admin.decide(t, ddl, "alice", "my own change")
		if code != http.StatusForbidden {
			t.Fatalf("alice approving her own agent's DDL: %d %s, want 403", code, body)
		}
		t.Logf("alice refused: %s", bytes.TrimSpace(body))
		if a := up.admin.approval(t, ddl); a.Status != approvals.Pending || a.Rule != "ddl-needs-dba" || a.Subject != "alice" {
			t.Fatalf("alice's agent's DDL approval after her attempt: %+v, want pending under ddl-needs-dba", a)
		}
	})

	t.Run("eight concurrent retries of one approval deploy once", func(t *testing.T) {
		up.admin.approve(t, id, "bob")
		before := lastDeploy(t, ctx, cs)
		const n = 8
		var ok, used atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				<-start
				res, err := apRetry(ctx, cs, deploy, apDeployArgs, state)
				switch {
				case err == nil && apDeployed(res):
					ok.Add(1)
				case err != nil && strings.Contains(err.Error(), "already used"):
					used.Add(1)
				default:
					t.Errorf("a concurrent retry = %+v, %v", res, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if ok.Load() != 1 || used.Load() != n-1 {
			t.Fatalf("of %d concurrent retries %d deployed and %d were refused as used; want 1 and %d", n, ok.Load(), used.Load(), n-1)
		}
		if after := lastDeploy(t, ctx, cs); after != before+1 {
			t.Fatalf("deploy-prod's last build went from %d to %d, want one more", before, after)
		}
		recs := up.admin.audit(t, id, func(recs []apRecord) bool {
			deny := 0
			for _, r := range recs {
				if r.Event == "decision" && r.Decision == "deny" {
					deny++
				}
			}
			return deny >= n-1 && slices.ContainsFunc(recs, func(r apRecord) bool { return r.Method == "approval/used" })
		})
		allows := 0
		for _, r := range recs {
			if r.Event == "decision" && r.Decision == "allow" {
				allows++
			}
		}
		if allows != 1 {
			t.Fatalf("the audit has %d allowed calls with approval %s, want 1", allows, id)
		}
		// And a replay later.
		if res, err := apRetry(ctx, cs, deploy, apDeployArgs, state); err == nil || !strings.Contains(err.Error(), "already used") {
			t.Fatalf("replay = %+v, %v; want refused as already used", res, err)
		}
	})

	t.Run("a policy change between approval and retry decides again", func(t *testing.T) {
		id, state := apHeld(t, ctx, cs, deploy, apDeployArgs)
		up.admin.approve(t, id, "bob")
		up.admin.setRules(t, func(r map[string]any) {
			if r["id"] == "deploy-needs-release" {
				r["approver_groups"] = []any{"dba"}
			}
		})
		defer up.admin.setRules(t, nil)
		res, err := apRetry(ctx, cs, deploy, apDeployArgs, state)
		if err != nil {
			t.Fatalf("retry under the new policy: %v, want held again", err)
		}
		again, _ := apInputRequired(t, res)
		if again == id {
			t.Fatal("held again on the approval the new policy does not accept")
		}
		if a := up.admin.approval(t, id); a.Status != approvals.Void {
			t.Fatalf("bob's approval under the new policy is %s, want void", a.Status)
		}
		if a := up.admin.approval(t, again); a.Status != approvals.Pending || !slices.Equal(a.Approvers.Groups, []string{"dba"}) {
			t.Fatalf("the new approval = %+v, want pending for dba", a)
		}
	})

	t.Run("an expired approval allows nothing", func(t *testing.T) {
		up.admin.setRules(t, func(r map[string]any) { r["ttl_seconds"] = 1 })
		defer up.admin.setRules(t, nil)
		args := map[string]any{"job": "deploy-prod", "environment": "staging"}
		id, state := apHeld(t, ctx, cs, deploy, args)
		switch code, body := up.admin.decide(t, id, "bob", "too late"); code {
		case http.StatusOK:
		case http.StatusGone: // a machine so slow the second passed already
			t.Logf("the approval expired before bob approved: %s", body)
		default:
			t.Fatalf("bob approving %s: %d %s", id, code, body)
		}
		time.Sleep(1500 * time.Millisecond)
		if res, err := apRetry(ctx, cs, deploy, args, state); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("retry after the approval expired = %+v, %v; want refused as expired", res, err)
		}
	})
}

// TestUpApprovalElicitation20251125: a 2025-11-25 session that declared
// URL elicitation is answered -32042 naming the approval page; once bob
// approved through the admin API the same call goes through. A client
// that takes no elicitation, on either revision, gets -32010 with the
// approval's URL, and the same once approved.
func TestUpApprovalElicitation20251125(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	ctx, cancel := context.WithTimeout(t.Context(), apTimeout)
	defer cancel()
	up := startApprovalUp(t, t.TempDir(), "")
	token := up.ciBot(t, ctx)
	call := func(cs *mcp.ClientSession) (*mcp.CallToolResult, error) {
		return cs.CallTool(ctx, &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: apDeployArgs})
	}

	t.Run("URL elicitation", func(t *testing.T) {
		cs := up.connect(t, ctx, token, &mcp.ClientOptions{Capabilities: apURLCaps()}, "2025-11-25")
		if v := cs.InitializeResult().ProtocolVersion; v != "2025-11-25" {
			t.Fatalf("the session speaks %s, want 2025-11-25", v)
		}
		res, err := call(cs)
		var we *jsonrpc.Error
		if !errors.As(err, &we) || we.Code != mcp.CodeURLElicitationRequired {
			t.Fatalf("the held call = %+v, %v; want -32042", res, err)
		}
		var data struct {
			Elicitations []struct {
				Mode          string `json:"mode"`
				ElicitationID string `json:"elicitationId"`
				URL           string `json:"url"`
			} `json:"elicitations"`
		}
		if err := json.Unmarshal(we.Data, &data); err != nil || len(data.Elicitations) != 1 {
			t.Fatalf("-32042 data %s: %v", we.Data, err)
		}
		e := data.Elicitations[0]
		id, err := apID(e.URL)
		if err != nil || e.Mode != "url" || e.ElicitationID != id || !strings.HasPrefix(e.URL, up.admin.base+"/ui/approvals/") {
			t.Fatalf("elicitation %+v (%v), want the approval page on the admin listener", e, err)
		}
		up.admin.approve(t, id, "bob")
		if res, err := call(cs); err != nil || !apDeployed(res) {
			t.Fatalf("the same call once approved = %+v, %v; want the deploy", res, err)
		}
		if a := up.admin.approval(t, id); a.Status != approvals.Used {
			t.Fatalf("the approval after the call is %s, want used", a.Status)
		}
	})

	for _, revision := range []string{"2025-11-25", "2026-07-28"} {
		t.Run("no elicitation on "+revision, func(t *testing.T) {
			cs := up.connect(t, ctx, token, nil, revision)
			res, err := call(cs)
			var we *jsonrpc.Error
			if !errors.As(err, &we) || we.Code != apCodeApprovalRequired {
				t.Fatalf("the held call = %+v, %v; want %d", res, err, apCodeApprovalRequired)
			}
			var data struct {
				Approval struct {
					ID     string `json:"id"`
					URL    string `json:"url"`
					Status string `json:"status"`
				} `json:"approval"`
			}
			if err := json.Unmarshal(we.Data, &data); err != nil {
				t.Fatalf("%d data %s: %v", apCodeApprovalRequired, we.Data, err)
			}
			id, err := apID(data.Approval.URL)
			if err != nil || id != data.Approval.ID || data.Approval.Status != "pending" || !strings.Contains(we.Message, data.Approval.URL) {
				t.Fatalf("error %q data %s (%v): want the pending approval's URL", we.Message, we.Data, err)
			}
			up.admin.approve(t, id, "bob")
			if res, err := call(cs); err != nil || !apDeployed(res) {
				t.Fatalf("the same call once approved = %+v, %v; want the deploy", res, err)
			}
		})
	}
}

// TestApprovalsAcrossReplicas: two `pbac up` replicas, each with the
// authorization server in process, on one PostgreSQL store (tokens,
// policy, approvals) and one requestState key
// (PBAC_APPROVALS_STATE_KEY_FILE), behind one public name. The CI bot's
// deploy is held on replica A, approved through replica B's admin API,
// and the retry with A's requestState goes through on B; the same retry
// on A is then refused as used.
func TestApprovalsAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dsn := pgE2EDSN(t, "pw-approvals-across-replicas")
	ctx, cancel := context.WithTimeout(t.Context(), apTimeout)
	defer cancel()
	t.Setenv("PBAC_APPROVALS_STATE_KEY_FILE", filepath.Join(t.TempDir(), "approval-state.key"))
	// The load balancer's name: the issuer, and the tokens' resource on both.
	const public = "https://gateway.pbac.test"
	t.Setenv("PBAC_PUBLIC_URL", public)

	dirA, dirB := t.TempDir(), t.TempDir()
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := startApprovalUp(t, dirA, "http://"+addrA, "--listen", addrA, "--store", dsn)
	// Both replicas sign tokens with one secret, as one AS would: B starts
	// with A's.
	secret, err := os.ReadFile(filepath.Join(dirA, "token-secret"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "token-secret"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startApprovalUp(t, dirB, "http://"+addrB, "--listen", addrB, "--store", dsn)
	a.mcp, b.mcp = a.base+"/mcp", b.base+"/mcp"

	// A's CI bot, its token asked of A for the public resource.
	m := apCIBot.FindStringSubmatch(a.out)
	if m == nil {
		t.Fatalf("no ci-bot credentials in A's output:\n%s", a.out)
	}
	tok, err := oauthtest.ClientCredentials(ctx, a.base, m[1], m[2], public+"/mcp", "jenkins:read", "jenkins:build", "jenkins:deploy")
	if err != nil {
		t.Fatalf("the CI bot's token: %v", err)
	}
	onA := a.connect(t, ctx, tok.AccessToken, apManual(), "")
	onB := b.connect(t, ctx, tok.AccessToken, apManual(), "")

	id, state := apHeld(t, ctx, onA, "jenkins.trigger_deploy", apDeployArgs)
	if x := b.admin.approval(t, id); x.Status != approvals.Pending {
		t.Fatalf("B sees A's approval as %s, want pending", x.Status)
	}
	b.admin.approve(t, id, "bob")
	before := lastDeploy(t, ctx, onB)
	if res, err := apRetry(ctx, onB, "jenkins.trigger_deploy", apDeployArgs, state); err != nil || !apDeployed(res) {
		t.Fatalf("the retry on B with A's requestState = %+v, %v; want the deploy", res, err)
	}
	if after := lastDeploy(t, ctx, onB); after != before+1 {
		t.Fatalf("B's deploy-prod went from build %d to %d, want one more", before, after)
	}
	if res, err := apRetry(ctx, onA, "jenkins.trigger_deploy", apDeployArgs, state); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("the replay on A = %+v, %v; want refused as already used", res, err)
	}
	if x := a.admin.approval(t, id); x.Status != approvals.Used || x.Approver == nil || x.Approver.Sub != "bob" {
		t.Fatalf("A sees the approval as %+v, want used, bob's", x)
	}
}
