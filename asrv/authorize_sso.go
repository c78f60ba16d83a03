package asrv

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/identity"
)

// Single sign-on at the organisation's identity provider (Config.SSO).
//
// The sign-in page's SSO button posts its form (checked like the password
// form: this browser, this authorization request, once) and startSSO asks
// the source for an authorization request at the provider with a fresh
// state, nonce and PKCE verifier. Those, with this server's own pending
// authorization request, are kept in a cookie sealed (AES-256-GCM) under a
// key derived from the token secret, named after the state and sent only
// to the callback path: replicas that share the secret can all complete
// the sign-in, and the state is bound to the request it started from. The
// callback opens the cookie its state names, spends the state in the token
// store (so it completes once, on whichever replica), runs the
// authorization request through the endpoint's checks again (a client an
// operator rejected meanwhile is refused), completes the sign-in at the
// provider, and grants as for a password sign-in — with the person's groups
// recorded in the grant.

const (
	// ssoTTL is how long a person may take at the identity provider.
	ssoTTL          = 10 * time.Minute
	ssoCookiePrefix = "pbac_sso_"
)

// newSSOSeal seals the sign-on cookies under a key derived from the token
// secret, so replicas that share the secret open each other's.
func newSSOSeal(secret []byte) (*identity.SignInSeal, error) {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("pbac single sign-on state key"))
	return identity.NewSignInSeal(m.Sum(nil), ssoCookiePrefix, "pbac sso cookie")
}

// secureCookies: cookies are Secure on TLS and on an https issuer (TLS
// terminated in front of this server).
func (s *Server) secureCookies(r *http.Request) bool {
	return r.TLS != nil || s.issuer.Scheme == "https"
}

// startSSO sends the browser to the identity provider for an approved
// authorization request. An unreachable provider is said on the sign-in
// page, which the person can submit again.
func (s *Server) startSSO(ctx context.Context, browser, w http.ResponseWriter, r *http.Request, p *pendingAuthorization) {
	client := p.client
	red, err := s.sso.Start(ctx)
	if err != nil {
		s.log.WarnContext(ctx, "single sign-on could not start", "client_id", client.ID, "idp", s.sso.Label(), "err", err)
		s.renderLogin(w, r, p, "", fmt.Sprintf("The identity provider %s cannot be reached right now, so nobody can sign in with it; try again in a moment.", s.sso.Label()),
			http.StatusServiceUnavailable)
		return
	}
	name, sealed, err := s.ssoSeal.Seal(identity.SealedSignIn{Pending: red.Pending, Resume: r.URL.RawQuery, Exp: s.now().Add(ssoTTL).Unix(),
		Vouch: r.PostForm.Get("vouch")})
	if err != nil || len(sealed) > identity.MaxSealedCookie {
		s.log.WarnContext(ctx, "single sign-on state does not fit a cookie", "client_id", client.ID, "bytes", len(sealed), "err", err)
		s.renderLogin(w, r, p, "", "This authorization request is too large to sign in with single sign-on.", http.StatusBadRequest)
		return
	}
	http.SetCookie(browser, &http.Cookie{
		Name: name, Value: sealed, Path: PathIDPCallback, HttpOnly: true, Secure: s.secureCookies(r),
		// Lax: the way back from the provider is a cross-site navigation.
		SameSite: http.SameSiteLaxMode, MaxAge: int(ssoTTL / time.Second),
	})
	browser.Header().Set("Cache-Control", "no-store")
	browser.Header().Set("Referrer-Policy", "no-referrer")
	s.log.InfoContext(ctx, "single sign-on started", "client_id", client.ID, "idp", s.sso.Label())
	http.Redirect(browser, r, red.URL, http.StatusSeeOther)
}

// serveIDPCallback completes a single sign-on and the authorization
// request it was started for.
func (s *Server) serveIDPCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if s.sso == nil {
		s.renderError(w, http.StatusNotFound, "invalid_request", "Single sign-on is not configured on this server.")
		return
	}
	q := r.URL.Query()
	rec, name, err := s.ssoSeal.Open(r, q.Get("state"), s.now())
	if name != "" {
		http.SetCookie(w, &http.Cookie{Name: name, Path: PathIDPCallback, HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteLaxMode, MaxAge: -1})
	}
	if err != nil {
		s.log.InfoContext(ctx, "single sign-on callback refused", "err", err)
		s.renderError(w, http.StatusBadRequest, "invalid_request",
			"This sign-in is unknown to this browser, has expired, or was already completed. Start again from the application.")
		return
	}
	fresh, err := storeSpender{s.store}.Spend(ctx, "pbac-sso-state:"+rec.Pending.State, time.Unix(rec.Exp, 0))
	if err != nil {
		s.log.ErrorContext(ctx, "single sign-on: record the state", "err", err)
		s.renderError(w, http.StatusInternalServerError, "server_error", "The sign-in could not be recorded; start again from the application.")
		return
	}
	if !fresh {
		s.log.WarnContext(ctx, "single sign-on callback replayed")
		s.renderError(w, http.StatusBadRequest, "invalid_request", "This sign-in was already completed. Start again from the application.")
		return
	}
	// The authorization request, as it was sent, through the endpoint's
	// checks again (the client may have been deleted meanwhile).
	areq, err := http.NewRequestWithContext(ctx, http.MethodGet, PathAuthorize+"?"+rec.Resume, nil)
	if err != nil {
		s.renderError(w, http.StatusBadRequest, "invalid_request", "The authorization request cannot be resumed.")
		return
	}
	areq.RemoteAddr, areq.Host = r.RemoteAddr, r.Host
	aw := issWriter{ResponseWriter: w, iss: s.cfg.Issuer}
	ar, client, resources, ok := s.authorizeRequest(ctx, aw, areq)
	if !ok {
		return
	}
	// An operator may have rejected the client while the person was at
	// the provider: refused as the authorization endpoint refuses it.
	if s.refuseRejected(ctx, aw, areq, client) {
		return
	}
	person, err := s.sso.Finish(ctx, rec.Pending, q)
	switch {
	case errors.Is(err, identity.ErrUnavailable):
		s.log.WarnContext(ctx, "single sign-on: the identity provider is unavailable", "client_id", client.ID, "idp", s.sso.Label(), "err", err)
		s.renderError(aw, http.StatusServiceUnavailable, "temporarily_unavailable", fmt.Sprintf(
			"The identity provider %s cannot be reached, so the sign-in could not be completed and no token was issued. Try again later from the application; agents already signed in keep working.",
			s.sso.Label()))
		return
	case errors.Is(err, identity.ErrRefused):
		s.log.InfoContext(ctx, "single sign-on: the identity provider did not sign the person in", "client_id", client.ID, "err", err)
		s.authorizeError(ctx, aw, ar, fosite.ErrAccessDenied.WithHint("The identity provider did not sign you in."))
		return
	case err != nil:
		s.log.WarnContext(ctx, "single sign-on: the identity provider's answer failed verification", "client_id", client.ID, "idp", s.sso.Label(), "err", err)
		s.authorizeError(ctx, aw, ar, fosite.ErrAccessDenied.WithHint("The identity provider's answer did not pass verification; no token was issued."))
		return
	}
	user := userOf(person)
	client, vouch, err := s.proposeVouch(ctx, client, user, rec.Vouch)
	if err != nil {
		s.authorizeError(ctx, aw, ar, err)
		return
	}
	s.grantAuthorization(ctx, aw, ar, client, resources, user, viaSSO, vouch)
}
