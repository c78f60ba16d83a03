package throttle

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestLimiterAllowsBurstThenRate(t *testing.T) {
	c := newClock()
	l := NewLimiter(0.5, 3, 100, c.now) // 3 at once, then one every 2 s
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("burst action %d refused", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait != 2*time.Second {
		t.Fatalf("after the burst: ok=%v wait=%v, want refused for 2s", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key is limited by the first's actions")
	}
	c.add(time.Second)
	if ok, wait := l.Allow("a"); ok || wait != time.Second {
		t.Fatalf("half way: ok=%v wait=%v", ok, wait)
	}
	c.add(time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("a token earned by waiting is refused")
	}
	c.add(time.Hour)
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("after a long pause, burst action %d refused (the bucket holds Burst at most)", i)
		}
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("the bucket filled beyond Burst")
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	c := newClock()
	l := NewLimiter(1, 1, 100, c.now)
	l.Allow("victim") // used its only token: it is held back
	for i := range 10000 {
		l.Allow(fmt.Sprintf("k%d", i))
		if n := l.Len(); n > 100 {
			t.Fatalf("%d keys held, limit 100", n)
		}
	}
}

func TestBackoffFreeFailuresThenDoublingWaits(t *testing.T) {
	c := newClock()
	b := NewBackoff(BackoffConfig{Free: 3, Base: time.Second, Max: 8 * time.Second, Forget: time.Hour}, c.now)
	for i := range 3 {
		if w := b.Begin("alice"); w != 0 {
			t.Fatalf("free attempt %d must wait %v", i, w)
		}
	}
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		w := b.Begin("alice")
		if w != want {
			t.Fatalf("wait %v, want %v", w, want)
		}
		if b.Begin("alice") != w {
			t.Fatal("an attempt while waiting changed the wait")
		}
		c.add(w)
		if w := b.Begin("alice"); w != 0 {
			t.Fatalf("after waiting, still %v", w)
		}
	}
	if w := b.Wait("bob"); w != 0 {
		t.Fatalf("another key waits %v", w)
	}
}

func TestBackoffConcurrentBurstGetsOnlyTheFreeAttempts(t *testing.T) {
	b := NewBackoff(BackoffConfig{Free: 5}, newClock().now)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range 200 {
		wg.Go(func() {
			if b.Begin("alice") == 0 {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 5 {
		t.Fatalf("%d of 200 concurrent attempts got through, want the 5 free ones", allowed)
	}
}

func TestBackoffSuccessTakesBackAndResets(t *testing.T) {
	c := newClock()
	b := NewBackoff(BackoffConfig{Free: 2, Base: time.Minute}, c.now)
	b.Begin("addr")
	b.Succeeded("addr", false)
	b.Begin("addr")
	if w := b.Begin("addr"); w != 0 {
		t.Fatalf("a success counted as a failure: wait %v", w)
	}
	if w := b.Wait("addr"); w != time.Minute {
		t.Fatalf("after two failures: wait %v, want 1m", w)
	}
	b.Succeeded("addr", true)
	if w := b.Begin("addr"); w != 0 {
		t.Fatalf("after a reset: wait %v", w)
	}
}

func TestBackoffForgetsOldFailures(t *testing.T) {
	c := newClock()
	b := NewBackoff(BackoffConfig{Free: 2, Base: time.Second, Forget: 10 * time.Minute}, c.now)
	b.Begin("k")
	c.add(11 * time.Minute)
	b.Begin("k")
	if w := b.Wait("k"); w != 0 {
		t.Fatalf("a failure older than Forget still counts: wait %v", w)
	}
}

func TestBackoffMemoryIsBoundedAndKeepsWaitingKeys(t *testing.T) {
	c := newClock()
	b := NewBackoff(BackoffConfig{Free: 1, Base: time.Hour, Max: time.Hour, MaxKeys: 100}, c.now)
	b.Begin("victim") // waits an hour
	for i := range 10000 {
		b.Begin(fmt.Sprintf("k%d", i))
		if n := b.Len(); n > 100 {
			t.Fatalf("%d keys held, limit 100", n)
		}
	}
	// Every key waits as long as the victim: eviction may pick any, so
	// nothing is promised for it — but keys that hold nothing back go first.
	b2 := NewBackoff(BackoffConfig{Free: 3, Base: time.Hour, MaxKeys: 10}, c.now)
	for range 3 {
		b2.Begin("victim")
	}
	c.add(2 * time.Hour) // older than nothing: Forget is 1 h by default
	for range 3 {
		b2.Begin("victim2")
	}
	for i := range 1000 {
		b2.Begin(fmt.Sprintf("k%d", i)) // one failure each: none of them waits
	}
	if w := b2.Wait("victim2"); w == 0 {
		t.Fatal("a waiting key was evicted for keys that hold nothing back")
	}
}

func TestAddressKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7:4711", "192.0.2.7"},
		{"192.0.2.7", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:1", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.7]:80", "192.0.2.7"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"not an address", "not an address"},
	} {
		if got := AddressKey(tc.in); got != tc.want {
			t.Errorf("AddressKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
