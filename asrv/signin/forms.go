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
	form, err := f.Verify(token, cookie, binding)
	if err != nil {
		return err
	}
	fresh, err := f.spend.Spend(ctx, form.Nonce, form.Expires)
	if err != nil {
		return fmt.Errorf("spend the sign-in form token: %w", err)
	}
	if !fresh {
		return ErrFormExpired
	}
	return nil
}

// Form is a verified form token: the nonce to spend, and when it expires.
type Form struct {
	Nonce   string
	Expires time.Time
}

// Verify verifies a token as Check does, without spending it: the caller
// spends Form.Nonce itself, once it knows the request is worth a place
// among the spent ones (the dashboard, with the client's address:
// MemorySpender.SpendFor). It returns ErrFormInvalid or ErrFormExpired.
func (f *Forms) Verify(token, cookie string, binding []byte) (Form, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != formLen || b[0] != formVersion || cookie == "" {
		return Form{}, ErrFormInvalid
	}
	if !hmac.Equal(b[9+formNonceLen:], f.mac(b[:9+formNonceLen], cookie, binding)) {
		return Form{}, ErrFormInvalid
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(b[1:9])), 0)
	if !f.now().Before(exp) {
		return Form{}, ErrFormExpired
	}
	return Form{Nonce: base64.RawURLEncoding.EncodeToString(b[9 : 9+formNonceLen]), Expires: exp}, nil
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
// are forgotten first), and at most perKey of one key at once (SpendFor);
// a process's own sign-ins only. A table capped for everyone is only as
// available as its greediest caller lets it be: the per-key bound is what
// keeps one client (one address) from filling it for everyone.
type MemorySpender struct {
	max, perKey int
	now         func() time.Time

	mu    sync.Mutex
	used  map[string]spentNonce
	byKey map[string]int // the nonces held of each key but ""
}

type spentNonce struct {
	exp time.Time
	key string
}

// Errors of a MemorySpender.
var (
	// ErrSpenderFull means too many form tokens are in use to record another.
	ErrSpenderFull = errors.New("too many sign-in forms in use; try again later")
	// ErrSpenderKeyFull means this key (client address) has too many form
	// tokens in use to record another.
	ErrSpenderKeyFull = errors.New("too many sign-in forms in use from this address; try again later")
)

// NewMemorySpender returns a spender holding at most max nonces, and at
// most perKey of one key (none: perKey <= 0).
func NewMemorySpender(max, perKey int, now func() time.Time) *MemorySpender {
	if now == nil {
		now = time.Now
	}
	return &MemorySpender{max: max, perKey: perKey, now: now, used: map[string]spentNonce{}, byKey: map[string]int{}}
}

// Spend implements Spender: a nonce of no key, bounded by max only.
func (m *MemorySpender) Spend(_ context.Context, nonce string, exp time.Time) (bool, error) {
	return m.SpendFor("", nonce, exp)
}

// SpendFor spends nonce, until exp, for key (the client's address, as
// throttle.AddressKey gives it): false when it already was, ErrSpenderKeyFull
// when key holds perKey unexpired nonces, ErrSpenderFull when all keys
// together hold max.
func (m *MemorySpender) SpendFor(key, nonce string, exp time.Time) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.used[nonce]; ok {
		if now.Before(e.exp) {
			return false, nil
		}
		m.forget(nonce, e)
	}
	keyFull := func() bool { return key != "" && m.perKey > 0 && m.byKey[key] >= m.perKey }
	if len(m.used) >= m.max || keyFull() {
		for k, e := range m.used {
			if !now.Before(e.exp) {
				m.forget(k, e)
			}
		}
	}
	switch {
	case keyFull():
		return false, ErrSpenderKeyFull
	case len(m.used) >= m.max:
		return false, ErrSpenderFull
	}
	m.used[nonce] = spentNonce{exp: exp, key: key}
	if key != "" {
		m.byKey[key]++
	}
	return true, nil
}

func (m *MemorySpender) forget(nonce string, e spentNonce) {
	delete(m.used, nonce)
	if e.key == "" {
		return
	}
	if m.byKey[e.key]--; m.byKey[e.key] <= 0 {
		delete(m.byKey, e.key)
	}
}
