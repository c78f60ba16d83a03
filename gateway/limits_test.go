package gateway_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	system "github.com/pbac-gateway/pbac/internal/stack"
)

var decisionSeries = regexp.MustCompile(`(?m)^pbac_decisions_total\{decision="([^"]*)",method="([^"]*)"\} (\d+)$`)

// TestMetricLabelsAreBounded: an agent sending thousands of made-up methods
// adds no series to pbac_decisions_total — they are counted as "other" —
// and /metrics stays as small as before the flood.
func TestMetricLabelsAreBounded(t *testing.T) {
	s := newStack(t)
	ci := s.machineAgent("ci-bot", false, "jira:read")
	status, sid, _ := s.rpc(ci, http.MethodPost, "/mcp/jira", "", initBody)
	if status != http.StatusOK {
		t.Fatal(status)
	}
	before := len(s.scrape())
	const flood = 2000
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < flood; i += 4 {
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"x/made-up-%d","params":{}}`, i, i)
				if status, _, _ := s.rpc(ci, http.MethodPost, "/mcp/jira", sid, body); status != http.StatusForbidden {
					t.Errorf("made-up method %d: %d", i, status)
					return
				}
			}
		})
	}
	wg.Wait()
	metrics := s.scrape()
	series := decisionSeries.FindAllStringSubmatch(metrics, -1)
	t.Logf("/metrics: %d bytes before %d made-up methods, %d after; %d decision series", before, flood, len(metrics), len(series))
	other := 0
	for _, m := range series {
		if strings.HasPrefix(m[2], "x/") {
			t.Fatalf("a client's method became a label: %s", m[0])
		}
		if m[2] == "other" { // deny, or error when a loaded machine let a decision time out
			n, _ := strconv.Atoi(m[3])
			other += n
		}
	}
	if other != flood {
		t.Fatalf(`pbac_decisions_total{method="other"} = %d, want %d`, other, flood)
	}
	if len(series) > 6 {
		t.Fatalf("%d decision series after the flood: %v", len(series), series)
	}
}

// TestSessionQuotaPerAgent: an agent holds at most SessionsPerAgent
// sessions, per-backend and aggregated together; a new one ends its least
// recently used session, at the backend too, and never another agent's.
func TestSessionQuotaPerAgent(t *testing.T) {
	const quota = 3
	log := newBackendLog(t)
	s := newStackWith(t, stackOptions{backendURL: log.proxy, config: func(c *system.Config) { c.Limits.SessionsPerAgent = quota }})
	a := s.machineAgent("ci-bot", false, "jira:read")
	b := s.machineAgent("ci-bot", false, "jira:read") // another agent (client) of the same provider

	open := func(token, path string) string {
		t.Helper()
		status, sid, body := s.rpc(token, http.MethodPost, path, "", initBody)
		if status != http.StatusOK || sid == "" {
			t.Fatalf("initialize %s: %d %s", path, status, body)
		}
		return sid
	}
	alive := func(token, path, sid string) bool {
		t.Helper()
		status, _, _ := s.rpc(token, http.MethodPost, path, sid, rpcBody("ping", false))
		return status == http.StatusOK
	}
	bs := []string{open(b, "/mcp/jira")}
	var as []string
	for range quota {
		as = append(as, open(a, "/mcp/jira"))
		time.Sleep(2 * time.Millisecond) // distinct last-use times
	}
	for _, sid := range as {
		if !alive(a, "/mcp/jira", sid) {
			t.Fatal("a session within the quota ended")
		}
		time.Sleep(2 * time.Millisecond)
	}
	deletes := func() int { return strings.Count(strings.Join(log.of("jira"), "\n"), "DELETE") }
	if deletes() != 0 {
		t.Fatalf("jira got DELETE before any eviction: %v", log.of("jira"))
	}

	// A fourth session pushes out A's least recently used one (the first),
	// at the backend too.
	as = append(as, open(a, "/mcp/jira"))
	if alive(a, "/mcp/jira", as[0]) {
		t.Fatal("the agent's least recently used session survived its quota")
	}
	for _, sid := range as[1:] {
		if !alive(a, "/mcp/jira", sid) {
			t.Fatal("a recent session ended")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for deletes() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := deletes(); n != 1 {
		t.Fatalf("jira got %d DELETEs for one evicted session", n)
	}

	// An aggregated session counts against the same quota.
	open(a, "/mcp")
	if alive(a, "/mcp/jira", as[1]) {
		t.Fatal("an aggregated session did not count against the agent's quota")
	}

	// A flood of sessions by A: it keeps quota sessions, B keeps its own.
	for range 200 {
		open(a, "/mcp/jira")
	}
	if !alive(b, "/mcp/jira", bs[0]) {
		t.Fatal("another agent's session ended")
	}
	metrics := s.scrape()
	active := regexp.MustCompile(`(?m)^pbac_active_sessions (\d+)$`).FindStringSubmatch(metrics)
	if active == nil || active[1] != strconv.Itoa(quota+1) {
		t.Fatalf("pbac_active_sessions = %v, want %d (A's quota and B's one)", active, quota+1)
	}
	ended := regexp.MustCompile(`(?m)^pbac_sessions_ended_total\{reason="quota"\} (\d+)$`).FindStringSubmatch(metrics)
	if ended == nil || ended[1] != "202" {
		t.Fatalf("pbac_sessions_ended_total{reason=quota} = %v, want 202", ended)
	}
	t.Logf("after %d initializes by one agent: %s active sessions; jira ended %d of them", 205, active[1], deletes())
	if got := log.of("slack"); slices.Contains(got, "DELETE") {
		t.Fatalf("slack got a DELETE: %v", got)
	}
}

// TestCompressedBodiesAreRefused: a body with a Content-Encoding is refused
// with 415 before it is read, with or without a token, so a small gzip of
// gigabytes of zeros costs the gateway nothing (the hostile review of the
// tracing change: Fiber inflates such a body without a bound).
func TestCompressedBodiesAreRefused(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "jira:read")
	var zbuf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zbuf, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 64 { // 64 MiB inflated
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	for _, path := range []string{"/mcp", "/mcp/jira"} {
		for _, auth := range []string{"", "Bearer not-a-token", "Bearer " + token} {
			for _, enc := range []string{"gzip", "br", "deflate, gzip"} {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				req, _ := http.NewRequest(http.MethodPost, s.base+path, bytes.NewReader(zbuf.Bytes()))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Content-Encoding", enc)
				req.Header.Set("Accept", "application/json, text/event-stream")
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				runtime.ReadMemStats(&after)
				if resp.StatusCode != http.StatusUnsupportedMediaType {
					t.Errorf("%s %q %s: %d, want 415", path, auth, enc, resp.StatusCode)
				}
				if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
					t.Errorf("%s %q %s: the gateway allocated %d MiB for a %d-byte body", path, auth, enc, grew>>20, zbuf.Len())
				}
			}
		}
	}
	// identity is no encoding.
	status, _, _, body := s.rpcCall("/mcp/jira", token, "2025-11-25", "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, "Content-Encoding", "identity")
	if status == http.StatusUnsupportedMediaType {
		t.Errorf("Content-Encoding: identity was refused: %s", body)
	}
}
