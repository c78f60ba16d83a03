package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	system "github.com/pbac-gateway/pbac/internal/stack"
)

// The shipped policy holds the CI bot's production deploy for someone of
// release who is not the bot (rule deploy-needs-release).
var (
	deployArgs  = map[string]any{"job": "deploy-prod", "environment": "production"}
	bob         = approvals.Person{Sub: "bob", Roles: []string{"analytics", "release"}}
	notApprover = approvals.Person{Sub: "carol", Roles: []string{"engineering"}}
)

// approvalStack is the stack with its approvals service at hand.
type approvalStack struct {
	*stack
	svc *approvals.Service
}

func newApprovalStack(t *testing.T, wait time.Duration) approvalStack {
	t.Helper()
	var st *system.Stack
	s := newStackWith(t, stackOptions{config: func(c *system.Config) {
		c.Gateway.Approvals.Wait = wait
	}, captured: &st})
	return approvalStack{stack: s, svc: st.Approvals()}
}

// ciBot is a machine agent of tier ci_agent that may trigger deploys.
func (s approvalStack) ciBot() string {
	return s.machineAgent("ci-bot", false, "jenkins:read", "jenkins:build", "jenkins:deploy")
}

// session connects to the aggregated /mcp with opts.
func (s approvalStack) session(t *testing.T, token string, opts *mcp.ClientOptions, version string) *mcp.ClientSession {
	t.Helper()
	return s.sessionAt(t, "/mcp", token, opts, version)
}

// sessionAt connects to the gateway's endpoint (/mcp, /mcp/<backend>).
func (s approvalStack) sessionAt(t *testing.T, endpoint, token string, opts *mcp.ClientOptions, version string) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "pbac-approval-test", Version: "1"}, opts)
	var sopts *mcp.ClientSessionOptions
	if version != "" {
		sopts = &mcp.ClientSessionOptions{ProtocolVersion: version}
	}
	cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint:             s.base + endpoint,
		HTTPClient:           &http.Client{Transport: &oauthtest.BearerTransport{Token: token}},
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
	}, sopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func urlCaps() *mcp.ClientCapabilities {
	return &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}}
}

// approvalID is the id at the end of an approval page's URL.
func approvalID(t *testing.T, pageURL string) string {
	t.Helper()
	id := path.Base(pageURL)
	if !approvals.ValidID(id) {
		t.Fatalf("the approval URL %q does not end in an approval id", pageURL)
	}
	return id
}

func (s approvalStack) approve(t *testing.T, id string, p approvals.Person) {
	t.Helper()
	if _, err := s.svc.Decide(context.Background(), id, p, approvals.ViaDashboard, true, "ok from the test"); err != nil {
		t.Fatalf("%s approving %s: %v", p.Sub, id, err)
	}
}

// deployed reports whether a tools/call result is the deploy's own.
func deployed(res *mcp.CallToolResult) bool {
	if res == nil || res.IsError || res.NeedsInput() {
		return false
	}
	b, _ := json.Marshal(res.Content)
	return strings.Contains(string(b), "deploy-prod")
}

// held makes the call with MRTR handled by hand and returns its
// input_required result's URL and requestState.
func held(t *testing.T, cs *mcp.ClientSession, args map[string]any) (pageURL, state string) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: args})
	if err != nil {
		t.Fatalf("the held call: %v", err)
	}
	if !res.NeedsInput() {
		t.Fatalf("the deploy was not held: %+v", res)
	}
	ep, ok := res.InputRequests["pbac_approval"].(*mcp.ElicitParams)
	if !ok || ep.Mode != "url" || ep.URL == "" {
		t.Fatalf("input request = %#v, want a URL elicitation", res.InputRequests["pbac_approval"])
	}
	if !strings.HasPrefix(res.RequestState, approvals.StatePrefix) {
		t.Fatalf("requestState %q is not the gateway's", res.RequestState)
	}
	return ep.URL, res.RequestState
}

