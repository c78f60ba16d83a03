package dashboard

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/approvals"
	apbadger "github.com/pbac-gateway/pbac/approvals/store/badger"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/audit/index"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/plugins"
)

// approvalDesk is a Service on an in-memory Badger store, on a clock the
// test moves, keeping the audit records it writes.
type approvalDesk struct {
	t   *testing.T
	svc *approvals.Service

	mu      sync.Mutex
	now     time.Time
	records []audit.Record
}

func (a *approvalDesk) Record(r audit.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.records = append(a.records, r)
}

func (a *approvalDesk) clock() time.Time { a.mu.Lock(); defer a.mu.Unlock(); return a.now }

func (a *approvalDesk) wait(d time.Duration) { a.mu.Lock(); defer a.mu.Unlock(); a.now = a.now.Add(d) }

// last is the newest audit record of approval id.
func (a *approvalDesk) last(id string) audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.records) - 1; i >= 0; i-- {
		if a.records[i].ApprovalID == id {
			return a.records[i]
		}
	}
	return audit.Record{}
}

func newApprovalDesk(t *testing.T) *approvalDesk {
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
	a := &approvalDesk{t: t, now: time.Now().UTC()}
	a.svc, err = approvals.New(approvals.Config{Store: store, Key: key, Audit: a, PageURL: "http://127.0.0.1:8081/ui/approvals/", Now: a.clock})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// ask holds a call of requester's agent for someone of groups who is not
// the requester; args are its arguments.
func (a *approvalDesk) ask(requester, args string, groups ...string) approvals.Approval {
	a.t.Helper()
	x, created, err := a.svc.Ask(a.t.Context(), approvals.Request{
		Call:      approvals.Call{ClientID: "ci-bot", Subject: requester, Method: "tools/call", Tool: "jenkins.trigger_deploy", Arguments: []byte(args)},
		RequestID: "req-" + args, AgentProvider: "acme", Tier: "ci_agent", PolicyVersion: "v1",
		Asked: contract.Approval{Required: true, Rule: "deploy-needs-release", Reason: "production deploys need a release manager",
			Approvers: contract.Approvers{Groups: groups, Not: []string{requester}}, TTLSeconds: 600},
	})
	if err != nil || !created {
		a.t.Fatalf("ask: %v (created %v)", err, created)
	}
	a.wait(time.Millisecond) // the next one is newer
	return x
}

// TestApproveInTheDashboard: the signed-in person approves or denies in
// their own name, through the dashboard or the link; the approver rule,
// the approval's status and time, the session (a person, the CSRF header)
// and the body are checked, each refusal with its status and why.
func TestApproveInTheDashboard(t *testing.T) {
	desk := newApprovalDesk(t)
	d := newDashWith(t, false, func(c *Config) { c.Approvals = desk.svc })
	h := d.srv.Config.Handler.(*Handler)
	as := map[string]*dash{"operator": serveDash(t, h)}
	for _, who := range []string{"alice", "bob", "carol"} {
		as[who] = serveDash(t, h)
		as[who].signIn(who)
	}
	if status, out := as["operator"].postSignIn(map[string]string{"admin_token": testAdminToken}); status != 200 {
		t.Fatalf("operator sign-in: %d %v", status, out)
	} else {
		as["operator"].csrf = out["csrf"].(string)
	}
	if _, out := d.do("GET", "/ui/api/config", nil); out["approvals"] != true {
		t.Fatalf("config does not offer approvals: %v", out)
	}

	pending := func(args string) func() string {
		return func() string { return desk.ask("alice", args, "analytics").ID }
	}
	for _, tc := range []struct {
		name, who, action string
		id                func() string
		body              any
		noCSRF            bool
		status            int
		want              string // the status after, or in the error
		via               string
	}{
		{"bob approves", "bob", "approve", pending(`{"n":1}`), map[string]string{"comment": "release 4.2"}, false, 200, "granted", approvals.ViaDashboard},
		{"bob denies", "bob", "deny", pending(`{"n":2}`), map[string]string{}, false, 200, "denied", approvals.ViaDashboard},
		{"bob approves from the link", "bob", "approve", pending(`{"n":3}`), map[string]string{"via": "link"}, false, 200, "granted", approvals.ViaLink},
		{"the requester may not approve their own call", "alice", "approve", func() string { return desk.ask("alice", `{"n":4}`, "engineering").ID },
			map[string]string{}, false, 403, "the requester may not approve their own call", ""},
		{"carol is in no approver group", "carol", "approve", pending(`{"n":5}`), map[string]string{}, false, 403, "not an approver for this call", ""},
		{"decided already", "bob", "deny", func() string {
			id := pending(`{"n":6}`)()
			if _, err := desk.svc.Decide(t.Context(), id, approvals.Person{Sub: "bob", Roles: []string{"analytics"}}, approvals.ViaAdmin, true, ""); err != nil {
				t.Fatal(err)
			}
			return id
		}, map[string]string{}, false, 409, "no longer pending", ""},
		{"expired", "bob", "approve", func() string {
			id := pending(`{"n":7}`)()
			desk.wait(11 * time.Minute)
			return id
		}, map[string]string{}, false, 410, "expired", ""},
		{"unknown", "bob", "approve", func() string { return "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa" }, map[string]string{}, false, 404, "no such approval", ""},
		{"the admin token is nobody", "operator", "approve", pending(`{"n":8}`), map[string]string{}, false, 403, "sign in as a person to approve", ""},
		{"without the CSRF header", "bob", "approve", pending(`{"n":9}`), map[string]string{}, true, 403, "X-PBAC-CSRF", ""},
		{"via the admin API", "bob", "approve", pending(`{"n":10}`), map[string]string{"via": "admin"}, false, 400, "via must be", ""},
		{"naming an approver", "bob", "approve", pending(`{"n":11}`), map[string]string{"approver": "carol"}, false, 400, "names no approver", ""},
		{"a comment too long", "bob", "approve", pending(`{"n":12}`), map[string]string{"comment": strings.Repeat("x", approvals.MaxCommentLen+1)}, false, 400, "bad approval decision", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.id()
			b := as[tc.who]
			csrf := b.csrf
			if tc.noCSRF {
				b.csrf = ""
			}
			status, out := b.do("POST", "/ui/api/approvals/"+id+"/"+tc.action, tc.body, "Content-Type", "application/json")
			b.csrf = csrf
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, out)
			}
			if status != 200 {
				if e, _ := out["error"].(string); !strings.Contains(e, tc.want) {
					t.Fatalf("error %q does not say %q", e, tc.want)
				}
				return
			}
			if out["status"] != tc.want || out["via"] != tc.via || out["approver"].(map[string]any)["sub"] != tc.who || out["can_decide"] != false {
				t.Fatalf("decided: %v", out)
			}
			rec := desk.last(id)
			if rec.Approver != tc.who || (tc.action == "approve") != (rec.Method == audit.ApprovalApproved) {
				t.Fatalf("audit record: %+v", rec)
			}
		})
	}
}

