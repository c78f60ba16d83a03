package approvals

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/contract"
)

// Why a person may not decide an approval (Service.Decide), or why an
// approval cannot be asked for or used. Each is wrapped with detail.
var (
	// ErrNotApprover: the person is in none of the approver groups.
	ErrNotApprover = errors.New("not an approver for this call")
	// ErrSelfApproval: the person is the requester (or acts in its chain)
	// and the rule excludes them: separation of duties.
	ErrSelfApproval = errors.New("the requester may not approve their own call")
	// ErrClosed: the approval was already decided, used or closed.
	ErrClosed = errors.New("approval is no longer pending")
	// ErrExpired: the approval's time ran out.
	ErrExpired = errors.New("approval expired")
	// ErrUsed: the approval already allowed a call (a replay).
	ErrUsed = errors.New("approval already used")
	// ErrTooMany: the client has MaxOpenPerClient approvals open for
	// this person.
	ErrTooMany = errors.New("too many approvals open for this client and person")
	// ErrRecentlyDenied: an approver denied the same call less than
	// DeniedCooldown ago.
	ErrRecentlyDenied = errors.New("an approver denied this call")
	// ErrArgsTooLong: the call's arguments are longer than an approver is
	// shown (MaxArgsLen).
	ErrArgsTooLong = errors.New("the arguments are too long to be shown to an approver")
	// ErrBadDecision: the decision itself is malformed (comment too long
	// or not UTF-8, no approver).
	ErrBadDecision = errors.New("bad approval decision")
)

// Auditor takes the records of an approval's life (*audit.Trail).
type Auditor interface {
	Record(audit.Record)
}

// Config builds a Service.
type Config struct {
	Store Store
	// Key signs and checks requestStates.
	Key *StateKey
	// Audit records every step (required).
	Audit Auditor
	// PageURL is the approval page's URL without the id, e.g.
	// "https://gw.example/ui/approvals/"; the id is appended.
	PageURL string
	// Registerer takes the metrics (pbac_approvals_pending,
	// pbac_approval_decision_seconds); nil registers nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Poll is how often Wait looks at the store (default 250 ms); Sweep
	// how often Run expires approvals (default 10 s).
	Poll, Sweep time.Duration
	// Keep is how long Run keeps a closed approval before it prunes it
	// from the store (default DefaultKeep); the audit trail keeps its story.
	Keep time.Duration
}

// DefaultKeep is how long closed approvals stay in the store by default.
const DefaultKeep = 7 * 24 * time.Hour

// Service is the life of approvals: asked for by the gateway, decided by
// approvers, used once by the call's retry, expired by time.
type Service struct {
	store   Store
	key     *StateKey
	audit   Auditor
	pageURL string
	log     *slog.Logger
	now     func() time.Time
	poll    time.Duration
	sweep   time.Duration
	keep    time.Duration

	pending  prometheus.Gauge
	decision *prometheus.HistogramVec

	// asking serialises Ask in this process, so that concurrent held
	// calls of one agent neither ask twice for the same call nor overrun
	// MaxOpenPerClient between the count and the create. (Replicas may
	// still each ask once: the bound is then per replica.)
	asking sync.Mutex
}

// New checks cfg and builds a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Key == nil || cfg.Audit == nil {
		return nil, errors.New("approvals: a store, a state key and an audit trail are required")
	}
	if cfg.PageURL == "" {
		return nil, errors.New("approvals: the approval page's URL is required")
	}
	s := &Service{store: cfg.Store, key: cfg.Key, audit: cfg.Audit, pageURL: cfg.PageURL,
		log: cfg.Logger, now: cfg.Now, poll: cfg.Poll, sweep: cfg.Sweep, keep: cfg.Keep}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.poll <= 0 {
		s.poll = 250 * time.Millisecond
	}
	if s.sweep <= 0 {
		s.sweep = 10 * time.Second
	}
	if s.keep <= 0 {
		s.keep = DefaultKeep
	}
	s.pending = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pbac_approvals_pending",
		Help: "Approvals asked for and not yet decided, expired or withdrawn."})
	s.decision = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pbac_approval_decision_seconds",
		Help:    "Time from an approval being asked for to an approver deciding it, by outcome (approved, denied).",
		Buckets: []float64{5, 15, 30, 60, 120, 300, 600, 1800, 3600, 14400, 86400}}, []string{"outcome"})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.pending, s.decision} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("approvals: registering metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Collectors are the service's metrics, for a registry that did not
// get them through Config.Registerer.
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.pending, s.decision}
}

