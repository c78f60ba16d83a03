// Package storetest is the contract every approvals.Store keeps, run by
// each store's tests against a fresh store: what Create, Get, List,
// CountOpen, Transition and Expire do, and that of concurrent transitions
// from one status exactly one wins.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/contract"
)

// T0 is when the fixtures are created; stores' clocks need not agree.
var T0 = time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)

// NewApproval returns a pending approval of client for the call binding,
// created at created and expiring 15 minutes later, with arguments in a
// spelling no JSON encoder would choose (a store keeps them byte for byte).
func NewApproval(id, client, binding string, created time.Time) approvals.Approval {
	return approvals.Approval{
		ID: id, Status: approvals.Pending, Rev: 1,
		Rule: "deploy-needs-release", Reason: "deploys need someone from release",
		Approvers:     contract.Approvers{Groups: []string{"release"}, Not: []string{client, "alice"}},
		PolicyVersion: "v12", RequestID: "req-" + id, ClientID: client, AgentProvider: "demo",
		Tier: "ci_agent", Subject: "alice", Backend: "jenkins", Tool: "jenkins.trigger_deploy",
		ArgsDigest: "d-" + binding, Binding: binding,
		Args:      json.RawMessage(`{ "job" :"deploy-prod",  "environment":"production", "n": 1.50 }`),
		CreatedAt: created, ExpiresAt: created.Add(15 * time.Minute),
	}
}

