// Package policydiff is differential policy conformance: a policy bundle's
// Wasm module, run by this project's engine, must decide exactly as OPA's
// own evaluator (topdown) does on the Rego sources it was compiled from,
// for every entrypoint of the policy contract, on generated inputs and on
// the bundle's own decision vectors.
//
// The shipped policy's differential test (wasm/differential_test.go) and
// `pbac conformance policy BUNDLE` both run it.
package policydiff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// Evaluator decides one entrypoint on a raw JSON input and returns the
// decision document as JSON.
type Evaluator interface {
	Decide(ctx context.Context, entrypoint string, input []byte) ([]byte, error)
}

// EvaluatorFunc adapts a function, such as (*wasm.Policy).Eval, to
// Evaluator.
type EvaluatorFunc func(ctx context.Context, entrypoint string, input []byte) ([]byte, error)

// Decide calls f.
func (f EvaluatorFunc) Decide(ctx context.Context, entrypoint string, input []byte) ([]byte, error) {
	return f(ctx, entrypoint, input)
}

// Compare decides entrypoint on input with both evaluators and returns nil
// when they agree on a decision object with a boolean allow. got and want
// evaluate the same policy: got is the implementation under test (Wasm),
// want the reference (OPA topdown).
func Compare(ctx context.Context, got, want Evaluator, entrypoint string, input []byte) error {
	g, err := got.Decide(ctx, entrypoint, input)
	if err != nil {
		return fmt.Errorf("wasm: %w", err)
	}
	w, err := want.Decide(ctx, entrypoint, input)
	if err != nil {
		return fmt.Errorf("reference: %w", err)
	}
	var gv, wv any
	if err := json.Unmarshal(g, &gv); err != nil {
		return fmt.Errorf("wasm result %s: %w", g, err)
	}
	if err := json.Unmarshal(w, &wv); err != nil {
		return fmt.Errorf("reference result %s: %w", w, err)
	}
	if !reflect.DeepEqual(gv, wv) {
		return &DecisionsDiffer{Wasm: g, Reference: w}
	}
	obj, ok := gv.(map[string]any)
	if !ok {
		return fmt.Errorf("the decision is not an object: %s", g)
	}
	if _, ok := obj["allow"].(bool); !ok {
		return fmt.Errorf("the decision has no boolean allow: %s", g)
	}
	return nil
}

// DecisionsDiffer is Compare's error when both evaluators decided, but
// differently.
type DecisionsDiffer struct {
	Wasm, Reference json.RawMessage
}

func (e *DecisionsDiffer) Error() string {
	return fmt.Sprintf("decisions differ\n wasm:      %s\n reference: %s", e.Wasm, e.Reference)
}

// Options tune Run and CheckBundle. The zero value is usable.
type Options struct {
	// Inputs is how many generated inputs each entrypoint gets (default
	// 1000).
	Inputs int
	// Seed seeds the generator (the same seed gives the same inputs).
	Seed uint64
	// Entrypoints to check (default: the policy contract's,
	// contract.Names()).
	Entrypoints []string
	// Domain the inputs are drawn from (default: DomainFromData of the
	// bundle's data, or DefaultDomain for Run).
	Domain *Domain
	// Extra are inputs checked on top of the generated ones, per
	// entrypoint (CheckBundle adds the bundle's vector inputs here).
	Extra map[string][][]byte
	// Keep is how many disagreements each entrypoint's result keeps in
	// full (default 3); all are counted.
	Keep int
}

func (o Options) withDefaults() Options {
	if o.Inputs <= 0 {
		o.Inputs = 1000
	}
	if len(o.Entrypoints) == 0 {
		o.Entrypoints = contract.Names()
	}
	if o.Domain == nil {
		d := DefaultDomain()
		o.Domain = &d
	}
	if o.Keep <= 0 {
		o.Keep = 3
	}
	return o
}

// Disagreement is one input on which the evaluators did not agree.
type Disagreement struct {
	Input json.RawMessage `json:"input"`
	Error string          `json:"error"`
}

// Result is one entrypoint's tally.
type Result struct {
	Entrypoint string `json:"entrypoint"`
	// Inputs compared, Agreements among them and, of those, Allows.
	Inputs     int `json:"inputs"`
	Agreements int `json:"agreements"`
	Allows     int `json:"allows"`
	// Disagreed counts every disagreement; Disagreements keeps the first.
	Disagreed     int            `json:"disagreed"`
	Disagreements []Disagreement `json:"disagreements,omitempty"`
	// Missing is set when the Wasm module does not export the entrypoint:
	// nothing was compared and the check fails.
	Missing bool `json:"missing,omitempty"`
}

// OK reports whether the entrypoint was compared and never disagreed.
func (r Result) OK() bool { return !r.Missing && r.Disagreed == 0 }

