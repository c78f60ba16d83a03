package asrv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/internal/throttle"
)

// RegistrationLimits bound dynamic client registration, which anybody may
// use: how often one address may register, how many clients there may be
// (in all, pending, and pending from one address), and how long an
// unverified registration that never obtained a code or a token (a
// pending client) is kept.
type RegistrationLimits struct {
	// PerAddressBurst registrations from one client address at once
	// (default 30), then one every PerAddressInterval (default 20 s).
	PerAddressBurst    int
	PerAddressInterval time.Duration
	// MaxClients caps the registered clients (default 10,000).
	MaxClients int
	// MaxPending caps the pending clients (default 1,000).
	MaxPending int
	// MaxPendingPerAddress caps the pending clients registered from one
	// client address (an IPv6 /64 is one, as for the rate limit): default
	// a twentieth of MaxPending (50 of 1,000). Without it one address,
	// one registration every PerAddressInterval, fills MaxPending in
	// hours and holds it for as long as pending clients live, and every
	// unverified registration from anywhere else is refused. It is
	// counted per process (see registrations.pendingFrom).
	MaxPendingPerAddress int
	// PendingTTL is how long a pending client is kept (default 24 h).
	PendingTTL time.Duration
}

func (l RegistrationLimits) withDefaults() RegistrationLimits {
	if l.PerAddressBurst <= 0 {
		l.PerAddressBurst = 30
	}
	if l.PerAddressInterval <= 0 {
		l.PerAddressInterval = 20 * time.Second
	}
	if l.MaxClients <= 0 {
		l.MaxClients = 10_000
	}
	if l.MaxPending <= 0 {
		l.MaxPending = 1_000
	}
	if l.MaxPendingPerAddress <= 0 {
		l.MaxPendingPerAddress = max(1, l.MaxPending/20)
	}
	if l.PendingTTL <= 0 {
		l.PendingTTL = 24 * time.Hour
	}
	return l
}

// Registration refusals callers branch on (besides *RegistrationError).
var (
	// ErrRegistrationFull means the AS holds as many clients, or pending
	// clients, as it may: 503, try later.
	ErrRegistrationFull = errors.New("the authorization server holds as many registrations as it may")
	// ErrAddressPendingFull means the registering address holds as many
	// pending clients as one address may (MaxPendingPerAddress): 429, try
	// later.
	ErrAddressPendingFull = errors.New("this address holds as many unverified registrations without a code or token as it may")
)

// pendingSweepEvery is how often registration deletes expired pending
// clients at most.
const pendingSweepEvery = time.Minute

// maxRegistrationAddresses bounds the addresses the rate limit remembers.
const maxRegistrationAddresses = 1 << 16

// registrations is the registration endpoint's state: the per-address rate
// limit, the pending clients registered from each address, and the lock
// and clock of the caps.
type registrations struct {
	limits  RegistrationLimits
	perAddr *throttle.Limiter
	now     func() time.Time

	// mu makes this process's count-then-create one step (replicas may
	// each overshoot a cap by their concurrent registrations), and
	// guards what follows.
	mu        sync.Mutex
	lastSweep time.Time
	// pendingFrom holds, per address (throttle.AddressKey), the clients
	// this process registered from it unverified, which the store may
	// still count as pending. The store does not keep where a client
	// registered from, so the bound per address is per process: a
	// restart, or another replica, starts from none.
	pendingFrom map[string][]registeredAt
}

// registeredAt is a client registered, and when.
type registeredAt struct {
	id string
	at time.Time
}

func newRegistrations(l RegistrationLimits, now func() time.Time) *registrations {
	return &registrations{limits: l, now: now,
		perAddr:     throttle.NewLimiter(1/l.PerAddressInterval.Seconds(), l.PerAddressBurst, maxRegistrationAddresses, now),
		pendingFrom: map[string][]registeredAt{}}
}

