package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// OpenLoop configures a fixed-rate run. Call i is meant to be sent at
// start + i/Rate whatever happened to earlier calls, and its latency is
// measured from that intended time: when the system under test stalls,
// every call the stall delayed is charged with its wait (the coordinated
// omission correction of wrk2 and HdrHistogram).
type OpenLoop struct {
	// Rate is calls per second, 1..100000.
	Rate float64
	// Duration is how long calls are scheduled.
	Duration time.Duration
	// MaxOutstanding caps the calls waiting for a free connection beyond
	// those in flight (default max(64, Rate/10)). When it is reached the
	// schedule waits; the intended send times do not move, so the wait
	// still counts in full.
	MaxOutstanding int
	// Drain bounds how long the run waits for outstanding calls after the
	// last intended send (default 10 s); calls cut off are errors.
	Drain time.Duration
	// MaxRequests caps the scheduled calls (default and at most
	// min(Rate × Duration, MaxRequestsPerRun)).
	MaxRequests int64
}

// MaxRate is the highest rate an open-loop run accepts.
const MaxRate = 100_000

// errNotSent is charged to calls never sent because the run ended.
var errNotSent = errors.New("not sent before the run's deadline: the target did not keep up with the rate")

// RunOpen runs the open loop on the pool's connections.
func (p *Pool) RunOpen(ctx context.Context, cfg OpenLoop) (*Result, error) {
	if cfg.Rate < 1 || cfg.Rate > MaxRate || math.IsNaN(cfg.Rate) {
		return nil, fmt.Errorf("bench: rate %g is outside 1..%d calls/s", cfg.Rate, MaxRate)
	}
	if cfg.Duration <= 0 {
		return nil, errors.New("bench: an open-loop run needs a positive duration")
	}
	if len(p.conns) == 0 {
		return nil, errors.New("bench: the pool is closed")
	}
	total := int64(cfg.Rate * cfg.Duration.Seconds())
	total = max(min(total, MaxRequestsPerRun), 1)
	if cfg.MaxRequests > 0 {
		total = min(total, cfg.MaxRequests)
	}
	if cfg.MaxOutstanding <= 0 {
		cfg.MaxOutstanding = max(64, int(cfg.Rate/10))
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 10 * time.Second
	}
	interval := float64(time.Second) / cfg.Rate

	// runCtx ends the calls still going when the drain time is up.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := make(chan time.Time, cfg.MaxOutstanding)
	tallies := make([]*tally, len(p.conns))
	var wg sync.WaitGroup
	for i, c := range p.conns {
		t := newTally()
		tallies[i] = t
		wg.Go(func() {
			for intended := range queue {
				t.requests++
				if runCtx.Err() != nil {
					t.fail(errNotSent)
					continue
				}
				sent := time.Now()
				err := c.Call(runCtx)
				done := time.Now()
				if err != nil {
					t.fail(err)
					continue
				}
				t.ok(done.Sub(intended), done.Sub(sent))
			}
		})
	}

	cpu0 := processCPU()
	// The first call is due a moment from now, so the workers are ready.
	start := time.Now().Add(time.Millisecond)
	unsentc := make(chan int64, 1)
	go func() {
		// The schedule runs on a thread of its own (see lockPreciseSleep)
		// that ends with it.
		sleep := lockPreciseSleep()
		defer close(queue)
		for i := range total {
			due := start.Add(time.Duration(float64(i) * interval))
			for wait := time.Until(due); wait > 0; wait = time.Until(due) {
				if ctx.Err() != nil {
					unsentc <- total - i
					return
				}
				sleep(min(wait, 5*time.Millisecond))
			}
			select {
			case queue <- due:
			case <-ctx.Done():
				unsentc <- total - i
				return
			}
		}
		unsentc <- 0
	}()
	unsent := <-unsentc
	lastDue := start.Add(time.Duration(float64(total-1) * interval))

	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	drain := time.NewTimer(time.Until(lastDue.Add(cfg.Drain)))
	defer drain.Stop()
	select {
	case <-finished:
	case <-drain.C:
		cancel()
		<-finished
	case <-ctx.Done():
		<-finished
	}
	res := merge(tallies)
	res.Elapsed = time.Since(start)
	res.CPU = processCPU() - cpu0
	res.Rate = cfg.Rate
	if unsent > 0 {
		res.Requests += unsent
		res.Errors += unsent
		res.ErrorKinds["run interrupted before these calls were sent"] += unsent
	}
	return res, ctx.Err()
}
