package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/approvals"
	apbadger "github.com/pbac-gateway/pbac/approvals/store/badger"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/identity/usersfile"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
)

const approvalsTestToken = "admin-token-for-approvals-0123"

// testClock is a clock the test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// approvalsFixture is the admin API over a Service on an in-memory Badger
// store, with the audit records it wrote.
type approvalsFixture struct {
	t     *testing.T
	svc   *approvals.Service
	clock *testClock
	api   http.Handler
	reg   *plugins.Registry

	mu      sync.Mutex
	records []audit.Record
}

func (f *approvalsFixture) Record(r audit.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = append(f.records, r)
}

func (f *approvalsFixture) steps(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.records {
		if r.ApprovalID == id {
			out = append(out, r.Method)
		}
	}
	return out
}

func newApprovalsFixture(t *testing.T, users asrv.UserSource, sso bool) *approvalsFixture {
	t.Helper()
	store, err := apbadger.Open(t.Context(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	key, err := approvals.LoadOrCreateStateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &approvalsFixture{t: t, clock: &testClock{now: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)}, reg: policytest.Registry(t)}
	f.svc, err = approvals.New(approvals.Config{Store: store, Key: key, Audit: f, PageURL: "http://127.0.0.1:8081/ui/approvals/", Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.api, err = New(Config{Token: approvalsTestToken, Registry: f.reg, Approvals: f.svc, Approvers: users, ApproversSSO: sso})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// ask holds a call of alice's agent to deploy, for someone of groups who
// is not alice.
func (f *approvalsFixture) ask(args string, groups ...string) approvals.Approval {
	f.t.Helper()
	a, created, err := f.svc.Ask(f.t.Context(), approvals.Request{
		Call:      approvals.Call{ClientID: "ci-bot", Subject: "alice", Method: "tools/call", Tool: "jenkins.trigger_deploy", Arguments: []byte(args)},
		RequestID: "req-1", AgentProvider: "acme", Tier: "ci_agent", PolicyVersion: "v1",
		Asked: contract.Approval{Required: true, Rule: "deploy-needs-release", Reason: "production deploys need a release manager",
			Approvers: contract.Approvers{Groups: groups, Not: []string{"alice"}}, TTLSeconds: 600},
	})
	if err != nil || !created {
		f.t.Fatalf("ask: %v (created %v)", err, created)
	}
	return a
}

func (f *approvalsFixture) do(method, path, body string) (int, map[string]any) {
	f.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+approvalsTestToken)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	f.api.ServeHTTP(rec, req)
	out := map[string]any{}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		f.t.Fatalf("%s %s: not a JSON object: %q", method, path, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		f.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	return rec.Code, out
}

// fileUsers is a users file of people in groups, each with the password
// "secret-password".
func fileUsers(t *testing.T, people map[string][]string) asrv.UserSource {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.yaml")
	cheap := usersfile.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	for name, groups := range people {
		e, err := usersfile.NewEntry(name, groups, []byte("secret-password"), cheap)
		if err != nil {
			t.Fatal(err)
		}
		if err := usersfile.Append(path, e); err != nil {
			t.Fatal(err)
		}
	}
	u, err := usersfile.Open(path, usersfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return asrv.PasswordUsers(u)
}

// TestAdminApprove: an approval is decided through the admin API in the
// name of a person the password source knows, checked against the
// approver rule with their groups and the roles the active data gives
// them; every refusal has its status and says why.
func TestAdminApprove(t *testing.T) {
	f := newApprovalsFixture(t, asrv.DemoUsers{}, false)
	const ok, forbidden, conflict, gone, notFound, bad = 200, 403, 409, 410, 404, 400
	for _, tc := range []struct {
		name   string
		setup  func() string // returns the approval id
		action string
		body   string
		status int
		want   string // in the error, or the status after
	}{
		{"bob approves", func() string { return f.ask(`{"job":"a"}`, "analytics").ID }, "approve",
			`{"approver":"bob","comment":"release 4.2"}`, ok, "granted"},
		{"bob denies", func() string { return f.ask(`{"job":"b"}`, "analytics").ID }, "deny",
			`{"approver":"bob"}`, ok, "denied"},
		{"the requester may not approve their own call", func() string { return f.ask(`{"job":"c"}`, "engineering").ID }, "approve",
			`{"approver":"alice"}`, forbidden, "the requester may not approve their own call"},
		{"the requester is refused whatever the case of the name", func() string { return f.ask(`{"job":"c2"}`, "engineering").ID }, "approve",
			`{"approver":" alice"}`, forbidden, "the requester may not approve their own call"},
		{"carol is in no approver group", func() string { return f.ask(`{"job":"d"}`, "analytics").ID }, "approve",
			`{"approver":"carol"}`, forbidden, "not an approver for this call"},
		{"decided already", func() string {
			a := f.ask(`{"job":"e"}`, "analytics")
			if _, err := f.svc.Decide(t.Context(), a.ID, approvals.Person{Sub: "bob", Roles: []string{"analytics"}}, approvals.ViaDashboard, true, ""); err != nil {
				t.Fatal(err)
			}
			return a.ID
		}, "deny", `{"approver":"bob"}`, conflict, "no longer pending"},
		{"past its time", func() string {
			a := f.ask(`{"job":"f"}`, "analytics")
			f.clock.Add(11 * time.Minute)
			return a.ID
		}, "approve", `{"approver":"bob"}`, gone, "expired"},
		{"expired by the sweeper", func() string {
			a := f.ask(`{"job":"g"}`, "analytics")
			f.clock.Add(11 * time.Minute)
			f.svc.ExpireNow(t.Context())
			return a.ID
		}, "approve", `{"approver":"bob"}`, gone, "expired"},
		{"unknown approval", func() string { return "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa" }, "approve", `{"approver":"bob"}`, notFound, "no such approval"},
		{"not an approval id", func() string { return "x" }, "approve", `{"approver":"bob"}`, notFound, "no such approval"},
		{"unknown approver", func() string { return f.ask(`{"job":"h"}`, "analytics").ID }, "approve", `{"approver":"mallory"}`, bad, "unknown approver"},
		{"no approver", func() string { return f.ask(`{"job":"i"}`, "analytics").ID }, "approve", `{}`, bad, "name the approver"},
		{"a comment too long", func() string { return f.ask(`{"job":"j"}`, "analytics").ID }, "approve",
			`{"approver":"bob","comment":"` + strings.Repeat("x", approvals.MaxCommentLen+1) + `"}`, bad, "bad approval decision"},
		{"an unknown field", func() string { return f.ask(`{"job":"k"}`, "analytics").ID }, "approve", `{"approver":"bob","as":"root"}`, bad, "unknown field"},
		{"another channel", func() string { return f.ask(`{"job":"l"}`, "analytics").ID }, "approve", `{"approver":"bob","via":"link"}`, bad, "via"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.setup()
			status, out := f.do("POST", "/admin/approvals/"+id+"/"+tc.action, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, out)
			}
			if status == ok {
				if out["status"] != tc.want || out["via"] != approvals.ViaAdmin || out["approver"].(map[string]any)["sub"] != "bob" {
					t.Fatalf("decided: %v", out)
				}
				return
			}
			if e, _ := out["error"].(string); !strings.Contains(e, tc.want) {
				t.Fatalf("error %q does not say %q", e, tc.want)
			}
		})
	}

	// The decisions and the refusals are audited with the approval.
	a := f.ask(`{"job":"m"}`, "analytics")
	f.do("POST", "/admin/approvals/"+a.ID+"/approve", `{"approver":"carol"}`)
	f.do("POST", "/admin/approvals/"+a.ID+"/approve", `{"approver":"bob","comment":"ok"}`)
	if got, want := strings.Join(f.steps(a.ID), " "), "approval/requested approval/refused approval/approved"; got != want {
		t.Fatalf("audit steps %q, want %q", got, want)
	}
}

// TestAdminApprovalListAndGet: the admin token sees every approval with
// its arguments, filtered by status and client; bad filters are 400.
func TestAdminApprovalListAndGet(t *testing.T) {
	f := newApprovalsFixture(t, asrv.DemoUsers{}, false)
	first := f.ask(`{"job":"one"}`, "analytics")
	f.clock.Add(time.Second)
	second := f.ask(`{"job":"two"}`, "analytics")
	if _, err := f.svc.Decide(t.Context(), first.ID, approvals.Person{Sub: "bob", Roles: []string{"analytics"}}, approvals.ViaAdmin, false, "no"); err != nil {
		t.Fatal(err)
	}
	ids := func(out map[string]any) []string {
		var s []string
		for _, a := range out["approvals"].([]any) {
			s = append(s, a.(map[string]any)["id"].(string))
		}
		return s
	}
	for _, tc := range []struct {
		query  string
		status int
		want   []string
	}{
		{"", 200, []string{second.ID, first.ID}},
		{"?status=pending", 200, []string{second.ID}},
		{"?status=open", 200, []string{second.ID}},
		{"?status=denied,granted", 200, []string{first.ID}},
		{"?client_id=ci-bot&limit=1", 200, []string{second.ID}},
		{"?client_id=other", 200, nil},
		{"?status=maybe", 400, nil},
		{"?limit=0", 400, nil},
	} {
		status, out := f.do("GET", "/admin/approvals"+tc.query, "")
		if status != tc.status {
			t.Fatalf("%s: %d %v", tc.query, status, out)
		}
		if status == 200 && strings.Join(ids(out), ",") != strings.Join(tc.want, ",") {
			t.Fatalf("%s: %v, want %v", tc.query, ids(out), tc.want)
		}
	}
	status, out := f.do("GET", "/admin/approvals/"+second.ID, "")
	if status != 200 || out["tool"] != "jenkins.trigger_deploy" || out["reason"] != "production deploys need a release manager" {
		t.Fatalf("get: %d %v", status, out)
	}
	if args, _ := json.Marshal(out["args"]); string(args) != `{"job":"two"}` {
		t.Fatalf("the admin token sees the arguments: %s", args)
	}
	if status, _ := f.do("GET", "/admin/approvals/apr_aaaaaaaaaaaaaaaaaaaaaaaaaa", ""); status != 404 {
		t.Fatalf("unknown approval: %d", status)
	}
}

// TestAdminApproveSSOPersonRefused: beside single sign-on, a person the
// password source does not know is told to approve in the dashboard
// (409); a person of the users file decides with the roles the active
// data gives their groups.
func TestAdminApproveSSOPersonRefused(t *testing.T) {
	users := fileUsers(t, map[string][]string{"dana": {"analysts-eu"}, "erin": {"sales"}})
	f := newApprovalsFixture(t, users, true)
	a := f.ask(`{"job":"x"}`, "analytics")
	status, out := f.do("POST", "/admin/approvals/"+a.ID+"/approve", `{"approver":"sam"}`)
	if e, _ := out["error"].(string); status != 409 || !strings.Contains(e, "approve in the dashboard") {
		t.Fatalf("an SSO-only person: %d %v", status, out)
	}
	if status, out := f.do("POST", "/admin/approvals/"+a.ID+"/approve", `{"approver":"dana"}`); status != 403 {
		t.Fatalf("dana before her group gives analytics: %d %v", status, out)
	}
	setGroupRoles(t, f.reg, "analysts-eu", "analytics")
	status, out = f.do("POST", "/admin/approvals/"+a.ID+"/approve", `{"approver":"dana","comment":"checked"}`)
	if status != 200 || out["status"] != "granted" {
		t.Fatalf("dana, analytics through her group: %d %v", status, out)
	}
	p := out["approver"].(map[string]any)
	if roles, _ := json.Marshal(p["roles"]); string(roles) != `["analytics"]` {
		t.Fatalf("the approver recorded: %v", p)
	}
}

// setGroupRoles makes group give role in the active data.
func setGroupRoles(t *testing.T, reg *plugins.Registry, group, role string) {
	t.Helper()
	b, ok := reg.ActiveBundle()
	if !ok {
		t.Fatal("no active bundle")
	}
	var data map[string]any
	if err := json.Unmarshal(b.Data, &data); err != nil {
		t.Fatal(err)
	}
	data["identity"].(map[string]any)["group_roles"].(map[string]any)[group] = []string{role}
	raw, _ := json.Marshal(data)
	if _, err := reg.SetData(context.Background(), raw, "test"); err != nil {
		t.Fatal(err)
	}
}

// TestAdminApprovalsAbsent: without approvals the routes say so.
func TestAdminApprovalsAbsent(t *testing.T) {
	api, err := New(Config{Token: approvalsTestToken, Registry: policytest.Registry(t)})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/admin/approvals", nil)
	req.Header.Set("Authorization", "Bearer "+approvalsTestToken)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	if rec.Code != 404 || !bytes.Contains(rec.Body.Bytes(), []byte("approvals are not kept here")) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}
