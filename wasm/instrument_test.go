package wasm

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/tetratelabs/wazero"
)

// loopModule is a hand-assembled module that imports opa_builtin0, as OPA
// policies do, and exports a function that loops forever:
//
//	(module
//	  (import "env" "opa_builtin0" (func (param i32 i32) (result i32)))
//	  (global i32 (i32.const 7))
//	  (func (export "spin") (loop (br 0))))
func loopModule() []byte {
	var types []byte
	types = appendU32(types, 2)
	types = append(types, wasmFuncType, 2, wasmI32, wasmI32, 1, wasmI32)
	types = append(types, wasmFuncType, 0, 0)
	imports := appendU32(nil, 1)
	imports = appendName(imports, "env")
	imports = appendName(imports, "opa_builtin0")
	imports = append(imports, externFunc, 0)
	funcs := appendU32(nil, 1)
	funcs = appendU32(funcs, 1)
	globals := appendU32(nil, 1)
	globals = append(globals, wasmI32, 0x00, 0x41, 0x07, 0x0b)
	exports := appendU32(nil, 1)
	exports = appendName(exports, "spin")
	exports = append(exports, externFunc, 1)
	body := []byte{0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b} // no locals; loop; br 0; end; end
	code := appendU32(nil, 1)
	code = appendU32(code, uint32(len(body)))
	code = append(code, body...)

	out := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	out = appendSection(out, sectionType, types)
	out = appendSection(out, sectionImport, imports)
	out = appendSection(out, sectionFunction, funcs)
	out = appendSection(out, sectionGlobal, globals)
	out = appendSection(out, sectionExport, exports)
	out = appendSection(out, sectionCode, code)
	return out
}

// TestFuelCallsHostFromLoops checks the instrumented loop calls
// opa_builtin0 with the reserved id every fuelPerYield iterations, and that
// a panic in that host call stops the loop.
func TestFuelCallsHostFromLoops(t *testing.T) {
	ctx := context.Background()
	mod, err := instrument(loopModule())
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	var yields int
	_, err = r.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func(_ context.Context, id, _ int32) int32 {
			if id != yieldBuiltinID {
				t.Errorf("builtin id %d, want %d", id, yieldBuiltinID)
			}
			if yields++; yields == 3 {
				panic(timeoutError{cause: errors.New("test deadline")})
			}
			return 0
		}).Export("opa_builtin0").Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Instantiate(ctx, mod)
	if err != nil {
		t.Fatalf("instrumented module does not instantiate: %v", err)
	}
	_, err = m.ExportedFunction("spin").Call(ctx)
	var te timeoutError
	if !errors.As(err, &te) {
		t.Fatalf("spin: err = %v, want the host's timeoutError", err)
	}
	if yields != 3 {
		t.Fatalf("%d yields, want 3", yields)
	}
}

func TestAppendS32(t *testing.T) {
	for _, tc := range []struct {
		v    int32
		want []byte
	}{
		{0, []byte{0x00}}, {1, []byte{0x01}}, {-1, []byte{0x7f}}, {63, []byte{0x3f}},
		{64, []byte{0xc0, 0x00}}, {-64, []byte{0x40}}, {-65, []byte{0xbf, 0x7f}},
		{4096, []byte{0x80, 0x20}},
	} {
		if got := appendS32(nil, tc.v); !bytes.Equal(got, tc.want) {
			t.Errorf("appendS32(%d) = %x, want %x", tc.v, got, tc.want)
		}
	}
}

func TestInstrumentRejectsMalformed(t *testing.T) {
	good := loopModule()
	for name, mod := range map[string][]byte{
		"empty":           nil,
		"bad magic":       []byte("\x00wasm\x01\x00\x00\x00"),
		"truncated":       good[:len(good)-3],
		"unknown opcode":  bytes.Replace(good, []byte{0x0c, 0x00, 0x0b, 0x0b}, []byte{0xfd, 0x00, 0x0b, 0x0b}, 1),
		"no opa_builtin0": bytes.Replace(good, []byte("opa_builtin0"), []byte("opa_builtin9"), 1),
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
