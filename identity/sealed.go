package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ErrNoSealedSignIn means the callback's state names no single sign-on this
// browser started here (no cookie, a cookie sealed elsewhere or for another
// state, or one that expired).
var ErrNoSealedSignIn = errors.New("no sign-in of this browser has this state")

// MaxSealedCookie keeps a sealed cookie within what browsers store.
const MaxSealedCookie = 3800

// SealedSignIn is a started single sign-on as kept in the browser.
type SealedSignIn struct {
	Pending Pending `json:"p"`
	// Resume is what the sign-in resumes when it completes (the AS's
	// authorization request); empty for the dashboard.
	Resume string `json:"q,omitempty"`
	Exp    int64  `json:"e"`
	// Vouch is the provider the person vouched for the agent as on the
	// sign-in page (user attestation), applied once they are signed in.
	Vouch string `json:"v,omitempty"`
}

// SignInSeal keeps started single sign-ons in the browser rather than on
// the server: each in a cookie named after its state, sealed (AES-256-GCM)
// with the cookie's name as additional data, so a cookie opens only under
// this key, for this state. The server then keeps nothing for a sign-in
// that never completes.
type SignInSeal struct {
	aead   cipher.AEAD
	prefix string
	label  string
}

// NewSignInSeal seals under a 32-byte key; cookies are named prefix plus a
// digest of label and the state.
func NewSignInSeal(key []byte, prefix, label string) (*SignInSeal, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &SignInSeal{aead: aead, prefix: prefix, label: label}, nil
}

// CookieName is the cookie of the sign-in with this state.
func (s *SignInSeal) CookieName(state string) string {
	sum := sha256.Sum256([]byte(s.label + "\x00" + state))
	return s.prefix + hex.EncodeToString(sum[:8])
}

// Seal returns the cookie's name and value for rec.
func (s *SignInSeal) Seal(rec SealedSignIn) (name, value string, err error) {
	plain, err := json.Marshal(rec)
	if err != nil {
		return "", "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", "", err
	}
	name = s.CookieName(rec.Pending.State)
	return name, base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(name))), nil
}

// Open reads the sealed sign-in of the callback's state from r's cookies:
// it must open under this key for this name, carry this state, and not
// have expired at now. The cookie's name is returned whenever the state is
// usable, so the caller can clear it; errors wrap ErrNoSealedSignIn.
func (s *SignInSeal) Open(r *http.Request, state string, now time.Time) (SealedSignIn, string, error) {
	if state == "" || len(state) > 512 {
		return SealedSignIn{}, "", fmt.Errorf("%w: the callback's state is missing or too long", ErrNoSealedSignIn)
	}
	name := s.CookieName(state)
	c, err := r.Cookie(name)
	if err != nil {
		return SealedSignIn{}, name, fmt.Errorf("%w: no cookie %s", ErrNoSealedSignIn, name)
	}
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	n := s.aead.NonceSize()
	if err != nil || len(raw) < n {
		return SealedSignIn{}, name, fmt.Errorf("%w: the cookie is malformed", ErrNoSealedSignIn)
	}
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(name))
	if err != nil {
		return SealedSignIn{}, name, fmt.Errorf("%w: the cookie was not sealed here for this state", ErrNoSealedSignIn)
	}
	var rec SealedSignIn
	if err := json.Unmarshal(plain, &rec); err != nil || rec.Pending.State != state {
		return SealedSignIn{}, name, fmt.Errorf("%w: the cookie is for another state", ErrNoSealedSignIn)
	}
	if now.Unix() >= rec.Exp {
		return SealedSignIn{}, name, fmt.Errorf("%w: the sign-in expired", ErrNoSealedSignIn)
	}
	return rec, name, nil
}
