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
		handoff: make(chan *instance, 2),
		done:    make(chan struct{}),
	}
	a, b := &instance{policy: p}, &instance{policy: p}
	p.idle = []*instance{a, b}
	p.created.Store(2)
	return p, a, b
}

func mustAcquire(t *testing.T, p *Policy) *instance {
	t.Helper()
	in, err := p.acquire(context.Background())
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
	if _, err := p.acquire(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire with every instance busy: %v, want the context's deadline", err)
	}

	const waiters = 8
	var wg sync.WaitGroup
	got := make(chan *instance, waiters)
	for range waiters {
		wg.Go(func() {
			in, err := p.acquire(ctx)
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
	if p.waiting != 0 {
		t.Fatalf("%d callers still counted as waiting", p.waiting)
	}
}

func TestPoolWaiterSeesClose(t *testing.T) {
	p, _, _ := testPool()
	mustAcquire(t, p)
	mustAcquire(t, p)
	errc := make(chan error, 1)
	go func() {
		_, err := p.acquire(context.Background())
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	p.closed.Store(true)
	close(p.done)
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("a waiter on a closed policy got %v, want ErrClosed", err)
	}
	if _, err := p.acquire(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("acquire on a closed policy: %v, want ErrClosed", err)
	}
}
