package dashboard

import (
	"crypto/rand"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/pbac-gateway/pbac/asrv/signin"
)

// The dashboard's sign-in (POST /ui/api/session) takes a form token the
// page fetched just before (GET /ui/api/session/form), bound to a sign-in
// cookie, kept and spent once in this process's memory (dashboard sessions
// live there too), and the attempt goes through the sign-in guard the
// authorization server's page uses, so failures on either count against
// the same user and address.

const (
	signInCookie   = "pbac_ui_signin"
	signInFormTTL  = 10 * time.Minute
	maxSignInForms = 1 << 14
)

// dashboardBinding is what a dashboard sign-in form signs in to.
var dashboardBinding = []byte("pbac dashboard sign-in")

func newSignInForms() (*signin.Forms, error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails
	return signin.NewForms(key, signInFormTTL, signin.NewMemorySpender(maxSignInForms, nil), nil)
}

// signInForm hands out a sign-in form token and sets its cookie.
func (h *Handler) signInForm(w http.ResponseWriter, r *http.Request) {
	cookie := ""
	if c, err := r.Cookie(signInCookie); err == nil && len(c.Value) <= 128 {
		cookie = c.Value
	}
	if cookie == "" {
		cookie = randomToken(32)
	}
	http.SetCookie(w, &http.Cookie{Name: signInCookie, Value: cookie, Path: "/ui/api/session", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(signInFormTTL / time.Second)})
	writeJSON(w, http.StatusOK, map[string]string{"csrf": h.forms.Issue(cookie, dashboardBinding)})
}

// checkSignInForm checks and spends the form token of a sign-in request;
// false when it answered the request.
func (h *Handler) checkSignInForm(w http.ResponseWriter, r *http.Request) bool {
	cookie := ""
	if c, err := r.Cookie(signInCookie); err == nil {
		cookie = c.Value
	}
	err := h.forms.Check(r.Context(), r.Header.Get(csrfHeader), cookie, dashboardBinding)
	switch {
	case err == nil:
		return true
	case errors.Is(err, signin.ErrFormInvalid), errors.Is(err, signin.ErrFormExpired):
		writeError(w, http.StatusForbidden, "the sign-in form is missing or expired: load it again (GET /ui/api/session/form) and send its token in "+csrfHeader)
	default:
		h.cfg.Logger.Warn("dashboard: sign-in form check failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "sign-in is busy: try again shortly")
	}
	return false
}

// beginSignIn admits a sign-in attempt through the guard, or answers 429.
func (h *Handler) beginSignIn(w http.ResponseWriter, r *http.Request, username string) (*signin.Pending, bool) {
	p, err := h.signIn.Begin(r.Context(), signin.Attempt{Surface: "dashboard", Username: username, RemoteAddr: r.RemoteAddr})
	var throttled *signin.ThrottledError
	if errors.As(err, &throttled) {
		wait := max(time.Second, throttled.RetryAfter.Round(time.Second))
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
		writeError(w, http.StatusTooManyRequests, "too many failed sign-in attempts: try again in "+wait.String())
		return nil, false
	}
	return p, true
}
