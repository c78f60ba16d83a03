package wasm

import (
	"errors"
	"fmt"
)

// Deadlines without a per-call cost, and without stalling the Go runtime.
//
// wazero can stop a running function when its context is done, but to do so
// it compiles an exit to Go into every loop back-edge and starts a goroutine
// per call; on an OPA policy that makes a decision about three times slower.
// Setting a flag from a watchdog goroutine is not enough either: native code
// cannot be preempted, so a garbage collection that starts while a policy
// spins waits for it forever, and the watchdog never runs.
//
// So instrument rewrites the policy module once at load. It appends a mutable
// i32 global, the fuel, and at the head of every loop spends one unit; when
// the fuel runs out, the loop calls the host (through the opa_builtin0 import
// the module already has, with a reserved builtin id) and refills it. The host
// call is a Go safepoint and checks the evaluation's deadline and context: an
// evaluation past its deadline traps there. The global is appended after all
// others, so no index in the module changes.

// yieldBuiltinID is the builtin id the instrumented loops pass to
// opa_builtin0 when their fuel runs out; OPA numbers real builtins from 0.
const yieldBuiltinID = -1

// fuelPerYield is how many loop iterations run between two host checks:
// large enough to cost nothing measurable, small enough that a check comes
// within a fraction of a millisecond.
const fuelPerYield = 4096

const (
	sectionCustom   = 0
	sectionFunction = 3
	sectionGlobal   = 6
	sectionCode     = 10
	sectionTag      = 13
	externGlobal    = 0x03
)

var errMalformed = errors.New("malformed module")

// instrument returns module with the fuel global and a fuel check at every
// loop head.
func instrument(module []byte) ([]byte, error) {
	if len(module) < 8 || string(module[:4]) != "\x00asm" || module[4] != 1 {
		return nil, fmt.Errorf("%w: not a Wasm 1.0 binary", errMalformed)
	}
	type section struct {
		id   byte
		body []byte
	}
	var sections []section
	r := reader{b: module, pos: 8}
	for !r.done() {
		id := r.byte()
		size := r.u32()
		body := r.bytes(int(size))
		if r.err != nil {
			return nil, r.err
		}
		sections = append(sections, section{id, body})
	}

	importedGlobals, definedGlobals := 0, 0
	haveGlobal := false
	yieldFunc := int64(-1)
	for _, s := range sections {
		switch s.id {
		case sectionImport:
			imps, err := readImports(s.body)
			if err != nil {
				return nil, err
			}
			importedGlobals, yieldFunc = imps.globals, imps.builtin0
		case sectionGlobal:
			haveGlobal = true
			sr := reader{b: s.body}
			definedGlobals = int(sr.u32())
			if sr.err != nil {
				return nil, sr.err
			}
		}
	}
	if yieldFunc < 0 {
		return nil, fmt.Errorf("%w: module does not import env.opa_builtin0", errMalformed)
	}
	fuel := uint32(importedGlobals + definedGlobals)
	newGlobal := append([]byte{wasmI32, 0x01, 0x41}, appendS32(nil, fuelPerYield)...)
	newGlobal = append(newGlobal, 0x0b) // (mut i32) (i32.const fuelPerYield)

	out := append([]byte(nil), module[:8]...)
	emit := func(id byte, body []byte) { out = appendSection(out, id, body) }
	for _, s := range sections {
		// A module without globals gets its global section right before the
		// export section, where the binary format orders it.
		if !haveGlobal && s.id >= sectionExport && s.id != sectionCustom && s.id != sectionTag {
			emit(sectionGlobal, append(appendU32(nil, 1), newGlobal...))
			haveGlobal = true
		}
		switch s.id {
		case sectionGlobal:
			body, err := appendToVec(s.body, newGlobal)
			if err != nil {
				return nil, err
			}
			emit(s.id, body)
		case sectionCode:
			body, err := instrumentCode(s.body, fuelCheck(fuel, uint32(yieldFunc)))
			if err != nil {
				return nil, err
			}
			emit(s.id, body)
		default:
			emit(s.id, s.body)
		}
	}
	if !haveGlobal {
		return nil, fmt.Errorf("%w: module has no code", errMalformed)
	}
	return out, nil
}

// appendS32 appends v as signed LEB128.
func appendS32(dst []byte, v int32) []byte {
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && b&0x40 == 0) || (v == -1 && b&0x40 != 0) {
			return append(dst, b)
		}
		dst = append(dst, b|0x80)
	}
}

// appendToVec adds one encoded entry to a section body that is a vector.
func appendToVec(body, entry []byte) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	out := appendU32(nil, n+1)
	out = append(out, body[r.pos:]...)
	return append(out, entry...), nil
}

// fuelCheck is the code put at every loop head:
//
//	global.get $fuel
//	if
//	  global.get $fuel  i32.const 1  i32.sub  global.set $fuel
//	else
//	  i32.const yieldBuiltinID  i32.const 0  call $opa_builtin0  drop
//	  i32.const fuelPerYield  global.set $fuel
//	end
func fuelCheck(fuel, builtin0 uint32) []byte {
	c := appendU32([]byte{0x23}, fuel)
	c = append(c, 0x04, 0x40)
	c = appendU32(append(c, 0x23), fuel)
	c = append(c, 0x41, 0x01, 0x6b)
	c = appendU32(append(c, 0x24), fuel)
	c = append(c, 0x05)
	c = append(append(c, 0x41), appendS32(nil, yieldBuiltinID)...)
	c = append(c, 0x41, 0x00)
	c = appendU32(append(c, 0x10), builtin0)
	c = append(c, 0x1a)
	c = append(append(c, 0x41), appendS32(nil, fuelPerYield)...)
	c = appendU32(append(c, 0x24), fuel)
	return append(c, 0x0b)
}

