// Package signin guards password sign-in pages, whatever the users'
// source (the demo users now, an organisation's directory later): a Guard
// throttles attempts per user name and per client address with back-off,
// gives unknown users and wrong passwords the same answer in the same time,
// and reports every attempt to a log and an Auditor; Forms issues the
// sign-in forms' CSRF tokens, each bound to the browser, to what is being
// signed in to and to server-side state that spends it once.
//
// The authorization server's sign-in page and the dashboard's share one
// Guard, so failures on either count against the same user and address.
package signin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/internal/throttle"
)

// ErrThrottled means an attempt was refused unchecked: the user name or
// the address failed too often lately. Errors from Begin wrap it in a
// *ThrottledError.
var ErrThrottled = errors.New("too many failed sign-in attempts")

// ThrottledError says how long to wait.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%v: try again in %s", ErrThrottled, e.RetryAfter.Round(time.Second))
}

func (e *ThrottledError) Unwrap() error { return ErrThrottled }

// Outcome is what became of an attempt.
type Outcome string

// Outcomes.
const (
	Success   Outcome = "success"
	Failure   Outcome = "failure"
	Throttled Outcome = "throttled"
)

// Event is one sign-in attempt, for the audit trail.
type Event struct {
	Time time.Time
	// Surface is the page: "authorize" (the AS's sign-in) or "dashboard".
	Surface string
	// Username is as typed, at most MaxUsername bytes.
	Username string
	// Address is the client address's throttle key (IPv4, or IPv6 /64).
	Address string
	Outcome Outcome
	// RetryAfter is set when Outcome is Throttled.
	RetryAfter time.Duration
}

// Auditor receives every attempt's event. It must not block for long: it
// runs in the request.
type Auditor interface {
	SignInAttempt(ctx context.Context, e Event)
}

// AuditorFunc adapts a function to Auditor.
type AuditorFunc func(ctx context.Context, e Event)

// SignInAttempt implements Auditor.
func (f AuditorFunc) SignInAttempt(ctx context.Context, e Event) { f(ctx, e) }

// MaxUsername bounds the user names the guard keys by and reports.
const MaxUsername = 256

// Config configures a Guard; the zero value has sensible defaults.
//
// A user name is throttled twice: from each address (User), and from all
// of them together (User as well), which holds back guessing spread over
// many addresses. The second alone would let anyone who knows a user name
// keep that person out, by failing once each time the wait ends; so an
// address the person signed in from lately (KnownFor) is held only to
// the first, and the person signs in from it whatever is tried from
// elsewhere. Guessing from that address is still held back, by the first.
type Config struct {
	// User throttles per user name (default: 5 free failures, then 1 s
	// doubling to 15 min, forgotten after an hour without one), from each
	// address and from all of them together.
	User throttle.BackoffConfig
	// KnownFor is how long an address a user signed in from is exempt
	// from that user's throttle across addresses (default 30 days); the
	// addresses of at most MaxKnown users are remembered (default 65536;
	// beyond, the user seen least recently is forgotten), 16 a user.
	KnownFor time.Duration
	MaxKnown int
	// Address throttles per client address (default: 20 free failures,
	// then the same back-off): several people may share an address.
	Address throttle.BackoffConfig
	// FailureFloor is the least time a failed attempt takes (default
	// 250 ms), so an unknown user and a wrong password answer alike
	// whatever the user source's own timing.
	FailureFloor time.Duration
	// Audit, when set, receives every attempt.
	Audit  Auditor
	Logger *slog.Logger
	Now    func() time.Time
}

// Guard throttles and audits sign-in attempts. It holds bounded memory and
// is safe for concurrent use.
type Guard struct {
	users, pairs, addrs *throttle.Backoff
	known               *knownPairs
	floor               time.Duration
	audit               Auditor
	log                 *slog.Logger
	now                 func() time.Time
}

// New builds a Guard.
func New(cfg Config) *Guard {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Address.Free <= 0 {
		cfg.Address.Free = 20
	}
	if cfg.FailureFloor <= 0 {
		cfg.FailureFloor = 250 * time.Millisecond
	}
	if cfg.KnownFor <= 0 {
		cfg.KnownFor = 30 * 24 * time.Hour
	}
	if cfg.MaxKnown <= 0 {
		cfg.MaxKnown = 1 << 16
	}
	return &Guard{
		users: throttle.NewBackoff(cfg.User, cfg.Now),
		pairs: throttle.NewBackoff(cfg.User, cfg.Now),
		known: &knownPairs{ttl: cfg.KnownFor, max: cfg.MaxKnown, m: map[string]*knownUser{}},
		addrs: throttle.NewBackoff(cfg.Address, cfg.Now),
		floor: cfg.FailureFloor,
		audit: cfg.Audit,
		log:   cfg.Logger,
		now:   cfg.Now,
	}
}

// Attempt is a sign-in about to be checked. Username may be empty (a
// sign-in by token): then only the address is throttled.
type Attempt struct {
	Surface, Username, RemoteAddr string
}

// Pending is an admitted attempt; its caller checks the credentials and
// calls Done once.
type Pending struct {
	g        *Guard
	a        Attempt
	userKey  string
	addrKey  string
	pairKey  string // the user name from this address; "" without a name
	known    bool   // the user signed in from this address lately
	counted  bool   // the attempt counts against the user name across addresses
	started  time.Time
	finished bool
}

