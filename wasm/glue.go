package wasm

// The OPA Wasm ABI has the policy import its linear memory and its host
// functions from a module named "env". A wazero host module can export
// functions but not a memory, so each policy instance gets a tiny Wasm module
// built here: it defines the memory (with our page cap), imports the host
// functions from the engine's shared host module, and re-exports all of them
// under the names the policy expects.

// hostModuleName names the engine's one host module that implements the OPA
// host functions in Go.
const hostModuleName = "pbac_opa_host"

// hostFunc describes one OPA host function: its export name and the number of
// i32 parameters (every one returns an i32 except abort and println).
type hostFunc struct {
	name    string
	params  int
	returns bool
}

// hostFuncs returns the host functions the glue module re-exports, in import
// order (which fixes their function indices in the glue module).
func hostFuncs() []hostFunc {
	return []hostFunc{
		{"opa_abort", 1, false},
		{"opa_println", 1, false},
		{"opa_builtin0", 2, true},
		{"opa_builtin1", 3, true},
		{"opa_builtin2", 4, true},
		{"opa_builtin3", 5, true},
		{"opa_builtin4", 6, true},
	}
}

const (
	wasmI32        = 0x7f
	wasmFuncType   = 0x60
	sectionType    = 1
	sectionImport  = 2
	sectionMemory  = 5
	sectionExport  = 7
	externFunc     = 0x00
	externMemory   = 0x02
	limitsMinOnly  = 0x00
	limitsMinAndMx = 0x01
)

// glueModule encodes the "env" glue module. maxPages == 0 leaves the memory
// unbounded (the runtime's own limit still applies).
func glueModule(minPages, maxPages uint32) []byte {
	funcs := hostFuncs()

	var types []byte
	types = appendU32(types, uint32(len(funcs)))
	for _, f := range funcs {
		types = append(types, wasmFuncType)
		types = appendU32(types, uint32(f.params))
		for range f.params {
			types = append(types, wasmI32)
		}
		if f.returns {
			types = append(types, 1, wasmI32)
		} else {
			types = append(types, 0)
		}
	}

	var imports []byte
	imports = appendU32(imports, uint32(len(funcs)))
	for i, f := range funcs {
		imports = appendName(imports, hostModuleName)
		imports = appendName(imports, f.name)
		imports = append(imports, externFunc)
		imports = appendU32(imports, uint32(i))
	}

	var memory []byte
	memory = appendU32(memory, 1)
	if maxPages > 0 {
		memory = append(memory, limitsMinAndMx)
		memory = appendU32(memory, minPages)
		memory = appendU32(memory, maxPages)
	} else {
		memory = append(memory, limitsMinOnly)
		memory = appendU32(memory, minPages)
	}

	var exports []byte
	exports = appendU32(exports, uint32(len(funcs)+1))
	exports = appendName(exports, "memory")
	exports = append(exports, externMemory)
	exports = appendU32(exports, 0)
	for i, f := range funcs {
		exports = appendName(exports, f.name)
		exports = append(exports, externFunc)
		exports = appendU32(exports, uint32(i))
	}

	out := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	out = appendSection(out, sectionType, types)
	out = appendSection(out, sectionImport, imports)
	out = appendSection(out, sectionMemory, memory)
	out = appendSection(out, sectionExport, exports)
	return out
}

func appendSection(dst []byte, id byte, body []byte) []byte {
	dst = append(dst, id)
	dst = appendU32(dst, uint32(len(body)))
	return append(dst, body...)
}

func appendName(dst []byte, s string) []byte {
	dst = appendU32(dst, uint32(len(s)))
	return append(dst, s...)
}

// appendU32 appends v as unsigned LEB128.
func appendU32(dst []byte, v uint32) []byte {
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			dst = append(dst, b|0x80)
			continue
		}
		return append(dst, b)
	}
}
