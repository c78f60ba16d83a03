package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// vectorTimeoutRetries is how many times a vector whose evaluation timed
// out is evaluated again before it counts as failed.
const vectorTimeoutRetries = 2

// maxVectorFailures bounds how many failing vectors an error lists.
const maxVectorFailures = 5

// VectorError is a candidate refused because some of its decision vectors
// failed: their names, and how many vectors were run.
type VectorError struct {
	Failed []string
	Total  int
	err    error // the first failures, each saying what differed
}

func (e *VectorError) Error() string {
	return fmt.Sprintf("%d of %d vectors failed: %v", len(e.Failed), e.Total, e.err)
}

func (e *VectorError) Unwrap() error { return e.err }

// validated is what validation found out about a candidate.
type validated struct {
	// vectors is how many of the bundle's vectors passed.
	vectors int
	// version is the bundle's contract version (contract.BundleVersion).
	version int
	// fallbacks are the entrypoints of this binary's contract the bundle
	// does not export because its contract version predates them: they are
	// decided by contract.Fallback.
	fallbacks []contract.Entrypoint
}

// validate checks a loaded candidate before it may decide anything:
//   - it exports every required entrypoint: explicit, when the registry
//     was given a list (WithEntrypoints); else what the contract requires
//     of the bundle's contract version (declared, see contract.Required),
//     the entrypoints newer than it falling back (contract.Fallback) and
//     entrypoints this binary does not know being ignored;
//   - on an empty input every entrypoint it will be asked returns a deny
//     (fail closed), as an object with a boolean allow;
//   - every decision vector shipped in the bundle passes.
func validate(ctx context.Context, p *wasm.Policy, explicit []string, declared int, vectors []byte) (validated, error) {
	have := map[string]bool{}
	for _, ep := range p.Entrypoints() {
		have[ep] = true
	}
	out := validated{version: contract.BundleVersion(declared)}
	required := explicit
	why := ""
	if explicit == nil {
		req, err := contract.Required(out.version)
		if err != nil {
			return validated{}, err
		}
		for _, ep := range req {
			required = append(required, string(ep))
		}
		for _, ep := range contract.Optional(out.version) {
			if !have[string(ep)] {
				out.fallbacks = append(out.fallbacks, ep)
			}
		}
		why = fmt.Sprintf(" (contract version %d requires it)", out.version)
	}
	for _, ep := range required {
		if !have[ep] {
			return validated{}, fmt.Errorf("missing entrypoint %s%s", ep, why)
		}
	}
	// Smoke decisions on every entrypoint the binary will ask: the required
	// ones and the newer ones the bundle exports anyway.
	smoke := required
	if explicit == nil {
		for _, ep := range contract.Optional(out.version) {
			if have[string(ep)] {
				smoke = append(smoke, string(ep))
			}
		}
	}
	for _, ep := range smoke {
		raw, err := p.Eval(ctx, ep, []byte(`{}`))
		if err != nil {
			return validated{}, fmt.Errorf("smoke decision %s: %w", ep, err)
		}
		d, err := parseDecision("", raw)
		if err != nil {
			return validated{}, fmt.Errorf("smoke decision %s: %w", ep, err)
		}
		if d.Allow {
			return validated{}, fmt.Errorf("smoke decision %s: an empty input is allowed; the policy must fail closed", ep)
		}
	}
	if len(vectors) == 0 {
		return out, nil
	}
	var vs []rego.Vector
	if err := json.Unmarshal(vectors, &vs); err != nil {
		return validated{}, fmt.Errorf("decode the bundle's vectors: %w", err)
	}
	var (
		failures []error
		failed   []string
	)
	for _, v := range vs {
		raw, err := p.Eval(ctx, v.Entrypoint, v.Input)
		// An evaluation held up ten times its limit on a loaded machine
		// is stopped without being slow (the limit itself is CPU time). A
		// timeout is tried again (twice); a vector that misses it every
		// time fails, since the same decision would be a deny when asked
		// for real.
		for retry := 0; retry < vectorTimeoutRetries && errors.Is(err, wasm.ErrTimeout) && ctx.Err() == nil; retry++ {
			raw, err = p.Eval(ctx, v.Entrypoint, v.Input)
		}
		if err == nil {
			err = v.Check(raw)
			if err == nil && v.Entrypoint == string(contract.ToolCall) {
				// An approval asked for must come with a deny: a binary
				// that does not know approvals then denies the held call.
				if cerr := contract.CheckToolCallResult(raw); cerr != nil {
					err = fmt.Errorf("vector %q: %w", v.Name, cerr)
				}
			}
		} else {
			err = fmt.Errorf("vector %q: %w", v.Name, err)
		}
		if err != nil {
			failures = append(failures, err)
			failed = append(failed, v.Name)
		}
	}
	if len(failures) > 0 {
		shown := failures[:min(len(failures), maxVectorFailures)]
		return validated{}, &VectorError{Failed: failed, Total: len(vs), err: errors.Join(shown...)}
	}
	out.vectors = len(vs)
	return out, nil
}