// Report is the outcome of a check.
type Report struct {
	// Revision is the bundle's (CheckBundle only).
	Revision string   `json:"revision,omitempty"`
	Results  []Result `json:"results"`
}

// OK reports whether every entrypoint was compared and agreed on every
// input.
func (r Report) OK() bool {
	for _, res := range r.Results {
		if !res.OK() {
			return false
		}
	}
	return len(r.Results) > 0
}

// Disagreed is the number of disagreements over all entrypoints.
func (r Report) Disagreed() int {
	n := 0
	for _, res := range r.Results {
		n += res.Disagreed
	}
	return n
}

// Run compares got (the implementation under test) with want (the
// reference) on generated inputs for every entrypoint of opts. It stops
// early only when ctx is done.
func Run(ctx context.Context, got, want Evaluator, opts Options) (Report, error) {
	opts = opts.withDefaults()
	gen := NewGenerator(opts.Seed, opts.Seed^0x9e3779b97f4a7c15, *opts.Domain)
	var rep Report
	for _, ep := range opts.Entrypoints {
		res := Result{Entrypoint: ep}
		inputs := slices.Clone(opts.Extra[ep])
		for range opts.Inputs {
			inputs = append(inputs, gen.Input(ep))
		}
		for _, input := range inputs {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			res.Inputs++
			if err := Compare(ctx, got, want, ep, input); err != nil {
				res.Disagreed++
				if len(res.Disagreements) < opts.Keep {
					res.Disagreements = append(res.Disagreements, Disagreement{Input: input, Error: err.Error()})
				}
				continue
			}
			res.Agreements++
			if allowed(ctx, got, ep, input) {
				res.Allows++
			}
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

func allowed(ctx context.Context, e Evaluator, ep string, input []byte) bool {
	raw, err := e.Decide(ctx, ep, input)
	if err != nil {
		return false
	}
	var d struct {
		Allow bool `json:"allow"`
	}
	return json.Unmarshal(raw, &d) == nil && d.Allow
}

// ErrNoSources is CheckBundle's error for a bundle without Rego sources:
// there is nothing to run OPA's evaluator on.
var ErrNoSources = rego.ErrNoSources

// CheckBundle loads a bundle's Wasm into this project's engine and its Rego
// sources into OPA's evaluator, both over the bundle's data, and runs the
// comparison for every entrypoint of opts. The bundle's decision vectors,
// when it has any, are compared too (as extra inputs). An entrypoint the
// Wasm module does not export is reported Missing.
func CheckBundle(ctx context.Context, b *rego.Bundle, opts Options) (Report, error) {
	if b == nil || len(b.Wasm) == 0 {
		return Report{}, errors.New("policydiff: the bundle has no Wasm module")
	}
	ref, err := rego.NewReferenceFromBundle(ctx, b)
	if err != nil {
		return Report{}, fmt.Errorf("policydiff: OPA's evaluator: %w", err)
	}
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig())
	if err != nil {
		return Report{}, fmt.Errorf("policydiff: %w", err)
	}
	defer engine.Close(ctx)
	p, err := engine.Load(ctx, b.Wasm, b.Data)
	if err != nil {
		return Report{}, fmt.Errorf("policydiff: loading the Wasm module: %w", err)
	}
	defer p.Close(ctx)

	if opts.Domain == nil {
		d := DomainFromData(b.Data)
		opts.Domain = &d
	}
	opts = opts.withDefaults()
	if len(b.Vectors) > 0 {
		var vs []rego.Vector
		if err := json.Unmarshal(b.Vectors, &vs); err != nil {
			return Report{}, fmt.Errorf("policydiff: the bundle's vectors: %w", err)
		}
		extra := map[string][][]byte{}
		for ep, ins := range opts.Extra {
			extra[ep] = slices.Clone(ins)
		}
		for _, v := range vs {
			extra[v.Entrypoint] = append(extra[v.Entrypoint], v.Input)
		}
		opts.Extra = extra
	}
	exported := p.Entrypoints()
	var present []string
	for _, ep := range opts.Entrypoints {
		if slices.Contains(exported, ep) {
			present = append(present, ep)
		}
	}
	all := opts.Entrypoints
	opts.Entrypoints = present
	rep := Report{Revision: b.Revision}
	if len(present) > 0 {
		if rep, err = Run(ctx, EvaluatorFunc(p.Eval), ref, opts); err != nil {
			return rep, err
		}
		rep.Revision = b.Revision
	}
	// Keep the contract's order, missing entrypoints included.
	byEP := map[string]Result{}
	for _, r := range rep.Results {
		byEP[r.Entrypoint] = r
	}
	rep.Results = rep.Results[:0]
	for _, ep := range all {
		r, ok := byEP[ep]
		if !ok {
			r = Result{Entrypoint: ep, Missing: true}
		}
		rep.Results = append(rep.Results, r)
	}
	return rep, nil
}
