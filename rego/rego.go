// Package rego holds the shipped PBAC policy (Rego sources, policy data,
// Rego unit tests and decision vectors) and compiles it to an OPA-ABI Wasm
// bundle. It also provides OPA's own evaluator over the same sources as a
// reference oracle for differential tests of the Wasm runtime.
//
// See README.md in this directory for the policy's input/output contract.
package rego

import (
	"embed"
	"io/fs"

	"github.com/pbac-gateway/pbac/contract"
)

//go:embed policy
var policyFS embed.FS

//go:embed testdata/vectors/*.json
var vectorsFS embed.FS

// entrypoints are the policy decisions compiled into the Wasm module, in
// the contract's fixed order (the Wasm entrypoint ids follow it).
var entrypoints = contract.Names()

// Sources returns the shipped policy as an fs.FS rooted at the policy
// directory: the *.rego modules, their *_test.rego unit tests and data.json.
func Sources() fs.FS {
	sub, err := fs.Sub(policyFS, "policy")
	if err != nil {
		// Unreachable: "policy" is a valid, embedded directory.
		panic(err)
	}
	return sub
}

// isEntrypoint reports whether e is an entrypoint of the contract.
func isEntrypoint(e string) bool {
	return contract.Known(contract.Entrypoint(e))
}
