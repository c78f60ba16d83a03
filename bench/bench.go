// Package bench is the load generator behind `pbac bench`: an open-loop
// scheduler that sends at a fixed rate and measures each call from the time
// it was meant to be sent (so a stall is charged to every call it delayed,
// not hidden — the "coordinated omission" correction), a closed-loop mode
// that finds the throughput at saturation, HDR histograms, and the report
// (a table and JSON).
//
// The system under test is a Target that opens Conns; MCPTarget makes MCP
// tools/call requests over Streamable HTTP.
package bench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Conn is one connection to the system under test. A worker uses it for
// one call at a time.
type Conn interface {
	// Call makes one request and reports whether it succeeded.
	Call(ctx context.Context) error
	Close() error
}

// Target opens connections to the system under test.
type Target interface {
	Open(ctx context.Context) (Conn, error)
}

// TargetFunc adapts a function to Target.
type TargetFunc func(ctx context.Context) (Conn, error)

// Open implements Target.
func (f TargetFunc) Open(ctx context.Context) (Conn, error) { return f(ctx) }

// Limits of one run.
const (
	// MaxRequestsPerRun is the hard cap on the calls of one run.
	MaxRequestsPerRun = 10_000_000
	// MaxConcurrency caps the connections of a pool.
	MaxConcurrency = 1024
	// highestLatency is the largest latency the histograms track; longer
	// ones are recorded as this.
	highestLatency = time.Minute
)

// Result is the outcome of one run.
type Result struct {
	// Requests counts the calls scheduled (open loop) or made (closed
	// loop), failed ones included.
	Requests int64
	// Errors counts the failed calls and, in the open loop, the calls
	// never sent because the run's time was up.
	Errors int64
	// ErrorKinds counts errors by message (the first few kinds).
	ErrorKinds map[string]int64
	// Latency holds successful calls' latency in nanoseconds: in the open
	// loop from the intended send time, in the closed loop from the send.
	Latency *hdrhistogram.Histogram
	// Service holds successful calls' latency from the actual send, in
	// nanoseconds; in the open loop the difference to Latency is the time
	// calls waited for a free connection.
	Service *hdrhistogram.Histogram
	// Elapsed is the run's wall time: from the first intended send to the
	// last answer.
	Elapsed time.Duration
	// Rate is the open loop's rate (0 for a closed loop).
	Rate float64
	// CPU is this process's user + system CPU time over the run (zero
	// where the platform does not report it).
	CPU time.Duration
}

// Throughput is successful calls per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Latency.TotalCount()) / r.Elapsed.Seconds()
}

// ErrorRate is Errors / Requests.
func (r *Result) ErrorRate() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.Errors) / float64(r.Requests)
}

// FirstError is the most frequent error message, or "".
func (r *Result) FirstError() string {
	best, n := "", int64(0)
	for _, k := range sortedKeys(r.ErrorKinds) {
		if r.ErrorKinds[k] > n {
			best, n = k, r.ErrorKinds[k]
		}
	}
	return best
}

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(highestLatency), 3)
}

// Pool is a fixed set of connections, each used by one worker.
type Pool struct {
	conns []Conn
}

// OpenPool opens n connections to t (one MCP session each, for
// MCPTarget).
func OpenPool(ctx context.Context, t Target, n int) (*Pool, error) {
	if n < 1 || n > MaxConcurrency {
		return nil, fmt.Errorf("bench: concurrency %d is outside 1..%d", n, MaxConcurrency)
	}
	p := &Pool{}
	for range n {
		c, err := t.Open(ctx)
		if err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("bench: open a connection: %w", err)
		}
		p.conns = append(p.conns, c)
	}
	return p, nil
}

// Check makes one call on the first connection: a target that refuses
// the call (a policy denial, a tool error) fails here, before a run.
func (p *Pool) Check(ctx context.Context) error {
	if len(p.conns) == 0 {
		return errors.New("bench: the pool is closed")
	}
	return p.conns[0].Call(ctx)
}

