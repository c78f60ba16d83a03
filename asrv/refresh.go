package asrv

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
)

// refreshGrantHandler is fosite's refresh grant, telling the store it
// reads through (refreshStore) which client presents the refresh token:
// only that token's own client gets its rotation grace period.
type refreshGrantHandler struct {
	*oauth2.RefreshTokenGrantHandler
}

var _ fosite.TokenEndpointHandler = refreshGrantHandler{}

type refreshingClientKey struct{}

func (h refreshGrantHandler) HandleTokenEndpointRequest(ctx context.Context, request fosite.AccessRequester) error {
	if c := request.GetClient(); c != nil {
		ctx = context.WithValue(ctx, refreshingClientKey{}, c.GetID())
	}
	return h.RefreshTokenGrantHandler.HandleTokenEndpointRequest(ctx, request)
}

// refreshStore is the store as the refresh grant reads it.
//
// The scopes of the grant a refresh token carries are narrowed to those
// clients may ask for now, so a scope the active policy no longer names is
// dropped from the refreshed token (policy narrows it further) instead of
// failing fosite's check against the client's scopes (invalid_scope).
//
// With a rotation grace period (Config.RefreshReuseGrace), a refresh
// token its own client presents again less than grace after it was
// rotated is answered like an active one: a new pair of the same grant,
// the family left as it is. Any other reuse is reuse, and fosite revokes
// the family.
type refreshStore struct {
	Store
	scopes func() []string
	grace  time.Duration
	log    *slog.Logger
}

func (r refreshStore) GetRefreshTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, err := r.Store.GetRefreshTokenSession(ctx, signature, session)
	if errors.Is(err, fosite.ErrInactiveToken) && r.grace > 0 && req != nil && req.GetClient() != nil {
		if presenter, ok := ctx.Value(refreshingClientKey{}).(string); ok && presenter == req.GetClient().GetID() {
			if again, gerr := r.Store.GetRefreshTokenSessionWithin(ctx, signature, r.grace); gerr == nil {
				r.log.InfoContext(ctx, "refresh token presented again within its rotation grace period",
					"client_id", presenter, "grace", r.grace)
				req, err = again, nil
			}
		}
	}
	if err != nil || req == nil {
		return req, err
	}
	now := r.scopes()
	if now == nil {
		return req, nil
	}
	if ar, ok := req.(*fosite.Request); ok {
		ar.GrantedScope = slices.DeleteFunc(slices.Clone(ar.GrantedScope), func(sc string) bool { return !slices.Contains(now, sc) })
	}
	return req, nil
}

// RotateRefreshToken rotates within the grace period: a token rotated by
// a concurrent refresh less than grace ago is accepted again, decided in
// the store atomically with that rotation and any revocation.
func (r refreshStore) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	return r.Store.RotateRefreshTokenWithin(ctx, requestID, signature, r.grace)
}
