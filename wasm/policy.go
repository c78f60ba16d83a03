package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

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

	// Idle instances wait on a stack, so the one released last (its
	// memory still in the CPU caches) serves the next decision: under the
	// usual light concurrency one or two instances do all the work instead
	// of every instance in turn, cold. A caller that finds none idle and
	// may create none waits on handoff, which release feeds while anyone
	// waits; an instance left there by a waiter that gave up is idle too.
	mu      sync.Mutex
	idle    []*instance
	waiting int
	handoff chan *instance

	created atomic.Int32
	closed  atomic.Bool
	done    chan struct{}

	closeOnce sync.Once
}

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
	if data != nil && !json.Valid(data) {
		return nil, fmt.Errorf("%w: not valid JSON", ErrInvalidData)
	}
	e := c.engine
	p := &Policy{
		engine: e,
		code:   c,
		data:   data,
		// Never more instances than maxInstances exist, so a send on
		// handoff never blocks.
		handoff: make(chan *instance, e.cfg.maxInstances),
		done:    make(chan struct{}),
	}
	p.created.Store(1)
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
	id, ok := p.code.entrypoints[entrypoint]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownEntrypoint, entrypoint)
	}
	if len(input) > p.engine.cfg.maxInputBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrInvalidInput, len(input), p.engine.cfg.maxInputBytes)
	}
	// JSON text is UTF-8 (RFC 8259); OPA's parser aborts on anything else
	// while Go's json.Valid lets it through. validJSON checks both at once.
	if !validJSON(input) {
		return nil, fmt.Errorf("%w: not valid UTF-8 JSON", ErrInvalidInput)
	}
	in, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	out, err := in.eval(ctx, id, input)
	p.release(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("eval %s: %w", entrypoint, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("eval %s: %w", entrypoint, err)
	}
	return out, nil
}

// acquire returns the idle instance released last, creates one while
// under the limit, or waits for one to be released.
func (p *Policy) acquire(ctx context.Context) (*instance, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	if in := p.pop(false); in != nil {
		return in, nil
	}
	for {
		n := p.created.Load()
		if int(n) >= p.engine.cfg.maxInstances {
			break
		}
		if p.created.CompareAndSwap(n, n+1) {
			in, err := p.newInstance(ctx)
			if err != nil {
				p.created.Add(-1)
				return nil, err
			}
			return in, nil
		}
	}
	// Registered as waiting under the same lock that found the stack
	// empty: a release from now on hands its instance over.
	if in := p.pop(true); in != nil {
		return in, nil
	}
	defer func() {
		p.mu.Lock()
		p.waiting--
		p.mu.Unlock()
	}()
	select {
	case in := <-p.handoff:
		return in, nil
	case <-p.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a policy instance: %w", ctx.Err())
	}
}

// pop takes the idle instance released last, or one left in handoff; nil
// when there is none, and then, with wait, the caller counts as waiting.
func (p *Policy) pop(wait bool) *instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		in := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		return in
	}
	select {
	case in := <-p.handoff:
		return in
	default:
	}
	if wait {
		p.waiting++
	}
	return nil
}

// release returns an instance to the pool, or discards it when it died (a
// timeout closed its module) or the policy closed meanwhile.
func (p *Policy) release(ctx context.Context, in *instance) {
	if in.dead || p.closed.Load() {
		p.discard(ctx, in)
		return
	}
	p.mu.Lock()
	if p.waiting > 0 {
		p.handoff <- in
	} else {
		p.idle = append(p.idle, in)
	}
	p.mu.Unlock()
	if p.closed.Load() {
		p.drain(ctx)
	}
}

func (p *Policy) discard(ctx context.Context, in *instance) {
	in.close(ctx)
	p.created.Add(-1)
}

// drain closes every idle instance.
func (p *Policy) drain(ctx context.Context) {
	for {
		in := p.pop(false)
		if in == nil {
			return
		}
		p.discard(ctx, in)
	}
}

// Close stops the policy: new evaluations fail with ErrClosed, idle
// instances are closed now and busy ones when they finish. The compiled
// module is released when no Policy uses it.
func (p *Policy) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		close(p.done)
		p.drain(ctx)
		p.code.release(ctx)
	})
	return nil
}
