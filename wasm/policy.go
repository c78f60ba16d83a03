package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/tetratelabs/wazero"
)

// forbiddenBuiltins reach the network or the host; a gateway that must run
// air-gapped and decide in microseconds refuses policies that use them.
func forbiddenBuiltins() map[string]bool {
	return map[string]bool{
		"http.send":          true,
		"net.lookup_ip_addr": true,
		"opa.runtime":        true,
	}
}

// code is a compiled policy module, shared by every Policy that runs it with
// different data. It is released when the last such Policy closes.
type code struct {
	engine      *Engine
	compiled    wazero.CompiledModule
	hash        string
	entrypoints map[string]int32
	builtins    map[int32]builtinFunc
	refs        atomic.Int32
}

type builtinFunc struct {
	name string
	fn   topdown.BuiltinFunc
}

func (c *code) release(ctx context.Context) {
	if c.refs.Add(-1) == 0 {
		_ = c.compiled.Close(ctx)
	}
}

// Policy is one compiled policy module with one set of data, evaluated by a
// bounded pool of instances. It is safe for concurrent use. Replacing the
// data makes a new Policy (see WithData) that shares the compiled code.
type Policy struct {
	engine *Engine
	code   *code
	data   []byte
	// dataRead is data as each instance parses it: its escaped surrogates
	// decoded (decodeSurrogates).
	dataRead []byte

	// The pool. Idle instances wait on a stack, so the one released last
	// (its memory still in the CPU caches) serves the next decision: under
	// the usual light concurrency one or two instances do all the work
	// instead of every instance in turn, cold. A caller that finds none
	// idle and may create none queues in waiters, first come first served.
	//
	// created counts the slots in use, at most maxInstances: instances
	// idle, busy or being created, and grants on their way to a waiter.
	// A slot is never dropped while anyone waits: a released instance goes
	// to the first waiter, and so does the slot of an instance that died
	// (a timeout closes its module) or failed to be created, as a grant to
	// create one. A waiter that gives up passes on a grant it was sent.
	// So while anyone waits, every slot is taken and nothing is idle.
	mu      sync.Mutex
	idle    []*instance
	created int
	waiters []chan grant

	closed atomic.Bool
	done   chan struct{}

	closeOnce sync.Once
}

// grant is what a waiter is handed: an instance, or, when in is nil, a
// slot to create one in.
type grant struct{ in *instance }

// Load compiles a policy module and instantiates it once with data (a JSON
// object, or nil for none). The returned Policy has one ready instance: the
// module compiled, its ABI is supported, its data parsed and every builtin it
// needs is served. Errors wrap ErrInvalidPolicy, ErrInvalidData or
// ErrUnsupportedBuiltin.
func (e *Engine) Load(ctx context.Context, module, data []byte) (*Policy, error) {
	instrumented, err := instrument(module)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	compiled, err := e.runtime.CompileModule(ctx, instrumented)
	if err != nil {
		return nil, fmt.Errorf("%w: compile: %w", ErrInvalidPolicy, err)
	}
	if err := checkImports(compiled); err != nil {
		_ = compiled.Close(ctx)
		return nil, err
	}
	c := &code{engine: e, compiled: compiled, hash: ModuleHash(module)}
	c.refs.Store(1)
	p, err := c.newPolicy(ctx, data)
	if err != nil {
		c.release(ctx)
		return nil, err
	}
	return p, nil
}

// checkImports verifies the module imports its memory from "env", as the OPA
// Wasm ABI requires, and nothing but the OPA host functions.
func checkImports(m wazero.CompiledModule) error {
	allowed := map[string]bool{}
	for _, f := range hostFuncs() {
		allowed[f.name] = true
	}
	for _, imp := range m.ImportedFunctions() {
		mod, name, _ := imp.Import()
		if mod != "env" || !allowed[name] {
			return fmt.Errorf("%w: unexpected import %s.%s", ErrInvalidPolicy, mod, name)
		}
	}
	mems := m.ImportedMemories()
	if len(mems) != 1 {
		return fmt.Errorf("%w: module must import exactly one memory, imports %d", ErrInvalidPolicy, len(mems))
	}
	if mod, name, _ := mems[0].Import(); mod != "env" || name != "memory" {
		return fmt.Errorf("%w: memory imported as %s.%s, want env.memory", ErrInvalidPolicy, mod, name)
	}
	return nil
}

func (c *code) newPolicy(ctx context.Context, data []byte) (*Policy, error) {
	read := data
	if data != nil {
		// As an input: valid UTF-8 JSON (OPA's parser aborts on anything
		// else), its escaped surrogates decoded as Go reads them.
		ok, surrogates := checkJSON(data, 0)
		if !ok {
			return nil, fmt.Errorf("%w: not valid UTF-8 JSON", ErrInvalidData)
		}
		if surrogates {
			read = decodeSurrogates(data)
		}
	}
	p := &Policy{
		engine:   c.engine,
		code:     c,
		data:     data,
		dataRead: read,
		created:  1,
		done:     make(chan struct{}),
	}
	in, err := p.newInstance(ctx)
	if err != nil {
		return nil, err
	}
	p.idle = append(p.idle, in)
	return p, nil
}

