package dashboard

import (
	"crypto/rand"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/pbac-gateway/pbac/asrv/signin"
	"github.com/pbac-gateway/pbac/internal/throttle"
)

// The dashboard's sign-in (POST /ui/api/session) takes a form token the
// page fetched just before (GET /ui/api/session/form), bound to a sign-in
// cookie, kept and spent once in this process's memory (dashboard sessions
// live there too), and the attempt goes through the sign-in guard the
// authorization server's page uses, so failures on either count against
// the same user and address.
//
// The spent nonces are a table in memory, and a table capped for everyone
// is only as available as its greediest caller lets it be: spent before
// anything else, any caller who could reach the admin listener filled it
// with forms it fetched and posted with an empty body, and then nobody,
// the admin token included, signed in until they expired. So a form is
// verified first (its HMAC, cookie and expiry need no table) and spent
// only by a password attempt the guard admitted, and one address holds at
// most maxSignInFormsPerAddress spent forms at once (the guard throttles
// failures; successful sign-ins are not throttled). Filling the table now
// takes maxSignInForms/maxSignInFormsPerAddress (512) addresses within the
// form's lifetime, and even then only password sign-ins wait: the admin
// token's sign-in verifies the form and does not spend it. The form keeps
// a page of another origin from signing this browser in as someone else,
// which with the admin token would take the token itself; a replayed
// admin-token sign-in guesses nothing the guard does not throttle.

const (
	signInCookie             = "pbac_ui_signin"
	signInFormTTL            = 10 * time.Minute
	maxSignInForms           = 1 << 14
	maxSignInFormsPerAddress = 32
)

// dashboardBinding is what a dashboard sign-in form signs in to.
var dashboardBinding = []byte("pbac dashboard sign-in")

func newSignInForms() (*signin.Forms, *signin.MemorySpender, error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails
	spent := signin.NewMemorySpender(maxSignInForms, maxSignInFormsPerAddress, nil)
	forms, err := signin.NewForms(key, signInFormTTL, spent, nil)
	return forms, spent, err
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

const formRefused = "the sign-in form is missing or expired: load it again (GET /ui/api/session/form) and send its token in " + csrfHeader

// verifySignInForm verifies the form token of a sign-in request without
// spending it (spendSignInForm); false when it answered the request.
func (h *Handler) verifySignInForm(w http.ResponseWriter, r *http.Request) (signin.Form, bool) {
	cookie := ""
	if c, err := r.Cookie(signInCookie); err == nil {
		cookie = c.Value
	}
	form, err := h.forms.Verify(r.Header.Get(csrfHeader), cookie, dashboardBinding)
	if err != nil {
		writeError(w, http.StatusForbidden, formRefused)
		return signin.Form{}, false
	}
	return form, true
}

// spendSignInForm spends a verified form token of an admitted attempt for
// the request's client address; false when it answered the request, the
// attempt counted as failed: 403 for a form already used, 429 when this
// address has maxSignInFormsPerAddress in use, 503 when all addresses
// together have maxSignInForms.
func (h *Handler) spendSignInForm(w http.ResponseWriter, r *http.Request, form signin.Form, attempt *signin.Pending) bool {
	fresh, err := h.spentForms.SpendFor(throttle.AddressKey(r.RemoteAddr), form.Nonce, form.Expires)
	if err == nil && fresh {
		return true
	}
	attempt.Done(r.Context(), false)
	switch {
	case err == nil:
		writeError(w, http.StatusForbidden, formRefused)
	case errors.Is(err, signin.ErrSpenderKeyFull):
		w.Header().Set("Retry-After", strconv.Itoa(int(time.Minute/time.Second)))
		writeError(w, http.StatusTooManyRequests, "too many sign-ins from your address lately: try again in a few minutes")
	default:
		h.cfg.Logger.Warn("dashboard: sign-in form not spent", "err", err)
		writeError(w, http.StatusServiceUnavailable, "sign-in is busy: try again shortly, or sign in with the admin token")
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