func retry(cs *mcp.ClientSession, args map[string]any, state string) (*mcp.CallToolResult, error) {
	return cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: args,
		InputResponses: mcp.InputResponseMap{"pbac_approval": &mcp.ElicitResult{Action: "accept"}}, RequestState: state})
}

// TestHoldMRTRURL: a 2026-07-28 client that takes URL elicitation is
// asked to open the approval page; the go-sdk's own MRTR handling retries,
// and once bob (release) approved, the deploy goes through, once.
func TestHoldMRTRURL(t *testing.T) {
	s := newApprovalStack(t, 5*time.Second)
	var asked atomic.Int32
	var pages []string
	var mu sync.Mutex
	cs := s.session(t, s.ciBot(), &mcp.ClientOptions{Capabilities: urlCaps(),
		ElicitationHandler: func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			asked.Add(1)
			if req.Params.Mode != "url" {
				return nil, fmt.Errorf("asked in mode %q", req.Params.Mode)
			}
			mu.Lock()
			pages = append(pages, req.Params.URL)
			mu.Unlock()
			// The person opens the page and bob approves there.
			s.approve(t, approvalID(t, req.Params.URL), bob)
			return &mcp.ElicitResult{Action: "accept"}, nil
		}}, "")
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: deployArgs})
	if err != nil {
		t.Fatal(err)
	}
	if !deployed(res) {
		t.Fatalf("the approved deploy did not run: %+v", res)
	}
	// The gateway's metrics count the decision and what it took.
	m := s.scrape()
	for _, want := range []string{"pbac_approvals_pending 0", `pbac_approval_decision_seconds_count{outcome="approved"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if asked.Load() != 1 {
		t.Fatalf("the client was asked %d times, want once", asked.Load())
	}
	a, err := s.svc.Get(context.Background(), approvalID(t, pages[0]))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != approvals.Used || a.Approver.Sub != "bob" || a.Tool != "jenkins.trigger_deploy" {
		t.Fatalf("approval after the call = %+v, want used, approved by bob", a)
	}
	// The gateway's records of the call and the approval's steps are one
	// story: the same approval id and arguments digest.
	var recs []audit.Record
	for deadline := time.Now().Add(5 * time.Second); len(recs) < 5 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if recs, err = s.index.Query(context.Background(), audit.Filter{ApprovalID: a.ID, Limit: 100}); err != nil {
			t.Fatal(err)
		}
	}
	kinds := map[string]bool{}
	for _, r := range recs {
		kinds[r.Kind()+" "+r.Method+" "+r.Decision] = true
		if r.ArgsDigest != a.ArgsDigest {
			t.Errorf("record %s %s has args digest %s, the approval %s", r.Kind(), r.Method, r.ArgsDigest, a.ArgsDigest)
		}
	}
	for _, want := range []string{"decision tools/call hold", "approval approval/requested allow", "approval approval/approved allow",
		"approval approval/used allow", "decision tools/call allow"} {
		if !kinds[want] {
			t.Errorf("the approval's story lacks %q: %v", want, kinds)
		}
	}
	// The same call again is a new call: held again, for a new approval.
	cs2 := s.session(t, s.ciBot(), &mcp.ClientOptions{Capabilities: urlCaps(), MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}}, "")
	page, _ := held(t, cs2, deployArgs)
	if approvalID(t, page) == a.ID {
		t.Fatal("a used approval was offered again")
	}
}

// TestRetryRefusals drives the retry by hand: a tampered or foreign
// requestState, other arguments, a replay, an approval by someone not
// entitled, and concurrent retries of one approval (exactly one deploys).
func TestRetryRefusals(t *testing.T) {
	s := newApprovalStack(t, 300*time.Millisecond)
	token := s.ciBot()
	manual := &mcp.ClientOptions{Capabilities: urlCaps(), MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}}
	cs := s.session(t, token, manual, "")
	page, state := held(t, cs, deployArgs)
	id := approvalID(t, page)
	if m := s.scrape(); !strings.Contains(m, "pbac_approvals_pending 1") {
		t.Errorf("metrics while the deploy waits lack pbac_approvals_pending 1")
	}

	// Still pending: the retry waits (Wait) and is asked again, with the
	// same approval.
	res, err := retry(cs, deployArgs, state)
	if err != nil || !res.NeedsInput() {
		t.Fatalf("a retry before anyone approved = %+v, %v; want input_required again", res, err)
	}
	if again := res.InputRequests["pbac_approval"].(*mcp.ElicitParams).URL; again != page {
		t.Fatalf("asked again for %s, want the same approval %s", again, page)
	}

	for _, tc := range []struct {
		name  string
		args  map[string]any
		state string
		want  string
	}{
		{"tampered", deployArgs, flip(state, len(state)/2), "requestState refused"},
		{"truncated", deployArgs, state[:len(state)-3], "requestState refused"},
		{"other arguments", map[string]any{"job": "deploy-prod", "environment": "staging"}, state, "another request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := retry(cs, tc.args, tc.state)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("retry = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	// Another agent cannot use the state either.
	other := s.session(t, s.ciBot(), manual, "")
	if _, err := retry(other, deployArgs, state); err == nil || !strings.Contains(err.Error(), "another request") {
		t.Fatalf("another agent's retry with the state = %v, want refused", err)
	}

	if _, err := s.svc.Decide(context.Background(), id, notApprover, approvals.ViaDashboard, true, ""); !errors.Is(err, approvals.ErrNotApprover) {
		t.Fatalf("carol (engineering) approving = %v, want ErrNotApprover", err)
	}
	s.approve(t, id, bob)

	// Eight concurrent retries with the one approval: one deploys.
	const n = 8
	var ok, used atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			cs := s.session(t, token, manual, "")
			res, err := retry(cs, deployArgs, state)
			switch {
			case err == nil && deployed(res):
				ok.Add(1)
			case err != nil && strings.Contains(err.Error(), "already used"):
				used.Add(1)
			default:
				t.Errorf("a concurrent retry = %+v, %v", res, err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || used.Load() != n-1 {
		t.Fatalf("of %d concurrent retries %d deployed and %d were refused as used; want 1 and %d", n, ok.Load(), used.Load(), n-1)
	}
	// And later, a replay.
	if _, err := retry(cs, deployArgs, state); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("replay = %v, want already used", err)
	}
}

func flip(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// TestHoldElicitation20251125: a 2025-11-25 session that declared URL
// elicitation gets URLElicitationRequiredError (-32042); the same call,
// once approved, goes through.
func TestHoldElicitation20251125(t *testing.T) {
	s := newApprovalStack(t, 0)
	cs := s.session(t, s.ciBot(), &mcp.ClientOptions{Capabilities: urlCaps()}, "2025-11-25")
	_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: deployArgs})
	var we *jsonrpc.Error
	if !errors.As(err, &we) || we.Code != mcp.CodeURLElicitationRequired {
		t.Fatalf("held call = %v, want -32042", err)
	}
	var data struct {
		Elicitations []struct {
			Mode, ElicitationID, URL, Message string
		} `json:"elicitations"`
	}
	if err := json.Unmarshal(we.Data, &data); err != nil || len(data.Elicitations) != 1 {
		t.Fatalf("error data %s: %v", we.Data, err)
	}
	e := data.Elicitations[0]
	if e.Mode != "url" || e.ElicitationID != approvalID(t, e.URL) {
		t.Fatalf("elicitation = %+v", e)
	}
	// Before anyone approves, the call is held again, on the same approval.
	_, err = cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: deployArgs})
	if !errors.As(err, &we) || !strings.Contains(string(we.Data), e.ElicitationID) {
		t.Fatalf("second call before approval = %v, want -32042 for %s", err, e.ElicitationID)
	}
	s.approve(t, e.ElicitationID, bob)
	// Other arguments are another call: still held.
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy",
		Arguments: map[string]any{"job": "deploy-prod", "environment": "staging"}}); !errors.As(err, &we) || we.Code != mcp.CodeURLElicitationRequired {
		t.Fatalf("a call with other arguments after the approval = %v, want held", err)
	}
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: deployArgs})
	if err != nil || !deployed(res) {
		t.Fatalf("the approved call = %+v, %v", res, err)
	}
}

// TestHoldFallbackError: a client that takes no URL elicitation (either
// revision) gets a JSON-RPC error naming the approval page.
func TestHoldFallbackError(t *testing.T) {
	s := newApprovalStack(t, 0)
	for _, tc := range []struct {
		version string
		caps    *mcp.ClientCapabilities
	}{
		{"2025-11-25", nil}, {"2026-07-28", nil},
		// URL elicitation came with 2025-11-25: a session of an earlier
		// revision that declares it (Codex does) is not sent -32042.
		{"2025-06-18", urlCaps()},
	} {
		version := tc.version
		t.Run(version, func(t *testing.T) {
			var opts *mcp.ClientOptions
			if tc.caps != nil {
				opts = &mcp.ClientOptions{Capabilities: tc.caps}
			}
			cs := s.session(t, s.ciBot(), opts, version)
			_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: deployArgs})
			var we *jsonrpc.Error
			if !errors.As(err, &we) || we.Code != -32010 {
				t.Fatalf("held call = %v, want -32010", err)
			}
			var data struct {
				Approval struct {
					ID, URL, Status   string
					RetryAfterSeconds int `json:"retry_after_seconds"`
				} `json:"approval"`
			}
			if err := json.Unmarshal(we.Data, &data); err != nil || data.Approval.ID != approvalID(t, data.Approval.URL) ||
				data.Approval.Status != "pending" || !strings.Contains(we.Message, data.Approval.URL) {
				t.Fatalf("error %q data %s: %v", we.Message, we.Data, err)
			}
			s.approve(t, data.Approval.ID, bob)
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: deployArgs})
			if err != nil || !deployed(res) {
				t.Fatalf("the approved call = %+v, %v", res, err)
			}
		})
	}
}

// TestRetryPolicyChanged: the policy changes between the approval and
// the retry. The retry is decided again: when the new policy wants
// another approver, the old approval is void and the call held anew; when
// it denies the call, it is denied.
func TestRetryPolicyChanged(t *testing.T) {
	s := newApprovalStack(t, 0)
	manual := &mcp.ClientOptions{Capabilities: urlCaps(), MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}}
	cs := s.session(t, s.ciBot(), manual, "")
	page, state := held(t, cs, deployArgs)
	id := approvalID(t, page)
	s.approve(t, id, bob)
	s.editData(t, func(d map[string]any) {
		for _, r := range d["approval_rules"].([]any) {
			if r := r.(map[string]any); r["id"] == "deploy-needs-release" {
				r["approver_groups"] = []any{"dba"}
			}
		}
	})
	res, err := retry(cs, deployArgs, state)
	if err != nil || !res.NeedsInput() {
		t.Fatalf("retry under the new policy = %+v, %v; want held again", res, err)
	}
	if again := approvalID(t, res.InputRequests["pbac_approval"].(*mcp.ElicitParams).URL); again == id {
		t.Fatal("held again on the approval the new policy does not accept")
	}
	if a, _ := s.svc.Get(context.Background(), id); a.Status != approvals.Void {
		t.Fatalf("bob's approval under the new policy is %s, want void", a.Status)
	}
}

// TestSelfApprovalRefused: alice's agent's DDL waits for a DBA; alice is
// one, but not for her own agent's call.
func TestSelfApprovalRefused(t *testing.T) {
	s := newApprovalStack(t, 0)
	token := s.humanAgent("claude-code", "alice")
	cs := s.session(t, token, &mcp.ClientOptions{Capabilities: urlCaps(), MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}}, "")
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "database.execute_ddl",
		Arguments: map[string]any{"statement": "CREATE INDEX orders_created ON orders (created_at)"}})
	if err != nil || !res.NeedsInput() {
		t.Fatalf("alice's agent's DDL = %+v, %v; want held", res, err)
	}
	id := approvalID(t, res.InputRequests["pbac_approval"].(*mcp.ElicitParams).URL)
	alice := approvals.Person{Sub: "alice", Roles: []string{"engineering", "dba"}}
	if _, err := s.svc.Decide(context.Background(), id, alice, approvals.ViaDashboard, true, "mine"); !errors.Is(err, approvals.ErrSelfApproval) {
		t.Fatalf("alice approving her own agent's DDL = %v, want ErrSelfApproval", err)
	}
	if _, err := s.svc.Decide(context.Background(), id, approvals.Person{Sub: " ALICE ", Roles: []string{"dba"}}, approvals.ViaDashboard, true, ""); !errors.Is(err, approvals.ErrSelfApproval) {
		t.Fatalf("alice spelled otherwise = %v, want ErrSelfApproval", err)
	}
}

// editData changes the active policy's data.
func (s *stack) editData(t *testing.T, edit func(map[string]any)) {
	t.Helper()
	_, err := s.registry.UpdateData(context.Background(), func(active []byte) ([]byte, error) {
		var d map[string]any
		if err := json.Unmarshal(active, &d); err != nil {
			return nil, err
		}
		edit(d)
		return json.Marshal(d)
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
}

// TestExpiredApprovalRefused: an approval unused past its time allows
// nothing, and its requestState is refused.
func TestExpiredApprovalRefused(t *testing.T) {
	s := newApprovalStack(t, 0)
	s.editData(t, func(d map[string]any) {
		for _, r := range d["approval_rules"].([]any) {
			r.(map[string]any)["ttl_seconds"] = 1
		}
	})
	cs := s.session(t, s.ciBot(), &mcp.ClientOptions{Capabilities: urlCaps(), MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}}, "")
	page, state := held(t, cs, deployArgs)
	s.approve(t, approvalID(t, page), bob)
	time.Sleep(1200 * time.Millisecond)
	if _, err := retry(cs, deployArgs, state); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("retry after the approval expired = %v, want refused as expired", err)
	}
}

// TestHoldPerBackendEndpoint: the same on a backend's own endpoint, on
// both revisions; the backend never sees the gateway's requestState or
// its input request's answer (a go-sdk server would refuse a state it did
// not issue).
func TestHoldPerBackendEndpoint(t *testing.T) {
	s := newApprovalStack(t, 5*time.Second)
	for _, version := range []string{"2026-07-28", "2025-11-25"} {
		t.Run(version, func(t *testing.T) {
			var asked atomic.Int32
			cs := s.sessionAt(t, "/mcp/jenkins", s.ciBot(), &mcp.ClientOptions{Capabilities: urlCaps(),
				ElicitationHandler: func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
					asked.Add(1)
					s.approve(t, approvalID(t, req.Params.URL), bob)
					return &mcp.ElicitResult{Action: "accept"}, nil
				}}, version)
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "trigger_deploy", Arguments: deployArgs})
			// The revision is the backend's to choose on its own
			// endpoint: a session of 2025-11-25 is answered -32042.
			var we *jsonrpc.Error
			if errors.As(err, &we) && we.Code == mcp.CodeURLElicitationRequired {
				// The go-sdk does not retry after -32042: the test does,
				// as the person would after approving.
				var data struct {
					Elicitations []struct{ ElicitationID string } `json:"elicitations"`
				}
				if err := json.Unmarshal(we.Data, &data); err != nil || len(data.Elicitations) != 1 {
					t.Fatalf("error data %s: %v", we.Data, err)
				}
				s.approve(t, data.Elicitations[0].ElicitationID, bob)
				res, err = cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "trigger_deploy", Arguments: deployArgs})
			} else if version == "2025-11-25" {
				t.Fatalf("held call on 2025-11-25 = %+v, %v; want -32042", res, err)
			} else if asked.Load() != 1 {
				t.Fatalf("asked %d times, want once (%+v, %v)", asked.Load(), res, err)
			}
			t.Logf("revision %s", cs.InitializeResult().ProtocolVersion)
			if err != nil || !deployed(res) {
				t.Fatalf("the approved deploy = %+v, %v", res, err)
			}
		})
	}
}

// TestDeclineAfterGrant: the person declines in the client after an
// approver granted the call: the call does not run.
func TestDeclineAfterGrant(t *testing.T) {
	s := newApprovalStack(t, 0)
	cs := s.session(t, s.ciBot(), &mcp.ClientOptions{Capabilities: urlCaps(), MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}}, "")
	page, state := held(t, cs, deployArgs)
	id := approvalID(t, page)
	s.approve(t, id, bob)
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: deployArgs,
		InputResponses: mcp.InputResponseMap{"pbac_approval": &mcp.ElicitResult{Action: "decline"}}, RequestState: state})
	if !refused(res, err, "declined") {
		t.Fatalf("declined retry = %+v, %v; want a denial saying so", res, err)
	}
	if a, _ := s.svc.Get(context.Background(), id); a.Status != approvals.Withdrawn {
		t.Fatalf("the approval after the decline is %s, want withdrawn", a.Status)
	}
	// Accepting after that is a new call: held again, for a new approval.
	res, err = retry(cs, deployArgs, state)
	if err != nil || !res.NeedsInput() || approvalID(t, res.InputRequests["pbac_approval"].(*mcp.ElicitParams).URL) == id {
		t.Fatalf("accept after the decline = %+v, %v; want held for a new approval", res, err)
	}
}

// TestDeniedCallNotAskedAgain: after bob denies, the same call is refused
// with his reason, not held for a new approval.
func TestDeniedCallNotAskedAgain(t *testing.T) {
	s := newApprovalStack(t, 0)
	cs := s.session(t, s.ciBot(), &mcp.ClientOptions{Capabilities: urlCaps(), MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}}, "")
	page, state := held(t, cs, deployArgs)
	if _, err := s.svc.Decide(context.Background(), approvalID(t, page), bob, approvals.ViaDashboard, false, "change freeze"); err != nil {
		t.Fatal(err)
	}
	if res, err := retry(cs, deployArgs, state); !refused(res, err, "change freeze") {
		t.Fatalf("retry after the denial = %+v, %v; want denied with bob's comment", res, err)
	}
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: deployArgs})
	if !refused(res, err, "denied it") || !refused(res, err, "change freeze") {
		t.Fatalf("the same call again = %+v, %v; want refused, naming the denial", res, err)
	}
}

// refused reports whether a call was denied, as denials are answered by
// default (a tool result with isError), saying want.
func refused(res *mcp.CallToolResult, err error, want string) bool {
	return err == nil && res != nil && res.IsError && strings.Contains(demo.ResultText(res), want)
}

// TestCancelKeepsTheApprovalPending: a client that dismisses the request
// without a choice (a headless one does so at once) leaves the approval
// pending and is told where it is; once approved, the same call made
// again goes through.
func TestCancelKeepsTheApprovalPending(t *testing.T) {
	s := newApprovalStack(t, 0)
	cs := s.session(t, s.ciBot(), &mcp.ClientOptions{Capabilities: urlCaps(), MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}}, "")
	page, state := held(t, cs, deployArgs)
	_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: deployArgs,
		InputResponses: mcp.InputResponseMap{"pbac_approval": &mcp.ElicitResult{Action: "cancel"}}, RequestState: state})
	var we *jsonrpc.Error
	if !errors.As(err, &we) || we.Code != -32010 || !strings.Contains(we.Message, page) {
		t.Fatalf("cancelled retry = %v, want -32010 naming %s", err, page)
	}
	if a, _ := s.svc.Get(context.Background(), approvalID(t, page)); a.Status != approvals.Pending {
		t.Fatalf("the approval after a cancel is %s, want still pending", a.Status)
	}
	s.approve(t, approvalID(t, page), bob)
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "jenkins.trigger_deploy", Arguments: deployArgs})
	if err != nil || !deployed(res) {
		t.Fatalf("the same call after the approval = %+v, %v", res, err)
	}
}
