package plugins

import (
	"encoding/json"
	"fmt"
)

// Decision is the outcome of one policy entrypoint. Every entrypoint of the
// policy contract returns an object with at least "allow" and "reasons";
// Result keeps the whole object for the entrypoint-specific fields.
type Decision struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"`
	// Version is the policy version that made the decision.
	Version string `json:"-"`
	// Result is the entrypoint's whole result object.
	Result json.RawMessage `json:"-"`
}

// Decode unmarshals the whole result object into v, for entrypoint-specific
// fields such as scopes or jit_single_use.
func (d Decision) Decode(v any) error {
	if err := json.Unmarshal(d.Result, v); err != nil {
		return fmt.Errorf("decode %s decision: %w", d.Version, err)
	}
	return nil
}

// parseDecision reads a result object. A result that is not an object with a
// boolean allow is a policy bug; it is reported as ErrMalformedDecision so the
// caller denies.
func parseDecision(version string, raw []byte) (Decision, error) {
	var shape struct {
		Allow   *bool    `json:"allow"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal(raw, &shape); err != nil {
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
