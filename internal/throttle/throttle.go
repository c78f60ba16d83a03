// Package throttle limits what one key — a client address, a user name —
// may do, in bounded memory: a token bucket per key (Limiter) for how often
// it may act, and a failure back-off per key (Backoff) for how often it may
// fail. Both are safe for concurrent use and hold at most a configured
// number of keys: when full they forget the keys that no longer hold
// anything back first, then arbitrary ones (an attacker who floods keys to
// push a victim's out has to get through the same limits with every one).
package throttle

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// evictSample is how many keys a full table looks at to find one to drop.
const evictSample = 32

// Limiter is a token bucket per key: Rate tokens a second up to Burst.
type Limiter struct {
	rate    float64
	burst   float64
	maxKeys int
	now     func() time.Time

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewLimiter returns a limiter allowing each key burst actions at once and
// rate a second after that, for at most maxKeys keys (rate > 0, burst >= 1;
// a nil now is time.Now).
func NewLimiter(rate float64, burst, maxKeys int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{rate: rate, burst: float64(max(burst, 1)), maxKeys: max(maxKeys, 1), now: now, m: map[string]*bucket{}}
}

// Allow takes a token for key. When there is none it takes nothing and
// says how long until there is.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[key]
	if b == nil {
		if len(l.m) >= l.maxKeys {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.m[key] = b
	}
	b.refill(now, l.rate, l.burst)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration(math.Ceil((1-b.tokens)/l.rate*1e9)) * time.Nanosecond
}

func (b *bucket) refill(now time.Time, rate, burst float64) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.at = now
	}
}

// evict drops the full buckets (they hold nothing back); if none is full
// it drops one of a sample, the fullest.
func (l *Limiter) evict(now time.Time) {
	for k, b := range l.m {
		b.refill(now, l.rate, l.burst)
		if b.tokens >= l.burst {
			delete(l.m, k)
		}
	}
	if len(l.m) < l.maxKeys {
		return
	}
	var victim string
	best, n := -1.0, 0
	for k, b := range l.m {
		if b.tokens > best {
			victim, best = k, b.tokens
		}
		if n++; n >= evictSample {
			break
		}
	}
	delete(l.m, victim)
}

// Len is how many keys the limiter holds.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// BackoffConfig shapes a Backoff.
type BackoffConfig struct {
	// Free is how many failures a key may have before it must wait.
	Free int
	// Base is the first wait; each further failure doubles it, up to Max.
	Base, Max time.Duration
	// Forget clears a key's failures after this long without one.
	Forget time.Duration
	// MaxKeys bounds the keys held.
	MaxKeys int
}

// Backoff counts failures per key and makes a key that failed more than
// Free times wait before its next attempt, twice as long after each
// further failure. An attempt counts as a failure from its start (so a
// burst of concurrent attempts cannot all slip in before the first fails)
// and is taken back when it succeeds.
type Backoff struct {
	cfg BackoffConfig
	now func() time.Time

	mu sync.Mutex
	m  map[string]*record
}

type record struct {
	failures int
	last     time.Time // the last failure counted
	until    time.Time // no attempt before
}

// NewBackoff returns a back-off (a nil now is time.Now). Zero fields of cfg
// take defaults: Free 5, Base 1 s, Max 15 min, Forget 1 h, MaxKeys 65536.
func NewBackoff(cfg BackoffConfig, now func() time.Time) *Backoff {
	if cfg.Free <= 0 {
		cfg.Free = 5
	}
	if cfg.Base <= 0 {
		cfg.Base = time.Second
	}
	if cfg.Max < cfg.Base {
		cfg.Max = max(15*time.Minute, cfg.Base)
	}
	if cfg.Forget <= 0 {
		cfg.Forget = time.Hour
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 1 << 16
	}
	if now == nil {
		now = time.Now
	}
	return &Backoff{cfg: cfg, now: now, m: map[string]*record{}}
}

// Config is the back-off's configuration, defaults filled in.
func (b *Backoff) Config() BackoffConfig { return b.cfg }

// Wait is how long key must wait before its next attempt (0: it may try
// now), counting nothing.
func (b *Backoff) Wait(key string) time.Duration {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.m[key]; r != nil && now.Before(r.until) {
		return r.until.Sub(now)
	}
	return 0
}

// Begin starts an attempt of key: when key must wait it counts nothing and
// says how long; otherwise it counts a failure (taken back by Succeeded)
// and returns 0.
func (b *Backoff) Begin(key string) (retryAfter time.Duration) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.m[key]
	if r != nil && now.Before(r.until) {
		return r.until.Sub(now)
	}
	if r == nil {
		if len(b.m) >= b.cfg.MaxKeys {
			b.evict(now)
		}
		r = &record{}
		b.m[key] = r
	}
	if now.Sub(r.last) > b.cfg.Forget {
		r.failures = 0
	}
	r.failures++
	r.last = now
	r.until = now.Add(b.delay(r.failures))
	return 0
}

// Succeeded takes back the failure Begin counted; with reset it forgets
// the key altogether (the user proved who they are).
func (b *Backoff) Succeeded(key string, reset bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.m[key]
	if r == nil {
		return
	}
	if reset {
		delete(b.m, key)
		return
	}
	if r.failures > 0 {
		r.failures--
	}
	r.until = r.last.Add(b.delay(r.failures))
}

// delay is the wait after n failures: none before Free, Base after the
// Free-th, doubling with each further one up to Max.
func (b *Backoff) delay(n int) time.Duration {
	over := n - b.cfg.Free + 1
	if over <= 0 {
		return 0
	}
	d := b.cfg.Base
	for i := 1; i < over && d < b.cfg.Max; i++ {
		d *= 2
	}
	return min(d, b.cfg.Max)
}

// evict drops the keys that hold nothing back any more; if none, one of a
// sample that waits least.
func (b *Backoff) evict(now time.Time) {
	for k, r := range b.m {
		if !now.Before(r.until) && now.Sub(r.last) > b.cfg.Forget {
			delete(b.m, k)
		}
	}
	if len(b.m) < b.cfg.MaxKeys {
		return
	}
	var victim string
	var soonest time.Time
	n := 0
	for k, r := range b.m {
		if n == 0 || r.until.Before(soonest) {
			victim, soonest = k, r.until
		}
		if n++; n >= evictSample {
			break
		}
	}
	delete(b.m, victim)
}

// Len is how many keys the back-off holds.
func (b *Backoff) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// AddressKey is the key of a client address ("host:port" or a bare IP):
// the IPv4 address, or the IPv6 /64 (one host usually holds a whole /64).
// Anything else is its own key.
func AddressKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p.String()
}
