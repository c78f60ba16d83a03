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
	// Invariant marks a decision no data change may alter: the registry
	// runs invariant vectors on every data update too (InvariantVectors),
	// the others only with the bundle's own data, since data changes
	// decisions by design (a provider moved to another tier registers
	// there).
	Invariant bool `json:"invariant,omitempty"`
}

// WithData returns a bundle of b's module with other data: a data update.
// It keeps b's contract version and data schema, and of b's vectors only
// the invariant ones (the others state what b's own data decides), each
// wanting its decision alone (allow): the reasons that come with it may
// name the data (a method the data no longer lists adds its own). It is
// not signed (Raw is nil).
func (b *Bundle) WithData(data []byte) (*Bundle, error) {
	vectors, err := invariantDecisions(b.Vectors)
	if err != nil {
		return nil, err
	}
	nb := &Bundle{Wasm: b.Wasm, Data: data, ContractVersion: b.ContractVersion, Schema: b.Schema, Vectors: vectors}
	nb.Revision = revision(nb.Wasm, nb.Data)
	return nb, nil
}

// invariantDecisions returns the invariant vectors of raw with want
// reduced to its allow.
func invariantDecisions(raw []byte) ([]byte, error) {
	inv, err := InvariantVectors(raw)
	if inv == nil || err != nil {
		return inv, err
	}
	var vs []Vector
	if err := json.Unmarshal(inv, &vs); err != nil {
		return nil, fmt.Errorf("rego: decode vectors: %w", err)
	}
	for i, v := range vs {
		var want struct {
			Allow *bool `json:"allow"`
		}
		if err := json.Unmarshal(v.Want, &want); err != nil {
			return nil, fmt.Errorf("rego: vector %q: want is not an object: %w", v.Name, err)
		}
		if want.Allow != nil {
			vs[i].Want, _ = json.Marshal(map[string]bool{"allow": *want.Allow})
		}
	}
	return json.Marshal(vs)
}

// InvariantVectors returns the invariant vectors of a JSON array of
// vectors, as a JSON array (nil when raw is empty).
func InvariantVectors(raw []byte) ([]byte, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var vs []Vector
	if err := json.Unmarshal(raw, &vs); err != nil {
		return nil, fmt.Errorf("rego: decode vectors: %w", err)
	}
	keep := make([]Vector, 0, len(vs))
	for _, v := range vs {
		if v.Invariant {
			keep = append(keep, v)
		}
	}
	return json.Marshal(keep)
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
