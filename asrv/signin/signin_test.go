package signin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/signin"
	"github.com/pbac-gateway/pbac/internal/throttle"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recorder is an Auditor that keeps the events.
type recorder struct {
	mu     sync.Mutex
	events []signin.Event
}

func (r *recorder) SignInAttempt(_ context.Context, e signin.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) outcomes() []signin.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []signin.Outcome
	for _, e := range r.events {
		out = append(out, e.Outcome)
	}
	return out
}

// signIn runs one attempt through the guard against the demo users, as a
// sign-in page does.
func signIn(ctx context.Context, g *signin.Guard, user, password, addr string) error {
	p, err := g.Begin(ctx, signin.Attempt{Surface: "test", Username: user, RemoteAddr: addr})
	if err != nil {
		return err
	}
	_, err = asrv.DemoUsers{}.Authenticate(ctx, user, password)
	p.Done(ctx, err == nil)
	return err
}

func newGuard(c *clock, rec *recorder) *signin.Guard {
	return signin.New(signin.Config{
		User:         throttle.BackoffConfig{Free: 5, Base: time.Second, Max: 15 * time.Minute},
		Address:      throttle.BackoffConfig{Free: 20, Base: time.Second, Max: 15 * time.Minute},
		FailureFloor: time.Millisecond, Audit: rec, Now: c.now,
	})
}

// TestGuardThrottlesGuessing: the issue's 401 guesses. After 5 wrong
// passwords for alice further attempts are refused unchecked — the right
// password too — until the back-off has passed, doubling each time; a
// user name that does not exist is throttled exactly alike; another user
// from another address is not held back; every attempt is audited.
func TestGuardThrottlesGuessing(t *testing.T) {
	ctx := context.Background()
	for _, user := range []string{"alice", "mallory-does-not-exist"} {
		t.Run(user, func(t *testing.T) {
			c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			rec := &recorder{}
			g := newGuard(c, rec)
			var throttled, wrong int
			for i := range 401 {
				pw := fmt.Sprintf("guess-%d", i)
				if i == 400 {
					pw = asrv.DemoPassword
				}
				err := signIn(ctx, g, user, pw, "192.0.2.1:1000")
				switch {
				case errors.Is(err, signin.ErrThrottled):
					throttled++
				case err != nil:
					wrong++
				default:
					t.Fatalf("attempt %d signed in", i)
				}
			}
			if wrong != 5 || throttled != 396 {
				t.Fatalf("%d checked, %d throttled; want the 5 free attempts checked and the rest throttled", wrong, throttled)
			}
			var te *signin.ThrottledError
			if err := signIn(ctx, g, user, "x", "192.0.2.1:1000"); !errors.As(err, &te) || te.RetryAfter != time.Second {
				t.Fatalf("first back-off: %v, want 1s", err)
			}
			c.add(time.Second)
			if err := signIn(ctx, g, user, "x", "192.0.2.9:1000"); err == nil || errors.Is(err, signin.ErrThrottled) {
				t.Fatalf("after the wait, an attempt is checked: %v", err)
			}
			if err := signIn(ctx, g, user, "x", "192.0.2.9:1000"); !errors.As(err, &te) || te.RetryAfter != 2*time.Second {
				t.Fatalf("second back-off: %v, want 2s", err)
			}
			if err := signIn(ctx, g, "bob", asrv.DemoPassword, "198.51.100.1:1"); err != nil {
				t.Fatalf("bob from elsewhere: %v", err)
			}
			got := rec.outcomes()
			if len(got) != 405 || got[0] != signin.Failure || got[5] != signin.Throttled || got[404] != signin.Success {
				t.Fatalf("audited %d events (%v…), want every attempt", len(got), got[:6])
			}
		})
	}
}

