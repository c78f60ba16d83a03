package index

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/audit"
)

// writeOnly hides a sink's WriteLines, so the trail hands it records and
// it encodes each itself: the trail as it was before LineSink.
type writeOnly struct{ audit.Sink }

// BenchmarkTrailSinks writes decision records through a trail to the two
// sinks pbac up uses (the JSONL file and this index, on disk), with the
// batch encoded once for both (lines) and each sink encoding every record
// itself (records), alternated in one run. ns/op is the time per record from
// the first Record to Close having written it all:
// go test -run '^$' -bench TrailSinks -benchtime 20000x -count 3 ./audit/index/
func BenchmarkTrailSinks(b *testing.B) {
	ctx := context.Background()
	r := audit.Record{RequestID: "0f9c2b7e5d3a4c1b", ClientID: "ci-bot", Method: "tools/call", Backend: "jira",
		Tool: "jira.search_issues", Decision: "allow", Status: 200, Scopes: []string{"jira:read"}, PolicyVersion: "v3-1a2b3c",
		Reasons: []string{"ci_agent tier may read jira"}, Args: json.RawMessage(`{"query":"SEC"}`),
		ArgsDigest:    audit.Digest([]byte(`{"query":"SEC"}`)),
		LatencyMicros: map[string]int64{"introspect": 4, "policy": 30, "backend": 120, "total": 190}}
	for _, mode := range []string{"lines", "records"} {
		b.Run(mode, func(b *testing.B) {
			dir := b.TempDir()
			ix, err := Open(ctx, filepath.Join(dir, "index"), time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			file, err := audit.NewFileSink(filepath.Join(dir, "audit.jsonl"), 100, 1)
			if err != nil {
				b.Fatal(err)
			}
			sinks := []audit.Sink{file, ix}
			if mode == "records" {
				sinks = []audit.Sink{writeOnly{file}, writeOnly{ix}}
			}
			tr := audit.NewTrail(slog.New(slog.NewTextHandler(io.Discard, nil)), sinks...)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				r.RequestID = fmt.Sprint(i)
				tr.Record(r)
			}
			if err := tr.Close(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
		})
	}
}
