package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// maxVectorFailures bounds how many failing vectors an error lists.
const maxVectorFailures = 5

// validate checks a loaded candidate before it may decide anything:
//   - it exports every required entrypoint;
//   - on an empty input every entrypoint returns a deny (fail closed), as
//     an object with a boolean allow;
//   - every decision vector shipped in the bundle passes.
//
// It returns how many vectors passed.
func validate(ctx context.Context, p *wasm.Policy, required []string, vectors []byte) (int, error) {
	have := map[string]bool{}
	for _, ep := range p.Entrypoints() {
		have[ep] = true
	}
	for _, ep := range required {
		if !have[ep] {
			return 0, fmt.Errorf("missing entrypoint %s", ep)
		}
	}
	for _, ep := range required {
		raw, err := p.Eval(ctx, ep, []byte(`{}`))
		if err != nil {
			return 0, fmt.Errorf("smoke decision %s: %w", ep, err)
		}
		d, err := parseDecision("", raw)
		if err != nil {
			return 0, fmt.Errorf("smoke decision %s: %w", ep, err)
		}
		if d.Allow {
			return 0, fmt.Errorf("smoke decision %s: an empty input is allowed; the policy must fail closed", ep)
		}
	}
	if len(vectors) == 0 {
		return 0, nil
	}
	var vs []rego.Vector
	if err := json.Unmarshal(vectors, &vs); err != nil {
		return 0, fmt.Errorf("decode the bundle's vectors: %w", err)
	}
	var failures []error
	for _, v := range vs {
		raw, err := p.Eval(ctx, v.Entrypoint, v.Input)
		if err == nil {
			err = v.Check(raw)
		} else {
			err = fmt.Errorf("vector %q: %w", v.Name, err)
		}
		if err != nil {
			failures = append(failures, err)
		}
	}
	if len(failures) > 0 {
		shown := failures[:min(len(failures), maxVectorFailures)]
		return 0, fmt.Errorf("%d of %d vectors failed: %w", len(failures), len(vs), errors.Join(shown...))
	}
	return len(vs), nil
}
