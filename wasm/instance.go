package wasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

// pageSize is the Wasm page size.
const pageSize = 64 << 10

// instance is one instantiation of a policy module with its own memory and
// parsed data. It is used by one goroutine at a time (the pool hands it out),
// except for deadline and interrupt, which the watchdog touches.
type instance struct {
	policy *Policy
	glue   api.Module
	mod    api.Module
	mem    api.Memory

	evalFn, mallocFn, valueParseFn, valueDumpFn api.Function

	dataAddr uint32
	dataEnd  uint32 // first free heap address after the data
	heapBase uint32 // the reset point: dataEnd, or past the shared members held
	stack    [7]uint64

	// shared is the input's shared part (EvalShared) this instance holds
	// parsed between dataEnd and heapBase; nil for none. seen is the
	// shared part of its last evaluation that did not find it held.
	shared   *heldMembers
	seen     []Member
	ctxFuncs *contextFuncs // resolved on the first EvalShared
	// noCtxFuncs says the module lacks one of them.
	noCtxFuncs bool

	// Per-evaluation state, read by builtins and the fuel check.
	callCtx  context.Context
	callTime time.Time
	deadline time.Time // the evaluation stops once past it, whatever held it up
	soft     time.Time // past it, once it has used evalTimeout of CPU; zero while loading
	cpu      cpuWatch
	bctx     *topdown.BuiltinContext

	dead bool
}

func (p *Policy) newInstance(ctx context.Context) (*instance, error) {
	e := p.engine
	glue, err := e.runtime.InstantiateModule(ctx, e.glue, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		return nil, fmt.Errorf("instantiate env glue module: %w", err)
	}
	// The module's start function runs during instantiation; its fuel
	// checks stop it when this context ends.
	ictx, cancel := context.WithTimeout(ctx, e.loadTimeout())
	defer cancel()
	rctx := experimental.WithImportResolver(ictx, func(name string) api.Module {
		if name == "env" {
			return glue
		}
		return nil
	})
	mod, err := e.runtime.InstantiateModule(rctx, p.code.compiled,
		wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		_ = glue.Close(ctx)
		return nil, fmt.Errorf("%w: instantiate: %w", ErrInvalidPolicy, err)
	}
	// Parsing large data takes longer than a decision; loading gets a
	// generous deadline of its own.
	in := &instance{policy: p, glue: glue, mod: mod, mem: mod.Memory(), callCtx: ctx,
		deadline: time.Now().Add(e.loadTimeout())}
	// Host functions see the calling module; register both names for it.
	e.instances.Store(mod, in)
	e.instances.Store(glue, in)
	if err := in.init(ctx); err != nil {
		in.close(ctx)
		return nil, err
	}
	return in, nil
}

func (in *instance) init(ctx context.Context) error {
	if in.mem == nil {
		return fmt.Errorf("%w: module has no memory", ErrInvalidPolicy)
	}
	major, minor := in.global("opa_wasm_abi_version"), in.global("opa_wasm_abi_minor_version")
	if major != 1 || minor < 2 {
		return fmt.Errorf("%w: OPA Wasm ABI %d.%d, need 1.2 or later", ErrInvalidPolicy, major, minor)
	}
	for name, dst := range map[string]*api.Function{
		"opa_eval":        &in.evalFn,
		"opa_malloc":      &in.mallocFn,
		"opa_value_parse": &in.valueParseFn,
		"opa_value_dump":  &in.valueDumpFn,
	} {
		if *dst = in.mod.ExportedFunction(name); *dst == nil {
			return fmt.Errorf("%w: missing export %s", ErrInvalidPolicy, name)
		}
	}

	c := in.policy.code
	if c.entrypoints == nil {
		if err := in.readMetadata(ctx); err != nil {
			return err
		}
	}
	if in.policy.data != nil {
		addr, err := in.parseJSON(ctx, in.policy.dataRead)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidData, err)
		}
		in.dataAddr = addr
	}
	heap, err := in.call1(ctx, "opa_heap_ptr_get")
	if err != nil {
		return err
	}
	in.dataEnd, in.heapBase = heap, heap
	return nil
}

// readMetadata reads the module's entrypoints and the builtins it needs from
// the host, once per compiled module. A builtin the host cannot serve fails
// the load here, never a decision later.
func (in *instance) readMetadata(ctx context.Context) error {
	c := in.policy.code
	var eps map[string]int32
	if err := in.exportJSON(ctx, "entrypoints", &eps); err != nil {
		return err
	}
	if len(eps) == 0 {
		return fmt.Errorf("%w: module has no entrypoints", ErrInvalidPolicy)
	}
	var names map[string]int32
	if err := in.exportJSON(ctx, "builtins", &names); err != nil {
		return err
	}
	forbidden := forbiddenBuiltins()
	bs := make(map[int32]builtinFunc, len(names))
	for name, id := range names {
		if forbidden[name] {
			return fmt.Errorf("%w: %s is not allowed in a gateway policy", ErrUnsupportedBuiltin, name)
		}
		fn := topdown.GetBuiltin(name)
		if fn == nil {
			return fmt.Errorf("%w: %s", ErrUnsupportedBuiltin, name)
		}
		bs[id] = builtinFunc{name: name, fn: fn}
	}
	c.entrypoints, c.builtins = eps, bs
	return nil
}