// WithData returns a new Policy running the same compiled module with other
// data; p is left as it was. The new one has a ready instance, so the first
// decision on it pays no instantiation.
func (p *Policy) WithData(ctx context.Context, data []byte) (*Policy, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	p.code.refs.Add(1)
	np, err := p.code.newPolicy(ctx, data)
	if err != nil {
		p.code.release(ctx)
		return nil, err
	}
	return np, nil
}

// ModuleHash returns the sha256 of the Wasm module, hex encoded.
func (p *Policy) ModuleHash() string { return p.code.hash }

// ModuleHash is the hash Policy.ModuleHash reports for a module: its
// sha256, hex encoded.
func ModuleHash(module []byte) string {
	sum := sha256.Sum256(module)
	return hex.EncodeToString(sum[:])
}

// Data returns the policy data this Policy was loaded with.
func (p *Policy) Data() []byte { return p.data }

// Entrypoints returns the module's entrypoint names, sorted.
func (p *Policy) Entrypoints() []string {
	return slices.Sorted(maps.Keys(p.code.entrypoints))
}

// Builtins returns the names of the builtins the module calls on the host,
// sorted.
func (p *Policy) Builtins() []string {
	names := make([]string, 0, len(p.code.builtins))
	for _, b := range p.code.builtins {
		names = append(names, b.name)
	}
	slices.Sort(names)
	return names
}

// Eval evaluates entrypoint (such as "pbac/tool_call") on input, a JSON
// document, and returns the entrypoint's value as JSON. The input is not
// retained. Errors wrap ErrUnknownEntrypoint, ErrInvalidInput, ErrUndefined,
// ErrTimeout, ErrAborted, ErrClosed, or the context's error.
func (p *Policy) Eval(ctx context.Context, entrypoint string, input []byte) ([]byte, error) {
	return p.EvalBy(ctx, time.Time{}, entrypoint, input)
}

// EvalBy is Eval bounded by deadline as well as by ctx; a zero deadline
// adds none. A deadline given this way costs no timer: the evaluation's
// fuel checks compare it with the clock, and only a wait for an instance
// (every one busy) makes a timer for it. A context with a deadline makes
// one per call (context.WithDeadline), and with cold caches that was a
// sixth of the fixed cost of an evaluation.
func (p *Policy) EvalBy(ctx context.Context, deadline time.Time, entrypoint string, input []byte) ([]byte, error) {
	id, err := p.entrypoint(entrypoint)
	if err != nil {
		return nil, err
	}
	if len(input) > p.engine.cfg.maxInputBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrInvalidInput, len(input), p.engine.cfg.maxInputBytes)
	}
	// JSON text is UTF-8 (RFC 8259); OPA's parser aborts on anything else
	// while Go's json.Valid lets it through. validJSON checks both at once.
	ok, surrogates := checkJSON(input, 0)
	if !ok {
		return nil, fmt.Errorf("%w: not valid UTF-8 JSON", ErrInvalidInput)
	}
	if surrogates {
		input = decodeSurrogates(input)
	}
	in, deadline, err := p.start(ctx, deadline, entrypoint)
	if err != nil {
		return nil, err
	}
	out, err := in.eval(ctx, deadline, id, input)
	return p.finish(ctx, in, deadline, entrypoint, out, err)
}

// entrypoint is the module's id of the entrypoint name.
func (p *Policy) entrypoint(name string) (int32, error) {
	id, ok := p.code.entrypoints[name]
	if !ok {
		return 0, fmt.Errorf("%w: %q", ErrUnknownEntrypoint, name)
	}
	return id, nil
}

// start folds ctx's deadline into deadline (the earlier of the two, from
// then on) and acquires an instance for an evaluation of entrypoint
// within it.
func (p *Policy) start(ctx context.Context, deadline time.Time, entrypoint string) (*instance, time.Time, error) {
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	in, err := p.acquire(ctx, deadline)
	if err != nil {
		return nil, deadline, fmt.Errorf("eval %s: %w", entrypoint, err)
	}
	if err := callerDone(ctx, deadline); err != nil {
		// Out of time before it began: an evaluation stopped at once
		// would cost the instance its life for nothing.
		p.release(ctx, in)
		return nil, deadline, fmt.Errorf("eval %s: wait for a policy instance: %w", entrypoint, err)
	}
	return in, deadline, nil
}

