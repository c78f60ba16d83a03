package main

import (
	"strings"
	"testing"
)

// TestSplitClients: --client takes the real CLIs or the harness's clients,
// not both in one run, and names an unknown client with the known ones.
func TestSplitClients(t *testing.T) {
	for _, tc := range []struct {
		name    string
		clients []string
		real    bool
		err     string
	}{
		{"both real CLIs", []string{"claude-code", "opencode"}, true, ""},
		{"one real CLI", []string{"opencode"}, true, ""},
		{"the harness's clients", []string{"go-sdk", "ts-sdk", "mcp-remote"}, false, ""},
		{"mixed", []string{"claude-code", "go-sdk"}, false, "separate commands"},
		{"unknown", []string{"cursor"}, false, `unknown client "cursor" (claude-code, claude-code-cimd, claude-code-dcr, codex, gemini, opencode, go-sdk, ts-sdk, mcp-remote)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			real, err := splitClients(tc.clients)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || real != tc.real {
				t.Fatalf("real %v, err %v; want %v", real, err, tc.real)
			}
		})
	}
}
