package asrv

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv/signin"
)

// The sign-in form's CSRF token (signin.Forms) is bound to the browser's
// sign-in cookie and to the authorization request the page was shown for,
// keyed by a key derived from the token secret (so replicas that share the
// secret accept each other's forms) and spent once in the token store (so
// they agree on that too).

// signInFormTTL is how long a sign-in page may sit before it is posted.
const signInFormTTL = 10 * time.Minute

// signInFormsKey derives the form tokens' HMAC key from the token secret.
func signInFormsKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("pbac sign-in form key"))
	return m.Sum(nil)
}

var _ signin.Spender = storeSpender{}

// storeSpender spends form nonces as client-assertion JTIs in the token
// store: atomically, once, on every replica.
type storeSpender struct{ store Store }

func (s storeSpender) Spend(ctx context.Context, nonce string, exp time.Time) (bool, error) {
	err := s.store.SetClientAssertionJWT(ctx, "pbac-sign-in-form:"+nonce, exp)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fosite.ErrJTIKnown):
		return false, nil
	default:
		return false, err
	}
}

// signInBindingParams are the authorization request's parameters a sign-in
// form is bound to.
var signInBindingParams = []string{"client_id", "redirect_uri", "response_type", "response_mode", "scope", "state",
	"code_challenge", "code_challenge_method", "nonce", "prompt"}

// signInBinding is the digest of the authorization request as fosite reads
// it from form (query and posted body alike): a form shown for one request
// does not sign in to another.
func signInBinding(form url.Values) []byte {
	h := sha256.New()
	write := func(k, v string) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	for _, k := range signInBindingParams {
		write(k, form.Get(k))
	}
	for _, r := range slices.Sorted(slices.Values(form["resource"])) {
		write("resource", r)
	}
	return h.Sum(nil)
}

// signInCookie is the browser's sign-in cookie, or "".
func signInCookie(r *http.Request) string {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) > 128 {
		return ""
	}
	return c.Value
}

// checkSignInForm checks and spends a posted sign-in form's token.
func (s *Server) checkSignInForm(r *http.Request) error {
	return s.forms.Check(r.Context(), r.PostForm.Get("csrf_token"), signInCookie(r), signInBinding(r.Form))
}