// Run runs the contract. open returns a fresh, empty store and arranges
// its Close when t ends.
func Run(t *testing.T, open func(t *testing.T) approvals.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s approvals.Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateRefusesBadApprovals", testCreateRefuses},
		{"CreateConcurrentOneWins", testCreateConcurrent},
		{"List", testList},
		{"ListDefaultLimit", testListDefaultLimit},
		{"CountOpen", testCountOpen},
		{"TransitionStatusRefused", testTransitionStatusRefused},
		{"TransitionChangeError", testTransitionChangeError},
		{"TransitionImmutableFields", testTransitionImmutable},
		{"TransitionFinal", testTransitionFinal},
		{"TransitionMovesIndexes", testTransitionIndexes},
		{"TransitionConcurrentOneWins", testTransitionConcurrentOneWins},
		{"Expire", testExpire},
		{"Prune", testPrune},
		{"CancelledContext", testCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// Equal fails t unless got is want: every field, Args byte for byte.
func Equal(t *testing.T, what string, got, want approvals.Approval) {
	t.Helper()
	if !bytes.Equal(got.Args, want.Args) {
		t.Errorf("%s: args %q, want %q", what, got.Args, want.Args)
	}
	got.Args, want.Args = nil, nil
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func create(t *testing.T, s approvals.Store, as ...approvals.Approval) {
	t.Helper()
	for _, a := range as {
		if err := s.Create(context.Background(), a); err != nil {
			t.Fatalf("Create %s: %v", a.ID, err)
		}
	}
}

func get(t *testing.T, s approvals.Store, id string) approvals.Approval {
	t.Helper()
	a, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return a
}

func setStatus(to approvals.Status) func(*approvals.Approval) error {
	return func(a *approvals.Approval) error { a.Status = to; return nil }
}

// grant moves id from pending to granted, as an approver's decision does.
func grant(t *testing.T, s approvals.Store, id string) approvals.Approval {
	t.Helper()
	a, err := s.Transition(context.Background(), id, []approvals.Status{approvals.Pending}, func(a *approvals.Approval) error {
		a.Status, a.Approver, a.Via, a.DecidedAt = approvals.Granted, &approvals.Person{Sub: "bob", Roles: []string{"release"}}, approvals.ViaDashboard, T0.Add(time.Minute)
		return nil
	})
	if err != nil {
		t.Fatalf("grant %s: %v", id, err)
	}
	return a
}

func testCreateGet(t *testing.T, s approvals.Store) {
	ctx := context.Background()
	a := NewApproval("apr_one", "ci-bot-client", "b1:one", T0)
	a.CreatedAt = T0.Add(123456789 * time.Nanosecond) // below a microsecond too
	given := a
	given.Status, given.Rev = "", 0 // the store makes a new approval pending, Rev 1
	create(t, s, given)
	Equal(t, "stored", get(t, s, a.ID), a)

	again := NewApproval("apr_one", "other-client", "b1:other", T0)
	if err := s.Create(ctx, again); !errors.Is(err, approvals.ErrExists) {
		t.Fatalf("Create of a taken id: %v, want ErrExists", err)
	}
	Equal(t, "after the refused Create", get(t, s, a.ID), a)

	if got, err := s.Get(ctx, "apr_none"); !errors.Is(err, approvals.ErrNotFound) {
		t.Fatalf("Get of an unknown id: %+v, %v; want ErrNotFound", got, err)
	}
}

func testCreateRefuses(t *testing.T, s approvals.Store) {
	tests := []struct {
		name string
		edit func(*approvals.Approval)
	}{
		{"no id", func(a *approvals.Approval) { a.ID = "" }},
		{"no client", func(a *approvals.Approval) { a.ClientID = "" }},
		{"no binding", func(a *approvals.Approval) { a.Binding = "" }},
		{"already granted", func(a *approvals.Approval) { a.Status = approvals.Granted }},
		{"unknown status", func(a *approvals.Approval) { a.Status = "maybe" }},
		{"no creation time", func(a *approvals.Approval) { a.CreatedAt = time.Time{} }},
		{"no expiry", func(a *approvals.Approval) { a.ExpiresAt = time.Time{} }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewApproval(fmt.Sprintf("apr_bad%d", i), "ci-bot-client", "b1:bad", T0)
			tt.edit(&a)
			if err := s.Create(context.Background(), a); err == nil {
				t.Fatalf("stored %+v", a)
			}
			if a.ID != "" {
				if _, err := s.Get(context.Background(), a.ID); !errors.Is(err, approvals.ErrNotFound) {
					t.Fatalf("refused approval is stored: %v", err)
				}
			}
		})
	}
	if n, err := s.CountOpen(context.Background(), "", ""); err != nil || n != 0 {
		t.Fatalf("CountOpen after refusals = %d, %v; want 0", n, err)
	}
}

func testCreateConcurrent(t *testing.T, s approvals.Store) {
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Create(context.Background(), NewApproval("apr_race", fmt.Sprintf("client-%d", i), "b1:race", T0))
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, approvals.ErrExists):
			t.Errorf("Create %d: %v, want nil or ErrExists", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent Creates of one id succeeded, want 1", won, n)
	}
	if c, err := s.CountOpen(context.Background(), "", ""); err != nil || c != 1 {
		t.Fatalf("CountOpen = %d, %v; want 1", c, err)
	}
}

func ids(as []approvals.Approval) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func testList(t *testing.T, s approvals.Store) {
	ctx := context.Background()
	at := func(m int) time.Time { return T0.Add(time.Duration(m) * time.Minute) }
	// Created in an order that is not the listing's; apr_e and apr_f share
	// their creation time (the id breaks the tie).
	create(t, s,
		NewApproval("apr_c", "ci-bot", "b1:deploy", at(3)),
		NewApproval("apr_a", "ci-bot", "b1:deploy", at(1)),
		NewApproval("apr_f", "planner", "b1:ddl", at(5)),
		NewApproval("apr_b", "planner", "b1:ddl", at(2)),
		NewApproval("apr_e", "ci-bot", "b1:other", at(5)),
		NewApproval("apr_d", "ci-bot", "b1:deploy", at(4)),
	)
	grant(t, s, "apr_c")
	if _, err := s.Transition(ctx, "apr_a", []approvals.Status{approvals.Pending}, setStatus(approvals.Void)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(ctx, "apr_b", []approvals.Status{approvals.Pending}, setStatus(approvals.Denied)); err != nil {
		t.Fatal(err)
	}
	open := []approvals.Status{approvals.Pending, approvals.Granted}
	tests := []struct {
		name string
		f    approvals.Filter
		want []string
	}{
		{"everything", approvals.Filter{}, []string{"apr_e", "apr_f", "apr_d", "apr_c", "apr_b", "apr_a"}},
		{"pending", approvals.Filter{Statuses: []approvals.Status{approvals.Pending}}, []string{"apr_e", "apr_f", "apr_d"}},
		{"open", approvals.Filter{Statuses: open}, []string{"apr_e", "apr_f", "apr_d", "apr_c"}},
		{"open, listed twice", approvals.Filter{Statuses: append(open, approvals.Granted)}, []string{"apr_e", "apr_f", "apr_d", "apr_c"}},
		{"closed", approvals.Filter{Statuses: []approvals.Status{approvals.Denied, approvals.Void}}, []string{"apr_b", "apr_a"}},
		{"no such status", approvals.Filter{Statuses: []approvals.Status{approvals.Used}}, nil},
		{"client", approvals.Filter{ClientID: "planner"}, []string{"apr_f", "apr_b"}},
		{"client, open", approvals.Filter{ClientID: "ci-bot", Statuses: open}, []string{"apr_e", "apr_d", "apr_c"}},
		{"binding", approvals.Filter{Binding: "b1:deploy"}, []string{"apr_d", "apr_c", "apr_a"}},
		{"binding, open", approvals.Filter{Binding: "b1:deploy", Statuses: open}, []string{"apr_d", "apr_c"}},
		{"binding, other client", approvals.Filter{Binding: "b1:deploy", ClientID: "planner"}, nil},
		{"unknown binding", approvals.Filter{Binding: "b1:none"}, nil},
		{"unknown client", approvals.Filter{ClientID: "nobody"}, nil},
		{"limit", approvals.Filter{Limit: 2}, []string{"apr_e", "apr_f"}},
		{"open, limit", approvals.Filter{Statuses: open, Limit: 3}, []string{"apr_e", "apr_f", "apr_d"}},
		{"binding, limit", approvals.Filter{Binding: "b1:deploy", Limit: 1}, []string{"apr_d"}},
		{"client, limit", approvals.Filter{ClientID: "ci-bot", Limit: 3}, []string{"apr_e", "apr_d", "apr_c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.List(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), tt.want) {
				t.Fatalf("List(%+v) = %v, want %v", tt.f, ids(got), tt.want)
			}
			for _, a := range got {
				Equal(t, "listed "+a.ID, a, get(t, s, a.ID))
			}
		})
	}
}

func testListDefaultLimit(t *testing.T, s approvals.Store) {
	n := approvals.DefaultListLimit + 5
	for i := range n {
		create(t, s, NewApproval(fmt.Sprintf("apr_%04d", i), fmt.Sprintf("client-%d", i%7), "b1:many", T0.Add(time.Duration(i)*time.Second)))
	}
	for _, f := range []approvals.Filter{{}, {Binding: "b1:many"}, {Statuses: []approvals.Status{approvals.Pending}}, {Limit: -1}} {
		got, err := s.List(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != approvals.DefaultListLimit || got[0].ID != fmt.Sprintf("apr_%04d", n-1) {
			t.Fatalf("List(%+v): %d approvals from %s, want the newest %d", f, len(got), got[0].ID, approvals.DefaultListLimit)
		}
	}
	got, err := s.List(context.Background(), approvals.Filter{Limit: approvals.MaxListLimit + 1})
	if err != nil || len(got) != n {
		t.Fatalf("List with a limit above the maximum: %d, %v; want all %d", len(got), err, n)
	}
}

func testCountOpen(t *testing.T, s approvals.Store) {
	ctx := context.Background()
	type owner struct {
		client, subject string
		want            int
	}
	counts := func(when string, want []owner) {
		t.Helper()
		for _, o := range want {
			if n, err := s.CountOpen(ctx, o.client, o.subject); err != nil || n != o.want {
				t.Fatalf("%s: CountOpen(%q, %q) = %d, %v; want %d", when, o.client, o.subject, n, err, o.want)
			}
		}
	}
	of := func(id, client, subject string) approvals.Approval {
		a := NewApproval(id, client, "b1:"+id, T0)
		a.Subject = subject
		return a
	}
	counts("empty", []owner{{"", "", 0}, {"ci-bot", "alice", 0}})
	for i := range 3 {
		create(t, s, of(fmt.Sprintf("apr_ci%d", i), "ci-bot", "alice"))
	}
	create(t, s, of("apr_pl", "planner", "alice"), of("apr_cib", "ci-bot-2", "alice"),
		of("apr_bob", "ci-bot", "bob"), of("apr_al2", "ci-bot", "alice-2"), of("apr_none", "ci-bot", ""))
	counts("created", []owner{
		{"ci-bot", "alice", 3},
		{"planner", "alice", 1},
		{"ci-bot-2", "alice", 1}, // a client id that is a prefix of another's counts alone
		{"ci", "alice", 0},
		{"ci-bot", "bob", 1}, // another person on the same client counts apart
		{"ci-bot", "alice-2", 1},
		{"ci-bot", "ali", 0},
		{"ci-bot", "", 1}, // no person (a machine) too
		{"", "", 8},
	})
	grant(t, s, "apr_ci0") // granted is still open
	counts("granted", []owner{{"ci-bot", "alice", 3}})
	if _, err := s.Transition(ctx, "apr_ci0", []approvals.Status{approvals.Granted}, setStatus(approvals.Used)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(ctx, "apr_ci1", []approvals.Status{approvals.Pending}, setStatus(approvals.Withdrawn)); err != nil {
		t.Fatal(err)
	}
	counts("closed", []owner{{"ci-bot", "alice", 1}, {"ci-bot", "bob", 1}, {"", "", 6}})
}

func testTransitionStatusRefused(t *testing.T, s approvals.Store) {
	ctx := context.Background()
	create(t, s, NewApproval("apr_x", "ci-bot", "b1:x", T0))
	want := grant(t, s, "apr_x")
	called := false
	got, err := s.Transition(ctx, "apr_x", []approvals.Status{approvals.Pending}, func(a *approvals.Approval) error {
		called = true
		return nil
	})
	if !errors.Is(err, approvals.ErrStatus) {
		t.Fatalf("Transition from pending of a granted approval: %v, want ErrStatus", err)
	}
	if called {
		t.Fatal("change ran although the status was not in from")
	}
	Equal(t, "returned with ErrStatus", got, want)
	Equal(t, "stored", get(t, s, "apr_x"), want)
	if _, err := s.Transition(ctx, "apr_x", nil, setStatus(approvals.Used)); !errors.Is(err, approvals.ErrStatus) {
		t.Fatalf("Transition from no status: %v, want ErrStatus", err)
	}
	if _, err := s.Transition(ctx, "apr_none", []approvals.Status{approvals.Pending}, setStatus(approvals.Granted)); !errors.Is(err, approvals.ErrNotFound) {
		t.Fatalf("Transition of an unknown id: %v, want ErrNotFound", err)
	}
}

var errChange = errors.New("the change says no")

func testTransitionChangeError(t *testing.T, s approvals.Store) {
	ctx := context.Background()
	want := NewApproval("apr_x", "ci-bot", "b1:x", T0)
	create(t, s, want)
	_, err := s.Transition(ctx, "apr_x", []approvals.Status{approvals.Pending}, func(a *approvals.Approval) error {
		a.Status, a.Comment = approvals.Denied, "half done"
		a.Approvers.Groups[0] = "mangled" // in place: the stored one must not see it
		return errChange
	})
	if !errors.Is(err, errChange) {
		t.Fatalf("Transition whose change fails: %v, want it wrapped", err)
	}
	if errors.Is(err, approvals.ErrStatus) {
		t.Fatalf("a change's error reads as ErrStatus: %v", err)
	}
	Equal(t, "after the failed change", get(t, s, "apr_x"), want)
}

func testTransitionImmutable(t *testing.T, s approvals.Store) {
	ctx := context.Background()
	want := NewApproval("apr_x", "ci-bot", "b1:x", T0)
	create(t, s, want)
	for name, edit := range map[string]func(*approvals.Approval){
		"id":      func(a *approvals.Approval) { a.ID = "apr_y" },
		"binding": func(a *approvals.Approval) { a.Binding = "b1:y" },
		"client":  func(a *approvals.Approval) { a.ClientID = "planner" },
		"person":  func(a *approvals.Approval) { a.Subject = "bob" },
		"status":  func(a *approvals.Approval) { a.Status = "maybe" },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Transition(ctx, "apr_x", []approvals.Status{approvals.Pending}, func(a *approvals.Approval) error {
				a.Status = approvals.Granted
				edit(a)
				return nil
			})
			if err == nil || errors.Is(err, approvals.ErrStatus) {
				t.Fatalf("Transition changing the %s: %v, want an error other than ErrStatus", name, err)
			}
			Equal(t, "after the refused change", get(t, s, "apr_x"), want)
			if _, err := s.Get(ctx, "apr_y"); !errors.Is(err, approvals.ErrNotFound) {
				t.Fatalf("an approval appeared under the new id: %v", err)
			}
		})
	}
	got, err := s.List(ctx, approvals.Filter{Binding: "b1:y"})
	if err != nil || len(got) != 0 {
		t.Fatalf("List of the binding a refused change named: %v, %v", ids(got), err)
	}
	// A closed approval never opens again.
	if _, err := s.Transition(ctx, "apr_x", []approvals.Status{approvals.Pending}, setStatus(approvals.Denied)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(ctx, "apr_x", []approvals.Status{approvals.Denied}, setStatus(approvals.Granted)); err == nil {
		t.Fatal("a denied approval became granted")
	}
	if a := get(t, s, "apr_x"); a.Status != approvals.Denied || a.Rev != 2 {
		t.Fatalf("after the refused reopening: %s rev %d, want denied rev 2", a.Status, a.Rev)
	}
}

func testTransitionFinal(t *testing.T, s approvals.Store) {
	ctx := context.Background()
	create(t, s, NewApproval("apr_x", "ci-bot", "b1:x", T0), NewApproval("apr_y", "ci-bot", "b1:y", T0))
	g := grant(t, s, "apr_x")
	if g.Rev != 2 || g.Status != approvals.Granted || !g.ClosedAt.IsZero() || len(g.Args) == 0 {
		t.Fatalf("granted: rev %d %s closed %v args %q; want rev 2, open, arguments kept", g.Rev, g.Status, g.ClosedAt, g.Args)
	}
	Equal(t, "granted, as returned and as stored", get(t, s, "apr_x"), g)

	// Closed without a ClosedAt: the store stamps it and drops the arguments.
	before := time.Now().Add(-time.Second)
	u, err := s.Transition(ctx, "apr_x", []approvals.Status{approvals.Granted}, func(a *approvals.Approval) error {
		a.Status, a.Args = approvals.Used, json.RawMessage(`{"kept":"no"}`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if u.Rev != 3 || u.Status != approvals.Used || u.ClosedAt.IsZero() || u.ClosedAt.Before(before) || u.Args != nil {
		t.Fatalf("used: rev %d %s closed %v args %q; want rev 3, closed now, no arguments", u.Rev, u.Status, u.ClosedAt, u.Args)
	}
	if u.Approver == nil || u.Approver.Sub != "bob" || !u.DecidedAt.Equal(T0.Add(time.Minute)) {
		t.Fatalf("used approval lost its decision: %+v", u)
	}
	Equal(t, "used, as returned and as stored", get(t, s, "apr_x"), u)

	// A ClosedAt the change sets is kept.
	closed := T0.Add(7 * time.Minute)
	d, err := s.Transition(ctx, "apr_y", []approvals.Status{approvals.Pending}, func(a *approvals.Approval) error {
		a.Status, a.ClosedAt, a.Why, a.Rev = approvals.Void, closed, "policy changed", 99
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.Rev != 2 || !d.ClosedAt.Equal(closed) || d.Why != "policy changed" || d.Args != nil {
		t.Fatalf("void: rev %d closed %v why %q args %q; want rev 2 (not the change's), closed %v, no arguments", d.Rev, d.ClosedAt, d.Why, d.Args, closed)
	}
	Equal(t, "void, as stored", get(t, s, "apr_y"), d)
	// A final approval may still be edited (from names its status); Rev goes on.
	e, err := s.Transition(ctx, "apr_y", []approvals.Status{approvals.Void}, func(a *approvals.Approval) error {
		a.Why = "policy changed twice"
		return nil
	})
	if err != nil || e.Rev != 3 || !e.ClosedAt.Equal(closed) {
		t.Fatalf("editing a void approval: %+v, %v; want rev 3 and ClosedAt kept", e, err)
	}
}

func testTransitionIndexes(t *testing.T, s approvals.Store) {
	ctx := context.Background()
	create(t, s, NewApproval("apr_x", "ci-bot", "b1:x", T0))
	list := func(f approvals.Filter) []string {
		t.Helper()
		got, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return ids(got)
	}
	steps := []approvals.Status{approvals.Granted, approvals.Used}
	for i, to := range steps {
		from := approvals.Pending
		if i > 0 {
			from = steps[i-1]
		}
		if _, err := s.Transition(ctx, "apr_x", []approvals.Status{from}, setStatus(to)); err != nil {
			t.Fatal(err)
		}
		for _, st := range approvals.Statuses() {
			got := list(approvals.Filter{Statuses: []approvals.Status{st}})
			if want := st == to; want != (len(got) == 1) {
				t.Fatalf("after %s: List(%s) = %v", to, st, got)
			}
		}
		if got := list(approvals.Filter{Binding: "b1:x"}); len(got) != 1 {
			t.Fatalf("after %s: List(binding) = %v", to, got)
		}
		if got := list(approvals.Filter{ClientID: "ci-bot"}); len(got) != 1 {
			t.Fatalf("after %s: List(client) = %v", to, got)
		}
	}
	if n, err := s.CountOpen(ctx, "ci-bot", "alice"); err != nil || n != 0 {
		t.Fatalf("CountOpen after used = %d, %v", n, err)
	}
	if exp, err := s.Expire(ctx, T0.Add(time.Hour)); err != nil || len(exp) != 0 {
		t.Fatalf("Expire found a used approval: %v, %v", ids(exp), err)
	}
}

// testTransitionConcurrentOneWins: see RaceReplicas.
func testTransitionConcurrentOneWins(t *testing.T, s approvals.Store) {
	RaceReplicas(t, []approvals.Store{s})
}

// RaceReplicas: 32 retries, spread over stores (replicas sharing one
// database, or one store), race to use one granted approval; exactly one
// transition succeeds, every other gets ErrStatus and sees it used.
func RaceReplicas(t *testing.T, stores []approvals.Store) {
	const n = 32
	s := stores[0]
	create(t, s, NewApproval("apr_x", "ci-bot", "b1:x", T0))
	grant(t, s, "apr_x")
	type result struct {
		a   approvals.Approval
		err error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			a, err := stores[i%len(stores)].Transition(context.Background(), "apr_x", []approvals.Status{approvals.Granted}, func(a *approvals.Approval) error {
				// Between the store's read and its write: a store whose
				// check and write are not one step lets the others in here.
				time.Sleep(time.Millisecond)
				a.Status, a.Comment = approvals.Used, fmt.Sprintf("retry %d", i)
				return nil
			})
			results[i] = result{a, err}
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, r := range results {
		switch {
		case r.err == nil && winner >= 0:
			t.Fatalf("retries %d and %d both used the approval", winner, i)
		case r.err == nil:
			winner = i
		case !errors.Is(r.err, approvals.ErrStatus):
			t.Fatalf("retry %d: %v, want ErrStatus", i, r.err)
		case r.a.Status != approvals.Used:
			t.Fatalf("retry %d lost but was shown %s", i, r.a.Status)
		}
	}
	if winner < 0 {
		t.Fatal("no retry used the approval")
	}
	a := get(t, s, "apr_x")
	if a.Status != approvals.Used || a.Rev != 3 || a.Comment != fmt.Sprintf("retry %d", winner) {
		t.Fatalf("stored: %s rev %d %q; want used, rev 3, by retry %d", a.Status, a.Rev, a.Comment, winner)
	}
	for i, r := range results {
		if i != winner {
			Equal(t, fmt.Sprintf("what loser %d saw", i), r.a, a)
		}
	}
}

func testExpire(t *testing.T, s approvals.Store) {
	ctx := context.Background()
	now := T0.Add(time.Hour)
	mk := func(id string, expires time.Time) approvals.Approval {
		a := NewApproval(id, "ci-bot", "b1:"+id, T0)
		a.ExpiresAt = expires
		return a
	}
	create(t, s,
		mk("apr_past", now.Add(-time.Minute)),
		mk("apr_granted_past", now.Add(-time.Second)),
		mk("apr_at_now", now),
		mk("apr_just_after", now.Add(time.Nanosecond)),
		mk("apr_future", now.Add(time.Minute)),
		mk("apr_denied_past", now.Add(-time.Minute)),
	)
	grant(t, s, "apr_granted_past")
	if _, err := s.Transition(ctx, "apr_denied_past", []approvals.Status{approvals.Pending}, setStatus(approvals.Denied)); err != nil {
		t.Fatal(err)
	}
	denied := get(t, s, "apr_denied_past")

	got, err := s.Expire(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	gotIDs := ids(got)
	slices.Sort(gotIDs)
	if want := []string{"apr_at_now", "apr_granted_past", "apr_past"}; !slices.Equal(gotIDs, want) {
		t.Fatalf("Expire = %v, want %v", gotIDs, want)
	}
	for _, a := range got {
		if a.Status != approvals.Expired || !a.ClosedAt.Equal(now) || a.Args != nil || a.Why == "" {
			t.Errorf("expired %s: %s closed %v args %q why %q; want expired at %v, no arguments, a reason", a.ID, a.Status, a.ClosedAt, a.Args, a.Why, now)
		}
		Equal(t, "expired "+a.ID+", as stored", get(t, s, a.ID), a)
	}
	if g := get(t, s, "apr_granted_past"); g.Rev != 3 || g.Approver == nil {
		t.Errorf("expired granted approval: rev %d approver %v; want rev 3, decision kept", g.Rev, g.Approver)
	}
	Equal(t, "a denied approval past its time", get(t, s, "apr_denied_past"), denied)
	for _, id := range []string{"apr_just_after", "apr_future"} {
		if a := get(t, s, id); a.Status != approvals.Pending {
			t.Errorf("%s: %s, want still pending", id, a.Status)
		}
	}
	if again, err := s.Expire(ctx, now); err != nil || len(again) != 0 {
		t.Fatalf("second Expire = %v, %v; want nothing", ids(again), err)
	}
	if n, err := s.CountOpen(ctx, "ci-bot", "alice"); err != nil || n != 2 {
		t.Fatalf("CountOpen after Expire = %d, %v; want 2", n, err)
	}
	if got, err := s.List(ctx, approvals.Filter{Statuses: []approvals.Status{approvals.Expired}}); err != nil || len(got) != 3 {
		t.Fatalf("List(expired) = %v, %v", ids(got), err)
	}
}

func testCancelled(t *testing.T, s approvals.Store) {
	create(t, s, NewApproval("apr_x", "ci-bot", "b1:x", T0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, "apr_x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v", err)
	}
	if _, err := s.Transition(ctx, "apr_x", []approvals.Status{approvals.Pending}, setStatus(approvals.Denied)); !errors.Is(err, context.Canceled) {
		t.Errorf("Transition with a cancelled context: %v", err)
	}
	if err := s.Create(ctx, NewApproval("apr_y", "ci-bot", "b1:y", T0)); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a cancelled context: %v", err)
	}
	if a := get(t, s, "apr_x"); a.Status != approvals.Pending {
		t.Fatalf("a cancelled Transition changed the approval: %s", a.Status)
	}
}

// Reopen checks that what one store wrote, another opened on the same
// place reads, indexes included: open opens the store (a second time
// after the first is closed).
func Reopen(t *testing.T, open func(t *testing.T) approvals.Store) {
	ctx := context.Background()
	s := open(t)
	create(t, s, NewApproval("apr_x", "ci-bot", "b1:x", T0), NewApproval("apr_y", "ci-bot", "b1:y", T0.Add(time.Second)))
	x := grant(t, s, "apr_x")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t)
	Equal(t, "reopened", get(t, s, "apr_x"), x)
	got, err := s.List(ctx, approvals.Filter{Statuses: []approvals.Status{approvals.Granted}})
	if err != nil || !slices.Equal(ids(got), []string{"apr_x"}) {
		t.Fatalf("List(granted) after reopening = %v, %v", ids(got), err)
	}
	if n, err := s.CountOpen(ctx, "ci-bot", "alice"); err != nil || n != 2 {
		t.Fatalf("CountOpen after reopening = %d, %v; want 2", n, err)
	}
	if _, err := s.Transition(ctx, "apr_x", []approvals.Status{approvals.Granted}, setStatus(approvals.Used)); err != nil {
		t.Fatalf("Transition after reopening: %v", err)
	}
}

func testPrune(t *testing.T, s approvals.Store) {
	ctx := context.Background()
	cutoff := T0.Add(time.Hour)
	closeAt := func(id string, to approvals.Status, at time.Time) {
		t.Helper()
		if _, err := s.Transition(ctx, id, []approvals.Status{approvals.Pending, approvals.Granted}, func(a *approvals.Approval) error {
			a.Status, a.ClosedAt = to, at
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []string{"apr_old1", "apr_old2", "apr_at", "apr_new", "apr_open", "apr_granted"} {
		create(t, s, NewApproval(id, "ci-bot", "b1:p", T0.Add(time.Duration(i)*time.Second)))
	}
	closeAt("apr_old1", approvals.Denied, cutoff.Add(-time.Minute))
	closeAt("apr_old2", approvals.Used, cutoff.Add(-time.Microsecond))
	closeAt("apr_at", approvals.Expired, cutoff)
	closeAt("apr_new", approvals.Void, cutoff.Add(time.Minute))
	grant(t, s, "apr_granted") // open, however old

	n, err := s.Prune(ctx, cutoff)
	if err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want 2", n, err)
	}
	for _, id := range []string{"apr_old1", "apr_old2"} {
		if _, err := s.Get(ctx, id); !errors.Is(err, approvals.ErrNotFound) {
			t.Fatalf("pruned %s: Get %v, want ErrNotFound", id, err)
		}
	}
	want := []string{"apr_granted", "apr_open", "apr_new", "apr_at"}
	for _, f := range []approvals.Filter{{}, {Binding: "b1:p"}, {ClientID: "ci-bot"}, {Statuses: approvals.Statuses()}} {
		got, err := s.List(ctx, f)
		if err != nil || !slices.Equal(ids(got), want) {
			t.Fatalf("List(%+v) after Prune = %v, %v; want %v", f, ids(got), err, want)
		}
	}
	if n, err := s.CountOpen(ctx, "ci-bot", "alice"); err != nil || n != 2 {
		t.Fatalf("CountOpen after Prune = %d, %v; want 2", n, err)
	}
	if n, err := s.Prune(ctx, cutoff); err != nil || n != 0 {
		t.Fatalf("second Prune = %d, %v; want 0", n, err)
	}
	// Far in the future: every closed one goes, the open ones stay.
	if n, err := s.Prune(ctx, T0.Add(1000*time.Hour)); err != nil || n != 2 {
		t.Fatalf("Prune of everything closed = %d, %v; want 2", n, err)
	}
	got, err := s.List(ctx, approvals.Filter{})
	if err != nil || !slices.Equal(ids(got), []string{"apr_granted", "apr_open"}) {
		t.Fatalf("List after pruning everything closed = %v, %v", ids(got), err)
	}
	// An id pruned may be created again.
	create(t, s, NewApproval("apr_old1", "ci-bot", "b1:p", T0))
}

// BenchmarkLife measures one approval's life in s: Create, then the two
// transitions of a granted and used approval (three writes).
func BenchmarkLife(b *testing.B, s approvals.Store) {
	ctx := context.Background()
	use := func(to approvals.Status) func(*approvals.Approval) error {
		return func(a *approvals.Approval) error { a.Status = to; return nil }
	}
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("apr_bench%d", i)
		i++
		if err := s.Create(ctx, NewApproval(id, fmt.Sprintf("client-%d", i%50), "b1:"+id, T0)); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Transition(ctx, id, []approvals.Status{approvals.Pending}, use(approvals.Granted)); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Transition(ctx, id, []approvals.Status{approvals.Granted}, use(approvals.Used)); err != nil {
			b.Fatal(err)
		}
	}
}
