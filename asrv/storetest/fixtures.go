package storetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
)

// What a store package's own tests (durability, raw bytes at rest, its
// clock option) build their data from, so that every backend is checked
// with the same clients and requests.

// NewClient returns an unregistered confidential client with id, allowed
// the code and refresh grants.
func NewClient(id string) *asrv.Client {
	return &asrv.Client{
		ID:                      id,
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		Scopes:                  []string{"tools:read"},
		TokenEndpointAuthMethod: asrv.AuthMethodSecretBasic,
	}
}

// NewRequest returns a request of c with id whose form is SensitiveForm and
// whose tokens of every type expire an hour from now.
func NewRequest(c *asrv.Client, id string) *fosite.Request {
	sess := &asrv.Session{Subject: "alice", ClientID: c.ID}
	exp := time.Now().Add(time.Hour)
	sess.SetExpiresAt(fosite.AccessToken, exp)
	sess.SetExpiresAt(fosite.RefreshToken, exp)
	sess.SetExpiresAt(fosite.AuthorizeCode, exp)
	return &fosite.Request{
		ID:           id,
		RequestedAt:  time.Now().UTC(),
		Client:       c,
		GrantedScope: fosite.Arguments{"tools:read"},
		Form:         SensitiveForm(),
		Session:      sess,
	}
}

// WriteEveryKind stores n requests of the registered client c (their forms
// carrying the secrets NewRequest puts there) as every kind of token: code,
// PKCE, access and refresh, each under a random signature.
func WriteEveryKind(t *testing.T, s asrv.Store, c *asrv.Client, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		r := NewRequest(c, fmt.Sprintf("req-%d", i))
		sig := rand.Text()
		for _, err := range []error{
			s.CreateAuthorizeCodeSession(ctx, sig, r),
			s.CreatePKCERequestSession(ctx, sig, r),
			s.CreateAccessTokenSession(ctx, sig, r),
			s.CreateRefreshTokenSession(ctx, sig, sig, r),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Clock is a clock a test moves by hand, for a store's clock option; safe
// for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock reading now.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

// Now reads the clock.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
