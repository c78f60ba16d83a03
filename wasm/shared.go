package wasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// Member is one top-level member of an evaluation's input, given apart from
// the rest of it (Policy.EvalShared): its name and its value, JSON.
type Member struct {
	Name  string
	Value []byte
}

// MergeInput is the input EvalShared evaluates, as one JSON document: rest's
// members, then shared's (a name in both is shared's, as it is for
// EvalShared: JSON decoders, OPA's included, keep an object's last member
// of a name). rest must be a JSON object.
func MergeInput(shared []Member, rest []byte) ([]byte, error) {
	rest = bytes.TrimSpace(rest)
	if len(rest) < 2 || rest[0] != '{' || rest[len(rest)-1] != '}' {
		return nil, fmt.Errorf("%w: the input's rest is not a JSON object", ErrInvalidInput)
	}
	n := len(rest)
	for _, m := range shared {
		n += len(m.Name) + len(m.Value) + 8
	}
	out := make([]byte, 0, n)
	empty := len(bytes.TrimSpace(rest[1:len(rest)-1])) == 0
	if empty {
		out = append(out, '{')
	} else {
		out = append(out, rest[:len(rest)-1]...)
	}
	for _, m := range shared {
		if !empty {
			out = append(out, ',')
		}
		empty = false
		name, err := json.Marshal(m.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: member name %q: %w", ErrInvalidInput, m.Name, err)
		}
		out = append(out, name...)
		out = append(out, ':')
		out = append(out, m.Value...)
	}
	return append(out, '}'), nil
}

// EvalShared evaluates entrypoint on an input given in two parts: rest, a
// JSON object with the members particular to this evaluation, and shared,
// members that many evaluations have in common (the token's part of a
// call's input: its client, subject and claims). Each instance keeps the
// shared members it parsed last, so a run of evaluations with the same
// shared members parses them once and only rest each time. The input is
// the one MergeInput writes, and the decision the one Eval makes on it
// (TestEvalSharedMatchesEval). Names in shared must differ from each other.
func (p *Policy) EvalShared(ctx context.Context, deadline time.Time, entrypoint string, shared []Member, rest []byte) ([]byte, error) {
	if len(shared) == 0 {
		return p.EvalBy(ctx, deadline, entrypoint, rest)
	}
	id, err := p.entrypoint(entrypoint)
	if err != nil {
		return nil, err
	}
	size := len(rest)
	for i, m := range shared {
		size += len(m.Name) + len(m.Value)
		for _, o := range shared[:i] {
			if o.Name == m.Name {
				return nil, fmt.Errorf("%w: shared member %q given twice", ErrInvalidInput, m.Name)
			}
		}
		if !validJSON(m.Value) {
			return nil, fmt.Errorf("%w: shared member %q is not valid UTF-8 JSON", ErrInvalidInput, m.Name)
		}
	}
	if size > p.engine.cfg.maxInputBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrInvalidInput, size, p.engine.cfg.maxInputBytes)
	}
	if !validJSON(rest) {
		return nil, fmt.Errorf("%w: not valid UTF-8 JSON", ErrInvalidInput)
	}
	in, deadline, err := p.start(ctx, deadline, entrypoint)
	if err != nil {
		return nil, err
	}
	out, err := in.evalShared(ctx, deadline, id, shared, rest)
	return p.finish(ctx, in, deadline, entrypoint, out, err)
}

// heldMembers are the shared members an instance holds parsed between
// dataEnd and heapBase: copies of them, and the addresses of their values
// and of their paths (["name"]).
type heldMembers struct {
	members       []Member
	paths, values []uint32
}

func (h *heldMembers) matches(shared []Member) bool {
	return h != nil && membersEqual(h.members, shared)
}

func membersEqual(a, b []Member) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for i, m := range b {
		if m.Name != a[i].Name || !bytes.Equal(m.Value, a[i].Value) {
			return false
		}
	}
	return true
}

// contextFuncs are the OPA ABI's exports for an evaluation built step by
// step, which EvalShared needs instead of opa_eval's one call.
type contextFuncs struct {
	heapPtrSet, heapPtrGet, addPath                           api.Function
	ctxNew, setInput, setData, setEntrypoint, eval, getResult api.Function
	jsonDump                                                  api.Function
}

func (in *instance) contextFuncs() (*contextFuncs, error) {
	if in.ctxFuncs != nil {
		return in.ctxFuncs, nil
	}
	f := &contextFuncs{}
	for name, dst := range map[string]*api.Function{
		"opa_heap_ptr_set": &f.heapPtrSet, "opa_heap_ptr_get": &f.heapPtrGet, "opa_value_add_path": &f.addPath,
		"opa_eval_ctx_new": &f.ctxNew, "opa_eval_ctx_set_input": &f.setInput, "opa_eval_ctx_set_data": &f.setData,
		"opa_eval_ctx_set_entrypoint": &f.setEntrypoint, "eval": &f.eval, "opa_eval_ctx_get_result": &f.getResult,
		"opa_json_dump": &f.jsonDump,
	} {
		if *dst = in.mod.ExportedFunction(name); *dst == nil {
			return nil, fmt.Errorf("%w: missing export %s", ErrInvalidPolicy, name)
		}
	}
	in.ctxFuncs = f
	return f, nil
}

// invoke calls fn with i32 arguments (at most len(in.stack)) and returns
// its i32 result, or 0.
func (in *instance) invoke(fn api.Function, args ...uint32) (uint32, error) {
	s := in.stack[:]
	for i, a := range args {
		s[i] = api.EncodeU32(a)
	}
	// A context without Done, as in eval.
	if err := fn.CallWithStack(context.Background(), s); err != nil {
		return 0, err
	}
	return api.DecodeU32(s[0]), nil
}

