package wasm

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// testPool is a Policy's pool with two stand-in instances, both idle and
// none to create: acquire and release never touch a module.
func testPool() (*Policy, *instance, *instance) {
	p := &Policy{
		engine:  &Engine{cfg: NewConfig().WithMaxInstances(2)},
		created: 2,
		done:    make(chan struct{}),
	}
	a, b := &instance{policy: p}, &instance{policy: p}
	p.idle = []*instance{a, b}
	return p, a, b
}

func mustAcquire(t *testing.T, p *Policy) *instance {
	t.Helper()
	in, err := p.acquire(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// The instance released last serves the next decision, so light load keeps
// running on one warm instance instead of cycling through all of them.
func TestPoolReusesTheLastReleasedInstance(t *testing.T) {
	ctx := context.Background()
	p, a, b := testPool()
	if in := mustAcquire(t, p); in != b {
		t.Fatal("acquire did not take the instance released last")
	}
	p.release(ctx, b)
	for range 3 {
		in := mustAcquire(t, p)
		if in != b {
			t.Fatal("a sequential caller got another instance than the warm one")
		}
		p.release(ctx, in)
	}
	x, y := mustAcquire(t, p), mustAcquire(t, p)
	if x != b || y != a {
		t.Fatal("two callers at once did not get both instances")
	}
	p.release(ctx, y)
	p.release(ctx, x)
	if in := mustAcquire(t, p); in != x {
		t.Fatal("acquire did not take the instance released last")
	}
}

// A caller that finds every instance busy waits and gets the next one
// released; one that gives up leaves nothing stuck.
func TestPoolWaitersGetReleasedInstances(t *testing.T) {
	ctx := context.Background()
	p, _, _ := testPool()
	x, y := mustAcquire(t, p), mustAcquire(t, p)

	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := p.acquire(cctx, time.Time{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire with every instance busy: %v, want the context's deadline", err)
	}
	// A deadline given as a value bounds the wait as well.
	if _, err := p.acquire(ctx, time.Now().Add(20*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire with every instance busy, by a deadline: %v, want it exceeded", err)
	}

	const waiters = 8
	var wg sync.WaitGroup
	got := make(chan *instance, waiters)
	for range waiters {
		wg.Go(func() {
			in, err := p.acquire(ctx, time.Time{})
			if err != nil {
				t.Error(err)
				return
			}
			got <- in
			p.release(ctx, in)
		})
	}
	time.Sleep(10 * time.Millisecond) // let some of them wait
	p.release(ctx, x)
	p.release(ctx, y)
	wg.Wait()
	close(got)
	n := 0
	for in := range got {
		if in != x && in != y {
			t.Fatal("a waiter got an instance the pool does not own")
		}
		n++
	}
	if n != waiters {
		t.Fatalf("%d of %d waiters got an instance", n, waiters)
	}
	// Both instances are idle again, whether on the stack or handed off.
	a, b := mustAcquire(t, p), mustAcquire(t, p)
	if a == b {
		t.Fatal("one instance handed out twice")
	}
	if n := len(p.waiters); n != 0 {
		t.Fatalf("%d callers still queued as waiting", n)
	}
}

func TestPoolWaiterSeesClose(t *testing.T) {
	p, _, _ := testPool()
	mustAcquire(t, p)
	mustAcquire(t, p)
	errc := make(chan error, 1)
	go func() {
		_, err := p.acquire(context.Background(), time.Time{})
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	p.closed.Store(true)
	close(p.done)
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("a waiter on a closed policy got %v, want ErrClosed", err)
	}
	if _, err := p.acquire(context.Background(), time.Time{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("acquire on a closed policy: %v, want ErrClosed", err)
	}
}

// A waiter whose wait ends just as an instance is handed to it passes the
// instance on to the next in line, or, when it took the instance after
// all, releases it to them: either way nothing is lost and nobody is left
// waiting. Which of the two happens is up to the scheduler, so the race is
// run many times.
func TestPoolWaiterThatGivesUpPassesItsGrantOn(t *testing.T) {
	for range 50 {
		p := &Policy{engine: &Engine{cfg: NewConfig().WithMaxInstances(1)}, created: 1, done: make(chan struct{})}
		a := &instance{policy: p} // busy: nobody holds it in the pool

		ctx1, cancel1 := context.WithCancel(context.Background())
		first, second := make(chan error, 1), make(chan *instance, 1)
		go func() {
			in, err := p.acquire(ctx1, time.Time{})
			if err == nil {
				p.release(context.Background(), in)
			}
			first <- err
		}()
		waitWaiting(t, p, 1)
		go func() {
			in, err := p.acquire(context.Background(), time.Time{})
			if err != nil {
				t.Error(err)
			}
			second <- in
		}()
		waitWaiting(t, p, 2)

		// The first waiter gives up at the moment a grant is sent to it.
		p.mu.Lock()
		cancel1()
		w, _ := p.nextWaiter()
		w <- grant{in: a}
		p.mu.Unlock()

		if err := <-first; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("the first waiter: %v", err)
		}
		if in := <-second; in != a {
			t.Fatal("the second waiter did not get the instance the first one let go")
		}
		if p.created != 1 || len(p.idle) != 0 || len(p.waiters) != 0 {
			t.Fatalf("created %d, idle %d, waiting %d; want the one instance held by the second waiter", p.created, len(p.idle), len(p.waiters))
		}
	}
}

func waitWaiting(t *testing.T, p *Policy, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Microsecond) {
		p.mu.Lock()
		got := len(p.waiters)
		p.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers waiting, want %d", got, n)
		}
	}
}
