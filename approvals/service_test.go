package approvals_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/approvals/store/badger"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/contract"
)

var t0 = time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)

// clock is the service's clock, moved by the test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// trail keeps what the service audits.
type trail struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (tr *trail) Record(r audit.Record) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.recs = append(tr.recs, r)
}

// steps are the audited steps (Record.Method) so far.
func (tr *trail) steps() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]string, len(tr.recs))
	for i, r := range tr.recs {
		out[i] = r.Method
	}
	return out
}

func (tr *trail) last(t *testing.T) audit.Record {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.recs) == 0 {
		t.Fatal("nothing audited")
	}
	return tr.recs[len(tr.recs)-1]
}

type fixture struct {
	svc   *approvals.Service
	store approvals.Store
	clock *clock
	trail *trail
	reg   *prometheus.Registry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store, err := badger.Open(context.Background(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	key, err := approvals.NewStateKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, clock: &clock{now: t0}, trail: &trail{}, reg: prometheus.NewRegistry()}
	f.svc, err = approvals.New(approvals.Config{Store: store, Key: key, Audit: f.trail,
		PageURL: "https://gw.example/ui/approvals/", Registerer: f.reg, Now: f.clock.Now, Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// pending fails t unless the pending gauge reads want.
func (f *fixture) pending(t *testing.T, want int) {
	t.Helper()
	exp := fmt.Sprintf("# HELP pbac_approvals_pending Approvals asked for and not yet decided, expired or withdrawn.\n"+
		"# TYPE pbac_approvals_pending gauge\npbac_approvals_pending %d\n", want)
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(exp), "pbac_approvals_pending"); err != nil {
		t.Fatalf("pending gauge: %v", err)
	}
}

func (f *fixture) get(t *testing.T, id string) approvals.Approval {
	t.Helper()
	a, err := f.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (f *fixture) ask(t *testing.T, r approvals.Request) approvals.Approval {
	t.Helper()
	a, _, err := f.svc.Ask(context.Background(), r)
	if err != nil {
		t.Fatalf("Ask: %v", err)
	}
	return a
}

func deployRequest() approvals.Request {
	return approvals.Request{
		Call: approvals.Call{ClientID: "ci-bot-client", Subject: "alice", Method: "tools/call",
			Tool: "jenkins.trigger_deploy", Arguments: []byte(`{"job":"deploy-prod"}`)},
		RequestID: "r-1", AgentProvider: "demo", Tier: "ci_agent", Backend: "jenkins", PolicyVersion: "v12",
		Asked: contract.Approval{Required: true, Rule: "deploy-needs-release",
			Reason:     "deploys need someone from release who is not the requester",
			Approvers:  contract.Approvers{Groups: []string{"release"}, Not: []string{"CI-Bot-Client", " Alice "}},
			TTLSeconds: 900},
	}
}

func withArgs(r approvals.Request, args string) approvals.Request {
	r.Call.Arguments = []byte(args)
	return r
}

var (
	bob   = approvals.Person{Sub: "bob", Roles: []string{"analytics", "release"}}
	carol = approvals.Person{Sub: "carol", Roles: []string{"analytics"}, Groups: []string{"eng"}}
)

func TestAskReusesTheOpenApproval(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := deployRequest()
	a, created, err := f.svc.Ask(ctx, r)
	if err != nil || !created {
		t.Fatalf("first Ask: created %v, %v", created, err)
	}
	if !approvals.ValidID(a.ID) || a.Status != approvals.Pending || a.Binding != r.Call.Binding() ||
		a.ArgsDigest != audit.Digest(r.Call.Arguments) || string(a.Args) != `{"job":"deploy-prod"}` ||
		!a.ExpiresAt.Equal(t0.Add(900*time.Second)) || a.Rule != r.Asked.Rule || a.PolicyVersion != "v12" {
		t.Fatalf("asked: %+v", a)
	}
	if got := f.trail.last(t); got.Method != audit.ApprovalRequested || got.ApprovalID != a.ID || got.Event != audit.EventApproval {
		t.Fatalf("audited %+v, want approval/requested of %s", got, a.ID)
	}
	f.pending(t, 1)
	if f.svc.URL(a.ID) != "https://gw.example/ui/approvals/"+a.ID {
		t.Fatalf("URL %s", f.svc.URL(a.ID))
	}

	// The same call again (a retry without state, another replica asking):
	// the same approval, nothing new audited.
	f.clock.Add(time.Minute)
	r2 := r
	r2.RequestID = "r-2"
	again, created, err := f.svc.Ask(ctx, r2)
	if err != nil || created || again.ID != a.ID {
		t.Fatalf("second Ask: %s created %v, %v; want %s reused", again.ID, created, err, a.ID)
	}
	if n := len(f.trail.steps()); n != 1 {
		t.Fatalf("the reused approval was audited again: %v", f.trail.steps())
	}
	f.pending(t, 1)

	// Other arguments are another call: another approval, the first kept.
	other := f.ask(t, withArgs(r, `{"job":"deploy-prod","force":true}`))
	if other.ID == a.ID || other.Binding == a.Binding {
		t.Fatalf("other arguments reused %s", a.ID)
	}
	f.pending(t, 2)

	// Another policy version asking the same of the same people: the
	// approver's link stays good.
	r3 := r
	r3.PolicyVersion = "v13"
	if same, created, err := f.svc.Ask(ctx, r3); err != nil || created || same.ID != a.ID {
		t.Fatalf("Ask under v13, same rule and approvers: %s created %v, %v; want %s reused", same.ID, created, err, a.ID)
	}
	// Other approvers: the old approval is void, a new one asked for.
	r3.Asked.Approvers.Groups = []string{"release", "sre"}
	fresh, created, err := f.svc.Ask(ctx, r3)
	if err != nil || !created || fresh.ID == a.ID || fresh.PolicyVersion != "v13" {
		t.Fatalf("Ask under v13: %+v created %v, %v", fresh, created, err)
	}
	old := f.get(t, a.ID)
	if old.Status != approvals.Void || !strings.Contains(old.Why, "v13") || !strings.Contains(old.Why, "sre") || old.Args != nil {
		t.Fatalf("the v12 approval: %s %q args %q; want void, saying why, no arguments", old.Status, old.Why, old.Args)
	}
	if got := f.trail.steps(); !equal(got, []string{audit.ApprovalRequested, audit.ApprovalRequested, audit.ApprovalVoid, audit.ApprovalRequested}) {
		t.Fatalf("audited %v", got)
	}
	f.pending(t, 2)

	// Another rule under the same version likewise.
	r4 := r3
	r4.Asked.Rule = "ddl-needs-dba"
	if ddl := f.ask(t, r4); ddl.ID == fresh.ID || f.get(t, fresh.ID).Status != approvals.Void {
		t.Fatalf("another rule reused or kept %s", fresh.ID)
	}
	f.pending(t, 2)

	// An approval already granted under the old version is void too.
	granted := f.ask(t, withArgs(r, `{"job":"x"}`))
	if _, err := f.svc.Decide(ctx, granted.ID, bob, approvals.ViaDashboard, true, ""); err != nil {
		t.Fatal(err)
	}
	r5 := withArgs(r3, `{"job":"x"}`)
	if a5 := f.ask(t, r5); a5.ID == granted.ID || f.get(t, granted.ID).Status != approvals.Void {
		t.Fatalf("the granted v12 approval was not void")
	}
}

func equal(a, b []string) bool { return strings.Join(a, "|") == strings.Join(b, "|") }

func TestAskTTL(t *testing.T) {
	tests := []struct {
		name string
		ttl  int64
		want time.Duration
	}{
		{"as asked", 120, 2 * time.Minute},
		{"none asked", 0, approvals.DefaultTTL},
		{"negative", -5, approvals.DefaultTTL},
		{"beyond the maximum", int64(48 * time.Hour / time.Second), approvals.MaxTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := deployRequest()
			r.Asked.TTLSeconds = tt.ttl
			if a := f.ask(t, r); !a.ExpiresAt.Equal(t0.Add(tt.want)) {
				t.Fatalf("expires %v, want %v", a.ExpiresAt, t0.Add(tt.want))
			}
		})
	}
}

func TestAskRefuses(t *testing.T) {
	f := newFixture(t)
	r := deployRequest()
	r.Asked.Required = false
	if _, _, err := f.svc.Ask(context.Background(), r); err == nil {
		t.Fatal("asked for an approval policy did not require")
	}
	r = deployRequest()
	r.Asked.Rule = ""
	if _, _, err := f.svc.Ask(context.Background(), r); err == nil {
		t.Fatal("asked for an approval without a rule")
	}
	// Arguments too long to show an approver are not asked for.
	big := withArgs(deployRequest(), `{"blob":"`+strings.Repeat("x", approvals.MaxArgsLen)+`"}`)
	if _, _, err := f.svc.Ask(context.Background(), big); !errors.Is(err, approvals.ErrArgsTooLong) {
		t.Fatalf("oversized arguments: %v, want ErrArgsTooLong", err)
	}
	if n, _ := f.store.CountOpen(context.Background(), "", ""); n != 0 {
		t.Fatalf("%d approvals stored for refused asks", n)
	}
}

// After a denial the same call is refused, not asked for again, for
// DeniedCooldown: an agent cannot wear an approver down.
func TestAskAfterDenial(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.ask(t, deployRequest())
	if _, err := f.svc.Decide(ctx, a.ID, bob, approvals.ViaDashboard, false, "not on a Friday"); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(approvals.DeniedCooldown - time.Second)
	_, _, err := f.svc.Ask(ctx, deployRequest())
	if !errors.Is(err, approvals.ErrRecentlyDenied) || !strings.Contains(err.Error(), "bob") || !strings.Contains(err.Error(), "not on a Friday") {
		t.Fatalf("Ask right after the denial = %v, want ErrRecentlyDenied naming bob and his comment", err)
	}
	// Other arguments are another call.
	f.ask(t, withArgs(deployRequest(), `{"job":"deploy-staging"}`))
	f.clock.Add(2 * time.Second)
	if again := f.ask(t, deployRequest()); again.ID == a.ID || again.Status != approvals.Pending {
		t.Fatalf("Ask after the cool-down: %+v", again)
	}
}

// TestAskTooMany: one agent (a client acting for one person) holds at
// most MaxOpenPerClient open approvals. Every other agent has a budget of
// its own, another person on the same client too: one client id may serve
// a whole organisation (a client id metadata document's URL), and one
// person's held calls must not leave the others no approval at all.
func TestAskTooMany(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var first approvals.Approval
	for i := range approvals.MaxOpenPerClient {
		a := f.ask(t, withArgs(deployRequest(), fmt.Sprintf(`{"n":%d}`, i)))
		if i == 0 {
			first = a
		}
	}
	_, _, err := f.svc.Ask(ctx, withArgs(deployRequest(), `{"n":"one more"}`))
	if !errors.Is(err, approvals.ErrTooMany) {
		t.Fatalf("Ask beyond the limit: %v, want ErrTooMany", err)
	}
	// The same call as an open one is still answered: it asks for nothing new.
	if a, created, err := f.svc.Ask(ctx, withArgs(deployRequest(), `{"n":0}`)); err != nil || created || a.ID != first.ID {
		t.Fatalf("Ask of an open call at the limit: %s created %v, %v", a.ID, created, err)
	}
	others := []struct {
		name, client, subject string
	}{
		{"another client for the same person", "planner-client", "alice"},
		{"another person on the same client", "ci-bot-client", "bob"},
		{"the same client for no person", "ci-bot-client", ""},
	}
	for _, o := range others {
		r := withArgs(deployRequest(), `{"n":"one more"}`)
		r.Call.ClientID, r.Call.Subject = o.client, o.subject
		if _, created, err := f.svc.Ask(ctx, r); err != nil || !created {
			t.Errorf("%s, while alice's agent holds %d: created %v, %v; want a new approval", o.name, approvals.MaxOpenPerClient, created, err)
		}
	}
	// One decided frees a place.
	if _, err := f.svc.Decide(ctx, first.ID, bob, approvals.ViaAdmin, false, "no"); err != nil {
		t.Fatal(err)
	}
	f.ask(t, withArgs(deployRequest(), `{"n":"one more"}`))
	f.pending(t, approvals.MaxOpenPerClient+len(others))
}

func TestDecide(t *testing.T) {
	long := strings.Repeat("x", approvals.MaxCommentLen+1)
	tests := []struct {
		name    string
		before  func(f *fixture, id string)
		id      func(id string) string
		who     approvals.Person
		via     string
		approve bool
		comment string
		want    error  // nil: decided
		audited string // the step audited, "" for none
		status  approvals.Status
	}{
		{name: "approved by release", who: bob, via: approvals.ViaDashboard, approve: true, comment: "ship it",
			audited: audit.ApprovalApproved, status: approvals.Granted},
		{name: "denied by release", who: bob, via: approvals.ViaLink, comment: "not today",
			audited: audit.ApprovalDenied, status: approvals.Denied},
		{name: "release as a raw group", who: approvals.Person{Sub: "dana", Groups: []string{"release"}}, via: approvals.ViaAdmin, approve: true,
			audited: audit.ApprovalApproved, status: approvals.Granted},
		{name: "not in the group", who: carol, via: approvals.ViaDashboard, approve: true,
			want: approvals.ErrNotApprover, audited: audit.ApprovalRefused, status: approvals.Pending},
		{name: "group name differs in case", who: approvals.Person{Sub: "erin", Roles: []string{"Release"}}, via: approvals.ViaDashboard, approve: true,
			want: approvals.ErrNotApprover, audited: audit.ApprovalRefused, status: approvals.Pending},
		{name: "the requester", who: approvals.Person{Sub: "alice", Roles: []string{"release"}}, via: approvals.ViaDashboard, approve: true,
			want: approvals.ErrSelfApproval, audited: audit.ApprovalRefused, status: approvals.Pending},
		{name: "the requester spelt otherwise", who: approvals.Person{Sub: "  ALICE\t", Roles: []string{"release"}}, via: approvals.ViaDashboard, approve: true,
			want: approvals.ErrSelfApproval, audited: audit.ApprovalRefused, status: approvals.Pending},
		{name: "the agent itself", who: approvals.Person{Sub: "ci-bot-client", Roles: []string{"release"}}, via: approvals.ViaAdmin, approve: true,
			want: approvals.ErrSelfApproval, audited: audit.ApprovalRefused, status: approvals.Pending},
		{name: "the requester denying", who: approvals.Person{Sub: "alice", Roles: []string{"release"}}, via: approvals.ViaDashboard,
			want: approvals.ErrSelfApproval, audited: audit.ApprovalRefused, status: approvals.Pending},
		{name: "expired, not yet swept", before: func(f *fixture, _ string) { f.clock.Add(900 * time.Second) }, who: bob, via: approvals.ViaDashboard, approve: true,
			want: approvals.ErrExpired, status: approvals.Pending},
		{name: "expired and swept", before: func(f *fixture, _ string) { f.clock.Add(901 * time.Second); f.svc.ExpireNow(context.Background()) },
			who: bob, via: approvals.ViaDashboard, approve: true, want: approvals.ErrExpired, status: approvals.Expired},
		{name: "second decision", before: func(f *fixture, id string) {
			if _, err := f.svc.Decide(context.Background(), id, bob, approvals.ViaDashboard, false, ""); err != nil {
				panic(err)
			}
		}, who: approvals.Person{Sub: "dana", Roles: []string{"release"}}, via: approvals.ViaDashboard, approve: true,
			want: approvals.ErrClosed, status: approvals.Denied},
		{name: "comment too long", who: bob, via: approvals.ViaDashboard, approve: true, comment: long,
			want: approvals.ErrBadDecision, status: approvals.Pending},
		{name: "comment not UTF-8", who: bob, via: approvals.ViaDashboard, approve: true, comment: "ok\xff",
			want: approvals.ErrBadDecision, status: approvals.Pending},
		{name: "via the client", who: bob, via: approvals.ViaClient, approve: true,
			want: approvals.ErrBadDecision, status: approvals.Pending},
		{name: "nobody", who: approvals.Person{Sub: "  ", Roles: []string{"release"}}, via: approvals.ViaDashboard, approve: true,
			want: approvals.ErrBadDecision, status: approvals.Pending},
		{name: "unknown approval", id: func(string) string { return "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa" }, who: bob, via: approvals.ViaDashboard, approve: true,
			want: approvals.ErrNotFound, status: approvals.Pending},
		{name: "malformed id", id: func(string) string { return "../apr" }, who: bob, via: approvals.ViaDashboard, approve: true,
			want: approvals.ErrNotFound, status: approvals.Pending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			a := f.ask(t, deployRequest())
			if tt.before != nil {
				tt.before(f, a.ID)
			}
			id := a.ID
			if tt.id != nil {
				id = tt.id(a.ID)
			}
			f.clock.Add(time.Second)
			steps := len(f.trail.steps())
			got, err := f.svc.Decide(ctx, id, tt.who, tt.via, tt.approve, tt.comment)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("Decide: %v", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("Decide: %+v, %v; want %v", got, err, tt.want)
			}
			stored := f.get(t, a.ID)
			if stored.Status != tt.status {
				t.Fatalf("stored status %s, want %s", stored.Status, tt.status)
			}
			newSteps := f.trail.steps()[steps:]
			if tt.audited == "" {
				if len(newSteps) != 0 {
					t.Fatalf("audited %v, want nothing", newSteps)
				}
				return
			}
			if len(newSteps) != 1 || newSteps[0] != tt.audited {
				t.Fatalf("audited %v, want %s", newSteps, tt.audited)
			}
			rec := f.trail.last(t)
			if rec.ApprovalID != a.ID || rec.Approver != tt.who.Sub {
				t.Fatalf("audit record %+v: want approval %s, approver %s", rec, a.ID, tt.who.Sub)
			}
			if tt.want != nil {
				if rec.Decision != audit.DecisionDeny || rec.Status != 403 {
					t.Fatalf("refusal audited as %s %d, want deny 403", rec.Decision, rec.Status)
				}
				return
			}
			// Decided: who, how, when, with what comment.
			if got.Approver == nil || got.Approver.Sub != tt.who.Sub || !equal(got.Approver.Roles, tt.who.Roles) ||
				got.Via != tt.via || got.Comment != tt.comment || !got.DecidedAt.Equal(t0.Add(time.Second)) || got.Rev != 2 {
				t.Fatalf("decided: %+v", got)
			}
			if rec.Comment != tt.comment {
				t.Fatalf("audited comment %q, want %q", rec.Comment, tt.comment)
			}
			if tt.approve {
				f.pending(t, 0)
				want := &contract.GrantedApproval{ID: a.ID, Rule: "deploy-needs-release", Granted: true,
					Approver: contract.ApprovalPerson{Sub: tt.who.Sub, Roles: nonNil(tt.who.Roles), Groups: nonNil(tt.who.Groups)},
					Via:      tt.via, GrantedAt: t0.Add(time.Second).Unix()}
				if g := stored.Granted(); fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", want) {
					t.Fatalf("Granted() = %+v, want %+v", g, want)
				}
				if rec.Decision != audit.DecisionAllow {
					t.Fatalf("approval audited as %s", rec.Decision)
				}
			} else {
				f.pending(t, 0)
				if stored.Granted() != nil || !stored.ClosedAt.Equal(stored.DecidedAt) || stored.Args != nil {
					t.Fatalf("denied: granted %v, closed %v (decided %v), args %q", stored.Granted(), stored.ClosedAt, stored.DecidedAt, stored.Args)
				}
				if rec.Decision != audit.DecisionDeny {
					t.Fatalf("denial audited as %s", rec.Decision)
				}
			}
		})
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// The decision is the first one: approvers deciding at once, exactly one
// is recorded.
func TestDecideConcurrentOneRecorded(t *testing.T) {
	f := newFixture(t)
	a := f.ask(t, deployRequest())
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p := approvals.Person{Sub: fmt.Sprintf("approver-%d", i), Roles: []string{"release"}}
			_, errs[i] = f.svc.Decide(context.Background(), a.ID, p, approvals.ViaDashboard, i%2 == 0, "")
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, approvals.ErrClosed):
			t.Fatalf("approver %d: %v, want ErrClosed", i, err)
		}
	}
	decided := 0
	for _, s := range f.trail.steps() {
		if s == audit.ApprovalApproved || s == audit.ApprovalDenied {
			decided++
		}
	}
	if won != 1 || decided != 1 {
		t.Fatalf("%d decisions succeeded, %d audited; want 1 and 1", won, decided)
	}
	f.pending(t, 0)
}

func TestUseOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.ask(t, deployRequest())
	if _, err := f.svc.Decide(ctx, a.ID, bob, approvals.ViaDashboard, true, ""); err != nil {
		t.Fatal(err)
	}
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = f.svc.Use(ctx, a.ID, fmt.Sprintf("retry-%d", i)) })
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("retries %d and %d both used the approval", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, approvals.ErrUsed):
			t.Fatalf("retry %d: %v, want ErrUsed", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no retry used the approval")
	}
	used := f.get(t, a.ID)
	if used.Status != approvals.Used || !used.ClosedAt.Equal(t0) || used.Granted() != nil {
		t.Fatalf("after use: %s closed %v", used.Status, used.ClosedAt)
	}
	rec := f.trail.last(t)
	if rec.Method != audit.ApprovalUsed || rec.RequestID != fmt.Sprintf("retry-%d", won) || rec.Approver != "bob" {
		t.Fatalf("audited %+v, want approval/used by retry-%d, approver bob", rec, won)
	}
	if c := strings.Count(strings.Join(f.trail.steps(), " "), audit.ApprovalUsed); c != 1 {
		t.Fatalf("approval/used audited %d times", c)
	}
}

func TestUseRefused(t *testing.T) {
	tests := []struct {
		name   string
		before func(f *fixture, id string)
		want   error
	}{
		{"pending", func(*fixture, string) {}, approvals.ErrClosed},
		{"denied", func(f *fixture, id string) { decide(t, f, id, false) }, approvals.ErrClosed},
		{"granted, past its time", func(f *fixture, id string) { decide(t, f, id, true); f.clock.Add(900 * time.Second) }, approvals.ErrExpired},
		{"granted, expired by the sweep", func(f *fixture, id string) {
			decide(t, f, id, true)
			f.clock.Add(time.Hour)
			f.svc.ExpireNow(context.Background())
		}, approvals.ErrExpired},
		{"granted, then void", func(f *fixture, id string) {
			decide(t, f, id, true)
			if _, err := f.svc.Void(context.Background(), id, "policy changed", "r-9"); err != nil {
				t.Fatal(err)
			}
		}, approvals.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.ask(t, deployRequest())
			tt.before(f, a.ID)
			before := f.get(t, a.ID)
			if _, err := f.svc.Use(context.Background(), a.ID, "retry"); !errors.Is(err, tt.want) {
				t.Fatalf("Use: %v, want %v", err, tt.want)
			}
			if after := f.get(t, a.ID); after.Status != before.Status || after.Rev != before.Rev {
				t.Fatalf("a refused Use changed the approval: %s rev %d -> %s rev %d", before.Status, before.Rev, after.Status, after.Rev)
			}
			for _, s := range f.trail.steps() {
				if s == audit.ApprovalUsed {
					t.Fatal("a refused Use was audited as used")
				}
			}
		})
	}
}