// TestGuardKnownAddressOutlastsGuessing: someone who knows a user name and
// fails once each time the wait ends, from addresses of their own, holds
// that user back from every address but those the user signed in from
// lately; guessing from such an address is held back as from any other;
// and the exemption ends after KnownFor.
func TestGuardKnownAddressOutlastsGuessing(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := signin.New(signin.Config{
		User:         throttle.BackoffConfig{Free: 5, Base: time.Second, Max: 15 * time.Minute},
		Address:      throttle.BackoffConfig{Free: 20, Base: time.Second, Max: 15 * time.Minute},
		KnownFor:     30 * 24 * time.Hour,
		FailureFloor: time.Millisecond, Audit: &recorder{}, Now: c.now,
	})
	const home, elsewhere = "192.0.2.10:1", "198.51.100.7:1"
	if err := signIn(ctx, g, "alice", asrv.DemoPassword, home); err != nil {
		t.Fatal(err)
	}
	// An hour of failing once each time the wait ends, from 60 addresses.
	var te *signin.ThrottledError
	for i := range 3600 {
		attacker := fmt.Sprintf("203.0.113.%d:1", i%60)
		if err := signIn(ctx, g, "alice", "guess", attacker); errors.As(err, &te) {
			c.add(te.RetryAfter)
		} else {
			c.add(time.Second)
		}
	}
	if err := signIn(ctx, g, "alice", asrv.DemoPassword, elsewhere); !errors.Is(err, signin.ErrThrottled) {
		t.Fatalf("alice from an address she never signed in from: %v, want throttled", err)
	}
	if err := signIn(ctx, g, "alice", asrv.DemoPassword, home); err != nil {
		t.Fatalf("alice from home, whatever was tried elsewhere: %v", err)
	}
	// Guessing from her address (a shared NAT, say) is held back there.
	for range 5 {
		if err := signIn(ctx, g, "alice", "guess", home); err == nil || errors.Is(err, signin.ErrThrottled) {
			t.Fatalf("a free failure from home: %v", err)
		}
	}
	if err := signIn(ctx, g, "alice", "guess", home); !errors.Is(err, signin.ErrThrottled) {
		t.Fatalf("a sixth failure from home in a row: %v, want throttled", err)
	}
	// 31 days on (and the back-off forgotten), home is an address like any other.
	c.add(31 * 24 * time.Hour)
	for range 5 {
		_ = signIn(ctx, g, "alice", "guess", "203.0.113.200:1")
	}
	if err := signIn(ctx, g, "alice", asrv.DemoPassword, home); !errors.Is(err, signin.ErrThrottled) {
		t.Fatalf("alice from home after KnownFor: %v, want throttled", err)
	}
}

// TestGuardKnownAddressesAreThePersons: what makes an address known for a
// user is a sign-in under that user name exactly: not one under a name
// that differs in case (another account of a case-sensitive users file),
// and another account signing in from many addresses does not push the
// user's out; nor does a success clear the user name's count across
// addresses for guessing elsewhere.
func TestGuardKnownAddressesAreThePersons(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := signin.New(signin.Config{
		User:         throttle.BackoffConfig{Free: 5, Base: time.Second, Max: 15 * time.Minute},
		Address:      throttle.BackoffConfig{Free: 20, Base: time.Second, Max: 15 * time.Minute},
		MaxKnown:     4,
		FailureFloor: time.Millisecond, Audit: &recorder{}, Now: c.now,
	})
	succeed := func(user, addr string) {
		t.Helper()
		p, err := g.Begin(ctx, signin.Attempt{Surface: "test", Username: user, RemoteAddr: addr})
		if err != nil {
			t.Fatalf("%s from %s: %v", user, addr, err)
		}
		p.Done(ctx, true) // as a users file that has this name would
	}
	const home, attackers = "192.0.2.10:1", "203.0.113.9:1"
	succeed("alice", home)
	succeed("ALICE", attackers) // another account, or a name that differs in case
	for i := range 100 {
		succeed("mallory", fmt.Sprintf("198.51.100.%d:1", i))
	}
	for range 4 {
		_ = signIn(ctx, g, "alice", "guess", "203.0.113.20:1")
	}
	// A success from another account does not clear the count.
	succeed("ALICE", "203.0.113.30:1")
	_ = signIn(ctx, g, "alice", "guess", "203.0.113.20:1")
	if err := signIn(ctx, g, "alice", "guess", "203.0.113.21:1"); !errors.Is(err, signin.ErrThrottled) {
		t.Fatalf("guessing alice from elsewhere after ALICE signed in: %v, want throttled", err)
	}
	if err := signIn(ctx, g, "alice", asrv.DemoPassword, attackers); !errors.Is(err, signin.ErrThrottled) {
		t.Fatalf("alice from where ALICE signed in: %v, want throttled", err)
	}
	if err := signIn(ctx, g, "alice", asrv.DemoPassword, home); err != nil {
		t.Fatalf("alice from home, after mallory signed in from 100 addresses: %v", err)
	}
}

