package dashboard

import (
	"crypto/subtle"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/identity"
)

// Single sign-on for the dashboard (Config.SSO): the same organisation's
// provider the authorization server signs people in at, with the admin
// listener's own redirect URI (<admin base>/oauth2/idp/callback). A
// pending sign-in lives in this process (the dashboard's sessions do
// anyway), bound to the browser that started it by a cookie scoped to the
// callback, and is spent once.

const (
	ssoCookie     = "pbac_ui_sso"
	ssoPendingTTL = 10 * time.Minute
	maxSSOPending = 256
)

// ssoPending is a started sign-in, by its state.
type ssoPending struct {
	pending identity.Pending
	browser string // the cookie value bound to it
	exp     time.Time
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
	browser := randomToken(24)
	now := time.Now()
	h.mu.Lock()
	for s, p := range h.ssoPending {
		if now.After(p.exp) {
			delete(h.ssoPending, s)
		}
	}
	if len(h.ssoPending) >= maxSSOPending {
		h.mu.Unlock()
		ssoPage(w, http.StatusServiceUnavailable, "Too many sign-ins are under way; try again in a few minutes.")
		return
	}
	h.ssoPending[red.Pending.State] = ssoPending{pending: red.Pending, browser: browser, exp: now.Add(ssoPendingTTL)}
	h.mu.Unlock()
	// Lax: the way back from the provider is a cross-site navigation.
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: browser, Path: identity.CallbackPath, HttpOnly: true,
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
	state := q.Get("state")
	h.mu.Lock()
	p, ok := h.ssoPending[state]
	c, err := r.Cookie(ssoCookie)
	ok = ok && err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(p.browser)) == 1 && time.Now().Before(p.exp)
	if ok {
		delete(h.ssoPending, state)
	}
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: "", Path: identity.CallbackPath, HttpOnly: true, MaxAge: -1})
	if !ok {
		ssoPage(w, http.StatusBadRequest, "This sign-in is unknown to this browser, expired or already completed: start again from the dashboard.")
		return
	}
	person, err := h.cfg.SSO.Finish(r.Context(), p.pending, q)
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
	id := h.sessions.create(sess)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/ui", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(sessionMaxAge / time.Second)})
	h.cfg.Logger.Info("dashboard: signed in", "who", u.Subject, "via", "sso", "groups", u.Groups, "operator", h.isOperator(sess))
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

var ssoErrorPage = template.Must(template.New("sso").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign-in failed — PBAC Gateway dashboard</title></head>
<body><main><h1>You are not signed in</h1><p>{{.}}</p><p><a href="/ui/">Back to the dashboard</a></p></main></body></html>`))

func ssoPage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = ssoErrorPage.Execute(w, msg)
}