func decide(t *testing.T, f *fixture, id string, approve bool) {
	t.Helper()
	if _, err := f.svc.Decide(context.Background(), id, bob, approvals.ViaDashboard, approve, ""); err != nil {
		t.Fatal(err)
	}
}

func TestConfirm(t *testing.T) {
	requester := func() approvals.Request {
		r := deployRequest()
		r.Asked.Approvers.Requester = true
		return r
	}
	tests := []struct {
		name    string
		req     approvals.Request
		sub     string
		before  func(f *fixture, id string)
		want    error
		audited string
	}{
		{"the subject", requester(), "alice", nil, nil, audit.ApprovalApproved},
		{"the subject spelt otherwise", requester(), " Alice ", nil, nil, audit.ApprovalApproved},
		{"someone else", requester(), "bob", nil, approvals.ErrNotApprover, audit.ApprovalRefused},
		{"nobody", requester(), "", nil, approvals.ErrNotApprover, audit.ApprovalRefused},
		{"rule needs an approver", deployRequest(), "alice", nil, approvals.ErrNotApprover, audit.ApprovalRefused},
		{"expired", requester(), "alice", func(f *fixture, _ string) { f.clock.Add(time.Hour) }, approvals.ErrExpired, ""},
		{"already decided", requester(), "alice", func(f *fixture, id string) { decide(t, f, id, false) }, approvals.ErrClosed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.ask(t, tt.req)
			if tt.before != nil {
				tt.before(f, a.ID)
			}
			steps := len(f.trail.steps())
			got, err := f.svc.Confirm(context.Background(), a.ID, tt.sub, "r-2")
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Confirm: %v, want %v", err, tt.want)
			}
			newSteps := f.trail.steps()[steps:]
			if tt.audited == "" && len(newSteps) != 0 || tt.audited != "" && (len(newSteps) != 1 || newSteps[0] != tt.audited) {
				t.Fatalf("audited %v, want %q", newSteps, tt.audited)
			}
			if tt.want != nil {
				if s := f.get(t, a.ID).Status; s == approvals.Granted {
					t.Fatal("refused confirmation granted the approval")
				}
				return
			}
			g := got.Granted()
			if got.Status != approvals.Granted || g == nil || g.Via != approvals.ViaClient || g.Approver.Sub != tt.sub {
				t.Fatalf("confirmed: %+v, granted %+v", got, g)
			}
			f.pending(t, 0)
		})
	}
}

