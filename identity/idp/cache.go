package idp

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/identity"
)

// retryAfterFailure is how long a failed fetch is answered from memory
// (its error, or the stale value) before the provider is asked again: a
// provider that is down is not hammered by every sign-in.
const retryAfterFailure = 5 * time.Second

// cached is one document fetched from the provider (the discovery document
// or the key set) with its lifetime. One fetch runs at a time; callers wait
// for it no longer than their context allows.
type cached[T any] struct {
	sem chan struct{} // holds a token while a fetch runs

	mu        sync.Mutex
	val       T
	ok        bool
	fetchedAt time.Time
	expires   time.Time
	failedAt  time.Time
	failure   error
}

func newCached[T any]() *cached[T] {
	return &cached[T]{sem: make(chan struct{}, 1)}
}

// fresh returns the value while its lifetime lasts.
func (c *cached[T]) fresh(now time.Time) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.val, c.ok && now.Before(c.expires)
}

// refresh fetches the value again unless, once this caller's turn comes,
// need says the value it finds will do. A failed fetch leaves the old value
// in use for up to maxStale past its lifetime (logged); without one it is
// the error, repeated without asking again for retryAfterFailure.
func (c *cached[T]) refresh(ctx context.Context, now func() time.Time, need func(ok bool, fetchedAt, expires time.Time) bool,
	fetch func(context.Context) (T, time.Duration, error), log *slog.Logger, what string) (T, error) {
	var zero T
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return zero, fmt.Errorf("%w: waiting for the %s: %w", identity.ErrUnavailable, what, ctx.Err())
	}
	defer func() { <-c.sem }()

	c.mu.Lock()
	val, ok, fetchedAt, expires, failedAt, failure := c.val, c.ok, c.fetchedAt, c.expires, c.failedAt, c.failure
	c.mu.Unlock()
	t := now()
	if !need(ok, fetchedAt, expires) {
		return val, nil
	}
	if failure != nil && t.Sub(failedAt) < retryAfterFailure {
		if ok && t.Before(expires.Add(maxStale)) {
			return val, nil
		}
		return zero, failure
	}
	v, ttl, err := fetch(ctx)
	if err != nil && ctx.Err() != nil {
		return zero, err // the caller went away: not the provider's failure
	}
	t = now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.failedAt, c.failure = t, err
		if ok && t.Before(expires.Add(maxStale)) {
			log.WarnContext(ctx, "identity provider: using the cached "+what+" past its lifetime", "err", err, "expired", expires)
			return val, nil
		}
		return zero, err
	}
	c.val, c.ok, c.fetchedAt, c.expires, c.failure = v, true, t, t.Add(ttl), nil
	return v, nil
}

// expired is the usual need: no value, or its lifetime is over.
func expired(now func() time.Time) func(bool, time.Time, time.Time) bool {
	return func(ok bool, _, expires time.Time) bool { return !ok || !now().Before(expires) }
}
