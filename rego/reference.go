package rego

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// Reference evaluates the policy with OPA's own evaluator (topdown): one
// prepared query per entrypoint over the same sources Build compiles. It is
// the oracle for differential tests of the Wasm runtime. It is safe for
// concurrent use.
type Reference struct {
	queries map[string]oparego.PreparedEvalQuery
}

// ErrNoSources is returned by NewReferenceFromBundle for a bundle that
// carries no Rego sources (only its Wasm).
var ErrNoSources = errors.New("rego: the bundle carries no Rego sources")

// NewReference prepares the entrypoints of the non-test policy in fsys.
// data is the policy data as one JSON object; nil means fsys's data.json.
func NewReference(ctx context.Context, fsys fs.FS, data []byte) (*Reference, error) {
	src, err := loadSources(fsys, false)
	if err != nil {
		return nil, err
	}
	doc := src.data
	if data != nil {
		doc, err = decodeDataObject(data)
		if err != nil {
			return nil, fmt.Errorf("rego: reference data: %w", err)
		}
	}
	return newReference(ctx, src.modules, doc)
}

// NewReferenceFromBundle prepares the entrypoints of the Rego sources a
// bundle carries (Bundle.Modules), over the bundle's data: OPA's evaluator
// on what the bundle's Wasm was compiled from.
func NewReferenceFromBundle(ctx context.Context, b *Bundle) (*Reference, error) {
	if b == nil || len(b.Modules) == 0 {
		return nil, ErrNoSources
	}
	src := &sources{modules: map[string]*ast.Module{}, tests: map[string]*ast.Module{}}
	raw := make(map[string][]byte, len(b.Modules))
	for p, bs := range b.Modules {
		if !isTestFile(p) {
			raw[p] = bs
		}
	}
	if err := src.parse(raw); err != nil {
		return nil, err
	}
	data := b.Data
	if len(data) == 0 {
		data = []byte("{}")
	}
	doc, err := decodeDataObject(data)
	if err != nil {
		return nil, fmt.Errorf("rego: bundle data: %w", err)
	}
	return newReference(ctx, src.modules, doc)
}

func newReference(ctx context.Context, modules map[string]*ast.Module, doc map[string]any) (*Reference, error) {
	compiler := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
	if compiler.Compile(modules); compiler.Failed() {
		return nil, asSourceError(compiler.Errors)
	}
	store := inmem.NewFromObject(doc)
	r := &Reference{queries: make(map[string]oparego.PreparedEvalQuery, len(entrypoints))}
	for _, e := range entrypoints {
		q := "data." + strings.ReplaceAll(e, "/", ".")
		pq, err := oparego.New(
			oparego.Query(q),
			oparego.Compiler(compiler),
			oparego.Store(store),
		).PrepareForEval(ctx)
		if err != nil {
			return nil, fmt.Errorf("rego: preparing %s: %w", e, asSourceError(err))
		}
		r.queries[e] = pq
	}
	return r, nil
}

// Decide evaluates entrypoint (e.g. "pbac/tool_call") on the raw JSON input
// and returns the decision object as JSON.
func (r *Reference) Decide(ctx context.Context, entrypoint string, input []byte) ([]byte, error) {
	pq, ok := r.queries[entrypoint]
	if !ok {
		return nil, fmt.Errorf("rego: unknown entrypoint %q", entrypoint)
	}
	v, err := ast.ValueFromReader(bytes.NewReader(input))
	if err != nil {
		return nil, fmt.Errorf("rego: input is not valid JSON: %w", err)
	}
	rs, err := pq.Eval(ctx, oparego.EvalParsedInput(v))
	if err != nil {
		return nil, fmt.Errorf("rego: evaluating %s: %w", entrypoint, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, errors.New("rego: " + entrypoint + " is undefined")
	}
	return json.Marshal(rs[0].Expressions[0].Value)
}
