// Package wasm runs OPA policies compiled to WebAssembly (the OPA Wasm ABI)
// on wazero: a compiled module is instantiated into a bounded pool of
// instances, each decision is one opa_eval call on an idle instance, and
// builtins the module cannot evaluate itself are bridged to OPA's Go
// implementations.
package wasm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// minMemoryPages is the memory every instance starts with. OPA's modules
// declare two pages, but one that links RE2 (regex.match) places its
// static data beyond them (measured: four pages load the shipped policy,
// two do not); eight leave room.
const minMemoryPages = 8

// Engine owns one wazero runtime, its compilation cache and the host
// functions every policy instance calls into. Policies loaded from one engine
// share its runtime; close the engine after its policies.
type Engine struct {
	cfg     Config
	runtime wazero.Runtime
	cache   wazero.CompilationCache
	glue    wazero.CompiledModule

	// instances maps a running policy module (as the host functions see it)
	// to its instance, so a builtin call finds the state of its evaluation.
	instances sync.Map
}

// NewEngine starts a runtime configured by cfg. With a cache dir, compiled
// code is stored there and reused by later engines.
func NewEngine(ctx context.Context, cfg Config) (*Engine, error) {
	var cache wazero.CompilationCache
	if cfg.cacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.cacheDir)
		if err != nil {
			return nil, fmt.Errorf("open compilation cache %s: %w", cfg.cacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	rc := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithMemoryLimitPages(cfg.maxMemoryPages).
		// Deadlines are enforced by the instrumented fuel checks
		// (instrument.go), far cheaper than wazero's exit to Go at every loop
		// back-edge.
		WithCloseOnContextDone(false)
	e := &Engine{cfg: cfg, runtime: wazero.NewRuntimeWithConfig(ctx, rc), cache: cache}
	if err := e.instantiateHost(ctx); err != nil {
		_ = e.runtime.Close(ctx)
		return nil, fmt.Errorf("instantiate host functions: %w", err)
	}
	glue, err := e.runtime.CompileModule(ctx, glueModule(minMemoryPages, cfg.maxMemoryPages))
	if err != nil {
		_ = e.runtime.Close(ctx)
		return nil, fmt.Errorf("compile env glue module: %w", err)
	}
	e.glue = glue
	return e, nil
}

// Close releases the runtime and every module compiled in it.
func (e *Engine) Close(ctx context.Context) error {
	return errors.Join(e.runtime.Close(ctx), e.cache.Close(ctx))
}

// instantiateHost registers the Go side of the OPA host functions. Each one
// finds its instance through the calling module.
func (e *Engine) instantiateHost(ctx context.Context) error {
	b := e.runtime.NewHostModuleBuilder(hostModuleName)
	i32 := api.ValueTypeI32
	for _, f := range hostFuncs() {
		params := make([]api.ValueType, f.params)
		for i := range params {
			params[i] = i32
		}
		var results []api.ValueType
		if f.returns {
			results = []api.ValueType{i32}
		}
		var fn api.GoModuleFunc
		switch f.name {
		case "opa_abort":
			fn = e.hostAbort
		case "opa_println":
			fn = e.hostPrintln
		default:
			fn = e.hostBuiltin
		}
		b.NewFunctionBuilder().WithGoModuleFunction(fn, params, results).Export(f.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

// loadTimeout bounds instantiating a module and parsing its data, which
// take longer than a decision.
func (e *Engine) loadTimeout() time.Duration {
	return max(10*time.Second, 100*e.cfg.evalTimeout)
}

func (e *Engine) lookup(mod api.Module) *instance {
	if v, ok := e.instances.Load(mod); ok {
		return v.(*instance)
	}
	return nil
}

func (e *Engine) hostAbort(_ context.Context, mod api.Module, stack []uint64) {
	msg := readCString(mod.Memory(), api.DecodeU32(stack[0]))
	panic(abortError{msg: msg})
}

func (e *Engine) hostPrintln(_ context.Context, mod api.Module, stack []uint64) {
	msg := readCString(mod.Memory(), api.DecodeU32(stack[0]))
	e.cfg.logger.Debug("policy print", "msg", msg)
}

// hostBuiltin serves opa_builtin0..4: stack[0] is the builtin id, stack[1]
// a reserved context pointer, the rest argument value addresses.
func (e *Engine) hostBuiltin(ctx context.Context, mod api.Module, stack []uint64) {
	id := int32(api.DecodeU32(stack[0]))
	in := e.lookup(mod)
	if id == yieldBuiltinID {
		if in != nil {
			in.yield()
		} else if err := ctx.Err(); err != nil {
			// The module's start function, still instantiating: bounded by
			// the load context.
			panic(timeoutError{cause: err})
		}
		stack[0] = 0
		return
	}
	if in == nil {
		panic(abortError{msg: "builtin called from an unknown module"})
	}
	args := make([]uint32, 0, len(stack)-2)
	for _, v := range stack[2:] {
		args = append(args, api.DecodeU32(v))
	}
	stack[0] = api.EncodeU32(in.callBuiltin(ctx, id, args))
}

// readCString reads a NUL-terminated string at addr.
func readCString(mem api.Memory, addr uint32) string {
	if mem == nil || addr >= mem.Size() {
		return "(unreadable message)"
	}
	b, ok := mem.Read(addr, min(mem.Size()-addr, 64<<10))
	if !ok {
		return "(unreadable message)"
	}
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return "(unterminated message)"
}

// abortError carries an opa_abort message out of the host function panic.
type abortError struct{ msg string }

func (e abortError) Error() string { return "opa_abort: " + e.msg }

// builtinError carries a builtin's failure out of the host function panic.
type builtinError struct {
	name string
	err  error
}

func (e builtinError) Error() string { return fmt.Sprintf("builtin %s: %v", e.name, e.err) }
func (e builtinError) Unwrap() error { return e.err }
