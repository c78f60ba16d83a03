package asrv

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/identity"
)

// Enterprise-managed authorization (the MCP extension
// io.modelcontextprotocol/enterprise-managed-authorization, SEP-990): an
// agent that signed its person in at the organisation's identity provider
// gets from it an identity assertion grant (ID-JAG) for this server, and
// presents it here as an RFC 7523 JWT-bearer grant. The provider
// (Config.Assertions) checks the assertion — type, signature by its keys,
// issuer, audience = this issuer, client_id = the authenticated client,
// resource served here, expiry, a jti never seen (spent in the token
// store, so replicas agree) — and maps the person as at single sign-on;
// policy then decides the grant as for a person's sign-in (pbac/token with
// the person as subject). No refresh token is issued: the provider stays
// in charge, and the agent asks it for a new grant when the token expires.

const (
	// GrantTypeJWTBearer is RFC 7523's grant type, which carries ID-JAGs.
	GrantTypeJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// GrantProfileIDJAG names the ID-JAG profile in the metadata's
	// authorization_grant_profiles_supported
	// (draft-ietf-oauth-identity-assertion-authz-grant §7.2).
	GrantProfileIDJAG = "urn:ietf:params:oauth:grant-profile:id-jag"
	// ExtensionEnterpriseManagedAuthorization is the MCP extension this
	// grant implements.
	ExtensionEnterpriseManagedAuthorization = "io.modelcontextprotocol/enterprise-managed-authorization"
	// viaAssertion is Session.Via for a person an ID-JAG vouched for: like
	// single sign-on, the groups are those the provider gave.
	viaAssertion = "id-jag"
)

// jwtBearerHandler answers the JWT-bearer grant with an ID-JAG.
type jwtBearerHandler struct {
	server *Server
}

var _ fosite.TokenEndpointHandler = (*jwtBearerHandler)(nil)