type imports struct {
	globals  int
	builtin0 int64 // function index of env.opa_builtin0, or -1
}

func readImports(body []byte) (imports, error) {
	r := reader{b: body}
	n := r.u32()
	imps := imports{builtin0: -1}
	funcs := int64(0)
	for range n {
		mod := string(r.bytes(int(r.u32())))
		name := string(r.bytes(int(r.u32())))
		switch kind := r.byte(); kind {
		case externFunc:
			r.u32()
			if mod == "env" && name == "opa_builtin0" {
				imps.builtin0 = funcs
			}
			funcs++
		case 0x01: // table: reftype, limits
			r.byte()
			r.limits()
		case externMemory:
			r.limits()
		case externGlobal:
			r.byte() // valtype
			r.byte() // mutability
			imps.globals++
		default:
			return imps, fmt.Errorf("%w: import kind %#x", errMalformed, kind)
		}
	}
	return imps, r.err
}

// instrumentCode rewrites every function body of the code section.
func instrumentCode(body, check []byte) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	out := appendU32(nil, n)
	for i := range n {
		size := r.u32()
		fn := r.bytes(int(size))
		if r.err != nil {
			return nil, r.err
		}
		rewritten, err := instrumentFunc(fn, check)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(rewritten)))
		out = append(out, rewritten...)
	}
	if !r.done() {
		return nil, fmt.Errorf("%w: trailing bytes in code section", errMalformed)
	}
	return out, nil
}

// instrumentFunc walks one function body instruction by instruction and
// inserts check after each loop's block type.
func instrumentFunc(fn, check []byte) ([]byte, error) {
	r := reader{b: fn}
	locals := r.u32()
	for range locals {
		r.u32()
		r.byte()
	}
	if r.err != nil {
		return nil, r.err
	}
	out := make([]byte, 0, len(fn)+64)
	out = append(out, fn[:r.pos]...)
	for !r.done() {
		start := r.pos
		op := r.byte()
		isLoop := false
		switch {
		case op == 0x02 || op == 0x04: // block, if
			r.blockType()
		case op == 0x03: // loop
			r.blockType()
			isLoop = true
		case op == 0x0c || op == 0x0d: // br, br_if
			r.u32()
		case op == 0x0e: // br_table
			for range r.u32() + 1 {
				r.u32()
			}
		case op == 0x10 || op == 0x12: // call, return_call
			r.u32()
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
			r.u32()
			r.u32()
		case op == 0x1c: // select t*
			for range r.u32() {
				r.byte()
			}
		case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
			r.u32()
		case op >= 0x28 && op <= 0x3e: // loads and stores: memarg
			r.u32()
			r.u32()
		case op == 0x3f || op == 0x40: // memory.size, memory.grow
			r.u32()
		case op == 0x41: // i32.const
			r.leb()
		case op == 0x42: // i64.const
			r.leb()
		case op == 0x43:
			r.bytes(4)
		case op == 0x44:
			r.bytes(8)
		case op == 0xd0: // ref.null t
			r.byte()
		case op == 0xd2: // ref.func
			r.u32()
		case op == 0xfc:
			r.miscOp()
		case op <= 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b ||
			(op >= 0x45 && op <= 0xc4) || op == 0xd1:
			// no immediates
		default:
			return nil, fmt.Errorf("%w: unsupported opcode %#x at %d", errMalformed, op, start)
		}
		if r.err != nil {
			return nil, r.err
		}
		out = append(out, fn[start:r.pos]...)
		if isLoop {
			out = append(out, check...)
		}
	}
	return out, nil
}

// reader decodes the binary format; the first error sticks.
type reader struct {
	b   []byte
	pos int
	err error
}

func (r *reader) done() bool { return r.err != nil || r.pos >= len(r.b) }

func (r *reader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated at byte %d", errMalformed, r.pos)
	}
	r.pos = len(r.b)
}

func (r *reader) byte() byte {
	if r.pos >= len(r.b) {
		r.fail()
		return 0
	}
	b := r.b[r.pos]
	r.pos++
	return b
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || r.pos+n > len(r.b) {
		r.fail()
		return nil
	}
	b := r.b[r.pos : r.pos+n]
	r.pos += n
	return b
}

// leb skips a signed or unsigned LEB128 of at most 10 bytes.
func (r *reader) leb() {
	for i := 0; i < 10; i++ {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	r.fail()
}

func (r *reader) u32() uint32 {
	var v uint32
	for shift := uint(0); shift < 35; shift += 7 {
		b := r.byte()
		v |= uint32(b&0x7f) << shift
		if b&0x80 == 0 {
			return v
		}
	}
	r.fail()
	return 0
}

func (r *reader) limits() {
	if r.byte()&0x01 != 0 {
		r.u32()
	}
	r.u32()
}

// blockType skips 0x40, a value type, or a type index (s33).
func (r *reader) blockType() {
	if r.pos >= len(r.b) {
		r.fail()
		return
	}
	switch b := r.b[r.pos]; {
	case b == 0x40 || (b >= 0x6f && b <= 0x7f):
		r.pos++
	default:
		r.leb()
	}
}

// miscOp skips the immediates of a 0xfc-prefixed instruction.
func (r *reader) miscOp() {
	switch sub := r.u32(); {
	case sub <= 7: // saturating truncations
	case sub == 8, sub == 12, sub == 14, sub == 10: // memory.init, table.init, table.copy, memory.copy
		r.u32()
		r.u32()
	case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17:
		r.u32()
	default:
		r.err = fmt.Errorf("%w: unsupported 0xfc opcode %d", errMalformed, sub)
	}
}
