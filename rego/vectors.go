package rego

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"
)

// Vector is one decision vector: evaluating Entrypoint on Input must yield
// an object containing every field of Want (a subset match; arrays and
// nested values compare exactly).
type Vector struct {
	Name       string          `json:"name"`
	Entrypoint string          `json:"entrypoint"`
	Input      json.RawMessage `json:"input"`
	Want       json.RawMessage `json:"want"`
}

// ShippedVectors returns the shipped decision vectors (every
// testdata/vectors/*.json file, in file-name order, each holding a JSON
// array of vectors) as one JSON array.
func ShippedVectors() ([]byte, error) {
	sub, err := fs.Sub(vectorsFS, "testdata/vectors")
	if err != nil {
		return nil, err
	}
	vs, err := LoadVectors(sub)
	if err != nil {
		return nil, err
	}
	return json.Marshal(vs)
}

// LoadVectors reads every *.json file at the root of fsys (sorted by name);
// each holds a JSON array of vectors (a single vector object is accepted
// too). Entrypoints are checked against the contract's (contract.Known).
func LoadVectors(fsys fs.FS) ([]Vector, error) {
	names, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Vector
	for _, n := range names {
		bs, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		var arr []Vector
		if err := json.Unmarshal(bs, &arr); err != nil {
			var one Vector
			if err2 := json.Unmarshal(bs, &one); err2 != nil {
				return nil, fmt.Errorf("rego: vectors %s: %w", n, err)
			}
			arr = []Vector{one}
		}
		for i, v := range arr {
			if !isEntrypoint(v.Entrypoint) {
				return nil, fmt.Errorf("rego: vectors %s[%d] %q: unknown entrypoint %q", n, i, v.Name, v.Entrypoint)
			}
			if len(v.Input) == 0 || len(v.Want) == 0 {
				return nil, fmt.Errorf("rego: vectors %s[%d] %q: input and want are required", n, i, v.Name)
			}
		}
		out = append(out, arr...)
	}
	return out, nil
}
