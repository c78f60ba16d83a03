package asrv

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/contract"
)

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := s.provider.NewAccessRequest(ctx, r, &Session{})
	// refused answers a refused token request and records it.
	refused := func(err error) {
		e := Event{Kind: EventToken, Action: r.PostForm.Get("grant_type"), ClientID: requestClientID(r), Remote: remoteHost(r)}
		if ar != nil {
			if c, ok := ar.GetClient().(*Client); ok {
				s.forClient(&e, c)
			}
			if sess, ok := ar.GetSession().(*Session); ok {
				e.Subject, e.Tier = sess.Subject, sess.Tier
			}
		}
		s.event(ctx, *e.refusal(err))
		s.provider.WriteAccessError(ctx, w, ar, err)
	}
	if err != nil {
		s.log.InfoContext(ctx, "token request rejected", "client_id", requestClientID(r), "grant_type", r.PostForm.Get("grant_type"),
			"reason", refusalReason(err))
		refused(err)
		return
	}
	g, err := s.applyTokenPolicy(ctx, ar)
	if err != nil {
		s.log.InfoContext(ctx, "token request denied", "client_id", ar.GetClient().GetID(), "reason", refusalReason(err))
		refused(err)
		return
	}
	if c, ok := ar.GetClient().(*Client); ok {
		if err := s.anchorMetadataClient(ctx, c); err != nil {
			s.log.ErrorContext(ctx, "token refused", "client_id", c.ID, "err", err)
			refused(anchorError(err))
			return
		}
	}
	if g != nil {
		ctx = context.WithValue(ctx, grantKey{}, g)
	}
	resp, err := s.provider.NewAccessResponse(ctx, ar)
	if errors.Is(err, ErrSubjectRevoked) {
		// A refresh or code redemption under way when everything acting
		// for the person was revoked.
		err = fosite.ErrInvalidGrant.WithHint("Everything acting for this person was revoked.").WithWrap(err)
	}
	if err != nil {
		s.log.WarnContext(ctx, "token response failed", "client_id", ar.GetClient().GetID(), "reason", refusalReason(err))
		refused(err)
		return
	}
	s.log.InfoContext(ctx, "token issued", "client_id", ar.GetClient().GetID(),
		"grant_type", strings.Join(ar.GetGrantTypes(), " "), "sub", ar.GetSession().GetSubject(),
		"scopes", []string(ar.GetGrantedScopes()))
	e := Event{Kind: EventToken, Action: strings.Join(ar.GetGrantTypes(), " "), Allowed: true, Status: http.StatusOK,
		Subject: ar.GetSession().GetSubject(), Scopes: ar.GetGrantedScopes(), Remote: remoteHost(r)}
	if c, ok := ar.GetClient().(*Client); ok {
		s.forClient(&e, c)
	}
	if sess, ok := ar.GetSession().(*Session); ok {
		e.Tier = sess.Tier
	}
	if g != nil {
		e.PolicyVersion = g.version
	}
	s.event(ctx, e)
	s.provider.WriteAccessResponse(ctx, w, ar, resp)
}

