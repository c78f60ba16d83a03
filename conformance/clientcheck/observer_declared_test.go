package clientcheck

import (
	"encoding/json"
	"testing"
)

// TestDeclared: the observer reads a JSON-RPC request's revision (the
// header first, then _meta, then initialize's protocolVersion) and
// whether it declared URL elicitation (initialize's capabilities, or any
// request's _meta client capabilities).
func TestDeclared(t *testing.T) {
	for _, tc := range []struct {
		name, header, body string
		proto              string
		url                bool
	}{
		{"initialize with url", "", `{"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"form":{},"url":{}}}}}`, "2025-11-25", true},
		{"initialize, form only", "", `{"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}}}}`, "2025-11-25", false},
		{"stateless call with _meta", "2026-07-28", `{"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}}}`, "2026-07-28", true},
		{"_meta revision without the header", "", `{"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "2026-07-28", false},
		{"plain call", "2025-11-25", `{"method":"tools/call","params":{"name":"x"}}`, "2025-11-25", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m rpcRequest
			if err := json.Unmarshal([]byte(tc.body), &m); err != nil {
				t.Fatal(err)
			}
			if proto, url := m.declared(tc.header); proto != tc.proto || url != tc.url {
				t.Fatalf("declared %q, url %v; want %q, %v", proto, url, tc.proto, tc.url)
			}
		})
	}
}