// finish releases the instance of an evaluation and returns its outcome,
// an error once the caller's time is up.
func (p *Policy) finish(ctx context.Context, in *instance, deadline time.Time, entrypoint string, out []byte, err error) ([]byte, error) {
	p.release(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("eval %s: %w", entrypoint, err)
	}
	if err := callerDone(ctx, deadline); err != nil {
		return nil, fmt.Errorf("eval %s: %w", entrypoint, err)
	}
	return out, nil
}

// callerDone is ctx's error, or context.DeadlineExceeded once past
// deadline (when it is not zero).
func callerDone(ctx context.Context, deadline time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// acquire returns the idle instance released last, creates one while
// under the limit, or waits for one: an instance someone released, or the
// slot of one that died, to create one in. Errors wrap ErrClosed, the
// context's error (deadline's too), or the failure to create an instance.
func (p *Policy) acquire(ctx context.Context, deadline time.Time) (*instance, error) {
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(p.idle); n > 0 {
		in := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return in, nil
	}
	if p.created < p.engine.cfg.maxInstances {
		p.created++
		p.mu.Unlock()
		return p.create(ctx)
	}
	// One grant at most is ever sent to a waiter, so the send under
	// p.mu never blocks.
	w := make(chan grant, 1)
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()

	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	var err error
	select {
	case g := <-w:
		return p.take(ctx, g)
	case <-p.done:
		err = ErrClosed
	case <-ctx.Done():
		err = fmt.Errorf("wait for a policy instance: %w", ctx.Err())
	}
	p.mu.Lock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Unlock()
	// Granted just as it gave up: the grant goes to the next in line.
	p.pass(ctx, <-w)
	return nil, err
}

// take turns a grant into an instance, creating one for a slot.
func (p *Policy) take(ctx context.Context, g grant) (*instance, error) {
	if g.in != nil {
		return g.in, nil
	}
	return p.create(ctx)
}

// create makes an instance in a slot the caller holds. A caller that has
// given up already passes the slot on instead. Once begun, the instance is
// made whatever becomes of the caller (it takes about a millisecond, and
// at most the engine's load timeout), so the pool gets its replacement:
// when the caller has given up meanwhile, the instance goes to the pool.
// On failure the slot goes on to the next waiter.
func (p *Policy) create(ctx context.Context) (*instance, error) {
	if err := ctx.Err(); err != nil {
		p.freeSlot()
		return nil, fmt.Errorf("wait for a policy instance: %w", err)
	}
	in, err := p.newInstance(context.WithoutCancel(ctx))
	if err != nil {
		p.freeSlot()
		return nil, fmt.Errorf("create a policy instance: %w", err)
	}
	if err := ctx.Err(); err != nil {
		p.put(ctx, in)
		return nil, fmt.Errorf("wait for a policy instance: %w", err)
	}
	return in, nil
}

// release returns an instance to the pool after an evaluation. One that
// died (a timeout closed its module) is closed and its slot goes on.
func (p *Policy) release(ctx context.Context, in *instance) {
	if in.dead {
		in.close(ctx)
		p.freeSlot()
		return
	}
	p.put(ctx, in)
}

// pass hands on a grant its waiter gave up.
func (p *Policy) pass(ctx context.Context, g grant) {
	if g.in != nil {
		p.put(ctx, g.in)
		return
	}
	p.freeSlot()
}

// put gives a live instance to the first waiter, or makes it idle; once
// the policy is closed, it closes the instance.
func (p *Policy) put(ctx context.Context, in *instance) {
	p.mu.Lock()
	if p.closed.Load() {
		p.created--
		p.mu.Unlock()
		in.close(ctx)
		return
	}
	if w, ok := p.nextWaiter(); ok {
		w <- grant{in: in}
	} else {
		p.idle = append(p.idle, in)
	}
	p.mu.Unlock()
}

// freeSlot gives up a slot whose instance is gone (or was never made): to
// the first waiter, who creates an instance in it, or back to the pool.
func (p *Policy) freeSlot() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed.Load() {
		if w, ok := p.nextWaiter(); ok {
			w <- grant{}
			return
		}
	}
	p.created--
}

// nextWaiter dequeues the first waiter. Callers hold p.mu.
func (p *Policy) nextWaiter() (chan grant, bool) {
	if len(p.waiters) == 0 {
		return nil, false
	}
	w := p.waiters[0]
	p.waiters[0] = nil
	p.waiters = p.waiters[1:]
	return w, true
}

// Close stops the policy: new evaluations fail with ErrClosed, idle
// instances are closed now and busy ones when they finish. The compiled
// module is released when no Policy uses it.
func (p *Policy) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed.Store(true)
		idle := p.idle
		p.idle = nil
		p.created -= len(idle)
		p.mu.Unlock()
		// Waiters leave with ErrClosed, passing on any grant they were
		// sent; put and freeSlot close what comes back from now on.
		close(p.done)
		for _, in := range idle {
			in.close(ctx)
		}
		p.code.release(ctx)
	})
	return nil
}