// exportJSON calls a metadata export (entrypoints, builtins) and decodes the
// JSON value it returns.
func (in *instance) exportJSON(ctx context.Context, name string, v any) error {
	addr, err := in.call1(ctx, name)
	if err != nil {
		return err
	}
	str, err := in.call1(ctx, "opa_json_dump", addr)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(readCString(in.mem, str)), v); err != nil {
		return fmt.Errorf("%w: decode %s: %w", ErrInvalidPolicy, name, err)
	}
	return nil
}

func (in *instance) global(name string) int32 {
	g := in.mod.ExportedGlobal(name)
	if g == nil {
		return -1
	}
	return int32(g.Get())
}

// call1 calls an export by name with i32 arguments and returns its i32 result
// (or 0 for a void function). It is for set-up, not the hot path.
func (in *instance) call1(ctx context.Context, name string, args ...uint32) (uint32, error) {
	fn := in.mod.ExportedFunction(name)
	if fn == nil {
		return 0, fmt.Errorf("%w: missing export %s", ErrInvalidPolicy, name)
	}
	params := make([]uint64, len(args))
	for i, a := range args {
		params[i] = api.EncodeU32(a)
	}
	res, err := fn.Call(ctx, params...)
	if err != nil {
		return 0, in.classify(fmt.Errorf("call %s: %w", name, err))
	}
	if len(res) == 0 {
		return 0, nil
	}
	return api.DecodeU32(res[0]), nil
}

// parseJSON copies doc into the heap and parses it into an OPA value.
func (in *instance) parseJSON(ctx context.Context, doc []byte) (uint32, error) {
	ptr, err := in.call1(ctx, "opa_malloc", uint32(len(doc)))
	if err != nil {
		return 0, err
	}
	if !in.mem.Write(ptr, doc) {
		return 0, fmt.Errorf("write %d bytes at %d", len(doc), ptr)
	}
	addr, err := in.call1(ctx, "opa_json_parse", ptr, uint32(len(doc)))
	if err != nil {
		return 0, err
	}
	if addr == 0 {
		return 0, errors.New("the module could not parse the JSON document")
	}
	return addr, nil
}

// eval runs one opa_eval: input is written above the data, the heap is reset
// to just past it, and the result JSON is copied out. deadline (zero: none)
// is the caller's, ctx's own already in it (EvalBy); ctx's cancellation is
// watched by the fuel check.
func (in *instance) eval(ctx context.Context, deadline time.Time, entrypoint int32, input []byte) ([]byte, error) {
	inputAddr, err := in.place(input)
	if err != nil {
		return nil, err
	}
	end := uint64(inputAddr) + uint64(len(input))

	in.begin(ctx, deadline)
	s := in.stack[:]
	s[0] = 0 // reserved
	s[1] = api.EncodeI32(entrypoint)
	s[2] = api.EncodeU32(in.dataAddr)
	s[3] = api.EncodeU32(inputAddr)
	s[4] = api.EncodeU32(uint32(len(input)))
	s[5] = api.EncodeU32(uint32(end))
	s[6] = 0 // JSON output
	// A context without Done keeps wazero from watching it with a goroutine
	// per call; the fuel check honours the caller's context instead.
	err = in.evalFn.CallWithStack(context.Background(), s)
	in.end()
	if err != nil {
		return nil, in.classify(err)
	}
	return in.result(api.DecodeU32(s[0]))
}

// place writes input at heapBase, growing the memory to hold it and a page
// more, and returns its address.
func (in *instance) place(input []byte) (uint32, error) {
	at := in.heapBase
	end := uint64(at) + uint64(len(input))
	if size := uint64(in.mem.Size()); end+pageSize > size {
		pages := uint32((end + pageSize - size + pageSize - 1) / pageSize)
		if _, ok := in.mem.Grow(pages); !ok {
			return 0, fmt.Errorf("%w: input of %d bytes exceeds the instance memory cap", ErrInvalidInput, len(input))
		}
	}
	if !in.mem.Write(at, input) {
		return 0, fmt.Errorf("%w: write input", ErrInvalidInput)
	}
	return at, nil
}

// begin sets an evaluation's deadlines and starts counting its CPU;
// deadline (zero: none) is the caller's.
func (in *instance) begin(ctx context.Context, deadline time.Time) {
	in.callCtx, in.callTime, in.bctx = ctx, time.Now(), nil
	timeout := in.policy.engine.cfg.evalTimeout
	in.soft = in.callTime.Add(timeout)
	in.deadline = in.callTime.Add(starvedFactor * timeout)
	if !deadline.IsZero() && deadline.Before(in.deadline) {
		in.deadline = deadline
	}
	in.soft = minTime(in.soft, in.deadline)
	in.cpu.start()
}