// URL is the approval page of id.
func (s *Service) URL(id string) string { return s.pageURL + id }

// Request is a held call asking for an approval.
type Request struct {
	Call          Call
	RequestID     string
	AgentProvider string
	Tier          string
	Backend       string
	PolicyVersion string
	// Asked is what policy asked for (Required is true).
	Asked contract.Approval
}

// Ask returns the pending approval of this call under this rule and
// approvers (whichever policy version asked: an edit elsewhere in the
// policy does not take the approver's link away), or asks for a new one
// (created true). Any other open approval of the same call is void: the
// call was decided again and asks for something else now. A call an
// approver denied less than DeniedCooldown ago is not asked for again
// (ErrRecentlyDenied), so an agent cannot wear an approver down; nor is a
// call whose arguments are too long to show the approver (ErrArgsTooLong).
// One client holds at most MaxOpenPerClient open approvals for one person
// (ErrTooMany).
func (s *Service) Ask(ctx context.Context, r Request) (a Approval, created bool, err error) {
	if !r.Asked.Required || r.Asked.Rule == "" {
		return Approval{}, false, errors.New("approvals: asking for an approval policy did not require")
	}
	if len(r.Call.Arguments) > MaxArgsLen {
		return Approval{}, false, fmt.Errorf("%w: %d bytes, an approver is shown at most %d", ErrArgsTooLong, len(r.Call.Arguments), MaxArgsLen)
	}
	s.asking.Lock()
	defer s.asking.Unlock()
	binding := r.Call.Binding()
	now := s.now()
	denied, err := s.store.List(ctx, Filter{Statuses: []Status{Denied}, Binding: binding, Limit: 1})
	if err != nil {
		return Approval{}, false, fmt.Errorf("approvals: looking up denials of the call: %w", err)
	}
	if len(denied) == 1 && now.Sub(denied[0].DecidedAt) < DeniedCooldown {
		d := denied[0]
		why := fmt.Sprintf("%s denied it at %s", d.Approver.Sub, d.DecidedAt.Format(time.RFC3339))
		if d.Comment != "" {
			why += " (" + d.Comment + ")"
		}
		return d, false, fmt.Errorf("%w: %s; ask again after %s", ErrRecentlyDenied, why, d.DecidedAt.Add(DeniedCooldown).Format(time.RFC3339))
	}
	open, err := s.store.List(ctx, Filter{Statuses: []Status{Pending, Granted}, Binding: binding, Limit: MaxOpenPerClient})
	if err != nil {
		return Approval{}, false, fmt.Errorf("approvals: looking up open approvals of the call: %w", err)
	}
	for _, o := range open {
		switch {
		case !o.ExpiresAt.After(now):
			// the sweeper closes it
		case o.Status == Pending && o.Rule == r.Asked.Rule && sameApprovers(o.Approvers, r.Asked.Approvers):
			return o, false, nil
		default:
			why := fmt.Sprintf("the call was decided again under policy %s, which asks for rule %s with approvers %s%s instead",
				r.PolicyVersion, r.Asked.Rule, strings.Join(r.Asked.Approvers.Groups, ", "), notText(r.Asked.Approvers.Not))
			if _, err := s.close(ctx, o.ID, Void, why, r.RequestID); err != nil && !errors.Is(err, ErrStatus) {
				return Approval{}, false, err
			}
		}
	}
	// The bound is per agent (client and person), as every other bound
	// on agents: one person's held calls leave the others on a shared
	// client their own.
	n, err := s.store.CountOpen(ctx, r.Call.ClientID, r.Call.Subject)
	if err != nil {
		return Approval{}, false, fmt.Errorf("approvals: counting the open approvals of the client for the person: %w", err)
	}
	if n >= MaxOpenPerClient {
		return Approval{}, false, fmt.Errorf("%w (%d): wait for some to be decided or to expire", ErrTooMany, n)
	}
	ttl := time.Duration(r.Asked.TTLSeconds) * time.Second
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	ttl = min(ttl, MaxTTL)
	a = Approval{
		ID: newID(), Status: Pending, Rev: 1,
		Rule: r.Asked.Rule, Reason: r.Asked.Reason, Approvers: r.Asked.Approvers, PolicyVersion: r.PolicyVersion,
		RequestID: r.RequestID, ClientID: r.Call.ClientID, AgentProvider: r.AgentProvider, Tier: r.Tier,
		Subject: r.Call.Subject, Backend: r.Backend, Tool: r.Call.Tool, ArgsDigest: audit.Digest(r.Call.Arguments), Binding: binding,
		CreatedAt: now.UTC(), ExpiresAt: now.Add(ttl).UTC(),
	}
	a.Args = append([]byte(nil), r.Call.Arguments...)
	if err := s.store.Create(ctx, a); err != nil {
		return Approval{}, false, fmt.Errorf("approvals: storing the approval asked for: %w", err)
	}
	s.pending.Inc()
	s.record(a, audit.ApprovalRequested, a.RequestID, fmt.Sprintf("%s asked for approval of %s: %s; approvers: %s%s",
		a.ClientID, a.Tool, a.Reason, strings.Join(a.Approvers.Groups, ", "), notText(a.Approvers.Not)), nil, "")
	return a, true, nil
}

