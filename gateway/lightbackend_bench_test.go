package gateway_test

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/bench"
	"github.com/pbac-gateway/pbac/internal/latency"
)

// BenchmarkLightBackend calls search_issues on the go-sdk demo jira
// backend and on the light bench backend (bench/lightmcp: no JSON Schema
// validation, JSON answers), directly and through the gateway fronting
// each as "jira", in one run: one connection calling in a loop (p50, p99,
// ns/op), then 8 connections at once (saturate: ns/op is the wall time per
// call, calls-per-s its inverse). cpu-µs/call is this process's CPU time
// per call — client, gateway and backend together.
func BenchmarkLightBackend(b *testing.B) {
	sdk, light := newStack(b), newLightStack(b)
	sdkToken := sdk.machineAgent("ci-bot", false, "jira:read")
	lightToken := light.machineAgent("ci-bot", false, "jira:read")
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"SEC"}}}`
	modes := []struct{ name, url, token string }{
		{"direct/go-sdk", sdk.direct["jira"], ""},
		{"direct/light", light.direct["jira"], ""},
		{"gateway/go-sdk", sdk.base + "/mcp/jira", sdkToken},
		{"gateway/light", light.base + "/mcp/jira", lightToken},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			r := openRaw(b, mode.url, mode.token)
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
			sessions := make(chan *rawSession, conns)
			for range conns {
				sessions <- openRaw(b, mode.url, mode.token)
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
