package gateway_test

import (
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/bench"
	"github.com/pbac-gateway/pbac/internal/latency"
)

// BenchmarkLightBackend calls search_issues on the go-sdk demo jira
// backend and on the light bench backend (bench/lightmcp: no JSON Schema
// validation, JSON answers), directly and through the gateway fronting
// each as "jira" (the light one also on the stateless revision 2026-07-28,
// which the go-sdk demo backends, stateful, do not serve), in one run: one connection calling in a loop (p50, p99,
// ns/op), then 8 connections at once (saturate: ns/op is the wall time per
// call, calls-per-s its inverse). cpu-µs/call is this process's CPU time
// per call — client, gateway and backend together.
func BenchmarkLightBackend(b *testing.B) {
	sdk, light := newStack(b), newLightStack(b)
	sdkToken := sdk.machineAgent("ci-bot", false, "jira:read")
	lightToken := light.machineAgent("ci-bot", false, "jira:read")
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"SEC"}}}`
	type poster interface{ post(testing.TB, string) }
	session := func(url, token string) func(testing.TB) poster {
		return func(b testing.TB) poster { return openRaw(b, url, token) }
	}
	stateless := func(url, token string) func(testing.TB) poster {
		return func(testing.TB) poster {
			return &statelessCaller{url: url, token: token, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
		}
	}
	modes := []struct {
		name string
		open func(testing.TB) poster
	}{
		{"direct/go-sdk", session(sdk.direct["jira"], "")},
		{"direct/light", session(light.direct["jira"], "")},
		{"direct/light-2026", stateless(light.direct["jira"], "")},
		{"gateway/go-sdk", session(sdk.base+"/mcp/jira", sdkToken)},
		{"gateway/light", session(light.base+"/mcp/jira", lightToken)},
		{"gateway/light-2026", stateless(light.base+"/mcp/jira", lightToken)},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			r := mode.open(b)
			samples := make([]time.Duration, 0, 1<<16)
			cpu := cpuMeter(b)
			for b.Loop() {
				start := time.Now()
				r.post(b, call)
				samples = append(samples, time.Since(start))
			}
			cpu()
			latency.Report(b, samples)
		})
	}
	const conns = 8
	for _, mode := range modes {
		b.Run("saturate/"+mode.name, func(b *testing.B) {
			sessions := make(chan poster, conns)
			for range conns {
				sessions <- mode.open(b)
			}
			var wg sync.WaitGroup
			work := make(chan struct{})
			cpu := cpuMeter(b)
			start := time.Now()
			for range conns {
				r := <-sessions
				wg.Go(func() {
					for range work {
						r.post(b, call)
					}
				})
			}
			for b.Loop() {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			cpu()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls-per-s")
		})
	}
}

// statelessCaller calls on revision 2026-07-28: no session, the method
// and tool in headers and the revision in each request's _meta.
type statelessCaller struct {
	url, token string
	client     *http.Client
	from, to   string // the last body asked for, and what is sent for it
}

func (c *statelessCaller) post(b testing.TB, body string) {
	if body != c.from {
		// The body with the _meta this revision needs, made once.
		c.from, c.to = body, strings.Replace(body, `"params":{`, `"params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"},`, 1)
	}
	req, _ := http.NewRequest(http.MethodPost, c.url, strings.NewReader(c.to))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "search_issues")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"isError":false`) {
		b.Fatalf("2026-07-28 call: %d %.200s", resp.StatusCode, out)
	}
}

// cpuMeter starts measuring this process's CPU time; the function it
// returns reports it per call of b.
func cpuMeter(b *testing.B) func() {
	before, ok := bench.ProcessCPU(os.Getpid())
	return func() {
		after, ok2 := bench.ProcessCPU(os.Getpid())
		if ok && ok2 && b.N > 0 {
			b.ReportMetric(float64((after-before).Microseconds())/float64(b.N), "cpu-µs/call")
		}
	}
}
