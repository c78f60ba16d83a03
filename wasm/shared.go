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
// of a name), with escaped surrogates decoded as the module is given them
// (decodeSurrogates). rest must be a JSON object, each shared value JSON,
// and the names in shared differ from each other.
func MergeInput(shared []Member, rest []byte) ([]byte, error) {
	obj, err := checkParts(shared, rest)
	if err != nil {
		return nil, err
	}
	obj, shared = obj.decoded(shared)
	return obj.merge(shared), nil
}

// restObject is a rest checked by checkParts: trimmed of JSON white space,
// whether it has no member, and whether it or a shared value holds an
// escaped surrogate.
type restObject struct {
	text       []byte
	empty      bool
	surrogates bool
}

// decoded returns the parts with their escaped surrogates decoded as Eval
// decodes a whole input's (decodeSurrogates): r and shared themselves when
// none holds one, else copies; the caller's bytes are never written.
func (r restObject) decoded(shared []Member) (restObject, []Member) {
	if !r.surrogates {
		return r, shared
	}
	if _, s := checkJSON(r.text, 0); s {
		r.text = decodeSurrogates(r.text)
	}
	copied := false
	for i, m := range shared {
		if _, s := checkJSON(m.Value, 1); s {
			if !copied {
				shared, copied = append([]Member(nil), shared...), true
			}
			shared[i].Value = decodeSurrogates(m.Value)
		}
	}
	r.surrogates = false
	return r, shared
}

// checkParts checks the parts of an input as Eval checks a whole input,
// but for its size (restObject.size): rest a JSON object in UTF-8, each
// shared value JSON in UTF-8 and nested no deeper than the whole may be,
// no name twice in shared. It says whether a part holds an escaped
// surrogate, which restObject.decoded then decodes.
func checkParts(shared []Member, rest []byte) (restObject, error) {
	ok, surrogates := checkJSON(rest, 0)
	if !ok {
		return restObject{}, fmt.Errorf("%w: not valid UTF-8 JSON", ErrInvalidInput)
	}
	t := trimJSONSpace(rest)
	if t[0] != '{' {
		return restObject{}, fmt.Errorf("%w: the input's rest is not a JSON object", ErrInvalidInput)
	}
	for i, m := range shared {
		for _, o := range shared[:i] {
			if o.Name == m.Name {
				return restObject{}, fmt.Errorf("%w: shared member %q given twice", ErrInvalidInput, m.Name)
			}
		}
		// A member's value is one level down in the whole input.
		ok, s := checkJSON(m.Value, 1)
		if !ok {
			return restObject{}, fmt.Errorf("%w: shared member %q is not valid UTF-8 JSON", ErrInvalidInput, m.Name)
		}
		surrogates = surrogates || s
	}
	return restObject{text: t, empty: len(trimJSONSpace(t[1:len(t)-1])) == 0, surrogates: surrogates}, nil
}

// size is the length of the input merge writes.
func (r restObject) size(shared []Member) int {
	n := len(r.text)
	if r.empty {
		n = 2
	}
	for i, m := range shared {
		if i > 0 || !r.empty {
			n++ // the comma before it
		}
		n += memberNameLen(m.Name) + 1 + len(m.Value)
	}
	return n
}

// merge writes the input: rest's members, then shared's.
func (r restObject) merge(shared []Member) []byte {
	out := make([]byte, 0, r.size(shared))
	if r.empty {
		out = append(out, '{')
	} else {
		out = append(out, r.text[:len(r.text)-1]...)
	}
	for i, m := range shared {
		if i > 0 || !r.empty {
			out = append(out, ',')
		}
		out = appendMemberName(out, m.Name)
		out = append(out, ':')
		out = append(out, m.Value...)
	}
	return append(out, '}')
}

