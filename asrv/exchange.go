package asrv

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/contract"
)

// tokenExchangeHandler implements RFC 8693 token exchange as a fosite token
// endpoint handler: an agent (the authenticated client, the actor) trades
// its own token (the subject token, whose sub is the human) for a narrower
// token for a sub-agent (the audience). The result has sub = the human,
// act = {sub: the delegating agent, act: any earlier link}, the sub-agent as
// client and audience, and only scopes policy allows.
type tokenExchangeHandler struct {
	server *Server
}

var _ fosite.TokenEndpointHandler = (*tokenExchangeHandler)(nil)

// maxChainDepth bounds delegation chains whatever policy says: a chain is
// stored with every token and walked on every introspection.
const maxChainDepth = 8

func (h *tokenExchangeHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

func (h *tokenExchangeHandler) CanHandleTokenEndpointRequest(_ context.Context, ar fosite.AccessRequester) bool {
	return ar.GetGrantTypes().ExactOne(GrantTypeExchange)
}

func (h *tokenExchangeHandler) HandleTokenEndpointRequest(ctx context.Context, ar fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	s := h.server
	req, ok := ar.(*fosite.AccessRequest)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected access request type")
	}
	actor, ok := ar.GetClient().(*Client)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected client type")
	}
	if !slices.Contains(actor.GrantTypes, GrantTypeExchange) {
		return fosite.ErrUnauthorizedClient.WithHint("The client is not registered for token exchange.")
	}
	form := ar.GetRequestForm()
	if t := form.Get("requested_token_type"); t != "" && t != TokenTypeAccess {
		return fosite.ErrInvalidRequest.WithHint("Only access tokens can be requested.")
	}
	if form.Get("subject_token_type") != TokenTypeAccess {
		return fosite.ErrInvalidRequest.WithHint("subject_token_type must be " + TokenTypeAccess + ".")
	}
	// RFC 8693 §2.2.2: a subject or actor token that is invalid for any
	// reason, or unacceptable by policy, is invalid_request.
	subjectToken := form.Get("subject_token")
	subject, err := s.activeAccessToken(ctx, subjectToken)
	if err != nil {
		return fosite.ErrInvalidRequest.WithHint("The subject token is not active.")
	}
	if subject.GetClient().GetID() != actor.ID {
		return fosite.ErrInvalidRequest.WithHint("The subject token was not issued to the authenticated client.")
	}
	// The subject token must be active under policy now, as at any use; a
	// single-use one is spent by this exchange (when the new token is
	// stored) and the new token is single-use too, so the grant is used
	// once whichever token uses it.
	state, subjectSingleUse, err := s.inspect(ctx, subject, "")
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if !state.Active {
		s.log.InfoContext(ctx, "token exchange: subject token not active under policy", "client_id", actor.ID, "reasons", state.Reasons)
		return fosite.ErrInvalidRequest.WithHint("The subject token is not active.")
	}
	if at := form.Get("actor_token"); at != "" {
		if form.Get("actor_token_type") != TokenTypeAccess {
			return fosite.ErrInvalidRequest.WithHint("actor_token_type must be " + TokenTypeAccess + ".")
		}
		a, err := s.activeAccessToken(ctx, at)
		if err != nil || a.GetClient().GetID() != actor.ID {
			return fosite.ErrInvalidRequest.WithHint("The actor token is not an active token of the authenticated client.")
		}
	}
	audiences := form["audience"]
	if len(audiences) != 1 || audiences[0] == "" {
		return errInvalidTarget.WithHint("Exactly one audience, the client id of the sub-agent, is required.")
	}
	target, err := s.store.Client(ctx, audiences[0])
	if err != nil {
		return errInvalidTarget.WithHint("The audience is not a registered client.")
	}
	if target.Rejected() {
		return errInvalidTarget.WithHint("An operator rejected the audience client.")
	}
	subjSession, ok := subject.GetSession().(*Session)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected session type")
	}
	held := []string(subject.GetGrantedScopes())
	asked := []string(ar.GetRequestedScopes())
	if len(asked) == 0 {
		asked = held
	}
	for _, sc := range asked {
		if !slices.Contains(held, sc) {
			return fosite.ErrInvalidScope.WithHintf("The scope %q is not held by the subject token.", sc)
		}
	}
	resources := []string(subject.GetGrantedAudience())
	if rs, ok := form["resource"]; ok {
		for _, r := range rs {
			if !slices.Contains(resources, r) {
				return errInvalidTarget.WithHintf("The resource %q is not an audience of the subject token.", r)
			}
		}
		resources = slices.Compact(slices.Sorted(slices.Values(rs)))
	}
	chain := &Actor{Sub: actor.ID, Act: subjSession.Act.Clone()}
	if chain.Depth() > maxChainDepth {
		return fosite.ErrInvalidGrant.WithHint("The delegation chain is too long.")
	}

	in := contract.Input{
		Client: s.policyClient(actor),
		Token:  tokenInput(subject, subjSession),
		Request: contract.Request{
			GrantType:      GrantTypeExchange,
			Scopes:         asked,
			Resource:       resources,
			Actor:          s.policyClient(actor),
			AudienceClient: s.policyClient(target),
		},
	}
	var user *User
	if subjSession.Subject != "" {
		u, err := s.personOf(ctx, subjSession)
		if err != nil {
			return fosite.ErrInvalidGrant.WithHint("The subject token's user no longer exists.")
		}
		user = &u
		in.Subject = subjectInput(user)
	}
	var ed contract.ExchangeResult
	d, err := s.decide(ctx, contract.Exchange, in, &ed)
	if err != nil {
		return policyError(err)
	}
	if !d.Allow {
		return fosite.ErrAccessDenied.WithHint("Policy denied the delegation: " + strings.Join(d.Reasons, "; "))
	}
	scopes := intersect(ed.Scopes, asked)
	if len(scopes) == 0 {
		return fosite.ErrInvalidScope.WithHint("Policy grants none of the requested scopes.")
	}

	session := &Session{ClientID: target.ID, Act: chain, Tier: subjSession.Tier, SingleUse: subjectSingleUse,
		delegation: &delegation{subjectSig: s.strategy.AccessTokenSignature(ctx, subjectToken), consume: subjectSingleUse}}
	if user != nil {
		session.Subject, session.Roles, session.Groups, session.Via = user.Subject, user.Roles, user.Groups, subjSession.Via
		session.AuthTime = subjSession.AuthTime
	}
	// Never outlive the subject token.
	exp := s.now().UTC().Add(ttlOf(ed.TTLSeconds, s.cfg.AccessTokenTTL)).Round(time.Second)
	if subjExp := subjSession.GetExpiresAt(fosite.AccessToken); !subjExp.IsZero() && subjExp.Before(exp) {
		exp = subjExp
	}
	session.SetExpiresAt(fosite.AccessToken, exp)
	req.Client = target
	req.SetSession(session)
	req.GrantedScope = fosite.Arguments(scopes)
	req.GrantedAudience = fosite.Arguments(append(slices.Clone(resources), target.ID))
	return nil
}

