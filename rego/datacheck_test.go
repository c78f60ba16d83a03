package rego_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/rego"
)

func shippedSchemaAndData(t testing.TB) (schema, data []byte) {
	t.Helper()
	schema, err := fs.ReadFile(rego.Sources(), "data.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	data, err = fs.ReadFile(rego.Sources(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	return schema, data
}

func TestShippedDataMatchesItsSchema(t *testing.T) {
	schema, data := shippedSchemaAndData(t)
	if err := rego.CheckData(schema, data); err != nil {
		t.Fatalf("the shipped data: %v", err)
	}
	b, err := rego.BuildShipped(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Schema, schema) {
		t.Fatal("the shipped bundle does not carry policy/data.schema.json")
	}
	// The schema travels in the bundle's tar.gz.
	raw, err := b.TarGz()
	if err != nil {
		t.Fatal(err)
	}
	back, err := rego.ReadTarGz(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Schema, schema) {
		t.Fatal("the schema did not survive WriteTarGz / ReadTarGz")
	}
}

// TestCheckDataRefusesBadData: every bad document of the shared table is
// refused, naming the JSON path of its problem.
func TestCheckDataRefusesBadData(t *testing.T) {
	schema, _ := shippedSchemaAndData(t)
	bad := policytest.BadDataDocuments(t)
	if len(bad) < 20 {
		t.Fatalf("only %d bad documents", len(bad))
	}
	for _, tc := range bad {
		t.Run(tc.Name, func(t *testing.T) {
			err := rego.CheckData(schema, tc.Data)
			var de *rego.DataError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a DataError", err)
			}
			paths := make([]string, 0, len(de.Problems))
			for _, p := range de.Problems {
				if p.Message == "" {
					t.Errorf("problem at %q says nothing", p.Path)
				}
				paths = append(paths, p.Path)
			}
			if !slices.Contains(paths, tc.Path) {
				t.Fatalf("problems %v do not name %q", de.Problems, tc.Path)
			}
		})
	}
}

// TestCheckDataAcceptsGoodChanges: changes an operator makes keep
// passing — a provider moved to another tier (the dashboard's matrix), an
// emptied tier, a new tool with a new access granted by a tier, a tier
// allowing user attestation.
func TestCheckDataAcceptsGoodChanges(t *testing.T) {
	schema, data := shippedSchemaAndData(t)
	for _, tc := range []struct {
		name   string
		mutate func(d map[string]any)
	}{
		{"provider moved to another tier", func(d map[string]any) {
			tt := d["agents"].(map[string]any)["trust_tiers"].(map[string]any)
			tt["read_only"] = append(tt["read_only"].([]any), "ci-bot")
			tt["ci_agent"] = []any{}
		}},
		{"new tool with a new access", func(d map[string]any) {
			d["catalogue"].(map[string]any)["drive.delete_file"] = map[string]any{"resource": "drive", "access": "delete", "arguments": map[string]any{"path": "path"}}
			g := d["tiers"].(map[string]any)["internal_trusted"].(map[string]any)["grants"].(map[string]any)
			g["drive"] = append(g["drive"].([]any), "delete")
		}},
		{"user attestation on", func(d map[string]any) {
			d["tiers"].(map[string]any)["developer"].(map[string]any)["user_attestation"] = true
		}},
		{"anonymous backend", func(d map[string]any) {
			d["anonymous"].(map[string]any)["backends"] = []any{"jira"}
		}},
		{"backend with its own resource and methods", func(d map[string]any) {
			d["backends"] = map[string]any{"docs": map[string]any{"resource": "drive", "methods": map[string]any{"logging/setLevel": "write"}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d map[string]any
			if err := json.Unmarshal(data, &d); err != nil {
				t.Fatal(err)
			}
			tc.mutate(d)
			raw, _ := json.Marshal(d)
			if err := rego.CheckData(schema, raw); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCheckDataSchemaEdges(t *testing.T) {
	for _, tc := range []struct {
		name, schema, data, want string
	}{
		{"no schema checks nothing", "", `{"anything": 1}`, ""},
		{"a custom schema alone, no cross-references", `{"$id": "urn:custom", "type": "object", "required": ["marker"]}`, `{"marker": 1}`, ""},
		{"a custom schema refuses", `{"type": "object", "required": ["marker"]}`, `{}`, "missing property 'marker'"},
		{"not JSON", `{"type": "object"}`, `{`, "one JSON document"},
		{"a schema that does not compile", `{"type": 3}`, `{}`, "compile the data schema"},
		{"a remote reference", `{"$ref": "https://example.com/s.json"}`, `{}`, "compile the data schema"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := rego.CheckData([]byte(tc.schema), []byte(tc.data))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzCheckData: any bytes as data (and as a data schema) give an answer —
// nil, a DataError or a schema error — never a panic; the shipped schema
// accepts nothing that is not a JSON object.
func FuzzCheckData(f *testing.F) {
	schema, data := shippedSchemaAndData(f)
	f.Add(data)
	f.Add([]byte(`{"agents":{}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"tiers":{"a":{"rank":1e400}}}`))
	for _, b := range policytest.BadDataDocuments(f) {
		f.Add(b.Data)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		err := rego.CheckData(schema, in)
		var de *rego.DataError
		if err != nil && !errors.As(err, &de) {
			t.Fatalf("not a DataError: %v", err)
		}
		if err == nil {
			var obj map[string]json.RawMessage
			if json.Unmarshal(in, &obj) != nil {
				t.Fatalf("accepted data that is not a JSON object: %q", in)
			}
		}
		_ = rego.CheckData(in, data)
	})
}