// admission is how admitClient holds a client to the caps.
type admission struct {
	// from is the registering client address (throttle.AddressKey), ""
	// when the client did not register over HTTP.
	from string
	// granted: policy has already allowed the client a grant whose code
	// or token is issued right after it is stored (a metadata document's
	// client on its first one). It is pending only until then, so the
	// pending caps do not refuse it; MaxClients does.
	granted bool
}

// admitClient holds a client to the caps as a says and, when admitted,
// stores c under the lock. Expired pending clients are deleted first (at
// most once a minute), so they never count against the caps for long.
func (s *Server) admitClient(ctx context.Context, c *Client, a admission) error {
	r := s.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.lastSweep) >= pendingSweepEvery {
		if err := s.sweepPending(ctx, now); err != nil {
			return err
		}
		r.lastSweep = now
	}
	total, pending, err := s.store.CountClients(ctx)
	if err != nil {
		return err
	}
	switch {
	case total >= r.limits.MaxClients:
		return fmt.Errorf("%w (%d clients)", ErrRegistrationFull, total)
	case !c.Agent.Verified && !a.granted && pending >= r.limits.MaxPending:
		return fmt.Errorf("%w (%d unverified clients without a token yet)", ErrRegistrationFull, pending)
	}
	counted := !c.Agent.Verified && !a.granted && a.from != ""
	if counted {
		n, err := s.pendingFromAddress(ctx, a.from, now)
		if err != nil {
			return err
		}
		if n >= r.limits.MaxPendingPerAddress {
			return fmt.Errorf("%w (%d from %s)", ErrAddressPendingFull, n, a.from)
		}
	}
	if err := s.store.CreateClient(ctx, c); err != nil {
		return fmt.Errorf("store client: %w", err)
	}
	if counted {
		r.pendingFrom[a.from] = append(r.pendingFrom[a.from], registeredAt{id: c.ID, at: now})
	}
	return nil
}

// sweepPending deletes the pending clients older than PendingTTL, and
// forgets, of the clients registered from each address, those no longer
// pending (expired, deleted, or with a code or token by now), so what
// pendingFrom holds stays about as large as the pending clients are many.
// The caller holds s.reg.mu.
func (s *Server) sweepPending(ctx context.Context, now time.Time) error {
	r := s.reg
	n, err := s.store.DeletePendingClients(ctx, now.Add(-r.limits.PendingTTL))
	if err != nil {
		return fmt.Errorf("delete expired pending clients: %w", err)
	}
	if n > 0 {
		s.log.InfoContext(ctx, "deleted pending clients: unverified, no code or token within their time", "count", n, "ttl", r.limits.PendingTTL)
	}
	if len(r.pendingFrom) == 0 {
		return nil
	}
	pending, err := s.store.PendingClients(ctx)
	if err != nil {
		return fmt.Errorf("list pending clients: %w", err)
	}
	for addr, regs := range r.pendingFrom {
		regs = slices.DeleteFunc(regs, func(p registeredAt) bool { _, ok := pending[p.id]; return !ok })
		if len(regs) == 0 {
			delete(r.pendingFrom, addr)
		} else {
			r.pendingFrom[addr] = regs
		}
	}
	return nil
}

// pendingFromAddress counts the clients registered from the address from
// that are still pending: those registered less than PendingTTL ago and,
// when they are as many as the address may hold, that the store still
// lists as pending (some may have obtained a code or token since). The
// caller holds s.reg.mu.
func (s *Server) pendingFromAddress(ctx context.Context, from string, now time.Time) (int, error) {
	r := s.reg
	regs := slices.DeleteFunc(r.pendingFrom[from], func(p registeredAt) bool { return now.Sub(p.at) >= r.limits.PendingTTL })
	if len(regs) >= r.limits.MaxPendingPerAddress {
		pending, err := s.store.PendingClients(ctx)
		if err != nil {
			return 0, fmt.Errorf("list pending clients: %w", err)
		}
		regs = slices.DeleteFunc(regs, func(p registeredAt) bool { _, ok := pending[p.id]; return !ok })
	}
	if len(regs) == 0 {
		delete(r.pendingFrom, from)
	} else {
		r.pendingFrom[from] = regs
	}
	return len(regs), nil
}