// sameApprovers reports whether a and b let the same people approve.
func sameApprovers(a, b contract.Approvers) bool {
	return a.Requester == b.Requester && sameSet(a.Groups, b.Groups) && sameSet(a.Not, b.Not)
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

func notText(not []string) string {
	if len(not) == 0 {
		return ""
	}
	return ", not " + strings.Join(not, ", ")
}

// Get returns the approval id; ErrNotFound for an id this package could
// not have made.
func (s *Service) Get(ctx context.Context, id string) (Approval, error) {
	if !ValidID(id) {
		return Approval{}, fmt.Errorf("approval %q: %w", id, ErrNotFound)
	}
	return s.store.Get(ctx, id)
}

// List lists approvals (newest first).
func (s *Service) List(ctx context.Context, f Filter) ([]Approval, error) {
	return s.store.List(ctx, f)
}

// Eligible says whether p may decide a: nil, or ErrNotApprover or
// ErrSelfApproval wrapped with why. It applies the approver rule as
// policy states it (contract.Approvers): one of the groups among p's
// roles or groups, and p not one of Not (compared trimmed and
// lower-cased, as policy's identity_key).
func Eligible(a Approval, p Person) error {
	sub := identityKey(p.Sub)
	if sub == "" {
		return fmt.Errorf("%w: no approver named", ErrBadDecision)
	}
	for _, n := range a.Approvers.Not {
		if identityKey(n) == sub {
			return fmt.Errorf("%w: %s acts for or as the requester of %s (rule %s)", ErrSelfApproval, p.Sub, a.ID, a.Rule)
		}
	}
	for _, g := range a.Approvers.Groups {
		if slices.Contains(p.Roles, g) || slices.Contains(p.Groups, g) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s needs one of %s (rule %s)", ErrNotApprover, p.Sub, strings.Join(a.Approvers.Groups, ", "), a.Rule)
}

func identityKey(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// Decide records p's decision on the pending approval id: approve or
// deny, with an optional comment, through via (ViaDashboard, ViaLink,
// ViaAdmin). p is checked against the approver rule now; a refusal is
// audited. Only one decision is ever recorded: a second, or one racing
// the first, gets ErrClosed (ErrExpired once the approval expired). A
// denial closes the approval at the decision's time.
func (s *Service) Decide(ctx context.Context, id string, p Person, via string, approve bool, comment string) (Approval, error) {
	if len(comment) > MaxCommentLen || !utf8.ValidString(comment) {
		return Approval{}, fmt.Errorf("%w: the comment must be UTF-8 and at most %d bytes", ErrBadDecision, MaxCommentLen)
	}
	if identityKey(p.Sub) == "" {
		return Approval{}, fmt.Errorf("%w: no approver named", ErrBadDecision)
	}
	switch via {
	case ViaDashboard, ViaLink, ViaAdmin:
	default:
		return Approval{}, fmt.Errorf("%w: an approver decides in the dashboard, by the link or through the admin API, not %q", ErrBadDecision, via)
	}
	a, err := s.Get(ctx, id)
	if err != nil {
		return Approval{}, err
	}
	if err := notPending(a); err != nil {
		return a, err
	}
	now := s.now()
	if !a.ExpiresAt.After(now) {
		return a, fmt.Errorf("%w: %s expired at %s", ErrExpired, id, a.ExpiresAt.Format(time.RFC3339))
	}
	if err := Eligible(a, p); err != nil {
		rec := s.base(a, audit.ApprovalRefused, "", err.Error())
		rec.Decision, rec.Status, rec.Approver = audit.DecisionDeny, http.StatusForbidden, p.Sub
		s.audit.Record(rec)
		return a, err
	}
	to, step, outcome := Denied, audit.ApprovalDenied, "denied"
	if approve {
		to, step, outcome = Granted, audit.ApprovalApproved, "approved"
	}
	person := p
	person.Roles, person.Groups = slices.Clone(p.Roles), slices.Clone(p.Groups)
	a, err = s.store.Transition(ctx, id, []Status{Pending}, func(x *Approval) error {
		if !x.ExpiresAt.After(now) {
			return ErrExpired
		}
		x.Status, x.Approver, x.Via, x.Comment, x.DecidedAt = to, &person, via, comment, now.UTC()
		if to == Denied {
			x.ClosedAt = x.DecidedAt // by this clock, not the store's
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrStatus) && a.Status == Expired:
		return a, fmt.Errorf("%w: %s expired meanwhile", ErrExpired, id)
	case errors.Is(err, ErrStatus):
		return a, fmt.Errorf("%w: %s was decided meanwhile", ErrClosed, id)
	case err != nil:
		return a, err
	}
	s.pending.Dec()
	s.decision.WithLabelValues(outcome).Observe(now.Sub(a.CreatedAt).Seconds())
	what := fmt.Sprintf("%s %s the call of %s to %s via %s", p.Sub, outcome, a.ClientID, a.Tool, via)
	if comment != "" {
		what += ": " + comment
	}
	rec := s.base(a, step, "", what)
	rec.Approver, rec.Comment = p.Sub, comment
	if !approve {
		rec.Decision = audit.DecisionDeny
	}
	s.audit.Record(rec)
	return a, nil
}

// notPending is why a cannot be decided: nil while pending, ErrExpired once
// the sweeper expired it, else ErrClosed.
func notPending(a Approval) error {
	switch a.Status {
	case Pending:
		return nil
	case Expired:
		return fmt.Errorf("%w: %s expired at %s", ErrExpired, a.ID, a.ExpiresAt.Format(time.RFC3339))
	}
	return fmt.Errorf("%w: %s is %s", ErrClosed, a.ID, a.Status)
}

// Confirm records the requester's own confirmation in the client (form
// mode), which only a rule with Approvers.Requester allows; sub is the
// person the call's token acts for. A refusal (ErrNotApprover) is audited;
// an approval no longer pending is ErrClosed (ErrExpired once expired).
func (s *Service) Confirm(ctx context.Context, id, sub string, requestID string) (Approval, error) {
	now := s.now()
	a, err := s.store.Transition(ctx, id, []Status{Pending}, func(x *Approval) error {
		switch {
		case !x.Approvers.Requester:
			return fmt.Errorf("%w: rule %s needs an approver, not the requester's confirmation", ErrNotApprover, x.Rule)
		case identityKey(x.Subject) == "" || identityKey(x.Subject) != identityKey(sub):
			return fmt.Errorf("%w: only the person the agent acts for may confirm", ErrNotApprover)
		case !x.ExpiresAt.After(now):
			return ErrExpired
		}
		x.Status, x.Approver, x.Via, x.DecidedAt = Granted, &Person{Sub: sub}, ViaClient, now.UTC()
		return nil
	})
	switch {
	case errors.Is(err, ErrNotApprover):
		rec := s.base(a, audit.ApprovalRefused, requestID, err.Error())
		rec.Decision, rec.Status, rec.Approver = audit.DecisionDeny, http.StatusForbidden, sub
		s.audit.Record(rec)
		return a, err
	case errors.Is(err, ErrStatus):
		if nerr := notPending(a); nerr != nil {
			return a, nerr
		}
		return a, err
	case err != nil:
		return a, err
	}
	s.pending.Dec()
	s.decision.WithLabelValues("approved").Observe(now.Sub(a.CreatedAt).Seconds())
	rec := s.base(a, audit.ApprovalApproved, requestID, fmt.Sprintf("%s confirmed the call of %s to %s in the client", sub, a.ClientID, a.Tool))
	rec.Approver = sub
	s.audit.Record(rec)
	return a, nil
}

// Use marks the granted approval id used by the retry requestID: the one
// compare-and-set that makes an approval single-use. Of concurrent
// retries exactly one gets nil; the others get ErrUsed.
func (s *Service) Use(ctx context.Context, id, requestID string) (Approval, error) {
	now := s.now()
	a, err := s.store.Transition(ctx, id, []Status{Granted}, func(x *Approval) error {
		if !x.ExpiresAt.After(now) {
			return ErrExpired
		}
		x.Status = Used
		x.ClosedAt = now.UTC()
		return nil
	})
	switch {
	case errors.Is(err, ErrStatus) && a.Status == Used:
		return a, fmt.Errorf("%w: %s allowed an earlier call", ErrUsed, id)
	case errors.Is(err, ErrStatus) && a.Status == Expired:
		return a, fmt.Errorf("%w: %s expired at %s", ErrExpired, id, a.ExpiresAt.Format(time.RFC3339))
	case errors.Is(err, ErrStatus):
		return a, fmt.Errorf("%w: %s is %s", ErrClosed, id, a.Status)
	case err != nil:
		return a, err
	}
	s.record(a, audit.ApprovalUsed, requestID, fmt.Sprintf("the approval %s (%s) allowed the retried call of %s to %s", a.ID, a.Approver.Sub, a.ClientID, a.Tool), a.Approver, "")
	return a, nil
}

// Withdraw closes the open approval id because the requester declined
// or cancelled it in the client.
func (s *Service) Withdraw(ctx context.Context, id, why, requestID string) (Approval, error) {
	return s.close(ctx, id, Withdrawn, why, requestID)
}

// Void closes the open approval id because the call, decided again, no
// longer asks for it (or a newer policy denies it outright).
func (s *Service) Void(ctx context.Context, id, why, requestID string) (Approval, error) {
	return s.close(ctx, id, Void, why, requestID)
}

func (s *Service) close(ctx context.Context, id string, to Status, why, requestID string) (Approval, error) {
	now := s.now()
	var was Status
	a, err := s.store.Transition(ctx, id, []Status{Pending, Granted}, func(x *Approval) error {
		was = x.Status
		x.Status, x.Why, x.ClosedAt = to, why, now.UTC()
		return nil
	})
	if err != nil {
		return a, err
	}
	if was == Pending {
		s.pending.Dec()
	}
	step := audit.ApprovalVoid
	if to == Withdrawn {
		step = audit.ApprovalWithdrawn
	}
	s.record(a, step, requestID, fmt.Sprintf("approval %s %s: %s", a.ID, to, why), nil, "")
	return a, nil
}

// Wait waits until the approval id is no longer pending, or for at most
// max (or until ctx ends), and returns it as it is then.
func (s *Service) Wait(ctx context.Context, id string, max time.Duration) (Approval, error) {
	wait, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		// Read with the caller's context: the end of the wait must not
		// fail a read that a tick started at the same moment.
		a, err := s.store.Get(ctx, id)
		if err != nil || a.Status != Pending {
			return a, err
		}
		select {
		case <-wait.Done():
			// The wait is over, not the request: answer with what is known.
			return s.store.Get(context.WithoutCancel(ctx), id)
		case <-t.C:
		}
	}
}

// State signs the requestState of a: the retry of call presents it.
func (s *Service) State(a Approval, c Call) (string, error) {
	return SignState(s.key, NewState(a.ID, a.PolicyVersion, c, a.ExpiresAt))
}

// VerifyState checks a requestState against the call presenting it.
func (s *Service) VerifyState(state string, c Call) (State, error) {
	return VerifyState(s.key, state, c, s.now())
}

// Run expires approvals, and prunes those closed longer than Keep ago,
// every Sweep until ctx ends; the caller owns it (run it in a goroutine and
// wait for it to return).
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.sweep)
	defer t.Stop()
	s.refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.ExpireNow(ctx)
			s.prune(ctx)
		}
	}
}

