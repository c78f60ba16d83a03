package realclients

import (
	"testing"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
)

// TestHeldChannel: the channel is read, as the gateway chooses it
// (gateway/hold.go), from the held tools/call's revision and _meta and
// its session's initialize: input_required on 2026-07-28 with URL
// elicitation in the call's _meta, -32042 on an older revision whose
// initialize declared it, -32010 otherwise.
func TestHeldChannel(t *testing.T) {
	call := func(proto string, url bool) clientcheck.Event {
		return clientcheck.Event{Method: "POST", Path: "/mcp", RPC: "tools/call", Protocol: proto, ElicitURL: url}
	}
	init := func(proto string, url bool) clientcheck.Event {
		return clientcheck.Event{Method: "POST", Path: "/mcp", RPC: "initialize", Protocol: proto, ElicitURL: url}
	}
	for _, tc := range []struct {
		name   string
		events []clientcheck.Event
		want   string
	}{
		{"2026-07-28, URL in _meta", []clientcheck.Event{call("2026-07-28", true)}, "input_required"},
		{"2026-07-28, no URL", []clientcheck.Event{call("2026-07-28", false)}, "-32010"},
		{"2025-11-25, URL at initialize", []clientcheck.Event{init("2025-11-25", true), call("2025-11-25", false)}, "-32042"},
		{"2025-11-25, none declared", []clientcheck.Event{init("2025-11-25", false), call("2025-11-25", false)}, "-32010"},
		{"no header after 2025-06-18", []clientcheck.Event{init("2025-06-18", false), call("", false)}, "-32010"},
		{"2025-06-18, URL at initialize (Codex)", []clientcheck.Event{init("2025-06-18", true), call("2025-06-18", false)}, "-32010"},
		{"no call", []clientcheck.Event{init("2025-11-25", true)}, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, declared := heldChannel(tc.events); got != tc.want {
				t.Fatalf("channel %s (%s), want %s", got, declared, tc.want)
			}
		})
	}
}
