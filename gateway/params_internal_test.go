package gateway

import (
	"encoding/json"
	"testing"
)

// FuzzParamHeadersOf: a backend's tool definition, whatever it holds,
// yields declarations the checker can use or none — never a panic, never
// more than maxParamHeaders, never a name that is not a header token or is
// declared twice.
func FuzzParamHeadersOf(f *testing.F) {
	for _, s := range []string{
		`{"name":"t","inputSchema":{"type":"object","properties":{"q":{"type":"string","x-mcp-header":"Query"}}}}`,
		`{"inputSchema":{"properties":{"a":{"type":"object","properties":{"b":{"type":"integer","x-mcp-header":"B"}}}}}}`,
		`{"inputSchema":{"properties":{"a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}}}`,
		`{"inputSchema":{"properties":{"a":{"type":"array","x-mcp-header":"A"}}}}`,
		`{"inputSchema":{"properties":{"a":{"type":"string","x-mcp-header":"A B"}}}}`,
		`{"inputSchema":7}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, tool []byte) {
		if !json.Valid(tool) {
			return
		}
		decls, ok := paramHeadersOf(tool)
		if !ok && decls != nil {
			t.Fatalf("unusable declarations returned: %v", decls)
		}
		if len(decls) > maxParamHeaders {
			t.Fatalf("%d declarations", len(decls))
		}
		seen := map[string]bool{}
		for _, d := range decls {
			if !headerToken.MatchString(d.name) || seen[d.name] || len(d.path) == 0 {
				t.Fatalf("declaration %+v", d)
			}
			seen[d.name] = true
		}
	})
}
