// Package plugins keeps the policy modules of the gateway: each version is
// validated before it can decide anything, activated atomically, drained when
// replaced, and can be rolled back, shadowed by a candidate, or delivered by
// dropping a bundle in a watched directory.
package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// Sentinel errors callers branch on.
var (
	// ErrNoPolicy means no version is active: every decision is a deny.
	ErrNoPolicy = errors.New("no active policy")
	// ErrValidation means a candidate version failed validation and was not
	// activated.
	ErrValidation = errors.New("policy validation failed")
	// ErrMalformedDecision means the policy returned something other than an
	// object with a boolean allow.
	ErrMalformedDecision = errors.New("malformed policy decision")
	// ErrNoRollback means there is no earlier version to return to.
	ErrNoRollback = errors.New("no earlier policy version")
	// ErrSignature means signatures are required and a candidate bundle is
	// unsigned or wrongly signed; it is never activated. It comes wrapped
	// together with ErrValidation.
	ErrSignature = errors.New("policy bundle signature refused")
	// ErrDecisionTimeout means no decision was made within the decision
	// timeout: waiting for a policy instance and evaluating took longer
	// (an overloaded engine, or evaluations that run away). The caller
	// must deny.
	ErrDecisionTimeout = errors.New("no policy decision within the decision timeout")
)

// DefaultDecisionTimeout bounds one decision, the wait for a policy
// instance included, unless WithDecisionTimeout says otherwise: ten times
// the engine's default evaluation deadline (100 ms), so a decision may
// queue behind several evaluations that run to their deadline before it
// is refused.
const DefaultDecisionTimeout = time.Second

// historyDepth is how many earlier versions Rollback can return to.
const historyDepth = 8

