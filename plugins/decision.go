package plugins

import (
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/pbac-gateway/pbac/contract"
)

// Decision is the outcome of one policy entrypoint (contract.Decision).
type Decision = contract.Decision

// parseDecision reads a result object. A result that is not an object with a
// boolean allow is a policy bug; it is reported as ErrMalformedDecision so the
// caller denies.
//
// It decodes with encoding/json/v2's semantics (go-json-experiment), which
// are stricter than encoding/json's where a decision needs it: member names
// match exactly ("Allow" is not allow; encoding/json would let an "ALLOW":
// true after "allow": false decide), a duplicate name and invalid UTF-8 are
// malformed. It is also half the cost, and with cold caches encoding/json
// was about a third of the fixed cost of an evaluation (BenchmarkParseDecision).
func parseDecision(version string, raw []byte) (Decision, error) {
	var shape struct {
		Allow   *bool    `json:"allow"`
		Reasons []string `json:"reasons"`
	}
	if err := jsonv2.Unmarshal(raw, &shape); err != nil {
		return Decision{}, fmt.Errorf("%w: %w", ErrMalformedDecision, err)
	}
	if shape.Allow == nil {
		return Decision{}, fmt.Errorf("%w: no boolean allow in %.200s", ErrMalformedDecision, raw)
	}
	return Decision{Allow: *shape.Allow, Reasons: shape.Reasons, Version: version, Result: raw}, nil
}

// ParseDecision reads an entrypoint's result object as a Decision made by
// version, for deciders outside the registry (an OPA server over HTTP, say).
// A result that is not an object with a boolean allow is an error wrapping
// ErrMalformedDecision; the caller must deny.
func ParseDecision(version string, raw []byte) (Decision, error) {
	return parseDecision(version, raw)
}