// parseValue copies doc into the heap and parses it with opa_value_parse,
// as opa_eval parses its input.
func (in *instance) parseValue(doc []byte) (uint32, error) {
	ptr, err := in.invoke(in.mallocFn, uint32(len(doc)))
	if err != nil {
		return 0, err
	}
	if !in.mem.Write(ptr, doc) {
		return 0, fmt.Errorf("%w: write %d bytes of input", ErrInvalidInput, len(doc))
	}
	addr, err := in.invoke(in.valueParseFn, ptr, uint32(len(doc)))
	if err != nil {
		return 0, err
	}
	if addr == 0 {
		return 0, fmt.Errorf("%w: the module could not parse the input", ErrInvalidInput)
	}
	return addr, nil
}

// evalShared is eval for EvalShared. Holding the shared members, it parses
// rest only, sets the members in it and evaluates. Otherwise, when its
// last evaluation had the same shared members, it parses them to hold
// them from now on; else it evaluates the whole input as eval does and
// remembers the shared members it saw. So calls of different tokens
// taking turns on an instance cost what Eval costs (parsing the members
// apart costs more than parsing them with the rest, and they would not
// be used again), and a run of one token's calls parses its part twice
// and then never. Any failure kills the instance, its heap in an unknown
// state.
func (in *instance) evalShared(ctx context.Context, deadline time.Time, entrypoint int32, shared []Member, rest []byte) ([]byte, error) {
	if !in.shared.matches(shared) && !membersEqual(in.seen, shared) {
		// Copied into the buffers of the last ones: the values are alike.
		n := len(shared)
		if cap(in.seen) < n {
			in.seen = append(in.seen[:cap(in.seen)], make([]Member, n-cap(in.seen))...)
		}
		in.seen = in.seen[:n]
		for i, m := range shared {
			in.seen[i].Name, in.seen[i].Value = m.Name, append(in.seen[i].Value[:0], m.Value...)
		}
		whole, err := MergeInput(shared, rest)
		if err != nil {
			return nil, err
		}
		return in.eval(ctx, deadline, entrypoint, whole)
	}
	f, err := in.contextFuncs()
	if err != nil {
		in.dead = true
		return nil, err
	}
	in.begin(ctx, deadline)
	out, err := in.evalSteps(f, entrypoint, shared, rest)
	in.end()
	if err != nil {
		return nil, in.classify(err)
	}
	return out, nil
}

func (in *instance) evalSteps(f *contextFuncs, entrypoint int32, shared []Member, rest []byte) ([]byte, error) {
	if !in.shared.matches(shared) {
		// Drop what it held, then parse the members just past the data;
		// the heap is reset to just past them from now on.
		in.shared, in.heapBase = nil, in.dataEnd
		if _, err := in.invoke(f.heapPtrSet, in.dataEnd); err != nil {
			return nil, err
		}
		h := &heldMembers{}
		for _, m := range shared {
			path, err := json.Marshal([]string{m.Name})
			if err != nil {
				return nil, fmt.Errorf("%w: member name %q: %w", ErrInvalidInput, m.Name, err)
			}
			p, err := in.parseValue(path)
			if err != nil {
				return nil, err
			}
			v, err := in.parseValue(m.Value)
			if err != nil {
				return nil, err
			}
			h.members = append(h.members, Member{Name: m.Name, Value: bytes.Clone(m.Value)})
			h.paths, h.values = append(h.paths, p), append(h.values, v)
		}
		top, err := in.invoke(f.heapPtrGet)
		if err != nil {
			return nil, err
		}
		in.shared, in.heapBase = h, top
	}
	// rest goes just past the held members, as eval writes its input, and
	// the heap starts after it (the parsed values may point into it).
	at, err := in.place(rest)
	if err != nil {
		return nil, err
	}
	if _, err := in.invoke(f.heapPtrSet, at+uint32(len(rest))); err != nil {
		return nil, err
	}
	input, err := in.invoke(in.valueParseFn, at, uint32(len(rest)))
	if err != nil {
		return nil, err
	}
	if input == 0 {
		return nil, fmt.Errorf("%w: the module could not parse the input", ErrInvalidInput)
	}
	for i := range in.shared.values {
		errc, err := in.invoke(f.addPath, input, in.shared.paths[i], in.shared.values[i])
		if err != nil {
			return nil, err
		}
		if errc != 0 {
			return nil, fmt.Errorf("%w: the input's rest is not an object (error %d)", ErrInvalidInput, errc)
		}
	}
	c, err := in.invoke(f.ctxNew)
	if err != nil {
		return nil, err
	}
	for _, step := range []struct {
		fn  api.Function
		arg uint32
	}{{f.setInput, input}, {f.setData, in.dataAddr}, {f.setEntrypoint, uint32(entrypoint)}} {
		if _, err := in.invoke(step.fn, c, step.arg); err != nil {
			return nil, err
		}
	}
	errc, err := in.invoke(f.eval, c)
	if err != nil {
		return nil, err
	}
	if errc != 0 {
		return nil, errors.New("the evaluation failed")
	}
	result, err := in.invoke(f.getResult, c)
	if err != nil {
		return nil, err
	}
	str, err := in.invoke(f.jsonDump, result)
	if err != nil {
		return nil, err
	}
	return in.result(str)
}