// ExpireNow expires every open approval past its time, audits each, and
// refreshes the pending count.
func (s *Service) ExpireNow(ctx context.Context) {
	expired, err := s.store.Expire(ctx, s.now())
	if err != nil {
		s.log.WarnContext(ctx, "expiring approvals", "err", err)
		return
	}
	for _, a := range expired {
		s.record(a, audit.ApprovalExpired, "", fmt.Sprintf("approval %s of %s's call to %s expired unused", a.ID, a.ClientID, a.Tool), nil, "")
	}
	s.refresh(ctx)
}

// prune deletes the approvals closed more than Keep ago.
func (s *Service) prune(ctx context.Context) {
	n, err := s.store.Prune(ctx, s.now().Add(-s.keep))
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.WarnContext(ctx, "pruning closed approvals", "err", err)
	case n > 0:
		s.log.DebugContext(ctx, "pruned closed approvals", "count", n)
	}
}

func (s *Service) refresh(ctx context.Context) {
	n, err := s.pendingCount(ctx)
	if err != nil {
		s.log.WarnContext(ctx, "counting pending approvals", "err", err)
		return
	}
	s.pending.Set(float64(n))
}

func (s *Service) pendingCount(ctx context.Context) (int, error) {
	l, err := s.store.List(ctx, Filter{Statuses: []Status{Pending}, Limit: MaxListLimit})
	return len(l), err
}

// base is the audit record of a step of a.
func (s *Service) base(a Approval, step, requestID, what string) audit.Record {
	if requestID == "" {
		requestID = a.RequestID
	}
	return audit.Record{Time: s.now().UTC(), Event: audit.EventApproval, RequestID: requestID,
		ClientID: a.ClientID, AgentProvider: a.AgentProvider, Tier: a.Tier, Subject: a.Subject,
		Backend: a.Backend, Method: step, Tool: a.Tool, Decision: audit.DecisionAllow, Status: http.StatusOK,
		PolicyVersion: a.PolicyVersion, ArgsDigest: a.ArgsDigest, Reasons: []string{what},
		ApprovalID: a.ID}
}

func (s *Service) record(a Approval, step, requestID, what string, approver *Person, comment string) {
	rec := s.base(a, step, requestID, what)
	if approver != nil {
		rec.Approver = approver.Sub
	}
	rec.Comment = comment
	s.audit.Record(rec)
}