// TestGuardThrottlesAnAddressAcrossUsers: one address spraying many user
// names is held back after its free failures; a success from it is not
// counted as one; and a correct password resets the user's count.
func TestGuardThrottlesAnAddressAcrossUsers(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := newGuard(c, &recorder{})
	if err := signIn(ctx, g, "carol", asrv.DemoPassword, "203.0.113.5:1"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := signIn(ctx, g, fmt.Sprintf("user-%d", i), "wrong", "203.0.113.5:1"); errors.Is(err, signin.ErrThrottled) {
			t.Fatalf("attempt %d throttled before the address's 20 free failures", i)
		}
	}
	if err := signIn(ctx, g, "bob", asrv.DemoPassword, "203.0.113.5:2"); !errors.Is(err, signin.ErrThrottled) {
		t.Fatalf("the address after 20 failures: %v, want throttled", err)
	}
	if err := signIn(ctx, g, "bob", asrv.DemoPassword, "[2001:db8::1]:1"); err != nil {
		t.Fatalf("bob from another address: %v", err)
	}

	for range 4 {
		_ = signIn(ctx, g, "alice", "wrong", "198.51.100.7:1")
	}
	if err := signIn(ctx, g, "alice", asrv.DemoPassword, "198.51.100.7:1"); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := signIn(ctx, g, "alice", "wrong", "198.51.100.7:1"); errors.Is(err, signin.ErrThrottled) {
			t.Fatalf("after a success, attempt %d is throttled: the count was not reset", i)
		}
	}
}

