package gateway

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/audit"
)

// TestRefusalsAreAggregated: whatever the flood, a window writes at most
// one record per kind at once, one summary per kind refused again, and one
// record per reason for the kinds beyond maxRefusalKinds; every refusal is
// counted in some record.
func TestRefusalsAreAggregated(t *testing.T) {
	for _, tc := range []struct {
		name         string
		addrs, each  int
		wantNow      int // records written as they happen
		wantAtFlush  int // records written when the window ends
		wantOverflow int // refusals counted in the overflow record
	}{
		{"one refusal is one record at once", 1, 1, 1, 0, 0},
		{"a flood from one address is two records", 1, 10000, 1, 1, 0},
		{"a few addresses, each flooding", 10, 500, 10, 10, 0},
		{"more addresses than tracked", maxRefusalKinds + 100, 3, maxRefusalKinds, maxRefusalKinds + 1, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var recs []audit.Record
			r := newRefusals(time.Minute, func(rec audit.Record) {
				mu.Lock()
				recs = append(recs, rec)
				mu.Unlock()
			})
			now := time.Now()
			for i := range tc.each {
				for a := range tc.addrs {
					r.note(now.Add(time.Duration(i)*time.Millisecond), "rid", "invalid_token", "the token is not active", "jira",
						fmt.Sprintf("10.0.%d.%d", a/256, a%256), "POST", 401)
				}
			}
			if len(recs) != tc.wantNow {
				t.Fatalf("%d records during the window, want %d", len(recs), tc.wantNow)
			}
			r.flush(now.Add(time.Minute))
			if got := len(recs) - tc.wantNow; got != tc.wantAtFlush {
				t.Fatalf("%d records at the window's end, want %d", got, tc.wantAtFlush)
			}
			total, overflow := 0, 0
			for _, rec := range recs {
				if rec.ClientID != RefusedClientID || rec.Decision != "deny" || rec.Status != 401 || rec.Count < 1 || rec.Remote == "" {
					t.Fatalf("record %+v", rec)
				}
				total += rec.Count
				if rec.Remote == "(many addresses)" {
					overflow += rec.Count
				}
			}
			if total != tc.addrs*tc.each || overflow != tc.wantOverflow {
				t.Fatalf("records count %d refusals (%d in the overflow), want %d (%d)", total, overflow, tc.addrs*tc.each, tc.wantOverflow)
			}
			// The next window starts empty.
			r.flush(now.Add(2 * time.Minute))
			if got := len(recs) - tc.wantNow - tc.wantAtFlush; got != 0 {
				t.Fatalf("%d records for an empty window", got)
			}
		})
	}
}