func (h *tokenExchangeHandler) PopulateTokenEndpointResponse(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	s := h.server
	sess, ok := ar.GetSession().(*Session)
	if !ok || sess.delegation == nil {
		return fosite.ErrServerError.WithDebug("token exchange response without its subject token")
	}
	token, sig, err := s.strategy.GenerateAccessToken(ctx, ar)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	// Stored with its chain, atomically with checking (or consuming) the
	// subject token: a revocation, consumption or client deletion in the
	// meantime makes this fail, or removes the new token with its chain.
	if err := s.store.CreateDelegatedAccessToken(ctx, sig, ar.Sanitize(nil), sess.delegation.subjectSig, sess.delegation.consume); err != nil {
		if errors.Is(err, fosite.ErrNotFound) || errors.Is(err, ErrConsumed) || errors.Is(err, ErrSubjectRevoked) {
			return fosite.ErrInvalidRequest.WithHint("The subject token is not active.")
		}
		return fosite.ErrServerError.WithWrap(err)
	}
	resp.SetAccessToken(token)
	resp.SetTokenType("bearer")
	resp.SetExpiresIn(time.Until(ar.GetSession().GetExpiresAt(fosite.AccessToken)).Round(time.Second))
	resp.SetScopes(ar.GetGrantedScopes())
	resp.SetExtra("issued_token_type", TokenTypeAccess)
	return nil
}

// activeAccessToken finds an access token's request and checks its MAC and
// expiry.
func (s *Server) activeAccessToken(ctx context.Context, token string) (fosite.Requester, error) {
	return s.checkedAccessToken(ctx, token, func(ctx context.Context, sig string) (fosite.Requester, error) {
		return s.store.GetAccessTokenSession(ctx, sig, &Session{})
	})
}

// checkedAccessToken reads the access token's request with get (by its
// signature) and checks its MAC and expiry; an unknown, inactive or forged
// token is errNotActive.
func (s *Server) checkedAccessToken(ctx context.Context, token string, get func(ctx context.Context, sig string) (fosite.Requester, error)) (fosite.Requester, error) {
	if token == "" {
		return nil, errNotActive
	}
	sig := s.strategy.AccessTokenSignature(ctx, token)
	if sig == "" {
		return nil, errNotActive
	}
	req, err := get(ctx, sig)
	if err != nil {
		if errors.Is(err, fosite.ErrNotFound) || errors.Is(err, fosite.ErrInactiveToken) {
			return nil, errNotActive
		}
		return nil, err
	}
	if err := s.strategy.ValidateAccessToken(ctx, req, token); err != nil {
		return nil, errNotActive
	}
	return req, nil
}

// tokenInput renders a stored token for policy.
func tokenInput(req fosite.Requester, sess *Session) *contract.TokenClaims {
	return &contract.TokenClaims{
		ClientID: req.GetClient().GetID(),
		Sub:      sess.Subject,
		Scp:      []string(req.GetGrantedScopes()),
		Aud:      []string(req.GetGrantedAudience()),
		Iat:      req.GetRequestedAt().Unix(),
		Exp:      sess.GetExpiresAt(fosite.AccessToken).Unix(),
		Act:      sess.Act,
	}
}
