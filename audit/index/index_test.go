package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/audit"
)

func openTestIndex(t *testing.T, dir string, retention time.Duration) *Index {
	t.Helper()
	ix, err := Open(context.Background(), dir, retention, WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func ids(recs []audit.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.RequestID
	}
	return out
}

func TestIndexQuery(t *testing.T) {
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clients := []string{"claude-code", "ci-bot", "security-scanner"}
	tools := []string{"drive.read", "jira.create", "slack.post", "db.ddl"}
	decisions := []string{audit.DecisionAllow, audit.DecisionDeny, audit.DecisionError}
	subjects := []string{"alice", "bob", ""}
	// Most records have no kind (decisions, as the gateway and older
	// trails write them), some say decision, some are other events.
	events := []string{"", "", audit.EventDecision, "", audit.EventToken, "", audit.EventPolicy}
	// Every eleventh record belongs to one of two approvals' stories.
	approvalIDs := []string{"apr_aaaaaaaaaaaaaaaaaaaaaaaaaa", "apr_bbbbbbbbbbbbbbbbbbbbbbbbbb"}
	var all []audit.Record
	for i := range 240 {
		approval := ""
		if i%11 == 0 {
			approval = approvalIDs[(i/11)%2]
		}
		all = append(all, audit.Record{
			ApprovalID: approval,
			Event:      events[i%7],
			Time:       base.Add(time.Duration(i) * time.Second),
			RequestID:  fmt.Sprintf("r%03d", i),
			ClientID:   clients[i%3],
			Tool:       tools[(i/3)%4],
			Decision:   decisions[(i/2)%3],
			Subject:    subjects[(i/5)%3],
			Method:     "tools/call",
			Status:     200,
		})
	}
	// Two records at the very same instant: both kept, the later write first.
	all = append(all, audit.Record{Time: base.Add(100 * time.Second), RequestID: "same-ts", ClientID: "ci-bot", Tool: "jira.create", Decision: audit.DecisionDeny, Method: "tools/call"})
	// A long client id goes through a hashed index key.
	long := strings.Repeat("x", 400)
	all = append(all, audit.Record{Time: base.Add(7 * time.Second), RequestID: "long", ClientID: long, Tool: "drive.read", Decision: audit.DecisionAllow, Method: "tools/call"})

	ix := openTestIndex(t, "", 0)
	// Write in several batches and out of time order.
	shuffled := slices.Clone(all)
	slices.Reverse(shuffled[:120])
	for i := 0; i < len(shuffled); i += 50 {
		if err := ix.Write(context.Background(), shuffled[i:min(i+50, len(shuffled))]); err != nil {
			t.Fatal(err)
		}
	}

	// Reference: filter all by brute force, newest first (ties: later write first).
	order := map[string]int{}
	for i, r := range shuffled {
		order[r.RequestID] = i
	}
	want := func(f audit.Filter) []string {
		var out []audit.Record
		for _, r := range all {
			if f.Matches(&r) && (f.Since.IsZero() || !r.Time.Before(f.Since)) && (f.Until.IsZero() || r.Time.Before(f.Until)) {
				out = append(out, r)
			}
		}
		slices.SortFunc(out, func(a, b audit.Record) int {
			if c := b.Time.Compare(a.Time); c != 0 {
				return c
			}
			return order[b.RequestID] - order[a.RequestID]
		})
		limit := f.Limit
		if limit <= 0 {
			limit = audit.DefaultQueryLimit
		}
		return ids(out[:min(limit, len(out))])
	}

	tests := []struct {
		name string
		f    audit.Filter
	}{
		{"no filter default limit", audit.Filter{}},
		{"no filter limit 5", audit.Filter{Limit: 5}},
		{"limit above total", audit.Filter{Limit: 1000}},
		{"client", audit.Filter{ClientID: "ci-bot", Limit: 1000}},
		{"tool", audit.Filter{Tool: "db.ddl", Limit: 1000}},
		{"decision", audit.Filter{Decision: audit.DecisionDeny, Limit: 1000}},
		{"subject", audit.Filter{Subject: "alice", Limit: 1000}},
		{"client+decision", audit.Filter{ClientID: "claude-code", Decision: audit.DecisionError, Limit: 1000}},
		{"client+tool+decision+subject", audit.Filter{ClientID: "ci-bot", Tool: "jira.create", Decision: audit.DecisionDeny, Subject: "bob", Limit: 1000}},
		{"event decision includes records without a kind", audit.Filter{Event: audit.EventDecision, Limit: 1000}},
		{"event token", audit.Filter{Event: audit.EventToken, Limit: 1000}},
		{"event policy+client", audit.Filter{Event: audit.EventPolicy, ClientID: "ci-bot", Limit: 1000}},
		{"event decision+client+decision", audit.Filter{Event: audit.EventDecision, ClientID: "ci-bot", Decision: audit.DecisionDeny, Limit: 1000}},
		{"event with no record", audit.Filter{Event: audit.EventRegistration}},
		{"approval", audit.Filter{ApprovalID: approvalIDs[0], Limit: 1000}},
		{"approval+decision", audit.Filter{ApprovalID: approvalIDs[1], Decision: audit.DecisionAllow, Limit: 1000}},
		{"unknown approval", audit.Filter{ApprovalID: "apr_cccccccccccccccccccccccccc"}},
		{"since", audit.Filter{Since: base.Add(200 * time.Second), Limit: 1000}},
		{"until", audit.Filter{Until: base.Add(10 * time.Second), Limit: 1000}},
		{"since+until", audit.Filter{Since: base.Add(50 * time.Second), Until: base.Add(60 * time.Second)}},
		{"since+until exact instant", audit.Filter{Since: base.Add(100 * time.Second), Until: base.Add(100*time.Second + 1)}},
		{"client in range", audit.Filter{ClientID: "security-scanner", Since: base.Add(30 * time.Second), Until: base.Add(90 * time.Second)}},
		{"tool+decision limit 3", audit.Filter{Tool: "slack.post", Decision: audit.DecisionAllow, Limit: 3}},
		{"hashed long client", audit.Filter{ClientID: long}},
		{"unknown client", audit.Filter{ClientID: "nobody"}},
		{"disjoint filters", audit.Filter{ClientID: "ci-bot", Tool: "no.such"}},
		{"empty range", audit.Filter{Since: base.Add(time.Hour), Until: base}},
		{"before everything", audit.Filter{Until: base}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ix.Query(context.Background(), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			w := want(tc.f)
			if !slices.Equal(ids(got), w) {
				t.Fatalf("got  %v\nwant %v", ids(got), w)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Time.After(got[i-1].Time) {
					t.Fatalf("not newest first at %d", i)
				}
			}
		})
	}
	if got, _ := ix.Query(context.Background(), audit.Filter{Since: base.Add(100 * time.Second), Until: base.Add(100*time.Second + 1)}); len(got) != 2 || got[0].RequestID != "same-ts" {
		t.Fatalf("same instant: %v", ids(got))
	}
}

// A filtered query visits index entries of matching records, not the store.
func TestIndexQueryDoesNotScan(t *testing.T) {
	ix := openTestIndex(t, "", 0)
	base := time.Now().Add(-time.Hour)
	var recs []audit.Record
	for i := range 5000 {
		r := audit.Record{Time: base.Add(time.Duration(i) * time.Millisecond), RequestID: fmt.Sprint(i), ClientID: "busy", Tool: "drive.read", Decision: audit.DecisionAllow, Method: "tools/call"}
		if i%500 == 0 {
			r.ClientID, r.Decision, r.ApprovalID = "rare", audit.DecisionDeny, "apr_rare"
		}
		recs = append(recs, r)
	}
	if err := ix.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		f          audit.Filter
		want       int
		maxVisited int
	}{
		{"rare client", audit.Filter{ClientID: "rare", Limit: 100}, 10, 40},
		{"one approval's story", audit.Filter{ApprovalID: "apr_rare", Limit: 100}, 10, 40},
		{"rare client + common tool", audit.Filter{ClientID: "rare", Tool: "drive.read", Limit: 100}, 10, 60},
		{"common decision + rare client", audit.Filter{Decision: audit.DecisionDeny, ClientID: "rare"}, 10, 60},
		{"time range only", audit.Filter{Since: base.Add(4990 * time.Millisecond)}, 10, 12},
		{"limit stops early", audit.Filter{ClientID: "busy", Limit: 5}, 5, 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, visited, err := ix.query(context.Background(), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want || visited > tc.maxVisited {
				t.Fatalf("got %d records visiting %d keys; want %d visiting <= %d", len(got), visited, tc.want, tc.maxVisited)
			}
		})
	}
}