// Info describes one policy version.
type Info struct {
	// Version is the content hash of the module and its data.
	Version    string `json:"version"`
	ModuleHash string `json:"module_hash"`
	Source     string `json:"source"`
	// Author is who asked for the version (WithAuthor), when known.
	Author      string    `json:"author,omitempty"`
	LoadedAt    time.Time `json:"loaded_at"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	Entrypoints []string  `json:"entrypoints"`
	Builtins    []string  `json:"builtins"`
	// Vectors is how many of the bundle's own decision vectors passed.
	Vectors int `json:"vectors"`
	// SignedBy is the key id that verified the bundle, when signatures are
	// required.
	SignedBy string `json:"signed_by,omitempty"`
	// ContractVersion is the policy contract version the bundle declares
	// (1 when it declares none).
	ContractVersion int `json:"contract_version"`
	// Fallbacks are the entrypoints of this binary's contract the bundle
	// predates, decided by the built-in contract.Fallback.
	Fallbacks []contract.Entrypoint `json:"fallbacks,omitempty"`
	// Memoized are the entrypoints whose decisions this version remembers
	// by their exact input (see memo): none when the module is not
	// deterministic (see deterministic).
	Memoized []contract.Entrypoint `json:"memoized,omitempty"`
}

// Event is one entry of the registry's history: an activation, a rejected
// candidate, a rollback, a shadow change.
type Event struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Version string    `json:"version,omitempty"`
	// Previous is the version before: the one active before an
	// activation, a data change, a rollback or a restore, or still active
	// after a rejected candidate; the shadow replaced by a new one.
	Previous string `json:"previous,omitempty"`
	Source   string `json:"source"`
	Author   string `json:"author,omitempty"`
	Error    string `json:"error,omitempty"`
}

// version is a loaded, validated policy. Decisions hold its read lock, so
// retiring it waits for the decisions in flight and no decision ever runs on
// a closed version.
type version struct {
	info   Info
	bundle *rego.Bundle
	policy *wasm.Policy
	// fallback holds the entrypoints decided by contract.Fallback (nil for
	// a bundle of this binary's contract version).
	fallback map[contract.Entrypoint]bool
	// data is the typed view of the bundle's data, read once on first use.
	data func() (*contract.Data, error)
	// memo remembers the decisions of pbac/introspect (memoized); nil
	// when the module is not deterministic or a fallback decides it.
	memo *memo

	mu     sync.RWMutex
	closed bool
}

// enter marks a decision in flight; false when the version is retired.
func (v *version) enter() bool {
	v.mu.RLock()
	if v.closed {
		v.mu.RUnlock()
		return false
	}
	return true
}

func (v *version) exit() { v.mu.RUnlock() }

// eval evaluates ep on input: with the module, or with the built-in
// fallback when the bundle predates ep.
func (v *version) eval(ctx context.Context, deadline time.Time, ep contract.Entrypoint, input *decisionInput) ([]byte, error) {
	if v.fallback[ep] {
		whole, err := input.whole()
		if err != nil {
			return nil, err
		}
		raw, _ := contract.Fallback(ep, whole)
		return raw, nil
	}
	if len(input.shared) > 0 {
		return v.policy.EvalShared(ctx, deadline, string(ep), input.shared, input.rest)
	}
	return v.policy.EvalBy(ctx, deadline, string(ep), input.rest)
}

// decisionInput is a decision's input: rest, with the shared members (the
// token's part) given apart when there are any (DecideShared).
type decisionInput struct {
	shared []wasm.Member
	rest   []byte
	merged []byte // the whole input, once whole made it
}

// whole is the input as one document, for what needs it so: the memo's
// key, the shadow candidate, a built-in fallback.
func (in *decisionInput) whole() ([]byte, error) {
	if len(in.shared) == 0 {
		return in.rest, nil
	}
	if in.merged == nil {
		m, err := wasm.MergeInput(in.shared, in.rest)
		if err != nil {
			return nil, err
		}
		in.merged = m
	}
	return in.merged, nil
}

// retire waits for in-flight decisions, then closes the instances.
func (v *version) retire(ctx context.Context) {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	_ = v.policy.Close(ctx)
}

// Registry holds the active policy version and the history behind it. It is
// safe for concurrent use; Decide is the hot path and takes no registry lock.
type Registry struct {
	engine      *wasm.Engine
	entrypoints []string
	logger      *slog.Logger
	now         func() time.Time
	// decisionTimeout bounds every decision (Decide), from its call.
	decisionTimeout time.Duration

	active atomic.Pointer[version]
	shadow atomic.Pointer[shadow]

	retiring sync.WaitGroup // versions draining after a swap

	mu      sync.Mutex // serialises changes: activate, rollback, shadow, close
	history []*rego.Bundle
	sources []string
	events  []Event
	closed  bool
	// verifier, once set, must verify every bundle activated or shadowed.
	verifier *rego.Verifier
	// subscribers hear of every change of the active version.
	subscribers map[chan struct{}]struct{}
	// onEvent, when set, hears of every event as it happens (WithEvents).
	onEvent func(context.Context, Event)
	// store, when set, keeps every activation before it takes effect;
	// headAt is when its newest record was made.
	store  Store
	headAt time.Time
}

// Option configures a Registry.
type Option func(*Registry)

// WithEntrypoints sets the entrypoints every version must export, whatever
// contract version it declares (default: what the policy contract requires
// of the bundle's version, contract.Required).
func WithEntrypoints(eps ...string) Option {
	return func(r *Registry) { r.entrypoints = slices.Clone(eps) }
}

// WithLogger sets the logger for activations and rejections.
func WithLogger(l *slog.Logger) Option {
	return func(r *Registry) { r.logger = l }
}

// WithDecisionTimeout bounds every decision, the wait for a policy
// instance and the evaluation together (default DefaultDecisionTimeout); a
// caller's earlier deadline still wins. It should be at least the
// engine's evaluation deadline (wasm.Config.WithEvalTimeout), which would
// otherwise never be reached. d <= 0 keeps the default.
func WithDecisionTimeout(d time.Duration) Option {
	return func(r *Registry) {
		if d > 0 {
			r.decisionTimeout = d
		}
	}
}

// WithEvents hands every event of the registry's history to fn as it
// happens — each activation, data change, rollback, restore, shadow change
// and rejected candidate, with its author, source and the versions before
// and after — for the audit trail. Events read back from the store at
// Start are not new and are not handed over. fn is called while the
// registry's changes are serialised: it must not block.
func WithEvents(fn func(context.Context, Event)) Option {
	return func(r *Registry) { r.onEvent = fn }
}

// WithClock sets the clock used for timestamps (tests).
func WithClock(now func() time.Time) Option {
	return func(r *Registry) { r.now = now }
}

// New returns an empty registry on engine. Until a version is activated,
// every decision fails with ErrNoPolicy.
func New(engine *wasm.Engine, opts ...Option) *Registry {
	r := &Registry{
		engine:          engine,
		logger:          slog.New(slog.DiscardHandler),
		now:             time.Now,
		decisionTimeout: DefaultDecisionTimeout,
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// RequireSignatures makes every later bundle — whatever its source: admin
// upload, watched directory, bundle server — pass v before it is loaded:
// an unsigned or wrongly signed bundle is refused (ErrSignature) and the
// active version stays. A bundle that went through ReadTarGz carries its
// bytes (Raw), which are verified; one built in process cannot be signed
// and is refused. Data-only updates (SetData) are refused too, since no
// signature covers them. The version active now (typically the shipped
// policy, built into the binary) stays, and rollbacks return only to
// versions that were accepted.
func (r *Registry) RequireSignatures(v *rego.Verifier) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verifier = v
}

// SignaturesRequired tells whether RequireSignatures is in force.
func (r *Registry) SignaturesRequired() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.verifier != nil
}

// verify checks b against the verifier, if any, and returns the bundle to
// load: the one read back from the verified bytes. Callers hold r.mu.
func (r *Registry) verify(b *rego.Bundle, source string) (*rego.Bundle, error) {
	if r.verifier == nil {
		return b, nil
	}
	if b == nil || b.Raw == nil {
		return nil, fmt.Errorf("%w: %w: bundle from %s: %w", ErrValidation, ErrSignature, source, rego.ErrUnsigned)
	}
	vb, err := rego.ReadVerifiedTarGz(bytes.NewReader(b.Raw), r.verifier)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: bundle from %s: %w", ErrValidation, ErrSignature, source, err)
	}
	return vb, nil
}

// Decide evaluates entrypoint on input with the active version. The decision
// is made entirely by one version; its Version says which. It is bounded by
// the decision timeout, the wait for a policy instance included, or by ctx's
// deadline when that comes first: every caller (gateway, authorization
// server, dashboard) gets an answer or an error in time. A ctx already done
// is refused; one cancelled later is not watched. Any error means no
// decision was made and the caller must deny; one that ran out of the
// decision timeout wraps ErrDecisionTimeout.
func (r *Registry) Decide(ctx context.Context, entrypoint contract.Entrypoint, input []byte) (Decision, error) {
	return r.decide(ctx, entrypoint, &decisionInput{rest: input})
}

// DecideShared is Decide on the input wasm.MergeInput writes from shared
// and rest, given in two parts so that the token's part of a call's input,
// the same for a run of calls, is parsed once by each policy instance
// rather than on every call (wasm.Policy.EvalShared). The decision is the
// one Decide makes on the whole input.
func (r *Registry) DecideShared(ctx context.Context, entrypoint contract.Entrypoint, shared []contract.Member, rest []byte) (Decision, error) {
	ms := make([]wasm.Member, len(shared))
	for i, m := range shared {
		ms[i] = wasm.Member(m)
	}
	return r.decide(ctx, entrypoint, &decisionInput{shared: ms, rest: rest})
}

func (r *Registry) decide(ctx context.Context, entrypoint contract.Entrypoint, input *decisionInput) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, fmt.Errorf("decide %s: %w", entrypoint, err)
	}
	// The caller's deadline is kept, its cancellation is not watched:
	// deriving from a context the context package does not know (the AS
	// behind Fiber gets fasthttp's request context) would start a
	// goroutine per decision to watch it, and the decision is bounded
	// anyway.
	start := time.Now()
	deadline := start.Add(r.decisionTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// The deadline goes to the evaluation as a value: a context with it
	// would start a timer per decision. A context that is never cancelled
	// (no Done channel: the gateway's and the AS's request contexts) goes
	// as it is; wrapping it would cost an allocation per decision.
	ectx := ctx
	if ctx.Done() != nil {
		ectx = context.WithoutCancel(ctx)
	}
	for {
		v := r.active.Load()
		if v == nil {
			return Decision{}, ErrNoPolicy
		}
		if !v.enter() {
			continue // swapped out just now: take the new one
		}
		var m *memo
		var key []byte
		if v.memo != nil && memoized(entrypoint) {
			whole, err := input.whole()
			if err != nil {
				v.exit()
				return Decision{}, fmt.Errorf("policy %s: %w", short(v.info.Version), err)
			}
			m, key = v.memo, whole
			if d, ok := m.get(key); ok {
				v.exit()
				r.offerShadow(entrypoint, input, d)
				return d, nil
			}
		}
		raw, err := v.eval(ectx, deadline, entrypoint, input)
		v.exit()
		if err != nil {
			// Ours, not the caller's deadline (the evaluation's own check
			// of it can beat the context's timer).
			if time.Since(start) >= r.decisionTimeout {
				return Decision{}, fmt.Errorf("%w (%s): policy %s: %w", ErrDecisionTimeout, r.decisionTimeout, short(v.info.Version), err)
			}
			return Decision{}, fmt.Errorf("policy %s: %w", short(v.info.Version), err)
		}
		d, err := parseDecision(v.info.Version, raw)
		if err != nil {
			return Decision{}, err
		}
		d.ContractVersion = v.info.ContractVersion
		if m != nil {
			m.put(key, d)
		}
		r.offerShadow(entrypoint, input, d)
		return d, nil
	}
}

// offerShadow hands a decision of the active version to the shadow
// candidate, if there is one, to compare.
func (r *Registry) offerShadow(ep contract.Entrypoint, input *decisionInput, d Decision) {
	if s := r.shadow.Load(); s != nil {
		if whole, err := input.whole(); err == nil {
			s.offer(ep, whole, d)
		}
	}
}

// Active describes the active version; ok is false when there is none.
func (r *Registry) Active() (Info, bool) {
	v := r.active.Load()
	if v == nil {
		return Info{}, false
	}
	return v.info, true
}

// ActiveBundle returns the bundle the active version was loaded from (its
// module and data); ok is false when there is none. The bundle must not be
// modified.
func (r *Registry) ActiveBundle() (*rego.Bundle, bool) {
	v := r.active.Load()
	if v == nil {
		return nil, false
	}
	return v.bundle, true
}

// ActivePolicy returns the active version and the typed view of its data,
// read once per version; "" and nil when no version is active. err is a
// data document that does not read as contract.Data (its decisions are
// unaffected: policy reads the data itself).
func (r *Registry) ActivePolicy() (version string, data *contract.Data, err error) {
	v := r.active.Load()
	if v == nil {
		return "", nil, nil
	}
	data, err = v.data()
	return v.info.Version, data, err
}

// Events returns the registry's history, oldest first.
func (r *Registry) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Activate validates b and, if it passes, makes it the active version. A
// bundle that fails validation never decides anything: the error wraps
// ErrValidation and says why, and the active version stays.
func (r *Registry) Activate(ctx context.Context, b *rego.Bundle, source string) (Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return Info{}, wasm.ErrClosed
	}
	b, err := r.verify(b, source)
	var v *version
	if err == nil {
		// The same module with other data (a data change distributed as a
		// bundle) reuses the active version's compiled module.
		var base *wasm.Policy
		if cur := r.active.Load(); cur != nil && cur.info.ModuleHash == wasm.ModuleHash(b.Wasm) {
			base = cur.policy
		}
		v, err = r.load(ctx, b, source, base)
	}
	if err != nil {
		r.record(ctx, Event{Kind: "rejected", Previous: r.activeVersion(), Source: source, Author: authorOf(ctx), Error: err.Error()})
		r.logger.Warn("policy rejected", "source", source, "err", err)
		return Info{}, err
	}
	if err := r.commit(ctx, v, "activated"); err != nil {
		return Info{}, err
	}
	r.swap(ctx, v, "activated")
	return v.info, nil
}

// SetData replaces the active version's data without recompiling its module:
// the result is a new version (new hash, same module), and the next decision
// uses it. Like every candidate it must pass the bundle's data schema
// (rego.CheckData) and the fail-closed smoke checks; of the bundle's own
// vectors, which describe the bundle's data, only the invariant ones run
// (rego.InvariantVectors).
func (r *Registry) SetData(ctx context.Context, data []byte, source string) (Info, error) {
	return r.UpdateData(ctx, func([]byte) ([]byte, error) { return data, nil }, source)
}

// UpdateData is SetData of what change makes of the active version's
// data, read and replaced under one lock: no other change comes between
// (an edit of one catalogue entry does not undo a concurrent one). An
// error of change is returned as it is, and nothing changes.
func (r *Registry) UpdateData(ctx context.Context, change func(active []byte) ([]byte, error), source string) (Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return Info{}, wasm.ErrClosed
	}
	cur := r.active.Load()
	if cur == nil {
		return Info{}, ErrNoPolicy
	}
	if r.verifier != nil {
		err := fmt.Errorf("%w: %w: signed bundles are required, so policy data changes only with a signed bundle", ErrValidation, ErrSignature)
		r.record(ctx, Event{Kind: "rejected", Previous: r.activeVersion(), Source: source, Author: authorOf(ctx), Error: err.Error()})
		return Info{}, err
	}
	// The bundle's vectors describe decisions under the bundle's own data,
	// and new data changes decisions by design: a data update is held to
	// the data schema, the fail-closed smoke checks and the vectors the
	// bundle marks invariant — decisions no data may change
	// (rego.(*Bundle).WithData). The new version carries those alone, so
	// it passes them again wherever it is activated (a rollback, a
	// replica).
	data, err := change(cur.bundle.Data)
	if err != nil {
		return Info{}, err
	}
	nb, err := cur.bundle.WithData(data)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrValidation, err)
		r.record(ctx, Event{Kind: "rejected", Previous: r.activeVersion(), Source: source, Author: authorOf(ctx), Error: err.Error()})
		return Info{}, err
	}
	v, err := r.load(ctx, nb, source, cur.policy)
	if err != nil {
		r.record(ctx, Event{Kind: "rejected", Previous: r.activeVersion(), Source: source, Author: authorOf(ctx), Error: err.Error()})
		r.logger.Warn("policy data rejected", "source", source, "err", err)
		return Info{}, err
	}
	if err := r.commit(ctx, v, "data_updated"); err != nil {
		return Info{}, err
	}
	r.swap(ctx, v, "data_updated")
	return v.info, nil
}

// CanRollback tells whether an earlier version is there to roll back to.
func (r *Registry) CanRollback() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.history) > 0
}

// Rollback re-activates the version that was active before the current one.
func (r *Registry) Rollback(ctx context.Context) (Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return Info{}, wasm.ErrClosed
	}
	if len(r.history) == 0 {
		return Info{}, ErrNoRollback
	}
	n := len(r.history) - 1
	b, src := r.history[n], r.sources[n]
	v, err := r.load(ctx, b, "rollback:"+src, nil)
	if err != nil {
		r.record(ctx, Event{Kind: "rejected", Previous: r.activeVersion(), Source: "rollback:" + src, Author: authorOf(ctx), Error: err.Error()})
		return Info{}, err
	}
	if err := r.commit(ctx, v, "rolled_back"); err != nil {
		return Info{}, err
	}
	r.history, r.sources = r.history[:n], r.sources[:n]
	r.swapNoHistory(ctx, v, "rolled_back")
	return v.info, nil
}

// Close retires the active and shadow versions; later decisions fail with
// ErrNoPolicy.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if s := r.shadow.Swap(nil); s != nil {
		s.stop(ctx)
	}
	if v := r.active.Swap(nil); v != nil {
		v.retire(ctx)
	}
	r.retiring.Wait()
	return nil
}

// load compiles (or, for a data update, reuses the module of base) and
// validates a candidate version. Callers hold r.mu.
func (r *Registry) load(ctx context.Context, b *rego.Bundle, source string, base *wasm.Policy) (*version, error) {
	if b == nil || len(b.Wasm) == 0 {
		return nil, fmt.Errorf("%w: bundle from %s has no Wasm module", ErrValidation, source)
	}
	rev := b.Revision
	if rev == "" {
		rev = rego.Revision(b.Wasm, b.Data)
	}
	// Every path that changes data comes through here: the data is held to
	// the bundle's schema before anything is compiled.
	if err := rego.CheckData(b.Schema, b.Data); err != nil {
		return nil, fmt.Errorf("%w: %s from %s: %w", ErrValidation, short(rev), source, err)
	}
	var (
		p   *wasm.Policy
		err error
	)
	if base != nil {
		p, err = base.WithData(ctx, b.Data)
	} else {
		p, err = r.engine.Load(ctx, b.Wasm, b.Data)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: load %s: %w", ErrValidation, short(rev), err)
	}
	info := Info{
		Version:     rev,
		ModuleHash:  p.ModuleHash(),
		Source:      source,
		LoadedAt:    r.now(),
		Entrypoints: p.Entrypoints(),
		Builtins:    p.Builtins(),
	}
	val, err := validate(ctx, p, r.entrypoints, b.ContractVersion, b.Vectors)
	if err != nil {
		_ = p.Close(ctx)
		return nil, fmt.Errorf("%w: %s from %s: %w", ErrValidation, short(rev), source, err)
	}
	info.Vectors = val.vectors
	info.SignedBy = b.SignedBy
	info.ContractVersion = val.version
	info.Fallbacks = val.fallbacks
	v := &version{info: info, bundle: b, policy: p}
	if len(val.fallbacks) > 0 {
		v.fallback = map[contract.Entrypoint]bool{}
		for _, ep := range val.fallbacks {
			v.fallback[ep] = true
			r.logger.Warn("policy predates an entrypoint: the built-in fallback decides it", "version", short(rev),
				"contract_version", val.version, "entrypoint", ep)
		}
	}
	if !v.fallback[contract.Introspect] && deterministic(info.Builtins) {
		v.memo = newMemo()
		v.info.Memoized = []contract.Entrypoint{contract.Introspect}
	}
	data := b.Data
	v.data = sync.OnceValues(func() (*contract.Data, error) { return contract.ParseData(data) })
	return v, nil
}

// commit records who made v (the context's author) and stores it before
// it takes effect; a version that cannot be stored is rejected. Callers
// hold r.mu.
func (r *Registry) commit(ctx context.Context, v *version, kind string) error {
	v.info.Author = authorOf(ctx)
	if err := r.persist(ctx, v, kind); err != nil {
		r.reject(ctx, v, err)
		return err
	}
	return nil
}

// swap makes v active, keeps the old bundle for rollback and retires the old
// version once its in-flight decisions finish. Callers hold r.mu.
func (r *Registry) swap(ctx context.Context, v *version, kind string) {
	if old := r.active.Load(); old != nil {
		r.pushHistory(old.bundle, old.info.Source)
	}
	r.swapNoHistory(ctx, v, kind)
}

// pushHistory keeps b, activated from source, as the newest version
// Rollback returns to; the oldest is dropped past historyDepth. Callers
// hold r.mu.
func (r *Registry) pushHistory(b *rego.Bundle, source string) {
	r.history = append(r.history, b)
	r.sources = append(r.sources, source)
	if len(r.history) > historyDepth {
		r.history, r.sources = r.history[1:], r.sources[1:]
	}
}

func (r *Registry) swapNoHistory(ctx context.Context, v *version, kind string) {
	v.info.ActivatedAt = r.now()
	old := r.active.Swap(v)
	e := Event{Kind: kind, Version: v.info.Version, Source: v.info.Source, Author: v.info.Author}
	if old != nil {
		e.Previous = old.info.Version
	}
	r.record(ctx, e)
	r.logger.Info("policy "+kind, "version", short(v.info.Version), "source", v.info.Source,
		"author", v.info.Author, "vectors", v.info.Vectors)
	r.notify()
	if old != nil {
		// Retiring waits for in-flight decisions; do not hold up the caller.
		r.retiring.Go(func() { old.retire(context.WithoutCancel(ctx)) })
	}
}

// Subscribe returns a channel that receives a value after every change of
// the active version (activation, data update, rollback); changes that come
// faster than the subscriber reads collapse into one. Read Active for the
// version itself. cancel stops the subscription.
func (r *Registry) Subscribe() (changes <-chan struct{}, cancel func()) {
	ch := make(chan struct{}, 1)
	r.mu.Lock()
	if r.subscribers == nil {
		r.subscribers = map[chan struct{}]struct{}{}
	}
	r.subscribers[ch] = struct{}{}
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.subscribers, ch)
		r.mu.Unlock()
	}
}

// notify tells every subscriber the active version changed. Callers hold
// r.mu.
func (r *Registry) notify() {
	for ch := range r.subscribers {
		select {
		case ch <- struct{}{}:
		default: // one already pending says the same
		}
	}
}

// record adds e, happening now, to the history and hands it to
// WithEvents' fn. Callers hold r.mu.
func (r *Registry) record(ctx context.Context, e Event) {
	e.At = r.now()
	r.remember(e)
	if r.onEvent != nil {
		r.onEvent(ctx, e)
	}
}

// remember adds e to the history, which keeps the newest 256. Callers
// hold r.mu.
func (r *Registry) remember(e Event) {
	r.events = append(r.events, e)
	if len(r.events) > 256 {
		r.events = r.events[len(r.events)-256:]
	}
}

// activeVersion is the active version's hash, "" before any.
func (r *Registry) activeVersion() string {
	if v := r.active.Load(); v != nil {
		return v.info.Version
	}
	return ""
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}
