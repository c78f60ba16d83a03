package asrv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/internal/throttle"
)

// RegistrationLimits bound dynamic client registration, which anybody may
// use: how often one address may register, how many clients there may be,
// and how long an unverified registration that never obtained a code or a
// token (a pending client) is kept.
type RegistrationLimits struct {
	// PerAddressBurst registrations from one client address at once
	// (default 30), then one every PerAddressInterval (default 20 s).
	PerAddressBurst    int
	PerAddressInterval time.Duration
	// MaxClients caps the registered clients (default 10,000).
	MaxClients int
	// MaxPending caps the pending clients (default 1,000).
	MaxPending int
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
)

// pendingSweepEvery is how often registration deletes expired pending
// clients at most.
const pendingSweepEvery = time.Minute

// maxRegistrationAddresses bounds the addresses the rate limit remembers.
const maxRegistrationAddresses = 1 << 16

// registrations is the registration endpoint's state: the per-address rate
// limit, and the lock and clock of the caps.
type registrations struct {
	limits  RegistrationLimits
	perAddr *throttle.Limiter
	now     func() time.Time

	// mu makes this process's count-then-create one step (replicas may
	// each overshoot a cap by their concurrent registrations).
	mu        sync.Mutex
	lastSweep time.Time
}

func newRegistrations(l RegistrationLimits, now func() time.Time) *registrations {
	return &registrations{limits: l, now: now,
		perAddr: throttle.NewLimiter(1/l.PerAddressInterval.Seconds(), l.PerAddressBurst, maxRegistrationAddresses, now)}
}

// admitClient holds a registration to the caps and, when admitted, stores c
// under the lock. Expired pending clients are deleted first (at most once
// a minute), so they never count against the caps for long.
func (s *Server) admitClient(ctx context.Context, c *Client) error {
	r := s.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.lastSweep) >= pendingSweepEvery {
		n, err := s.store.DeletePendingClients(ctx, now.Add(-r.limits.PendingTTL))
		if err != nil {
			return fmt.Errorf("delete expired pending clients: %w", err)
		}
		r.lastSweep = now
		if n > 0 {
			s.log.InfoContext(ctx, "deleted pending clients: unverified, no code or token within their time", "count", n, "ttl", r.limits.PendingTTL)
		}
	}
	total, pending, err := s.store.CountClients(ctx)
	if err != nil {
		return err
	}
	switch {
	case total >= r.limits.MaxClients:
		return fmt.Errorf("%w (%d clients)", ErrRegistrationFull, total)
	case !c.Agent.Verified && pending >= r.limits.MaxPending:
		return fmt.Errorf("%w (%d unverified clients without a token yet)", ErrRegistrationFull, pending)
	}
	if err := s.store.CreateClient(ctx, c); err != nil {
		return fmt.Errorf("store client: %w", err)
	}
	return nil
}
