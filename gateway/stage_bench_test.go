package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/jsonrpc"
)

// Per-stage micro-benchmarks of the hot path, with allocation counts (the
// introspection and policy stages have theirs in asrv and plugins).

// benchCall is a tools/call of the size the gateway benchmark sends.
var benchCall = []byte(`{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"search_issues",` +
	`"arguments":{"query":"SEC","jql":"project = SEC AND status != Done","limit":20,"fields":["key","summary","status"]},` +
	`"_meta":{"progressToken":"p-17"}}}`)

func BenchmarkParseMessage(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchCall)))
	for b.Loop() {
		if _, err := jsonrpc.Parse(benchCall, 64); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuditEnqueue is the cost on the request path of recording a
// decision: the trail's sinks run on their own goroutine.
func BenchmarkAuditEnqueue(b *testing.B) {
	trail := audit.NewTrailWithOptions(nil, audit.TrailOptions{QueueSize: 1 << 16}, discardSink{})
	defer trail.Close(context.Background())
	rec := audit.Record{Time: time.Now(), RequestID: "r", ClientID: "c", Method: "tools/call", Tool: "jira.search_issues",
		Decision: "allow", Reasons: []string{"ok"}, Status: 200, PolicyVersion: strings.Repeat("a", 64),
		LatencyMicros: map[string]int64{"introspect": 20, "policy": 30, "backend": 300, "total": 400}}
	b.ReportAllocs()
	for b.Loop() {
		trail.Record(rec)
	}
	if d := trail.Dropped(); d > 0 {
		b.Logf("%d records dropped (the sink is slower than the loop)", d)
	}
}

type discardSink struct{}

func (discardSink) Write(context.Context, []audit.Record) error { return nil }
func (discardSink) Close() error                                { return nil }
