package audit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func openTestIndex(t *testing.T, dir string, retention time.Duration) *Index {
	t.Helper()
	ix, err := OpenIndex(context.Background(), dir, retention, WithIndexLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func ids(recs []Record) []string {
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
	decisions := []string{DecisionAllow, DecisionDeny, DecisionError}
	subjects := []string{"alice", "bob", ""}
	var all []Record
	for i := range 240 {
		all = append(all, Record{
			Time:      base.Add(time.Duration(i) * time.Second),
			RequestID: fmt.Sprintf("r%03d", i),
			ClientID:  clients[i%3],
			Tool:      tools[(i/3)%4],
			Decision:  decisions[(i/2)%3],
			Subject:   subjects[(i/5)%3],
			Method:    "tools/call",
			Status:    200,
		})
	}
	// Two records at the very same instant: both kept, the later write first.
	all = append(all, Record{Time: base.Add(100 * time.Second), RequestID: "same-ts", ClientID: "ci-bot", Tool: "jira.create", Decision: DecisionDeny, Method: "tools/call"})
	// A long client id goes through a hashed index key.
	long := strings.Repeat("x", 400)
	all = append(all, Record{Time: base.Add(7 * time.Second), RequestID: "long", ClientID: long, Tool: "drive.read", Decision: DecisionAllow, Method: "tools/call"})

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
	want := func(f Filter) []string {
		var out []Record
		for _, r := range all {
			if matches(&r, &f) && (f.Since.IsZero() || !r.Time.Before(f.Since)) && (f.Until.IsZero() || r.Time.Before(f.Until)) {
				out = append(out, r)
			}
		}
		slices.SortFunc(out, func(a, b Record) int {
			if c := b.Time.Compare(a.Time); c != 0 {
				return c
			}
			return order[b.RequestID] - order[a.RequestID]
		})
		limit := f.Limit
		if limit <= 0 {
			limit = DefaultQueryLimit
		}
		return ids(out[:min(limit, len(out))])
	}

	tests := []struct {
		name string
		f    Filter
	}{
		{"no filter default limit", Filter{}},
		{"no filter limit 5", Filter{Limit: 5}},
		{"limit above total", Filter{Limit: 1000}},
		{"client", Filter{ClientID: "ci-bot", Limit: 1000}},
		{"tool", Filter{Tool: "db.ddl", Limit: 1000}},
		{"decision", Filter{Decision: DecisionDeny, Limit: 1000}},
		{"subject", Filter{Subject: "alice", Limit: 1000}},
		{"client+decision", Filter{ClientID: "claude-code", Decision: DecisionError, Limit: 1000}},
		{"client+tool+decision+subject", Filter{ClientID: "ci-bot", Tool: "jira.create", Decision: DecisionDeny, Subject: "bob", Limit: 1000}},
		{"since", Filter{Since: base.Add(200 * time.Second), Limit: 1000}},
		{"until", Filter{Until: base.Add(10 * time.Second), Limit: 1000}},
		{"since+until", Filter{Since: base.Add(50 * time.Second), Until: base.Add(60 * time.Second)}},
		{"since+until exact instant", Filter{Since: base.Add(100 * time.Second), Until: base.Add(100*time.Second + 1)}},
		{"client in range", Filter{ClientID: "security-scanner", Since: base.Add(30 * time.Second), Until: base.Add(90 * time.Second)}},
		{"tool+decision limit 3", Filter{Tool: "slack.post", Decision: DecisionAllow, Limit: 3}},
		{"hashed long client", Filter{ClientID: long}},
		{"unknown client", Filter{ClientID: "nobody"}},
		{"disjoint filters", Filter{ClientID: "ci-bot", Tool: "no.such"}},
		{"empty range", Filter{Since: base.Add(time.Hour), Until: base}},
		{"before everything", Filter{Until: base}},
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
	if got, _ := ix.Query(context.Background(), Filter{Since: base.Add(100 * time.Second), Until: base.Add(100*time.Second + 1)}); len(got) != 2 || got[0].RequestID != "same-ts" {
		t.Fatalf("same instant: %v", ids(got))
	}
}

// A filtered query visits index entries of matching records, not the store.
func TestIndexQueryDoesNotScan(t *testing.T) {
	ix := openTestIndex(t, "", 0)
	base := time.Now().Add(-time.Hour)
	var recs []Record
	for i := range 5000 {
		r := Record{Time: base.Add(time.Duration(i) * time.Millisecond), RequestID: fmt.Sprint(i), ClientID: "busy", Tool: "drive.read", Decision: DecisionAllow, Method: "tools/call"}
		if i%500 == 0 {
			r.ClientID, r.Decision = "rare", DecisionDeny
		}
		recs = append(recs, r)
	}
	if err := ix.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		f          Filter
		want       int
		maxVisited int
	}{
		{"rare client", Filter{ClientID: "rare", Limit: 100}, 10, 40},
		{"rare client + common tool", Filter{ClientID: "rare", Tool: "drive.read", Limit: 100}, 10, 60},
		{"common decision + rare client", Filter{Decision: DecisionDeny, ClientID: "rare"}, 10, 60},
		{"time range only", Filter{Since: base.Add(4990 * time.Millisecond)}, 10, 12},
		{"limit stops early", Filter{ClientID: "busy", Limit: 5}, 5, 12},
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
	recs := []Record{
		{Time: now, RequestID: "fresh", ClientID: "c", Decision: DecisionAllow, Method: "tools/call"},
		{Time: now.Add(-time.Hour), RequestID: "already-expired", ClientID: "c", Decision: DecisionAllow, Method: "tools/call"},
	}
	if err := ix.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	for _, f := range []Filter{{}, {ClientID: "c"}, {Decision: DecisionAllow}} {
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
		a, _ := ix.Query(context.Background(), Filter{})
		b, _ := ix.Query(context.Background(), Filter{ClientID: "c"})
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
	ix, err := OpenIndex(context.Background(), dir, 0, WithIndexLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Write(context.Background(), []Record{rec(1), rec(2)}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix2 := openTestIndex(t, dir, 0)
	if err := ix2.Write(context.Background(), []Record{rec(3)}); err != nil {
		t.Fatal(err)
	}
	got, err := ix2.Query(context.Background(), Filter{ClientID: "client"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got), []string{rec(3).RequestID, rec(2).RequestID, rec(1).RequestID}) {
		t.Fatalf("after reopen: %v", ids(got))
	}
}