func TestIndexRetention(t *testing.T) {
	const retention = 2 * time.Second
	ix := openTestIndex(t, t.TempDir(), retention)
	now := time.Now()
	recs := []audit.Record{
		{Time: now, RequestID: "fresh", ClientID: "c", Decision: audit.DecisionAllow, Method: "tools/call"},
		{Time: now.Add(-time.Hour), RequestID: "already-expired", ClientID: "c", Decision: audit.DecisionAllow, Method: "tools/call"},
	}
	if err := ix.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	for _, f := range []audit.Filter{{}, {ClientID: "c"}, {Decision: audit.DecisionAllow}} {
		got, err := ix.Query(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(got), []string{"fresh"}) {
			t.Fatalf("before expiry %+v: %v", f, ids(got))
		}
	}
	deadline := time.Now().Add(retention + 3*time.Second)
	for {
		a, _ := ix.Query(context.Background(), audit.Filter{})
		b, _ := ix.Query(context.Background(), audit.Filter{ClientID: "c"})
		if len(a) == 0 && len(b) == 0 {
			if time.Since(now) < retention {
				t.Fatalf("expired after %v, before the retention of %v", time.Since(now), retention)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("records still there after %v", time.Since(now))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestIndexPersists(t *testing.T) {
	dir := t.TempDir()
	ix, err := Open(context.Background(), dir, 0, WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Write(context.Background(), []audit.Record{rec(1), rec(2)}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix2 := openTestIndex(t, dir, 0)
	if err := ix2.Write(context.Background(), []audit.Record{rec(3)}); err != nil {
		t.Fatal(err)
	}
	got, err := ix2.Query(context.Background(), audit.Filter{ClientID: "client"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got), []string{rec(3).RequestID, rec(2).RequestID, rec(1).RequestID}) {
		t.Fatalf("after reopen: %v", ids(got))
	}
}

// Close drains: 10k records through the trail end up in the file and the
// index.
func TestTrailCloseDrainsToFileAndIndex(t *testing.T) {
	const n = 10000
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	fs, err := audit.NewFileSink(path, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := Open(context.Background(), filepath.Join(dir, "index"), 24*time.Hour, WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	// The queue holds all of them, so nothing may be dropped however slow
	// the sinks are; the test is that Close writes everything queued.
	tr := audit.NewTrailWithOptions(testLogger(), audit.TrailOptions{QueueSize: n}, fs, ix)
	now := time.Now()
	for i := range n {
		r := rec(i)
		r.Time = now.Add(time.Duration(i-n) * time.Microsecond)
		r.Args = json.RawMessage(`{"path":"/docs/x"}`)
		r.ArgsDigest = audit.Digest(r.Args)
		tr.Record(r)
	}
	ctx, cancel := ctxTimeout(60 * time.Second)
	defer cancel()
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if tr.Dropped() != 0 {
		t.Fatalf("dropped %d", tr.Dropped())
	}
	lines := readLines(t, path)
	if len(lines) != n {
		t.Fatalf("file has %d records, want %d", len(lines), n)
	}
	for i, r := range lines {
		if r.RequestID != rec(i).RequestID {
			t.Fatalf("file record %d is %s", i, r.RequestID)
		}
	}
	checkMode(t, path)

	ix2, err := Open(context.Background(), filepath.Join(dir, "index"), 24*time.Hour, WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer ix2.Close()
	got, err := ix2.Query(context.Background(), audit.Filter{Limit: audit.MaxQueryLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("index has %d records, want %d", len(got), n)
	}
	for i, r := range got {
		if r.RequestID != rec(n-1-i).RequestID {
			t.Fatalf("index record %d is %s", i, r.RequestID)
		}
	}
	if got[0].ArgsDigest != audit.Digest([]byte(`{"path":"/docs/x"}`)) {
		t.Fatalf("digest lost: %+v", got[0])
	}
}

// TestIndexRefusesLinesThatAreNotTheRecords: lines that are not one per
// record are refused, and none of the batch is stored.
func TestIndexRefusesLinesThatAreNotTheRecords(t *testing.T) {
	ix := openTestIndex(t, "", 0)
	ctx := context.Background()
	recs := []audit.Record{rec(1), rec(2)}
	lines, err := audit.EncodeLines(recs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.WriteLines(ctx, recs, lines[:1]); !errors.Is(err, audit.ErrLinesMismatch) {
		t.Fatalf("one line for two records: %v, want ErrLinesMismatch", err)
	}
	got, err := ix.Query(ctx, audit.Filter{})
	if err != nil || len(got) != 0 {
		t.Fatalf("after the refusal the index holds %d records (%v), want none", len(got), err)
	}
	if err := ix.WriteLines(ctx, recs, lines); err != nil {
		t.Fatal(err)
	}
	if got, err := ix.Query(ctx, audit.Filter{}); err != nil || len(got) != 2 {
		t.Fatalf("index holds %d records (%v), want 2", len(got), err)
	}
}