func TestWait(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.ask(t, deployRequest())

	// Pending throughout: Wait answers pending after max.
	start := time.Now()
	got, err := f.svc.Wait(ctx, a.ID, 60*time.Millisecond)
	if err != nil || got.Status != approvals.Pending {
		t.Fatalf("Wait with no decision: %s, %v; want pending", got.Status, err)
	}
	if waited := time.Since(start); waited < 60*time.Millisecond {
		t.Fatalf("Wait returned pending after %v, before its max", waited)
	}

	// Decided from elsewhere while waiting: Wait answers with the decision.
	decided := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(30 * time.Millisecond)
		_, err := f.svc.Decide(ctx, a.ID, bob, approvals.ViaDashboard, true, "")
		decided <- err
	})
	got, err = f.svc.Wait(ctx, a.ID, 30*time.Second)
	wg.Wait()
	if derr := <-decided; derr != nil {
		t.Fatal(derr)
	}
	if err != nil || got.Status != approvals.Granted || got.Approver == nil || got.Approver.Sub != "bob" {
		t.Fatalf("Wait across a decision: %+v, %v; want granted by bob", got, err)
	}

	// Not pending already: at once.
	start = time.Now()
	if got, err := f.svc.Wait(ctx, a.ID, 30*time.Second); err != nil || got.Status != approvals.Granted || time.Since(start) > 10*time.Second {
		t.Fatalf("Wait on a decided approval: %s, %v after %v", got.Status, err, time.Since(start))
	}
	if _, err := f.svc.Wait(ctx, "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa", time.Second); !errors.Is(err, approvals.ErrNotFound) {
		t.Fatalf("Wait on an unknown approval: %v", err)
	}
}

