package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/gateway"
	system "github.com/pbac-gateway/pbac/internal/stack"
)

// TestRefusedTokensAreAudited: a request refused for a bad or missing token
// (or a foreign origin) is in the audit trail at once, with its address and
// reason; a flood of them from one address adds one record per window with
// the count, not one per request.
func TestRefusedTokensAreAudited(t *testing.T) {
	const window = 500 * time.Millisecond
	s := newStackWith(t, stackOptions{config: func(c *system.Config) { c.Gateway.RefusalWindow = window }})
	refused := func() []audit.Record {
		recs, err := s.index.Query(context.Background(), audit.Filter{ClientID: gateway.RefusedClientID, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	waitFor := func(what string, cond func([]audit.Record) bool) []audit.Record {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			recs := refused()
			if cond(recs) {
				return recs
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: audit has %+v", what, recs)
			}
		}
	}
	has := func(recs []audit.Record, reason string) (audit.Record, bool) {
		for _, r := range recs {
			if len(r.Reasons) > 0 && strings.HasPrefix(r.Reasons[0], reason) {
				return r, true
			}
		}
		return audit.Record{}, false
	}

	ping := rpcBody("ping", false)
	if status, _, _ := s.rpc("not-a-token", http.MethodPost, "/mcp/jira", "", ping); status != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", status)
	}
	if status, _, _ := s.rpc("", http.MethodPost, "/mcp/slack", "", ping); status != http.StatusUnauthorized {
		t.Fatalf("no token: %d", status)
	}
	if status, _, _ := s.rpc("", http.MethodPost, "/mcp", "", ping); status != http.StatusUnauthorized {
		t.Fatalf("no token on /mcp: %d", status)
	}
	req, _ := http.NewRequest(http.MethodPost, s.base+"/mcp/jira", strings.NewReader(ping))
	req.Header.Set("Origin", "http://attacker.example")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	recs := waitFor("each refusal recorded at once", func(recs []audit.Record) bool {
		_, bad := has(recs, "invalid_token: the token is not active")
		_, missing := has(recs, "token_required")
		_, origin := has(recs, "origin_not_allowed")
		return bad && missing && origin
	})
	bad, _ := has(recs, "invalid_token")
	if bad.Backend != "jira" || bad.Remote != "127.0.0.1" || bad.Count != 1 || bad.Status != http.StatusUnauthorized || bad.Method != "POST" || bad.RequestID == "" {
		t.Fatalf("the bad token's record: %+v", bad)
	}
	if o, _ := has(recs, "origin_not_allowed"); o.Status != http.StatusForbidden {
		t.Fatalf("the origin refusal's record: %+v", o)
	}

	// A flood of bad tokens from one address: one more record per window.
	time.Sleep(window + 100*time.Millisecond) // a fresh window
	before := len(refused())
	const flood = 1000
	started := time.Now()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < flood; i += 4 {
				if status, _, _ := s.rpc("bad-token-of-the-flood", http.MethodPost, "/mcp/jira", "", ping); status != http.StatusUnauthorized {
					t.Errorf("flood: %d", status)
					return
				}
			}
		})
	}
	wg.Wait()
	windows := int(time.Since(started)/window) + 2 // the flood may straddle window ends
	recs = waitFor("the flood counted", func(recs []audit.Record) bool {
		n := 0
		for _, r := range recs[:len(recs)-before] {
			n += r.Count
		}
		return n == flood
	})
	added := len(recs) - before
	t.Logf("%d refused requests from one address: %d audit records", flood, added)
	if added > 2*windows { // at most the first and a summary per window
		t.Fatalf("%d audit records for one flood over %d windows", added, windows)
	}
}