// TestWhoSeesWhichApproval: outside the demo tenant a person sees the
// approvals they may decide and those of their own calls, with the
// arguments; an operator (the admin token, or a person of an operator
// group) sees every one. In the demo tenant everyone sees every
// approval, but the arguments only when they may decide it or it is
// theirs.
func TestWhoSeesWhichApproval(t *testing.T) {
	desk := newApprovalDesk(t)
	var reg *plugins.Registry
	d := newDashWith(t, false, func(c *Config) { c.Approvals, reg = desk.svc, c.Registry })
	h := d.srv.Config.Handler.(*Handler)
	forBob := desk.ask("alice", `{"job":"deploy-prod"}`, "analytics")
	forNobody := desk.ask("carol", `{"job":"ddl"}`, "dba")

	type seen struct {
		ids  []string
		args map[string]bool // id -> arguments shown
	}
	list := func(b *dash) (int, seen) {
		t.Helper()
		status, out := b.do("GET", "/ui/api/approvals", nil)
		s := seen{args: map[string]bool{}}
		if l, ok := out["approvals"].([]any); ok {
			for _, x := range l {
				m := x.(map[string]any)
				id := m["id"].(string)
				s.ids = append(s.ids, id)
				_, shown := m["args"]
				s.args[id] = shown
				if shown == (m["args_hidden"] == true) {
					t.Fatalf("%s: args shown %v, args_hidden %v", id, shown, m["args_hidden"])
				}
			}
		}
		return status, s
	}
	session := func(who string) *dash {
		b := serveDash(t, h)
		if who == "operator" {
			if status, out := b.postSignIn(map[string]string{"admin_token": testAdminToken}); status != 200 {
				t.Fatalf("operator sign-in: %d %v", status, out)
			}
			return b
		}
		b.signIn(who)
		return b
	}
	for _, tc := range []struct {
		who      string
		operator []string // operator groups first
		ids      []string
		args     []string
	}{
		{"bob", nil, []string{forBob.ID}, []string{forBob.ID}},
		// Her own call's, and carol's DDL: alice is a DBA.
		{"alice", nil, []string{forNobody.ID, forBob.ID}, []string{forNobody.ID, forBob.ID}},
		{"carol", nil, []string{forNobody.ID}, []string{forNobody.ID}},
		{"operator", nil, []string{forNobody.ID, forBob.ID}, []string{forNobody.ID, forBob.ID}},
	} {
		t.Run(tc.who, func(t *testing.T) {
			b := session(tc.who)
			status, s := list(b)
			if status != 200 || strings.Join(s.ids, ",") != strings.Join(tc.ids, ",") {
				t.Fatalf("%d: sees %v, want %v", status, s.ids, tc.ids)
			}
			for _, id := range tc.args {
				if !s.args[id] {
					t.Fatalf("does not see the arguments of %s", id)
				}
			}
			for _, id := range []string{forBob.ID, forNobody.ID} {
				status, out := b.do("GET", "/ui/api/approvals/"+id, nil)
				visible := strings.Contains(strings.Join(tc.ids, ","), id)
				if (status == 200) != visible || (!visible && status != 404) {
					t.Fatalf("GET %s: %d %v (visible %v)", id, status, out, visible)
				}
			}
		})
	}
	// bob reads the call he may decide as the page shows it.
	_, out := session("bob").do("GET", "/ui/api/approvals/"+forBob.ID, nil)
	if args, _ := json.Marshal(out["args"]); out["can_decide"] != true || out["reason"] != "production deploys need a release manager" ||
		out["client_id"] != "ci-bot" || out["sub"] != "alice" || out["tier"] != "ci_agent" || string(args) != `{"job":"deploy-prod"}` {
		t.Fatalf("bob's view: %v", out)
	}
	// alice's own call: she sees it, with why she may not decide it.
	_, out = session("alice").do("GET", "/ui/api/approvals/"+forBob.ID, nil)
	if e, _ := out["why_not"].(string); out["own"] != true || out["can_decide"] != false || !strings.Contains(e, "their own call") {
		t.Fatalf("alice's view: %v", out)
	}

	// A person of an operator group sees every approval and its arguments.
	users := usersFileUsers(t, map[string][]string{"olga": {"pbac-operators"}})
	o := newDashWith(t, false, func(c *Config) { c.Approvals, c.Registry, c.Users = desk.svc, reg, users })
	setOperatorGroups(t, reg, "pbac-operators")
	o.signInAs("olga", filePassword)
	if status, s := list(o); status != 200 || len(s.ids) != 2 || !s.args[forBob.ID] || !s.args[forNobody.ID] {
		t.Fatalf("olga, an operator: %d %v", status, s)
	}

	// The demo tenant (not loopback: nobody operates): carol sees bob's
	// approval, without its arguments.
	demo := newDashWith(t, true, func(c *Config) { c.Approvals = desk.svc })
	demo.signIn("carol")
	if status, s := list(demo); status != 200 || len(s.ids) != 2 || s.args[forBob.ID] || !s.args[forNobody.ID] {
		t.Fatalf("carol in the demo tenant: %d %v", status, s)
	}
}