// appendMemberName appends name as a JSON string: as it is between quotes
// when it needs no escape (the token's part's names), else as
// encoding/json writes it.
func appendMemberName(dst []byte, name string) []byte {
	if !plainName(name) {
		quoted, _ := json.Marshal(name) // a string always encodes
		return append(dst, quoted...)
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"')
}

// memberNameLen is the length appendMemberName appends.
func memberNameLen(name string) int {
	if !plainName(name) {
		return len(appendMemberName(nil, name))
	}
	return len(name) + 2
}

// plainName reports whether name needs no escape in JSON.
func plainName(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// trimJSONSpace trims JSON's white space (RFC 8259: space, tab, line feed,
// carriage return) from both ends of b.
func trimJSONSpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// EvalShared evaluates entrypoint on an input given in two parts: rest, a
// JSON object with the members particular to this evaluation, and shared,
// members that many evaluations have in common (the token's part of a
// call's input: its client, subject and claims). An instance that sees the
// same shared members twice in a row keeps them parsed, so a run of
// evaluations with the same shared members parses them twice and then
// only rest each time. The input is the one MergeInput writes, checked as
// Eval checks it, and the decision the one Eval makes on it
// (TestEvalSharedMatchesEval). Names in shared must differ from each other.
func (p *Policy) EvalShared(ctx context.Context, deadline time.Time, entrypoint string, shared []Member, rest []byte) ([]byte, error) {
	if len(shared) == 0 {
		return p.EvalBy(ctx, deadline, entrypoint, rest)
	}
	id, err := p.entrypoint(entrypoint)
	if err != nil {
		return nil, err
	}
	obj, err := checkParts(shared, rest)
	if err != nil {
		return nil, err
	}
	// The size of the input as given, as Eval bounds it before decoding.
	if size := obj.size(shared); size > p.engine.cfg.maxInputBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrInvalidInput, size, p.engine.cfg.maxInputBytes)
	}
	obj, shared = obj.decoded(shared)
	in, deadline, err := p.start(ctx, deadline, entrypoint)
	if err != nil {
		return nil, err
	}
	out, err := in.evalShared(ctx, deadline, id, shared, obj)
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

// contextFuncs resolves the exports once per instance; nil when the
// module lacks one.
func (in *instance) contextFuncs() *contextFuncs {
	if in.ctxFuncs != nil || in.noCtxFuncs {
		return in.ctxFuncs
	}
	f := &contextFuncs{}
	for name, dst := range map[string]*api.Function{
		"opa_heap_ptr_set": &f.heapPtrSet, "opa_heap_ptr_get": &f.heapPtrGet, "opa_value_add_path": &f.addPath,
		"opa_eval_ctx_new": &f.ctxNew, "opa_eval_ctx_set_input": &f.setInput, "opa_eval_ctx_set_data": &f.setData,
		"opa_eval_ctx_set_entrypoint": &f.setEntrypoint, "eval": &f.eval, "opa_eval_ctx_get_result": &f.getResult,
		"opa_json_dump": &f.jsonDump,
	} {
		if *dst = in.mod.ExportedFunction(name); *dst == nil {
			in.noCtxFuncs = true
			return nil
		}
	}
	in.ctxFuncs = f
	return f
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
// and then never. A module without OPA's context functions is always
// given the whole input. A failure in the module kills the instance, its
// heap in an unknown state.
func (in *instance) evalShared(ctx context.Context, deadline time.Time, entrypoint int32, shared []Member, rest restObject) ([]byte, error) {
	f := in.contextFuncs()
	if f == nil || (!in.shared.matches(shared) && !membersEqual(in.seen, shared)) {
		// Copied into the buffers of the last ones: the values are alike.
		n := len(shared)
		if cap(in.seen) < n {
			in.seen = append(in.seen[:cap(in.seen)], make([]Member, n-cap(in.seen))...)
		}
		in.seen = in.seen[:n]
		for i, m := range shared {
			in.seen[i].Name, in.seen[i].Value = m.Name, append(in.seen[i].Value[:0], m.Value...)
		}
		return in.eval(ctx, deadline, entrypoint, rest.merge(shared))
	}
	in.begin(ctx, deadline)
	str, err := in.evalSteps(f, entrypoint, shared, rest.text)
	in.end()
	if err != nil {
		return nil, in.classify(err)
	}
	return in.result(str)
}

// evalSteps evaluates with the shared members held (parsing them first
// when it does not hold them yet) and returns the address of the result's
// JSON.
func (in *instance) evalSteps(f *contextFuncs, entrypoint int32, shared []Member, rest []byte) (uint32, error) {
	if !in.shared.matches(shared) {
		// Drop what it held, then parse the members just past the data;
		// the heap is reset to just past them from now on.
		in.shared, in.heapBase = nil, in.dataEnd
		if _, err := in.invoke(f.heapPtrSet, in.dataEnd); err != nil {
			return 0, err
		}
		h := &heldMembers{}
		for _, m := range shared {
			path, err := json.Marshal([]string{m.Name})
			if err != nil {
				return 0, fmt.Errorf("%w: member name %q: %w", ErrInvalidInput, m.Name, err)
			}
			p, err := in.parseValue(path)
			if err != nil {
				return 0, err
			}
			v, err := in.parseValue(m.Value)
			if err != nil {
				return 0, err
			}
			h.members = append(h.members, Member{Name: m.Name, Value: bytes.Clone(m.Value)})
			h.paths, h.values = append(h.paths, p), append(h.values, v)
		}
		top, err := in.invoke(f.heapPtrGet)
		if err != nil {
			return 0, err
		}
		in.shared, in.heapBase = h, top
	}
	// rest goes just past the held members, as eval writes its input, and
	// the heap starts after it (the parsed values may point into it).
	at, err := in.place(rest)
	if err != nil {
		return 0, err
	}
	if _, err := in.invoke(f.heapPtrSet, at+uint32(len(rest))); err != nil {
		return 0, err
	}
	input, err := in.invoke(in.valueParseFn, at, uint32(len(rest)))
	if err != nil {
		return 0, err
	}
	if input == 0 {
		return 0, fmt.Errorf("%w: the module could not parse the input", ErrInvalidInput)
	}
	for i := range in.shared.values {
		errc, err := in.invoke(f.addPath, input, in.shared.paths[i], in.shared.values[i])
		if err != nil {
			return 0, err
		}
		if errc != 0 {
			return 0, fmt.Errorf("%w: the input's rest is not an object (error %d)", ErrInvalidInput, errc)
		}
	}
	c, err := in.invoke(f.ctxNew)
	if err != nil {
		return 0, err
	}
	for _, step := range []struct {
		fn  api.Function
		arg uint32
	}{{f.setInput, input}, {f.setData, in.dataAddr}, {f.setEntrypoint, uint32(entrypoint)}} {
		if _, err := in.invoke(step.fn, c, step.arg); err != nil {
			return 0, err
		}
	}
	errc, err := in.invoke(f.eval, c)
	if err != nil {
		return 0, err
	}
	if errc != 0 {
		return 0, errors.New("the evaluation failed")
	}
	result, err := in.invoke(f.getResult, c)
	if err != nil {
		return 0, err
	}
	return in.invoke(f.jsonDump, result)
}