func TestExpireNow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	short := deployRequest()
	short.Asked.TTLSeconds = 60
	a := f.ask(t, short)                                   // expires at +1 min
	g := f.ask(t, withArgs(short, `{"job":"granted"}`))    // granted, expires at +1 min
	long := f.ask(t, withArgs(deployRequest(), `{"x":1}`)) // expires at +15 min
	decide(t, f, g.ID, true)
	f.pending(t, 2)

	f.clock.Add(59 * time.Second)
	f.svc.ExpireNow(ctx)
	if n := strings.Count(strings.Join(f.trail.steps(), " "), audit.ApprovalExpired); n != 0 {
		t.Fatalf("expired before their time: %v", f.trail.steps())
	}
	f.pending(t, 2)

	f.clock.Add(time.Second)
	steps := len(f.trail.steps())
	f.svc.ExpireNow(ctx)
	var expired []string
	for _, r := range f.trail.recs[steps:] {
		if r.Method != audit.ApprovalExpired {
			t.Fatalf("audited %s while expiring", r.Method)
		}
		expired = append(expired, r.ApprovalID)
	}
	if len(expired) != 2 || !(expired[0] == a.ID && expired[1] == g.ID || expired[0] == g.ID && expired[1] == a.ID) {
		t.Fatalf("expired %v, want %s and %s", expired, a.ID, g.ID)
	}
	for _, id := range []string{a.ID, g.ID} {
		if x := f.get(t, id); x.Status != approvals.Expired || !x.ClosedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("%s: %s closed %v", id, x.Status, x.ClosedAt)
		}
	}
	if x := f.get(t, long.ID); x.Status != approvals.Pending {
		t.Fatalf("the 15-minute approval: %s", x.Status)
	}
	f.pending(t, 1)

	// Nothing more to expire: nothing audited again.
	steps = len(f.trail.steps())
	f.svc.ExpireNow(ctx)
	if n := len(f.trail.steps()) - steps; n != 0 {
		t.Fatalf("a second sweep audited %d records", n)
	}
}