// applyTokenPolicy asks pbac/token about a token request that fosite has
// validated and narrows what fosite would grant to what policy allows:
// scopes, lifetime and the resource the token is bound to. Token exchange is
// decided in its own handler. The returned grant must travel in the context
// of NewAccessResponse (see grantStore).
func (s *Server) applyTokenPolicy(ctx context.Context, ar fosite.AccessRequester) (*grant, error) {
	req, ok := ar.(*fosite.AccessRequest)
	if !ok {
		return nil, fosite.ErrServerError.WithDebug("unexpected access request type")
	}
	client, ok := ar.GetClient().(*Client)
	if !ok {
		return nil, fosite.ErrServerError.WithDebug("unexpected client type")
	}
	session, ok := ar.GetSession().(*Session)
	if !ok {
		return nil, fosite.ErrServerError.WithDebug("unexpected session type")
	}
	if client.Rejected() {
		return nil, errClientRejected
	}
	form := ar.GetRequestForm()
	var grantType string
	switch {
	case ar.GetGrantTypes().ExactOne("authorization_code"):
		grantType = "authorization_code"
	case ar.GetGrantTypes().ExactOne("refresh_token"):
		grantType = "refresh_token"
	case ar.GetGrantTypes().ExactOne("client_credentials"):
		grantType = "client_credentials"
	default:
		return nil, nil // token exchange: decided by its handler
	}

	in := contract.Input{Client: s.policyClient(client), Request: contract.Request{GrantType: grantType}}
	var resources []string
	switch grantType {
	case "client_credentials":
		rs, err := s.resourcesFor(form)
		if err != nil {
			return nil, err
		}
		resources = rs
		in.Request.Scopes = ar.GetRequestedScopes()
		session.ClientID = client.ID
	default:
		// The code or refresh token carries the grant: scopes, resource and
		// the human, whose roles are read afresh.
		granted := slices.Clone([]string(ar.GetGrantedScopes()))
		resources = []string(ar.GetGrantedAudience())
		if grantType == "authorization_code" {
			// fosite copies the code's grant only when it writes the
			// response; read it now to decide on it.
			code, err := s.store.GetAuthorizeCodeSession(ctx, s.strategy.AuthorizeCodeSignature(ctx, form.Get("code")), &Session{})
			if err != nil {
				return nil, fosite.ErrInvalidGrant.WithHint("The authorization code is not valid.")
			}
			granted = slices.Clone([]string(code.GetGrantedScopes()))
			resources = []string(code.GetGrantedAudience())
		}
		if asked := fosite.RemoveEmpty(strings.Split(form.Get("scope"), " ")); grantType == "refresh_token" && len(asked) > 0 {
			for _, sc := range asked {
				if !slices.Contains(granted, sc) {
					return nil, fosite.ErrInvalidScope.WithHintf("The scope %q was not granted to the refresh token.", sc)
				}
			}
			granted = asked
		}
		if asked, ok := form["resource"]; ok {
			for _, r := range asked {
				if !slices.Contains(resources, r) {
					return nil, errInvalidTarget.WithHintf("The resource %q was not part of the grant.", r)
				}
			}
			resources = slices.Compact(slices.Sorted(slices.Values(asked)))
		}
		in.Request.Scopes = granted
		if grantType == "refresh_token" {
			in.Token = &contract.TokenClaims{ClientID: client.ID, Sub: session.Subject, Scp: granted, Aud: resources}
		}
		if grantType == "refresh_token" && s.signInTooOld(session) {
			// Refused before anything is rotated: the family stays as it
			// was, and is of no more use.
			s.log.InfoContext(ctx, "refresh refused: the sign-in is too old", "client_id", client.ID,
				"sub", session.Subject, "auth_time", session.AuthTime, "max_sign_in_age", s.cfg.MaxSignInAge)
			return nil, errSignInTooOld()
		}
		if session.Subject != "" {
			u, err := s.personOf(ctx, session)
			if err != nil {
				return nil, fosite.ErrInvalidGrant.WithHint("The user this grant was issued for no longer exists.")
			}
			in.Subject = subjectInput(&u)
			session.Roles, session.Groups = u.Roles, u.Groups
		}
	}
	in.Request.Resource = resources

	var td contract.TokenResult
	d, err := s.decide(ctx, contract.Token, in, &td)
	if err != nil {
		return nil, policyError(err)
	}
	if !d.Allow {
		reason := strings.Join(d.Reasons, "; ")
		if grantType == "refresh_token" {
			return nil, fosite.ErrInvalidGrant.WithHint("Policy no longer allows this grant: " + reason)
		}
		if len(in.Request.Scopes) > 0 && s.permitsSomething(ctx, in) {
			// The client may have tokens, just not these scopes.
			return nil, fosite.ErrInvalidScope.WithHint("Policy grants none of the requested scopes: " + reason)
		}
		return nil, fosite.ErrUnauthorizedClient.WithHint("Policy denied the token: " + reason)
	}
	scopes := td.Scopes
	if grantType != "client_credentials" {
		// Never more than the grant held, whatever policy says.
		scopes = intersect(scopes, in.Request.Scopes)
	}
	if len(scopes) == 0 {
		return nil, fosite.ErrInvalidScope.WithHint("Policy grants none of the requested scopes.")
	}
	req.GrantedScope = fosite.Arguments(scopes)
	req.GrantedAudience = fosite.Arguments(resources)
	session.Tier = td.Tier
	session.SingleUse = td.SingleUse
	// Counted from the request's own instant, so exp - iat never exceeds
	// the lifetime policy allows.
	exp := ar.GetRequestedAt().UTC().Add(ttlOf(td.TTLSeconds, s.cfg.AccessTokenTTL)).Truncate(time.Second)
	session.SetExpiresAt(fosite.AccessToken, exp)
	return &grant{scopes: scopes, audience: resources, version: d.Version}, nil
}

// permitsSomething asks policy whether the client would get any token with
// no particular scopes requested: it tells a scope problem from a client
// that may have no token at all.
func (s *Server) permitsSomething(ctx context.Context, in contract.Input) bool {
	in.Request.Scopes = nil
	d, err := s.decide(ctx, contract.Token, in, nil)
	return err == nil && d.Allow
}

// grant is what policy decided a token request may have. fosite's
// authorization code handler re-grants the code's scopes and audience when it
// writes the response; grantStore narrows them to this grant.
type grant struct {
	scopes, audience []string
	// version is the policy version that decided (for the audit trail).
	version string
}

type grantKey struct{}

// grantStore wraps the store for the authorization code handler so the
// code's grant, read back while the token is written, is narrowed to what
// policy decided for this token request.
type grantStore struct {
	Store
}

func (g grantStore) GetAuthorizeCodeSession(ctx context.Context, code string, session fosite.Session) (fosite.Requester, error) {
	req, err := g.Store.GetAuthorizeCodeSession(ctx, code, session)
	gr, ok := ctx.Value(grantKey{}).(*grant)
	if !ok || req == nil {
		return req, err
	}
	switch r := req.(type) {
	case *fosite.AuthorizeRequest:
		r.GrantedScope, r.GrantedAudience = gr.scopes, gr.audience
	case *fosite.Request:
		r.GrantedScope, r.GrantedAudience = gr.scopes, gr.audience
	}
	return req, err
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

var errNotActive = errors.New("token is not active")