// TestGuardConcurrentGuesses: a burst of concurrent guesses gets no more
// checks than the free ones.
func TestGuardConcurrentGuesses(t *testing.T) {
	ctx := context.Background()
	g := newGuard(&clock{t: time.Unix(0, 0)}, &recorder{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		checked int
	)
	for i := range 200 {
		wg.Go(func() {
			err := signIn(ctx, g, "alice", fmt.Sprintf("guess-%d", i), fmt.Sprintf("192.0.2.%d:1", i%250))
			if !errors.Is(err, signin.ErrThrottled) {
				mu.Lock()
				checked++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if checked != 5 {
		t.Fatalf("%d of 200 concurrent guesses were checked, want 5", checked)
	}
}

// TestGuardFailureFloor: a failed attempt is answered no sooner than the
// floor, whatever the user source took; a success is not delayed by it.
func TestGuardFailureFloor(t *testing.T) {
	ctx := context.Background()
	g := signin.New(signin.Config{FailureFloor: 50 * time.Millisecond})
	for _, user := range []string{"alice", "nobody"} {
		start := time.Now()
		_ = signIn(ctx, g, user, "wrong", "192.0.2.1:1")
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Fatalf("a failure for %s answered after %v, before the 50ms floor", user, d)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	p, err := g.Begin(cancelled, signin.Attempt{Username: "carol", RemoteAddr: "192.0.2.2:1"})
	if err != nil {
		t.Fatal(err)
	}
	p.Done(cancelled, false) // returns at once: the request is gone
}

// BenchmarkGuardFailure: the time a wrong password and an unknown user
// take through the guard (the floor dominates both).
func BenchmarkGuardFailure(b *testing.B) {
	for _, user := range []string{"alice", "nobody"} {
		b.Run("user="+user, func(b *testing.B) {
			g := signin.New(signin.Config{User: throttle.BackoffConfig{Free: 1 << 30}, Address: throttle.BackoffConfig{Free: 1 << 30}})
			for b.Loop() {
				_ = signIn(context.Background(), g, user, "wrong", "192.0.2.1:1")
			}
		})
	}
}

func TestFormsTokens(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	key := bytes.Repeat([]byte("k"), 32)
	f, err := signin.NewForms(key, 10*time.Minute, signin.NewMemorySpender(100, 0, c.now), c.now)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := signin.NewForms(bytes.Repeat([]byte("o"), 32), 10*time.Minute, signin.NewMemorySpender(100, 0, c.now), c.now)
	binding := []byte("authorization request 1")
	for _, tc := range []struct {
		name    string
		token   func() string
		cookie  string
		binding []byte
		want    error
	}{
		{"issued for this browser and request", func() string { return f.Issue("cookie-a", binding) }, "cookie-a", binding, nil},
		{"double submit of a made-up value", func() string { return "x" }, "x", binding, signin.ErrFormInvalid},
		{"another browser's cookie", func() string { return f.Issue("cookie-a", binding) }, "cookie-b", binding, signin.ErrFormInvalid},
		{"no cookie", func() string { return f.Issue("", binding) }, "", binding, signin.ErrFormInvalid},
		{"another authorization request", func() string { return f.Issue("cookie-a", binding) }, "cookie-a", []byte("request 2"), signin.ErrFormInvalid},
		{"another server's key", func() string { return other.Issue("cookie-a", binding) }, "cookie-a", binding, signin.ErrFormInvalid},
		{"tampered", func() string {
			tok := []byte(f.Issue("cookie-a", binding))
			tok[5] ^= 1
			return string(tok)
		}, "cookie-a", binding, signin.ErrFormInvalid},
		{"expired", func() string {
			tok := f.Issue("cookie-a", binding)
			c.add(10 * time.Minute)
			return tok
		}, "cookie-a", binding, signin.ErrFormExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := f.Check(ctx, tc.token(), tc.cookie, tc.binding); !errors.Is(err, tc.want) && err != tc.want {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("used once", func(t *testing.T) {
		tok := f.Issue("cookie-a", binding)
		if err := f.Check(ctx, tok, "cookie-a", binding); err != nil {
			t.Fatal(err)
		}
		if err := f.Check(ctx, tok, "cookie-a", binding); !errors.Is(err, signin.ErrFormExpired) {
			t.Fatalf("replayed: %v, want ErrFormExpired", err)
		}
	})
	t.Run("verified without spending", func(t *testing.T) {
		tok := f.Issue("cookie-a", binding)
		for range 2 {
			if _, err := f.Verify(tok, "cookie-a", binding); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.Verify(tok, "cookie-b", binding); !errors.Is(err, signin.ErrFormInvalid) {
			t.Fatalf("another browser's cookie: %v, want ErrFormInvalid", err)
		}
		if err := f.Check(ctx, tok, "cookie-a", binding); err != nil {
			t.Fatalf("spent after two verifications: %v", err)
		}
	})
	t.Run("bounded memory", func(t *testing.T) {
		small, _ := signin.NewForms(key, time.Minute, signin.NewMemorySpender(3, 0, c.now), c.now)
		for range 3 {
			if err := small.Check(ctx, small.Issue("c", nil), "c", nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := small.Check(ctx, small.Issue("c", nil), "c", nil); !errors.Is(err, signin.ErrSpenderFull) {
			t.Fatalf("a full spender: %v, want ErrSpenderFull", err)
		}
		c.add(time.Minute)
		if err := small.Check(ctx, small.Issue("c", nil), "c", nil); err != nil {
			t.Fatalf("after the others expired: %v", err)
		}
	})
}

// TestMemorySpenderPerKey: one key (a client address) holds at most perKey
// nonces at once, so it cannot fill the table for the others; a spent
// nonce stays spent whoever presents it, and a key's nonces count again
// only once they expire.
func TestMemorySpenderPerKey(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := signin.NewMemorySpender(4, 2, c.now)
	for i, step := range []struct {
		wait       time.Duration
		key, nonce string
		fresh      bool
		err        error
	}{
		{0, "192.0.2.1", "a", true, nil},
		{0, "192.0.2.1", "b", true, nil},
		{0, "192.0.2.1", "c", false, signin.ErrSpenderKeyFull},
		{0, "192.0.2.1", "a", false, nil},
		{0, "192.0.2.2", "a", false, nil},
		{0, "192.0.2.2", "c", true, nil},
		{0, "", "d", true, nil},
		{0, "192.0.2.3", "e", false, signin.ErrSpenderFull},
		{time.Minute, "192.0.2.1", "e", true, nil},
		{0, "192.0.2.1", "a", true, nil},
		{0, "192.0.2.1", "f", false, signin.ErrSpenderKeyFull},
	} {
		c.add(step.wait)
		fresh, err := m.SpendFor(step.key, step.nonce, c.now().Add(time.Minute))
		if fresh != step.fresh || !errors.Is(err, step.err) {
			t.Fatalf("step %d (%s spends %s): %v, %v; want %v, %v", i, step.key, step.nonce, fresh, err, step.fresh, step.err)
		}
	}
}

// FuzzFormToken: a token passes only for the browser and request it was
// issued for, once, and no byte of it can change.
func FuzzFormToken(f *testing.F) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	forms, err := signin.NewForms(bytes.Repeat([]byte("k"), 32), time.Hour, signin.NewMemorySpender(1<<20, 0, c.now), c.now)
	if err != nil {
		f.Fatal(err)
	}
	issued := forms.Issue("cookie", []byte("req"))
	f.Add(issued, "cookie")
	f.Add(issued[:len(issued)-1], "cookie")
	f.Add("", "")
	f.Add("AQ", "cookie")
	f.Add(issued+"A", "cookie")
	f.Fuzz(func(t *testing.T, token, cookie string) {
		if forms.Check(context.Background(), token, cookie, []byte("req")) != nil {
			return
		}
		if cookie != "cookie" {
			t.Fatalf("Check(%q, %q) passed for another browser", token, cookie)
		}
		if forms.Check(context.Background(), token, cookie, []byte("req")) == nil {
			t.Fatalf("Check(%q) passed twice", token)
		}
		raw, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			t.Fatalf("a token that passed does not decode: %v", err)
		}
		for i := range raw {
			mutated := bytes.Clone(raw)
			mutated[i] ^= 0x01
			if forms.Check(context.Background(), base64.RawURLEncoding.EncodeToString(mutated), cookie, []byte("req")) == nil {
				t.Fatalf("byte %d of a token changed and it still passed", i)
			}
		}
	})
}