// Size is the number of connections.
func (p *Pool) Size() int { return len(p.conns) }

// Close closes every connection.
func (p *Pool) Close() error {
	var errs []error
	for _, c := range p.conns {
		errs = append(errs, c.Close())
	}
	p.conns = nil
	return errors.Join(errs...)
}

// tally is one worker's share of a result, merged at the end.
type tally struct {
	latency, service *hdrhistogram.Histogram
	requests, errors int64
	kinds            map[string]int64
}

func newTally() *tally {
	return &tally{latency: newHistogram(), service: newHistogram(), kinds: map[string]int64{}}
}

// maxErrorKinds bounds the distinct error messages kept.
const maxErrorKinds = 8

func (t *tally) fail(err error) {
	t.errors++
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if _, ok := t.kinds[msg]; !ok && len(t.kinds) >= maxErrorKinds {
		msg = "other errors"
	}
	t.kinds[msg]++
}

func (t *tally) ok(latency, service time.Duration) {
	_ = t.latency.RecordValue(int64(min(max(latency, 1), highestLatency)))
	_ = t.service.RecordValue(int64(min(max(service, 1), highestLatency)))
}

// merge folds tallies into one result.
func merge(ts []*tally) *Result {
	r := &Result{Latency: newHistogram(), Service: newHistogram(), ErrorKinds: map[string]int64{}}
	for _, t := range ts {
		r.Latency.Merge(t.latency)
		r.Service.Merge(t.service)
		r.Requests += t.requests
		r.Errors += t.errors
		for k, n := range t.kinds {
			if _, ok := r.ErrorKinds[k]; !ok && len(r.ErrorKinds) >= maxErrorKinds {
				k = "other errors"
			}
			r.ErrorKinds[k] += n
		}
	}
	return r
}

// ClosedLoop configures a saturation run: every connection calls again as
// soon as its previous call returns.
type ClosedLoop struct {
	Duration time.Duration
	// MaxRequests caps the calls (default MaxRequestsPerRun).
	MaxRequests int64
}

// RunClosed runs the closed loop and measures throughput, latency from each
// send and this process's CPU time.
func (p *Pool) RunClosed(ctx context.Context, cfg ClosedLoop) (*Result, error) {
	if cfg.Duration <= 0 {
		return nil, errors.New("bench: a closed-loop run needs a positive duration")
	}
	if cfg.MaxRequests <= 0 || cfg.MaxRequests > MaxRequestsPerRun {
		cfg.MaxRequests = MaxRequestsPerRun
	}
	if len(p.conns) == 0 {
		return nil, errors.New("bench: the pool is closed")
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		issued int64
	)
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if issued >= cfg.MaxRequests {
			return false
		}
		issued++
		return true
	}
	tallies := make([]*tally, len(p.conns))
	cpu0 := processCPU()
	start := time.Now()
	for i, c := range p.conns {
		t := newTally()
		tallies[i] = t
		wg.Go(func() {
			for runCtx.Err() == nil && take() {
				sent := time.Now()
				err := c.Call(runCtx)
				took := time.Since(sent)
				if err != nil && runCtx.Err() != nil {
					// Cut off by the end of the run: not counted.
					mu.Lock()
					issued--
					mu.Unlock()
					return
				}
				t.requests++
				if err != nil {
					t.fail(err)
					continue
				}
				t.ok(took, took)
			}
		})
	}
	wg.Wait()
	res := merge(tallies)
	res.Elapsed = time.Since(start)
	res.CPU = processCPU() - cpu0
	return res, ctx.Err()
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// describeErrors lists error kinds with their counts, most frequent first.
func describeErrors(kinds map[string]int64) string {
	keys := sortedKeys(kinds)
	sort.SliceStable(keys, func(i, j int) bool { return kinds[keys[i]] > kinds[keys[j]] })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d× %s", kinds[k], k))
	}
	return strings.Join(parts, "; ")
}
