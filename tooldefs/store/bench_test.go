package store

import (
	"encoding/json"
	"fmt"
	"github.com/pbac-gateway/pbac/tooldefs"
	"strings"
	"testing"
)

// benchTools is a listing of n tools of about 1 KiB each.
func benchTools(n int, version string) []json.RawMessage {
	out := make([]json.RawMessage, n)
	for i := range out {
		out[i] = json.RawMessage(fmt.Sprintf(`{"name":"tool_%d","description":"%s %s","inputSchema":{"type":"object","properties":{"path":{"type":"string","description":"%s"},"limit":{"type":"number"}}},"annotations":{"readOnlyHint":true}}`,
			i, version, strings.Repeat("Reads things and says what it read. ", 20), strings.Repeat("where ", 10)))
	}
	return out
}

// BenchmarkObserve is what one tools/list answer of 50 tools costs the
// gateway's store: unchanged (the usual listing: memory only), and every
// definition changed (a write of 50 entries in one batch, fsync'd).
func BenchmarkObserve(b *testing.B) {
	for _, tc := range []struct {
		name    string
		changed bool
	}{{"unchanged", false}, {"all-changed", true}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := Open(b.Context(), b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			lists := [2][]json.RawMessage{benchTools(50, "v0"), benchTools(50, "v1")}
			s.Observe(b.Context(), "bench", lists[0])
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				l := lists[0]
				if tc.changed {
					l = lists[(i+1)%2]
				}
				s.Observe(b.Context(), "bench", l)
			}
		})
	}
}

// BenchmarkObserveRead is ObserveRead of a listing of 50 unchanged tools
// already read (the gateway reads each object once, tooldefs.Read).
func BenchmarkObserveRead(b *testing.B) {
	s, err := Open(b.Context(), b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var read []tooldefs.Tool
	for _, raw := range benchTools(50, "v0") {
		t, err := tooldefs.Read(raw)
		if err != nil {
			b.Fatal(err)
		}
		read = append(read, t)
	}
	s.ObserveRead(b.Context(), "bench", read)
	for b.Loop() {
		s.ObserveRead(b.Context(), "bench", read)
	}
}

// BenchmarkHash is the lookup every tools/call makes.
func BenchmarkHash(b *testing.B) {
	s, err := Open(b.Context(), "", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.Observe(b.Context(), "bench", benchTools(50, "v0"))
	for b.Loop() {
		if _, ok := s.Hash("bench", "tool_7"); !ok {
			b.Fatal("not found")
		}
	}
}
