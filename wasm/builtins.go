package wasm

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/tetratelabs/wazero/api"
)

// callBuiltin serves one opa_builtinN call with OPA's Go implementation of
// the builtin: arguments are dumped from Wasm memory and parsed as terms, the
// result is serialised back and parsed into the module's heap. It panics
// (the host-function way of failing a call) when the builtin halts.
func (in *instance) callBuiltin(ctx context.Context, id int32, argAddrs []uint32) uint32 {
	b, ok := in.policy.code.builtins[id]
	if !ok {
		panic(abortError{msg: fmt.Sprintf("unknown builtin id %d", id)})
	}
	args := make([]*ast.Term, len(argAddrs))
	for i, addr := range argAddrs {
		t, err := in.readTerm(ctx, addr)
		if err != nil {
			panic(builtinError{name: b.name, err: err})
		}
		args[i] = t
	}
	var out *ast.Term
	err := b.fn(*in.builtinContext(), args, func(t *ast.Term) error {
		out = t
		return nil
	})
	if err != nil {
		var halt topdown.Halt
		if errors.As(err, &halt) {
			panic(builtinError{name: b.name, err: err})
		}
		// Other errors make the call undefined, as in OPA's non-strict mode.
		return 0
	}
	if out == nil {
		return 0
	}
	addr, err := in.writeTerm(ctx, out)
	if err != nil {
		panic(builtinError{name: b.name, err: err})
	}
	return addr
}

// builtinContext returns the evaluation's builtin context, made on the first
// builtin call so decisions that need none allocate none.
func (in *instance) builtinContext() *topdown.BuiltinContext {
	if in.bctx == nil {
		ctx := in.callCtx
		if ctx == nil {
			ctx = context.Background()
		}
		in.bctx = &topdown.BuiltinContext{
			Context: ctx,
			Metrics: metrics.New(),
			Seed:    rand.Reader,
			Time:    ast.NumberTerm(json.Number(strconv.FormatInt(in.callTime.UnixNano(), 10))),
			Cancel:  topdown.NewCancel(),
			Cache:   builtins.Cache{},
		}
	}
	return in.bctx
}

func (in *instance) readTerm(ctx context.Context, addr uint32) (*ast.Term, error) {
	res, err := in.valueDumpFn.Call(ctx, api.EncodeU32(addr))
	if err != nil {
		return nil, fmt.Errorf("opa_value_dump: %w", err)
	}
	return ast.ParseTerm(readCString(in.mem, api.DecodeU32(res[0])))
}

func (in *instance) writeTerm(ctx context.Context, t *ast.Term) (uint32, error) {
	raw := t.String()
	res, err := in.mallocFn.Call(ctx, uint64(len(raw)))
	if err != nil {
		return 0, fmt.Errorf("opa_malloc: %w", err)
	}
	ptr := api.DecodeU32(res[0])
	if !in.mem.WriteString(ptr, raw) {
		return 0, fmt.Errorf("write %d bytes at %d", len(raw), ptr)
	}
	res, err = in.valueParseFn.Call(ctx, uint64(ptr), uint64(len(raw)))
	if err != nil {
		return 0, fmt.Errorf("opa_value_parse: %w", err)
	}
	return api.DecodeU32(res[0]), nil
}
