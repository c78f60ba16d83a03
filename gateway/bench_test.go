package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/latency"
)

// rawSession is a minimal Streamable HTTP client: initialize once, then
// tools/call in a loop, reading each answer whole.
type rawSession struct {
	url, token, session string
	client              *http.Client
}

func (r *rawSession) post(b testing.TB, body string) {
	req, _ := http.NewRequest(http.MethodPost, r.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.session != "" {
		req.Header.Set("Mcp-Session-Id", r.session)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b.Fatalf("%s: %d", body[:40], resp.StatusCode)
	}
	if id := resp.Header.Get("Mcp-Session-Id"); id != "" {
		r.session = id
	}
}

func openRaw(b testing.TB, url, token string) *rawSession {
	r := &rawSession{url: url, token: token, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	r.post(b, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`)
	r.post(b, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return r
}

// BenchmarkGatewayOverhead calls jira.search_issues directly on the demo
// backend and through the gateway (introspection, pbac/tool_call in Wasm,
// audit, proxy) in one run; the added latency is the difference of the p50s.
func BenchmarkGatewayOverhead(b *testing.B) {
	s := newStack(b)
	token := s.machineAgent("ci-bot", false, "jira:read")
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"SEC"}}}`
	for _, mode := range []struct{ name, url, token string }{
		{"direct", s.direct["jira"], ""},
		{"gateway", s.base + "/mcp/jira", token},
	} {
		b.Run(mode.name, func(b *testing.B) {
			r := openRaw(b, mode.url, mode.token)
			samples := make([]time.Duration, 0, 1<<14)
			for b.Loop() {
				start := time.Now()
				r.post(b, call)
				samples = append(samples, time.Since(start))
			}
			latency.Report(b, samples)
		})
	}
}
