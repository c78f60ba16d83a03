package wasm

import "errors"

// Sentinel errors callers branch on. Every error returned by this package that
// prevents a decision wraps one of these, so a caller can map it to a deny
// reason without parsing strings.
var (
	// ErrInvalidPolicy means the Wasm module is not a usable OPA policy: it
	// does not compile, lacks an ABI export, or speaks an unsupported ABI.
	ErrInvalidPolicy = errors.New("invalid policy module")
	// ErrInvalidData means the policy data is not a JSON object the module
	// could parse.
	ErrInvalidData = errors.New("invalid policy data")
	// ErrUnsupportedBuiltin means the module needs a builtin this host cannot
	// serve; it is reported at load time, never at call time.
	ErrUnsupportedBuiltin = errors.New("unsupported builtin")
	// ErrUnknownEntrypoint means the entrypoint is not in the module.
	ErrUnknownEntrypoint = errors.New("unknown entrypoint")
	// ErrInvalidInput means the input is not valid JSON or exceeds the limits.
	ErrInvalidInput = errors.New("invalid policy input")
	// ErrUndefined means the entrypoint produced no value for the input.
	ErrUndefined = errors.New("policy decision undefined")
	// ErrTimeout means the evaluation ran past its deadline and was stopped.
	ErrTimeout = errors.New("policy evaluation timed out")
	// ErrAborted means the policy aborted (opa_abort), ran out of memory or a
	// builtin failed.
	ErrAborted = errors.New("policy evaluation aborted")
	// ErrClosed means the policy or engine was closed.
	ErrClosed = errors.New("policy closed")
)
