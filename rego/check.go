package rego

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// Check reports whether got, the JSON result of evaluating the vector's
// entrypoint on its input, contains every field of Want with an equal value.
// The error names each field that differs.
func (v Vector) Check(got []byte) error {
	var want, have map[string]any
	if err := decodeNumbers(v.Want, &want); err != nil {
		return fmt.Errorf("vector %q: want is not an object: %w", v.Name, err)
	}
	if err := decodeNumbers(got, &have); err != nil {
		return fmt.Errorf("vector %q: result is not an object: %w", v.Name, err)
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := have[k]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s missing (want %s)", k, compact(want[k])))
			continue
		}
		if !reflect.DeepEqual(normalise(g), normalise(want[k])) {
			diffs = append(diffs, fmt.Sprintf("%s = %s, want %s", k, compact(g), compact(want[k])))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("vector %q (%s): %s", v.Name, v.Entrypoint, strings.Join(diffs, "; "))
	}
	return nil
}

func decodeNumbers(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// normalise makes numbers compare by value (1 and 1.0 are equal).
func normalise(v any) any {
	switch x := v.(type) {
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalise(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalise(e)
		}
		return out
	}
	return v
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Revision is the content hash of a policy module and its data, the version
// identity of a bundle (Bundle.Revision).
func Revision(wasm, data []byte) string { return revision(wasm, data) }