// Run sweeps on its own (expires, prunes what closed more than Keep ago)
// and returns when its context ends.
func TestRunSweeps(t *testing.T) {
	store, err := badger.Open(context.Background(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	key, _ := approvals.NewStateKey(bytes.Repeat([]byte{7}, 32))
	tr := &trail{}
	c := &clock{now: t0}
	svc, err := approvals.New(approvals.Config{Store: store, Key: key, Audit: tr, PageURL: "https://gw/ui/approvals/",
		Now: c.Now, Sweep: 5 * time.Millisecond, Keep: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r := deployRequest()
	r.Asked.TTLSeconds = 1
	a, _, err := svc.Ask(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	denied, _, err := svc.Ask(context.Background(), withArgs(r, `{"job":"denied"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Decide(context.Background(), denied.ID, bob, approvals.ViaAdmin, false, ""); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Hour + time.Second) // the denial is older than Keep; the other expires now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := svc.Get(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		_, perr := svc.Get(context.Background(), denied.ID)
		if got.Status == approvals.Expired && errors.Is(perr, approvals.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run left %s (want expired) and %s (want pruned: %v)", got.Status, denied.ID, perr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	// The one it expired is kept: closed just now.
	if got, err := store.Get(context.Background(), a.ID); err != nil || got.Status != approvals.Expired {
		t.Fatalf("the expired approval after Run: %+v, %v", got, err)
	}
}

// Concurrent held calls of one agent ask once for the same call, and never
// hold more than MaxOpenPerClient open between them.
func TestAskConcurrentOnce(t *testing.T) {
	f := newFixture(t)
	svc := f.svc
	ctx := context.Background()
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		wg.Go(func() {
			a, _, err := svc.Ask(ctx, deployRequest())
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = a.ID
		})
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("16 concurrent asks for one call made approvals %v, want one", ids)
		}
	}
	errs := make(chan error, 2*approvals.MaxOpenPerClient)
	for i := range 2 * approvals.MaxOpenPerClient {
		wg.Go(func() {
			_, _, err := svc.Ask(ctx, withArgs(deployRequest(), fmt.Sprintf(`{"n":%d}`, i)))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	tooMany := 0
	for err := range errs {
		if errors.Is(err, approvals.ErrTooMany) {
			tooMany++
		}
	}
	// One open already (the first call's): 19 more fit.
	if want := approvals.MaxOpenPerClient + 1; tooMany != want {
		t.Fatalf("%d of %d asks refused as too many, want %d", tooMany, 2*approvals.MaxOpenPerClient, want)
	}
}