// CanSkipClientAuth: never; the ID-JAG is bound to an authenticated client.
func (h *jwtBearerHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

func (h *jwtBearerHandler) CanHandleTokenEndpointRequest(_ context.Context, ar fosite.AccessRequester) bool {
	return ar.GetGrantTypes().ExactOne(GrantTypeJWTBearer)
}

func (h *jwtBearerHandler) HandleTokenEndpointRequest(ctx context.Context, ar fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	s := h.server
	req, ok := ar.(*fosite.AccessRequest)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected access request type")
	}
	client, ok := ar.GetClient().(*Client)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected client type")
	}
	if !slices.Contains(client.GrantTypes, GrantTypeJWTBearer) {
		return fosite.ErrUnauthorizedClient.WithHint("The client is not registered for the jwt-bearer grant.")
	}
	if client.IsPublic() {
		// An ID-JAG is a bearer artifact: only the client it names, proven
		// by its credentials, may redeem it.
		return fosite.ErrUnauthorizedClient.WithHint("The jwt-bearer grant needs an authenticated client.")
	}
	form := ar.GetRequestForm()
	if len(form["assertion"]) != 1 || form.Get("assertion") == "" {
		return fosite.ErrInvalidRequest.WithHint("Exactly one assertion is required.")
	}
	grant, err := s.cfg.Assertions.VerifyAssertion(ctx, form.Get("assertion"), client.ID, s.cfg.Resources, storeSpender{s.store})
	switch {
	case errors.Is(err, identity.ErrUnavailable):
		s.log.WarnContext(ctx, "jwt-bearer grant: the identity provider's keys cannot be had", "client_id", client.ID, "err", err)
		return fosite.ErrTemporarilyUnavailable.WithHint("The identity provider cannot be reached to check the assertion; try again later.").WithWrap(err)
	case errors.Is(err, identity.ErrInvalidAssertion):
		// The detail (never the assertion itself) goes to the log.
		s.log.InfoContext(ctx, "jwt-bearer grant refused", "client_id", client.ID, "err", err)
		return fosite.ErrInvalidGrant.WithHint("The identity assertion grant is not valid.").WithWrap(err)
	case err != nil:
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	resources := grant.Resources
	if asked, ok := form["resource"]; ok {
		for _, r := range asked {
			if !slices.Contains(grant.Resources, r) {
				return errInvalidTarget.WithHintf("The resource %q is not one the identity assertion grant is for.", r)
			}
		}
		resources = slices.Compact(slices.Sorted(slices.Values(asked)))
	}
	// The extension: the token's scopes are the requested ones within
	// those the provider allowed.
	asked := []string(ar.GetRequestedScopes())
	if grant.Scopes != nil {
		if len(asked) == 0 {
			asked = grant.Scopes
		} else {
			asked = intersect(asked, grant.Scopes)
		}
		if len(asked) == 0 {
			return fosite.ErrInvalidScope.WithHint("None of the requested scopes is allowed by the identity assertion grant.")
		}
	}
	user := userOf(grant.Person)
	var td contract.TokenResult
	d, err := s.decide(ctx, contract.Token, contract.Input{
		Client:  s.policyClient(client),
		Subject: subjectInput(&user),
		Request: contract.Request{GrantType: GrantTypeJWTBearer, Scopes: asked, Resource: resources},
	}, &td)
	if err != nil {
		return policyError(err)
	}
	if !d.Allow {
		s.log.InfoContext(ctx, "jwt-bearer grant denied by policy", "client_id", client.ID, "sub", user.Subject, "reasons", d.Reasons)
		return fosite.ErrAccessDenied.WithHint("Policy denied the grant: " + strings.Join(d.Reasons, "; "))
	}
	scopes := td.Scopes
	if len(asked) > 0 {
		scopes = intersect(scopes, asked)
	}
	if len(scopes) == 0 {
		return fosite.ErrInvalidScope.WithHint("Policy grants none of the requested scopes.")
	}
	now := s.now().UTC()
	// The person was authenticated when the provider issued the grant,
	// not when it is redeemed: a revocation of everything acting for them
	// between the two refuses it (RevokeSubject refuses tokens of earlier
	// sign-ins).
	authTime := now
	if !grant.IssuedAt.IsZero() && grant.IssuedAt.Before(now) {
		authTime = grant.IssuedAt.UTC()
	}
	if now.Sub(authTime) > s.cfg.MaxSignInAge {
		// An assertion that outlives the bound (a provider's long exp)
		// is no newer a sign-in for it.
		s.log.InfoContext(ctx, "jwt-bearer grant refused: the sign-in is too old", "client_id", client.ID,
			"sub", user.Subject, "auth_time", authTime, "max_sign_in_age", s.cfg.MaxSignInAge)
		return errSignInTooOld()
	}
	session := &Session{Subject: user.Subject, Groups: user.Groups, Via: viaAssertion, ClientID: client.ID,
		Tier: td.Tier, SingleUse: td.SingleUse, AuthTime: authTime}
	session.SetExpiresAt(fosite.AccessToken, now.Add(ttlOf(td.TTLSeconds, s.cfg.AccessTokenTTL)).Truncate(time.Second))
	req.SetSession(session)
	req.GrantedScope = fosite.Arguments(scopes)
	req.GrantedAudience = fosite.Arguments(resources)
	s.log.InfoContext(ctx, "jwt-bearer grant accepted", "client_id", client.ID, "sub", user.Subject, "groups", user.Groups,
		"jti", grant.JTI, "scopes", scopes)
	return nil
}

func (h *jwtBearerHandler) PopulateTokenEndpointResponse(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	s := h.server
	token, sig, err := s.strategy.GenerateAccessToken(ctx, ar)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if err := s.store.CreateAccessTokenSession(ctx, sig, ar.Sanitize(nil)); err != nil {
		if errors.Is(err, ErrSubjectRevoked) {
			return fosite.ErrInvalidGrant.WithHint("Everything acting for this person was just revoked.").WithWrap(err)
		}
		return fosite.ErrServerError.WithWrap(err)
	}
	resp.SetAccessToken(token)
	resp.SetTokenType("bearer")
	resp.SetExpiresIn(time.Until(ar.GetSession().GetExpiresAt(fosite.AccessToken)).Round(time.Second))
	resp.SetScopes(ar.GetGrantedScopes())
	return nil
}
