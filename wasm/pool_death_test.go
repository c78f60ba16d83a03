package wasm_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/wasm"
)

// waitPool waits until the pool is in the state want accepts; the state
// changes in other goroutines, so the test polls it (bounded).
func waitPool(t *testing.T, p *wasm.Policy, what string, want func(created, idle, waiting int) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, i, w := wasm.PoolStateForTest(p)
		if want(c, i, w) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool never got to %s: created %d, idle %d, waiting %d", what, c, i, w)
		}
		time.Sleep(time.Millisecond)
	}
}

// A caller waiting for the only instance is served when that instance
// dies in a timeout: the dead instance's slot goes to the waiter, who
// creates a new one. (The waiter used to stay blocked: the slot was
// dropped and nobody woke it.)
func TestPoolWaiterIsServedWhenTheBusyInstanceTimesOut(t *testing.T) {
	for _, tc := range []struct {
		name string
		// stop ends the runaway evaluation: its caller giving up, or the
		// engine's own deadline.
		evalTimeout time.Duration
		cancel      bool
	}{
		{"the caller gives up", time.Minute, true},
		{"the evaluation deadline passes", 300 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, wasm.NewConfig().WithMaxInstances(1).WithEvalTimeout(tc.evalTimeout))
			p := load(t, e, testModule(t), string(bigData()))

			runaway, cancel := context.WithCancel(context.Background())
			defer cancel()
			slow := make(chan error, 1)
			go func() {
				_, err := p.Eval(runaway, "t/slow", []byte(`{}`))
				slow <- err
			}()
			waitPool(t, p, "its only instance busy", func(c, i, _ int) bool { return c == 1 && i == 0 })

			// The waiter's own deadline only keeps a failing test from
			// hanging.
			wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer wcancel()
			served := make(chan error, 1)
			go func() {
				got, err := p.Eval(wctx, "t/allow", []byte(`{"user":"alice"}`))
				if err == nil && string(got) != "true" {
					err = errors.New("t/allow for alice: " + string(got))
				}
				served <- err
			}()
			waitPool(t, p, "one caller waiting", func(_, _, w int) bool { return w == 1 })

			if tc.cancel {
				cancel()
			}
			if err := <-slow; !errors.Is(err, wasm.ErrTimeout) {
				t.Fatalf("the runaway evaluation: %v, want ErrTimeout", err)
			}
			if err := <-served; err != nil {
				t.Fatalf("the waiter was not served after the busy instance died: %v", err)
			}
			waitPool(t, p, "one idle instance", func(c, i, w int) bool { return c == 1 && i == 1 && w == 0 })
		})
	}
}

// Many evaluations time out while many callers wait: every decision that
// does not run away is made, the pool never holds more than its limit,
// and it ends with nothing waiting and no goroutine left behind.
func TestPoolSurvivesTimeoutsUnderConcurrency(t *testing.T) {
	const maxInstances, callers, rounds = 2, 8, 6
	e := newEngine(t, wasm.NewConfig().WithMaxInstances(maxInstances).WithEvalTimeout(20*time.Millisecond))
	p := load(t, e, testModule(t), string(bigData()))
	goroutines := runtime.NumGoroutine()

	// Deadlines that only keep a failing test from hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, callers*rounds*2)
	for g := range callers {
		wg.Go(func() {
			for r := range rounds {
				if (g+r)%2 == 0 {
					if _, err := p.Eval(ctx, "t/slow", []byte(`{}`)); !errors.Is(err, wasm.ErrTimeout) {
						errs <- errors.New("t/slow did not time out: " + errString(err))
					}
					continue
				}
				// A decision is made even with every instance dying
				// around it; only one that itself overruns the 20 ms
				// deadline (a loaded machine) may time out.
				got, err := p.Eval(ctx, "t/allow", []byte(`{"user":"alice"}`))
				switch {
				case errors.Is(err, wasm.ErrTimeout):
				case err != nil:
					errs <- errors.New("t/allow: " + err.Error())
				case string(got) != "true":
					errs <- errors.New("t/allow for alice: " + string(got))
				}
				if c, _, _ := wasm.PoolStateForTest(p); c > maxInstances {
					errs <- errors.New("the pool holds more instances than its limit")
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Instances are created on demand: when the storm's last evaluations
	// all timed out, every instance was discarded and none is created
	// until the next call (below), so none at all is a sound state too.
	c, i, w := wasm.PoolStateForTest(p)
	if w != 0 || c != i || c > maxInstances {
		t.Fatalf("after the storm: created %d, idle %d, waiting %d; want every instance idle, none waiting", c, i, w)
	}
	// Both instances work side by side.
	var both sync.WaitGroup
	for range maxInstances {
		both.Go(func() {
			if _, err := p.Eval(ctx, "t/allow", []byte(`{}`)); err != nil {
				t.Error(err)
			}
		})
	}
	both.Wait()
	if c, i, w := wasm.PoolStateForTest(p); w != 0 || c != i || c < 1 || c > maxInstances {
		t.Fatalf("after the storm and two calls: created %d, idle %d, waiting %d; want 1..%d instances, all idle", c, i, w, maxInstances)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Fatalf("%d goroutines after the storm, %d before", n, goroutines)
	}
}

// Closing the policy sends its waiters away with ErrClosed, and the busy
// instance is closed when its evaluation ends.
func TestPoolCloseReleasesWaitersAndBusyInstances(t *testing.T) {
	e := newEngine(t, wasm.NewConfig().WithMaxInstances(1).WithEvalTimeout(time.Minute))
	p, err := e.Load(context.Background(), testModule(t), bigData())
	if err != nil {
		t.Fatal(err)
	}
	runaway, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow := make(chan error, 1)
	go func() {
		_, err := p.Eval(runaway, "t/slow", []byte(`{}`))
		slow <- err
	}()
	waitPool(t, p, "its only instance busy", func(c, i, _ int) bool { return c == 1 && i == 0 })
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	waiter := make(chan error, 1)
	go func() {
		_, err := p.Eval(wctx, "t/allow", []byte(`{}`))
		waiter <- err
	}()
	waitPool(t, p, "one caller waiting", func(_, _, w int) bool { return w == 1 })

	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-waiter; !errors.Is(err, wasm.ErrClosed) {
		t.Fatalf("a waiter on a closed policy: %v, want ErrClosed", err)
	}
	cancel()
	if err := <-slow; !errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("the runaway evaluation: %v, want ErrTimeout", err)
	}
	waitPool(t, p, "no instance left", func(c, i, w int) bool { return c == 0 && i == 0 && w == 0 })
	if _, err := p.Eval(context.Background(), "t/allow", []byte(`{}`)); !errors.Is(err, wasm.ErrClosed) {
		t.Fatalf("eval on a closed policy: %v, want ErrClosed", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
