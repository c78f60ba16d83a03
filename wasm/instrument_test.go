package wasm

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/tetratelabs/wazero"
)

// loopModule is a hand-assembled module: one exported function "spin" that
// loops forever, one immutable global, memory exported.
//
//	(module
//	  (global i32 (i32.const 7))
//	  (func (export "spin") (loop (br 0))))
func loopModule() []byte {
	var types []byte
	types = appendU32(types, 1)
	types = append(types, wasmFuncType, 0, 0)
	funcs := appendU32(nil, 1)
	funcs = appendU32(funcs, 0)
	globals := appendU32(nil, 1)
	globals = append(globals, wasmI32, 0x00, 0x41, 0x07, 0x0b)
	exports := appendU32(nil, 1)
	exports = appendName(exports, "spin")
	exports = append(exports, externFunc, 0)
	body := []byte{0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b} // no locals; loop; br 0; end; end
	code := appendU32(nil, 1)
	code = appendU32(code, uint32(len(body)))
	code = append(code, body...)

	out := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	out = appendSection(out, sectionType, types)
	out = appendSection(out, sectionFunction, funcs)
	out = appendSection(out, sectionGlobal, globals)
	out = appendSection(out, sectionExport, exports)
	out = appendSection(out, sectionCode, code)
	return out
}

func TestInstrumentInterruptsLoop(t *testing.T) {
	ctx := context.Background()
	mod, err := instrument(loopModule())
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	m, err := r.Instantiate(ctx, mod)
	if err != nil {
		t.Fatalf("instrumented module does not instantiate: %v", err)
	}
	g, ok := m.ExportedGlobal(interruptExport).(interface{ Set(uint64) })
	if !ok {
		t.Fatal("interrupt global not exported as mutable")
	}
	if old := m.ExportedGlobal(interruptExport).Get(); old != 0 {
		t.Fatalf("interrupt starts at %d", old)
	}
	g.Set(1)
	// With the interrupt set, the otherwise endless loop traps at once.
	if _, err := m.ExportedFunction("spin").Call(ctx); err == nil {
		t.Fatal("spin returned without a trap")
	}
}

func TestInstrumentRejectsMalformed(t *testing.T) {
	good := loopModule()
	for name, mod := range map[string][]byte{
		"empty":          nil,
		"bad magic":      []byte("\x00wasm\x01\x00\x00\x00"),
		"truncated":      good[:len(good)-3],
		"unknown opcode": bytes.Replace(good, []byte{0x0c, 0x00, 0x0b, 0x0b}, []byte{0xfd, 0x00, 0x0b, 0x0b}, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := instrument(mod); !errors.Is(err, errMalformed) {
				t.Fatalf("err = %v, want errMalformed", err)
			}
		})
	}
}

// FuzzInstrument feeds arbitrary bytes to the rewriter, which parses policy
// modules from bundles: it must never panic, and what it accepts and wazero
// compiles must still be a valid module.
func FuzzInstrument(f *testing.F) {
	f.Add(loopModule())
	f.Add(glueModule(2, 16))
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, mod []byte) {
		out, err := instrument(mod)
		if err != nil {
			return
		}
		ctx := context.Background()
		r := wazero.NewRuntime(ctx)
		defer r.Close(ctx)
		if _, err := r.CompileModule(ctx, mod); err != nil {
			return // the original is invalid too; nothing to compare
		}
		if _, err := r.CompileModule(ctx, out); err != nil {
			t.Fatalf("valid module became invalid after instrumenting: %v", err)
		}
	})
}