// end ends what begin started.
func (in *instance) end() {
	in.cpu.stop()
	in.callCtx, in.bctx, in.soft = nil, nil, time.Time{}
}

// result copies the entrypoint value out of the `[{"result": V}]` set that
// opa_eval returns.
func (in *instance) result(addr uint32) ([]byte, error) {
	size := in.mem.Size()
	if addr == 0 || addr >= size {
		return nil, fmt.Errorf("%w: result address %d out of range", ErrAborted, addr)
	}
	raw, _ := in.mem.Read(addr, size-addr)
	n := bytes.IndexByte(raw, 0)
	if n < 0 {
		return nil, fmt.Errorf("%w: unterminated result", ErrAborted)
	}
	raw = raw[:n]
	const prefix, suffix = `[{"result":`, `}]`
	if bytes.HasPrefix(raw, []byte(prefix)) && bytes.HasSuffix(raw, []byte(suffix)) &&
		bytes.Count(raw, []byte(`{"result":`)) == 1 {
		return bytes.Clone(raw[len(prefix) : len(raw)-len(suffix)]), nil
	}
	var set []struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("%w: decode result: %w", ErrAborted, err)
	}
	switch len(set) {
	case 0:
		return nil, ErrUndefined
	case 1:
		return bytes.Clone(set[0].Result), nil
	default:
		return nil, fmt.Errorf("%w: %d results for one entrypoint", ErrAborted, len(set))
	}
}

// classify maps a failed call to the package's sentinel errors and marks the
// instance dead when its module can no longer be trusted.
func (in *instance) classify(err error) error {
	var te timeoutError
	if errors.As(err, &te) {
		in.dead = true
		return fmt.Errorf("%w: %w", ErrTimeout, te.cause)
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		in.dead = true
		return fmt.Errorf("%w: module exited: %w", ErrAborted, err)
	}
	// A trap or abort leaves the heap in an unknown state; start afresh.
	in.dead = true
	var be builtinError
	if errors.As(err, &be) {
		return fmt.Errorf("%w: %w", ErrAborted, be)
	}
	return fmt.Errorf("%w: %w", ErrAborted, err)
}

// yield is the instrumented loops' periodic call into Go: the evaluation
// stops here once it is past its deadline, once its caller has given up,
// or once it is past evalTimeout and has used that much CPU.
//
// evalTimeout stops a policy that runs away, not one the machine is too
// busy to run: on a loaded host (more runnable threads than cores) an
// evaluation of a millisecond can take a hundred in wall-clock time, and
// the gateway would deny calls for it. So an evaluation holds its OS
// thread, whose CPU clock then counts its own work alone, read once as it
// starts (about 0.2 µs) and again only at checks past evalTimeout. One held
// up for starvedFactor times evalTimeout (or past its caller's deadline)
// stops anyway. Where no thread clock can be read, the wall clock decides.
func (in *instance) yield() {
	now := time.Now()
	if now.After(in.deadline) {
		panic(timeoutError{cause: errors.New("deadline exceeded")})
	}
	if ctx := in.callCtx; ctx != nil {
		if err := ctx.Err(); err != nil {
			panic(timeoutError{cause: err})
		}
	}
	if in.soft.IsZero() {
		return // loading: the deadline alone
	}
	if now.After(in.soft) {
		timeout := in.policy.engine.cfg.evalTimeout
		if used, ok := in.cpu.used(); !ok || used >= timeout {
			panic(timeoutError{cause: fmt.Errorf("ran %s, the evaluation time limit", timeout)})
		}
	}
}

// starvedFactor bounds an evaluation's wall-clock time, in evalTimeouts,
// however little CPU it got.
const starvedFactor = 10

// cpuWatch counts the CPU time of one evaluation's thread.
type cpuWatch struct {
	held bool          // the evaluation's goroutine holds its OS thread
	ok   bool          // base was read
	base time.Duration // the thread's CPU time as the evaluation started
}

// start holds the goroutine on its thread and reads its CPU clock, as an
// evaluation starts.
func (w *cpuWatch) start() {
	runtime.LockOSThread()
	w.held = true
	w.base, w.ok = threadCPU()
}

// used is the CPU time the evaluation's thread has used since it started.
func (w *cpuWatch) used() (time.Duration, bool) {
	if !w.ok {
		return 0, false
	}
	now, ok := threadCPU()
	if !ok {
		return 0, false
	}
	return now - w.base, true
}

// stop lets go of the thread after an evaluation.
func (w *cpuWatch) stop() {
	if w.held {
		runtime.UnlockOSThread()
	}
	*w = cpuWatch{}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// timeoutError carries a stopped evaluation out of the host function panic.
type timeoutError struct{ cause error }

func (e timeoutError) Error() string { return "evaluation stopped: " + e.cause.Error() }

func (in *instance) close(ctx context.Context) {
	e := in.policy.engine
	e.instances.Delete(in.mod)
	e.instances.Delete(in.glue)
	_ = in.mod.Close(ctx)
	_ = in.glue.Close(ctx)
}