// TestApprovalLink: the link the gateway hands out opens the page on that
// approval, marked as opened from the link, signed in or not (the page
// signs in first); where people sign in only through single sign-on the
// link goes through the provider and comes back to the approval.
func TestApprovalLink(t *testing.T) {
	desk := newApprovalDesk(t)
	a := desk.ask("alice", `{"job":"deploy-prod"}`, "analytics")
	d := newDashWith(t, false, func(c *Config) { c.Approvals = desk.svc })
	get := func(b *http.Client, path string) *http.Response {
		t.Helper()
		resp, err := b.Get(d.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	want := "/ui/?via=link#approvals/" + a.ID
	b := noFollow()
	if resp := get(b, "/ui/approvals/"+a.ID); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
		t.Fatalf("not signed in: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	d.http = b
	d.signIn("bob")
	if resp := get(b, "/ui/approvals/"+a.ID); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
		t.Fatalf("signed in: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, bad := range []string{"apr_x", "apr_AAAAAAAAAAAAAAAAAAAAAAAAAA", "..%2f..%2fadmin"} {
		if resp := get(b, "/ui/approvals/"+bad); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: %d", bad, resp.StatusCode)
		}
	}

	// Single sign-on only: through the provider, and back to the approval.
	idp := newTestProvider()
	sso := newDashWith(t, false, func(c *Config) { c.Approvals, c.SSO, c.Users = desk.svc, idp, nil })
	b = noFollow()
	resp, err := b.Get(sso.srv.URL + "/ui/approvals/" + a.ID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	start := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(start, "/ui/api/session/sso?return=") {
		t.Fatalf("SSO only: %d %q", resp.StatusCode, start)
	}
	resp, err = b.Get(sso.srv.URL + start)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	q := idp.signIn(t, resp.Header.Get("Location"), identity.Person{Subject: "sam", Groups: []string{"analytics"}})
	resp, err = b.Get(sso.srv.URL + identity.CallbackPath + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
		t.Fatalf("back from the provider: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A return elsewhere is ignored: the page's start.
	for _, ret := range []string{"//evil.example/", "#approvals/../../x", "https://evil.example/#x"} {
		b := noFollow()
		resp, err := b.Get(sso.srv.URL + "/ui/api/session/sso?return=" + url.QueryEscape(ret))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		q := idp.signIn(t, resp.Header.Get("Location"), identity.Person{Subject: "sam"})
		resp, err = b.Get(sso.srv.URL + identity.CallbackPath + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Location") != "/ui/" {
			t.Fatalf("return %q: back to %q", ret, resp.Header.Get("Location"))
		}
	}
}

// TestAuditStoryOfAnApproval: the audit query selects one approval's
// records (its steps and the gateway's decisions on the call) and the
// calls held; another decision value is refused.
func TestAuditStoryOfAnApproval(t *testing.T) {
	ix, err := index.Open(t.Context(), "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ix.Close() })
	d := newDashWith(t, true, func(c *Config) { c.Index = ix })
	d.signIn("bob")
	now := time.Now()
	const id, other = "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa", "apr_bbbbbbbbbbbbbbbbbbbbbbbbbb"
	recs := []audit.Record{
		{RequestID: "held", ClientID: "ci-bot", Subject: "alice", Method: "tools/call", Tool: "jenkins.trigger_deploy", Decision: audit.DecisionHold, ApprovalID: id},
		{RequestID: "asked", Event: audit.EventApproval, ClientID: "ci-bot", Subject: "alice", Method: audit.ApprovalRequested, Decision: audit.DecisionAllow, ApprovalID: id},
		{RequestID: "unrelated", ClientID: "ci-bot", Subject: "alice", Method: "tools/call", Tool: "jenkins.trigger_deploy", Decision: audit.DecisionAllow},
		{RequestID: "other", Event: audit.EventApproval, ClientID: "ci-bot", Subject: "alice", Method: audit.ApprovalRequested, Decision: audit.DecisionAllow, ApprovalID: other},
		{RequestID: "approved", Event: audit.EventApproval, ClientID: "ci-bot", Subject: "alice", Method: audit.ApprovalApproved, Decision: audit.DecisionAllow, ApprovalID: id, Approver: "bob"},
		{RequestID: "used", ClientID: "ci-bot", Subject: "alice", Method: "tools/call", Tool: "jenkins.trigger_deploy", Decision: audit.DecisionAllow, ApprovalID: id},
	}
	for i := range recs {
		recs[i].Time = now.Add(time.Duration(i) * time.Millisecond)
	}
	if err := ix.Write(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query  string
		status int
		want   string
	}{
		{"?approval_id=" + id, 200, "used approved asked held"},
		{"?approval_id=" + id + "&event=approval", 200, "approved asked"},
		{"?decision=hold", 200, "held"},
		{"?approval_id=" + other, 200, "other"},
		{"?decision=maybe", 400, ""},
	} {
		status, out := d.do("GET", "/ui/api/audit"+tc.query, nil)
		var got []string
		if l, ok := out["records"].([]any); ok {
			for _, r := range l {
				got = append(got, r.(map[string]any)["request_id"].(string))
			}
		}
		if status != tc.status || strings.Join(got, " ") != tc.want {
			t.Fatalf("%s: %d %v, want %d %q", tc.query, status, got, tc.status, tc.want)
		}
	}
}
