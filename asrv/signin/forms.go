package signin

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Form token errors. ErrFormInvalid is a token this server did not issue
// for this browser and this sign-in; ErrFormExpired one that was, but is
// too old or already used.
var (
	ErrFormInvalid = errors.New("sign-in form token is invalid")
	ErrFormExpired = errors.New("sign-in form token has expired or was used")
)

// Spender records that a form token's nonce was used, until exp: false
// when it already was. The authorization server spends nonces in its token
// store (so replicas agree); the dashboard in memory (MemorySpender).
type Spender interface {
	Spend(ctx context.Context, nonce string, exp time.Time) (fresh bool, err error)
}

// Forms issues and checks the CSRF tokens of sign-in forms. A token is
// bound to the browser (a value the page also sets as a cookie: a page of
// another origin can neither read the form nor set that cookie on this
// server's host without also knowing the token's key), to what is being
// signed in to (the binding: for the AS, its authorization request), to
// this server (an HMAC key) and to a lifetime, and it can be used once (the
// Spender). Unlike a double-submitted cookie, nobody can make up a pair
// that passes.
type Forms struct {
	key   []byte
	ttl   time.Duration
	spend Spender
	now   func() time.Time
}

const (
	formVersion  = 1
	formNonceLen = 16
	formLen      = 1 + 8 + formNonceLen + sha256.Size
)

// NewForms returns form tokens keyed by key (at least 32 bytes; replicas
// that share sign-ins share it), living ttl, spent by spend.
func NewForms(key []byte, ttl time.Duration, spend Spender, now func() time.Time) (*Forms, error) {
	if len(key) < 32 {
		return nil, errors.New("signin: the form key must be at least 32 bytes")
	}
	if ttl <= 0 || spend == nil {
		return nil, errors.New("signin: forms need a lifetime and a spender")
	}
	if now == nil {
		now = time.Now
	}
	return &Forms{key: append([]byte(nil), key...), ttl: ttl, spend: spend, now: now}, nil
}

// TTL is how long a form token lives.
func (f *Forms) TTL() time.Duration { return f.ttl }

// Issue returns a token for the browser holding cookie, signing in to
// binding.
func (f *Forms) Issue(cookie string, binding []byte) string {
	b := make([]byte, formLen)
	b[0] = formVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(f.now().Add(f.ttl).Unix()))
	_, _ = rand.Read(b[9 : 9+formNonceLen]) // crypto/rand.Read never fails
	copy(b[9+formNonceLen:], f.mac(b[:9+formNonceLen], cookie, binding))
	return base64.RawURLEncoding.EncodeToString(b)
}

// Check verifies a token for the browser holding cookie, signing in to
// binding, and spends it. It returns ErrFormInvalid, ErrFormExpired, or
// the spender's error.
func (f *Forms) Check(ctx context.Context, token, cookie string, binding []byte) error {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != formLen || b[0] != formVersion || cookie == "" {
		return ErrFormInvalid
	}
	if !hmac.Equal(b[9+formNonceLen:], f.mac(b[:9+formNonceLen], cookie, binding)) {
		return ErrFormInvalid
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(b[1:9])), 0)
	if !f.now().Before(exp) {
		return ErrFormExpired
	}
	fresh, err := f.spend.Spend(ctx, base64.RawURLEncoding.EncodeToString(b[9:9+formNonceLen]), exp)
	if err != nil {
		return fmt.Errorf("spend the sign-in form token: %w", err)
	}
	if !fresh {
		return ErrFormExpired
	}
	return nil
}

func (f *Forms) mac(head []byte, cookie string, binding []byte) []byte {
	m := hmac.New(sha256.New, f.key)
	m.Write([]byte("pbac sign-in form v1\x00"))
	m.Write(head)
	for _, part := range [][]byte{[]byte(cookie), binding} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		m.Write(n[:])
		m.Write(part)
	}
	return m.Sum(nil)
}

// MemorySpender spends nonces in memory, at most max at once (expired ones
// are forgotten first); a process's own sign-ins only.
type MemorySpender struct {
	max int
	now func() time.Time

	mu   sync.Mutex
	used map[string]time.Time
}

// ErrSpenderFull means too many form tokens are in use to record another.
var ErrSpenderFull = errors.New("too many sign-in forms in use; try again later")

// NewMemorySpender returns a spender holding at most max nonces.
func NewMemorySpender(max int, now func() time.Time) *MemorySpender {
	if now == nil {
		now = time.Now
	}
	return &MemorySpender{max: max, now: now, used: map[string]time.Time{}}
}

// Spend implements Spender.
func (m *MemorySpender) Spend(_ context.Context, nonce string, exp time.Time) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.used[nonce]; ok && now.Before(e) {
		return false, nil
	}
	if len(m.used) >= m.max {
		for k, e := range m.used {
			if !now.Before(e) {
				delete(m.used, k)
			}
		}
		if len(m.used) >= m.max {
			return false, ErrSpenderFull
		}
	}
	m.used[nonce] = exp
	return true, nil
}
