package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/conformance/realclients"
)

// TestSplitClients: --client takes real CLIs and harness clients, in one
// run or apart; "all" is every one of both; an unknown client is named
// with the known ones.
func TestSplitClients(t *testing.T) {
	for _, tc := range []struct {
		name          string
		clients       []string
		real, harness []string
		err           string
	}{
		{"both real CLIs", []string{"claude-code", "opencode"}, []string{"claude-code", "opencode"}, nil, ""},
		{"one real CLI", []string{"opencode"}, []string{"opencode"}, nil, ""},
		{"the harness's clients", []string{"go-sdk", "ts-sdk", "mcp-remote"}, nil, []string{"go-sdk", "ts-sdk", "mcp-remote"}, ""},
		{"mixed", []string{"claude-code", "go-sdk"}, []string{"claude-code"}, []string{"go-sdk"}, ""},
		{"all", []string{"all"}, realclients.Names(), harnessClients, ""},
		{"unknown", []string{"cursor"}, nil, nil, `unknown client "cursor" (claude-code, `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			real, harness, err := splitClients(tc.clients)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "go-sdk, ts-sdk, mcp-remote, or all") {
					t.Fatalf("err %v, want one saying %q and naming every client", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(real, tc.real) || !slices.Equal(harness, tc.harness) {
				t.Fatalf("real %v, harness %v, err %v; want %v, %v", real, harness, err, tc.real, tc.harness)
			}
		})
	}
}