// Begin admits an attempt, or refuses it unchecked with a *ThrottledError
// (the same for a user name that exists and one that does not). An
// admitted attempt counts as a failure until Done says otherwise.
func (g *Guard) Begin(ctx context.Context, a Attempt) (*Pending, error) {
	a.Username = truncate(a.Username)
	p := &Pending{g: g, a: a, userKey: userKey(a.Username), addrKey: throttle.AddressKey(a.RemoteAddr), started: g.now()}
	if p.userKey != "" {
		p.pairKey = p.userKey + "\x00" + p.addrKey
		p.known = g.known.has(a.Username, p.addrKey, p.started)
	}
	wait := g.addrs.Wait(p.addrKey)
	if p.userKey != "" {
		wait = max(wait, g.pairs.Wait(p.pairKey))
		if !p.known {
			wait = max(wait, g.users.Wait(p.userKey))
		}
	}
	if wait == 0 {
		wait = g.count(p)
	}
	if wait > 0 {
		g.report(ctx, p, Throttled, wait)
		return nil, &ThrottledError{RetryAfter: wait}
	}
	return p, nil
}

// count counts an admitted attempt as a failure of its address, its user
// name from that address and (but from a known address whose user must
// wait) its user name, until Done says otherwise; when one of them must
// wait after all (a concurrent attempt came first) it counts nothing and
// says how long.
func (g *Guard) count(p *Pending) time.Duration {
	if w := g.addrs.Begin(p.addrKey); w > 0 {
		return w
	}
	if p.userKey == "" {
		return 0
	}
	if w := g.pairs.Begin(p.pairKey); w > 0 {
		g.addrs.Succeeded(p.addrKey, false) // not attempted after all
		return w
	}
	if p.known && g.users.Wait(p.userKey) > 0 {
		return 0 // the user's throttle across addresses does not hold it
	}
	if w := g.users.Begin(p.userKey); w > 0 {
		g.addrs.Succeeded(p.addrKey, false)
		g.pairs.Succeeded(p.pairKey, false)
		return w
	}
	p.counted = true
	return 0
}

// Done records the attempt's outcome. A failure is answered no sooner than
// FailureFloor after Begin (or when ctx ends).
func (p *Pending) Done(ctx context.Context, ok bool) {
	if p == nil || p.finished {
		return
	}
	p.finished = true
	g := p.g
	if ok {
		g.addrs.Succeeded(p.addrKey, false)
		if p.userKey != "" {
			// The attempt is taken back from the user name's count across
			// addresses, which a success does not clear: a success (the
			// person's, or someone's whose name differs only in case)
			// must not give guessing elsewhere its free failures again.
			// From this address the person has proved who they are.
			if p.counted {
				g.users.Succeeded(p.userKey, false)
			}
			g.pairs.Succeeded(p.pairKey, true)
			g.known.add(p.a.Username, p.addrKey, g.now())
		}
		g.report(ctx, p, Success, 0)
		return
	}
	g.report(ctx, p, Failure, 0)
	if rest := g.floor - g.now().Sub(p.started); rest > 0 {
		t := time.NewTimer(rest)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

func (g *Guard) report(ctx context.Context, p *Pending, o Outcome, wait time.Duration) {
	e := Event{Time: g.now(), Surface: p.a.Surface, Username: p.a.Username, Address: p.addrKey, Outcome: o, RetryAfter: wait}
	level := slog.LevelInfo
	if o != Success {
		level = slog.LevelWarn
	}
	g.log.Log(ctx, level, "sign-in attempt", "surface", e.Surface, "username", e.Username, "address", e.Address,
		"outcome", string(o), "retry_after", wait.Round(time.Second))
	if g.audit != nil {
		g.audit.SignInAttempt(ctx, e)
	}
}

// userKey is the throttle key of a user name: trimmed and lower-cased, so
// variants of one name share a count whatever the user source makes of
// them.
func userKey(name string) string {
	return strings.ToLower(strings.TrimSpace(name))
}

func truncate(s string) string {
	if len(s) <= MaxUsername {
		return s
	}
	s = s[:MaxUsername]
	for len(s) > 0 && s[len(s)-1]&0xc0 == 0x80 { // do not cut a UTF-8 sequence
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] >= 0xc0 {
		s = s[:len(s)-1]
	}
	return s
}

// knownPairs remembers, for a while, the addresses each user signed in
// from: by the user name exactly as it signed in (a name that differs in
// case may be another person's), at most maxKnownPerUser addresses a user
// (their least recently used forgotten first, so one account's sign-ins
// from many addresses push out only its own) and max users (the least
// recently seen forgotten first).
type knownPairs struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]*knownUser
}

// maxKnownPerUser bounds the addresses remembered for one user.
const maxKnownPerUser = 16

type knownUser struct {
	last  time.Time            // the latest sign-in
	addrs map[string]time.Time // the last sign-in from each address
}

func (k *knownPairs) has(user, addr string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	u := k.m[user]
	if u == nil {
		return false
	}
	at, ok := u.addrs[addr]
	return ok && now.Sub(at) < k.ttl
}

func (k *knownPairs) add(user, addr string, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	u := k.m[user]
	if u == nil {
		if len(k.m) >= k.max {
			// Full: forget the user seen least recently (a scan, on a
			// successful sign-in only, and only once the table is full).
			var oldest string
			var at time.Time
			for name, v := range k.m {
				if oldest == "" || v.last.Before(at) {
					oldest, at = name, v.last
				}
			}
			delete(k.m, oldest)
		}
		u = &knownUser{addrs: map[string]time.Time{}}
		k.m[user] = u
	}
	if _, ok := u.addrs[addr]; !ok && len(u.addrs) >= maxKnownPerUser {
		var oldest string
		var at time.Time
		for a, t := range u.addrs {
			if oldest == "" || t.Before(at) {
				oldest, at = a, t
			}
		}
		delete(u.addrs, oldest)
	}
	u.addrs[addr], u.last = now, now
}
