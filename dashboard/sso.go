package dashboard

import (
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/identity"
)

// Single sign-on for the dashboard (Config.SSO): the same organisation's
// provider the authorization server signs people in at, with the admin
// listener's own redirect URI (<admin base>/oauth2/idp/callback). A
// started sign-in (the provider's state, nonce and PKCE verifier) is kept
// in the browser, in a cookie sealed (AES-256-GCM) under a key this
// process draws at start, named after the state and sent only to the
// callback path: the server keeps nothing for a sign-in that does not
// complete, so any number of started ones shuts nobody out. The dashboard's
// sessions live in this process anyway, so a sign-in completes on the
// process it started on. A completed state is remembered until it would
// have expired, so that a sealed cookie is spent once.

const (
	ssoCookiePrefix = "pbac_ui_sso_"
	ssoPendingTTL   = 10 * time.Minute
)

// newSSOSeal seals the sign-in cookies under a fresh random key.
func newSSOSeal() (*identity.SignInSeal, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return identity.NewSignInSeal(key, ssoCookiePrefix, "pbac dashboard sso cookie")
}

// spendSSO records that the sign-in of this state completed; false when it
// already had. Only sign-ins the provider completed are recorded, each
// until it would have expired.
func (h *Handler) spendSSO(state string, exp, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s, e := range h.ssoSpent {
		if now.After(e) {
			delete(h.ssoSpent, s)
		}
	}
	if _, ok := h.ssoSpent[state]; ok {
		return false
	}
	h.ssoSpent[state] = exp
	return true
}

func (h *Handler) ssoSpentAlready(state string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.ssoSpent[state]
	return ok
}

// startSSO sends the browser to the provider.
func (h *Handler) startSSO(w http.ResponseWriter, r *http.Request) {
	if h.cfg.SSO == nil {
		writeError(w, http.StatusNotFound, "single sign-on is not configured")
		return
	}
	red, err := h.cfg.SSO.Start(r.Context())
	if err != nil {
		h.cfg.Logger.Warn("dashboard: single sign-on cannot start", "err", err)
		ssoPage(w, http.StatusServiceUnavailable, "The identity provider cannot be reached right now; try again later, or sign in with the admin token.")
		return
	}
	// Where on the page to come back to (the approval link's approval),
	// when it is one of the page's own places.
	resume := r.URL.Query().Get("return")
	if !resumePattern.MatchString(resume) {
		resume = ""
	}
	name, sealed, err := h.ssoSeal.Seal(identity.SealedSignIn{Pending: red.Pending, Resume: resume, Exp: time.Now().Add(ssoPendingTTL).Unix()})
	if err != nil || len(sealed) > identity.MaxSealedCookie {
		h.cfg.Logger.Warn("dashboard: single sign-on state does not fit a cookie", "bytes", len(sealed), "err", err)
		ssoPage(w, http.StatusInternalServerError, "The sign-in could not be started; sign in with the admin token.")
		return
	}
	// Lax: the way back from the provider is a cross-site navigation.
	http.SetCookie(w, &http.Cookie{Name: name, Value: sealed, Path: identity.CallbackPath, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode, MaxAge: int(ssoPendingTTL / time.Second)})
	http.Redirect(w, r, red.URL, http.StatusSeeOther)
}

// finishSSO is the provider's redirect back: the sign-in of this browser
// with this state, once, completed at the provider; the person gets a
// session (an operator when policy data names one of their groups).
func (h *Handler) finishSSO(w http.ResponseWriter, r *http.Request) {
	if h.cfg.SSO == nil {
		writeError(w, http.StatusNotFound, "single sign-on is not configured")
		return
	}
	q := r.URL.Query()
	now := time.Now()
	rec, name, err := h.ssoSeal.Open(r, q.Get("state"), now)
	if name != "" {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: identity.CallbackPath, HttpOnly: true, MaxAge: -1,
			Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	}
	if err == nil && h.ssoSpentAlready(rec.Pending.State) {
		err = fmt.Errorf("%w: the sign-in already completed", identity.ErrNoSealedSignIn)
	}
	if err != nil {
		h.cfg.Logger.Info("dashboard: single sign-on callback refused", "err", err)
		ssoPage(w, http.StatusBadRequest, "This sign-in is unknown to this browser, expired or already completed: start again from the dashboard.")
		return
	}
	person, err := h.cfg.SSO.Finish(r.Context(), rec.Pending, q)
	if err == nil && !h.spendSSO(rec.Pending.State, time.Unix(rec.Exp, 0), now) {
		h.cfg.Logger.Warn("dashboard: single sign-on callback replayed")
		ssoPage(w, http.StatusBadRequest, "This sign-in was already completed: start again from the dashboard.")
		return
	}
	switch {
	case errors.Is(err, identity.ErrUnavailable):
		h.cfg.Logger.Warn("dashboard: single sign-on: the provider is unavailable", "err", err)
		ssoPage(w, http.StatusServiceUnavailable, "The identity provider cannot be reached right now; you are not signed in. Try again later.")
		return
	case err != nil:
		h.cfg.Logger.Warn("dashboard: single sign-on refused", "err", err)
		ssoPage(w, http.StatusForbidden, "The identity provider did not sign you in, or its answer did not pass verification; you are not signed in.")
		return
	}
	u := asrv.User{Subject: person.Subject, Name: person.Name, Email: person.Email, Groups: person.Groups}
	sess := &session{user: &u, csrf: randomToken(24)}
	id, err := h.sessions.create(sess)
	if err != nil {
		h.cfg.Logger.Warn("dashboard: single sign-on: no session to be had", "who", u.Subject, "err", err)
		ssoPage(w, http.StatusServiceUnavailable, "Too many people are signed in to the dashboard right now; you are not signed in. Try again later.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/ui", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(sessionMaxAge / time.Second)})
	h.cfg.Logger.Info("dashboard: signed in", "who", u.Subject, "via", "sso", "groups", u.Groups, "operator", h.isOperator(sess))
	back := "/ui/"
	if resumePattern.MatchString(rec.Resume) {
		back += rec.Resume
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

var ssoErrorPage = template.Must(template.New("sso").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign-in failed — PBAC Gateway dashboard</title></head>
<body><main><h1>You are not signed in</h1><p>{{.}}</p><p><a href="/ui/">Back to the dashboard</a></p></main></body></html>`))

func ssoPage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = ssoErrorPage.Execute(w, msg)
}
