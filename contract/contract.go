// Package contract is the policy contract between the Go side (the
// authorization server, the gateway, the dashboard, the tools) and a
// policy bundle: the entrypoints and the contract version that introduced
// each, the input every entrypoint gets, the results callers read, the
// typed view of the policy data, and the identity an introspected token
// stands for. It imports nothing but the standard library, so every
// package may use it without linking a policy engine, a store or an HTTP
// framework.
//
// The rule for contract versions (rego/README.md, RATIONALE.md): a bundle
// declares the version it was built for (its manifest's
// metadata.contract_version; none is version 1). It is accepted when that
// version is at least OldestVersion and the bundle exports every
// entrypoint Required names for it. An entrypoint newer than the bundle is
// decided by Fallback, built in and conservative; an entrypoint the binary
// does not know (a bundle newer than the binary) is ignored.
package contract

import "fmt"

// Entrypoint names a policy decision, "pbac/<rule>".
type Entrypoint string

// The entrypoints of the contract.
const (
	Register   Entrypoint = "pbac/register"
	Token      Entrypoint = "pbac/token"
	Introspect Entrypoint = "pbac/introspect"
	Exchange   Entrypoint = "pbac/exchange"
	ToolCall   Entrypoint = "pbac/tool_call"
	List       Entrypoint = "pbac/list"
	Anonymous  Entrypoint = "pbac/anonymous"
	Method     Entrypoint = "pbac/method"
)

// Version is the contract version this binary implements: a bundle built
// by it declares this version.
const Version = 3

// ApprovalSince is the contract version that introduced pbac/tool_call's
// approval result (ToolCallResult.Approval) and input (Input.Approval). It
// adds no entrypoint: Required(3) is Required(2). A bundle of an older
// version is never read for an approval.
const ApprovalSince = 3

// OldestVersion is the oldest contract version this binary still runs.
const OldestVersion = 1

// entrypoints are the contract's entrypoints in the order they are
// compiled into a Wasm module (the module's entrypoint ids follow it),
// each with the contract version that introduced it.
var entrypoints = []struct {
	ep    Entrypoint
	since int
}{
	{Register, 1},
	{Token, 1},
	{Introspect, 1},
	{Exchange, 1},
	{ToolCall, 1},
	{List, 1},
	{Anonymous, 1},
	{Method, 2},
}

// Entrypoints returns every entrypoint of this contract version, in
// compilation order.
func Entrypoints() []Entrypoint {
	out := make([]Entrypoint, len(entrypoints))
	for i, e := range entrypoints {
		out[i] = e.ep
	}
	return out
}

// Names returns Entrypoints as strings, for the compiler and the Wasm
// runtime.
func Names() []string {
	out := make([]string, len(entrypoints))
	for i, e := range entrypoints {
		out[i] = string(e.ep)
	}
	return out
}

// Since is the contract version that introduced ep; false when this
// binary does not know ep.
func Since(ep Entrypoint) (int, bool) {
	for _, e := range entrypoints {
		if e.ep == ep {
			return e.since, true
		}
	}
	return 0, false
}

// Known reports whether ep is an entrypoint of this contract version.
func Known(ep Entrypoint) bool {
	_, ok := Since(ep)
	return ok
}

// BundleVersion is the contract version of a bundle that declares
// declared: a bundle that declares none (0) is version 1, the contract
// before versions were written down.
func BundleVersion(declared int) int {
	if declared == 0 {
		return 1
	}
	return declared
}

// ErrContractVersion is wrapped by the error of a bundle whose contract
// version this binary does not run.
var ErrContractVersion = fmt.Errorf("contract version not supported (this binary runs %d to %d and newer ones with its entrypoints)", OldestVersion, Version)

// Required lists the entrypoints a bundle of contract version v (see
// BundleVersion) must export for this binary to run it: every entrypoint
// introduced at or before min(v, Version), in compilation order. A version
// older than OldestVersion is an error wrapping ErrContractVersion.
func Required(v int) ([]Entrypoint, error) {
	if v < OldestVersion {
		return nil, fmt.Errorf("%w: the bundle declares version %d", ErrContractVersion, v)
	}
	limit := min(v, Version)
	var out []Entrypoint
	for _, e := range entrypoints {
		if e.since <= limit {
			out = append(out, e.ep)
		}
	}
	return out, nil
}

// Optional lists the entrypoints this binary knows that a bundle of
// contract version v need not export: those introduced after v. Each has
// a built-in Fallback the binary decides with when the bundle lacks it.
func Optional(v int) []Entrypoint {
	var out []Entrypoint
	for _, e := range entrypoints {
		if e.since > v {
			out = append(out, e.ep)
		}
	}
	return out
}
