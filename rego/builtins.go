package rego

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"
)

// builtinsUsed compiles the policy in fsys to an OPA plan (the IR the Wasm
// compiler consumes) and returns the names of the builtin functions the
// plan calls, sorted. Builtins that OPA's Wasm target does not implement
// natively must be provided by the host; the shipped policy uses none (see
// TestShippedPolicyUsesOnlyNativeBuiltins).
func builtinsUsed(ctx context.Context, fsys fs.FS) ([]string, error) {
	src, err := loadSources(fsys, false)
	if err != nil {
		return nil, err
	}
	b := &bundle.Bundle{Data: src.data}
	b.SetRegoVersion(ast.RegoV1)
	b.Manifest.Init()
	for p, m := range src.modules {
		raw, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, err
		}
		b.Modules = append(b.Modules, bundle.ModuleFile{URL: p, Path: p, Raw: raw, Parsed: m})
	}
	sort.Slice(b.Modules, func(i, j int) bool { return b.Modules[i].Path < b.Modules[j].Path })
	c := compile.New().
		WithTarget(compile.TargetPlan).
		WithRegoVersion(ast.RegoV1).
		WithEntrypoints(entrypoints...).
		WithBundle(b)
	if err := c.Build(ctx); err != nil {
		return nil, asSourceError(err)
	}
	var plan struct {
		Static struct {
			BuiltinFuncs []struct {
				Name string `json:"name"`
			} `json:"builtin_funcs"`
		} `json:"static"`
	}
	out := c.Bundle()
	for _, pm := range out.PlanModules {
		if err := json.NewDecoder(bytes.NewReader(pm.Raw)).Decode(&plan); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(plan.Static.BuiltinFuncs))
	for _, f := range plan.Static.BuiltinFuncs {
		names = append(names, f.Name)
	}
	sort.Strings(names)
	return names, nil
}
