package cimd

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ClientAssertionType is the client_assertion_type of a JWT client
// assertion (RFC 7523 §2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Bounds on a client assertion.
const (
	// MaxAssertionBytes bounds the client_assertion parameter.
	MaxAssertionBytes = 16 << 10
	maxJTIBytes       = 256
)

// ReplayStore remembers the client assertions already used. Spend records
// key until exp and reports whether it was new; of concurrent calls for one
// key exactly one gets true. An error is a refusal (the assertion cannot be
// checked for replay, so it is not accepted).
type ReplayStore interface {
	Spend(ctx context.Context, key string, exp time.Time) (bool, error)
}

// MemoryReplay is a ReplayStore in memory for one process, bounded: when
// full of keys that have not expired yet it refuses new ones (deny rather
// than forget). Replicas need a shared store.
type MemoryReplay struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time
	now  func() time.Time
}

// NewMemoryReplay holds at most max keys (default 100,000); now defaults to
// time.Now.
func NewMemoryReplay(max int, now func() time.Time) *MemoryReplay {
	if max <= 0 {
		max = 100_000
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryReplay{max: max, seen: make(map[string]time.Time), now: now}
}

// Spend implements ReplayStore.
func (m *MemoryReplay) Spend(_ context.Context, key string, exp time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if until, ok := m.seen[key]; ok && now.Before(until) {
		return false, nil
	}
	if len(m.seen) >= m.max {
		for k, until := range m.seen {
			if !now.Before(until) {
				delete(m.seen, k)
			}
		}
		if len(m.seen) >= m.max {
			return false, fmt.Errorf("cimd: replay store full (%d assertions not yet expired)", m.max)
		}
	}
	m.seen[key] = exp
	return true, nil
}

// AssertionConfig configures an AssertionVerifier. Audiences, Keys and
// Replay are required.
type AssertionConfig struct {
	// Audiences are the aud values that name this authorization server:
	// its issuer identifier and its token endpoint URL (RFC 7523 §3 item 3).
	Audiences []string
	// Keys reads the key sets of documents with a jwks_uri.
	Keys *Resolver
	// Replay remembers used jti values (RFC 7523 §3 item 7).
	Replay ReplayStore
	// Leeway is the clock skew allowed on exp, nbf and iat (default 30 s).
	Leeway time.Duration
	// MaxLifetime is how far in the future exp may be (default 10 min):
	// an assertion is for one request, and its jti is remembered until it
	// expires.
	MaxLifetime time.Duration
	Now         func() time.Time
}

// AssertionVerifier authenticates private_key_jwt clients of metadata
// documents (the draft, "Client Authentication"; OpenID Connect Core §9;
// RFC 7523 §3).
type AssertionVerifier struct {
	cfg AssertionConfig
}

// NewAssertionVerifier checks cfg and fills in its defaults.
func NewAssertionVerifier(cfg AssertionConfig) (*AssertionVerifier, error) {
	switch {
	case len(cfg.Audiences) == 0:
		return nil, errors.New("cimd: an assertion verifier needs the audiences that name the server")
	case cfg.Keys == nil:
		return nil, errors.New("cimd: an assertion verifier needs a resolver for key sets")
	case cfg.Replay == nil:
		return nil, errors.New("cimd: an assertion verifier needs a replay store")
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Audiences = slices.Clone(cfg.Audiences)
	return &AssertionVerifier{cfg: cfg}, nil
}

// AssertionSubject returns the sub claim of an assertion, unverified: the
// client it claims to authenticate, for a request that sends no client_id
// (RFC 7521 §4.2). Verify decides whether the claim is true.
func AssertionSubject(assertion string) string {
	if len(assertion) > MaxAssertionBytes {
		return ""
	}
	tok, err := jwt.ParseSigned(assertion, signingAlgs())
	if err != nil {
		return ""
	}
	var c jwt.Claims
	if tok.UnsafeClaimsWithoutVerification(&c) != nil {
		return ""
	}
	return c.Subject
}

// Verify authenticates the client of document d with a client assertion:
//
//   - d's token_endpoint_auth_method is private_key_jwt;
//   - a compact JWS of one signature, by an asymmetric algorithm
//     (SigningAlgs, or d's token_endpoint_auth_signing_alg alone), with no
//     key of its own (jwk, jku and x5u headers are refused; an x5c chain
//     is never used), and a typ,
//     if any, of JWT or client-authentication+jwt;
//   - signed by a key of d's jwks, or of the set at its jwks_uri (fetched
//     again once, when no key matches, for a rotated key);
//   - iss and sub equal to d's client_id (RFC 7523 §3 items 1, 2);
//   - aud naming this server: one of Audiences (item 3);
//   - exp present and not passed (item 4), at most MaxLifetime ahead; nbf
//     and iat, when present, not in the future (items 5, 6), all within
//     Leeway;
//   - jti present (OpenID Connect Core §9) and never used before by this
//     client (item 7), spent last, once everything else holds.
//
// Errors wrap ErrInvalidAssertion (ErrReplayed for a reused jti), or the
// Resolver's errors when the key set cannot be read.
func (v *AssertionVerifier) Verify(ctx context.Context, d *Document, assertion string) error {
	if d == nil || d.TokenEndpointAuthMethod != AuthMethodPrivateKeyJWT {
		return fmt.Errorf("%w: the client does not authenticate with private_key_jwt", ErrInvalidAssertion)
	}
	if assertion == "" || len(assertion) > MaxAssertionBytes {
		return fmt.Errorf("%w: missing, or larger than %d bytes", ErrInvalidAssertion, MaxAssertionBytes)
	}
	algs := signingAlgs()
	if d.TokenEndpointAuthSigningAlg != "" {
		algs = []jose.SignatureAlgorithm{jose.SignatureAlgorithm(d.TokenEndpointAuthSigningAlg)}
	}
	tok, err := jwt.ParseSigned(assertion, algs)
	if err != nil {
		return fmt.Errorf("%w: not a compact JWS signed with an accepted algorithm: %v", ErrInvalidAssertion, err)
	}
	if len(tok.Headers) != 1 {
		return fmt.Errorf("%w: exactly one signature expected", ErrInvalidAssertion)
	}
	h := tok.Headers[0]
	if h.JSONWebKey != nil {
		return fmt.Errorf("%w: a key embedded in the assertion is never trusted", ErrInvalidAssertion)
	}
	for _, name := range []jose.HeaderKey{"jku", "x5u"} {
		if _, ok := h.ExtraHeaders[name]; ok {
			return fmt.Errorf("%w: header %s is not accepted", ErrInvalidAssertion, name)
		}
	}
	if typ, ok := h.ExtraHeaders[jose.HeaderType]; ok {
		t, _ := typ.(string)
		t = strings.ToLower(strings.TrimPrefix(strings.ToLower(t), "application/"))
		if t != "jwt" && t != "client-authentication+jwt" {
			return fmt.Errorf("%w: typ %q is not a client assertion's", ErrInvalidAssertion, truncate(t))
		}
	}

	var claims jwt.Claims
	if err := v.verifySignature(ctx, d, tok, h, &claims); err != nil {
		return err
	}

	now := v.cfg.Now()
	leeway := v.cfg.Leeway
	switch {
	case claims.Issuer != d.ClientID:
		return fmt.Errorf("%w: iss must be the client id", ErrInvalidAssertion)
	case claims.Subject != d.ClientID:
		return fmt.Errorf("%w: sub must be the client id", ErrInvalidAssertion)
	case !slices.ContainsFunc(claims.Audience, func(a string) bool { return slices.Contains(v.cfg.Audiences, a) }):
		return fmt.Errorf("%w: aud does not name this authorization server (%s)", ErrInvalidAssertion, strings.Join(v.cfg.Audiences, " or "))
	case claims.Expiry == nil:
		return fmt.Errorf("%w: exp is missing", ErrInvalidAssertion)
	case !now.Before(claims.Expiry.Time().Add(leeway)):
		return fmt.Errorf("%w: expired at %s", ErrInvalidAssertion, claims.Expiry.Time().UTC().Format(time.RFC3339))
	case claims.Expiry.Time().After(now.Add(v.cfg.MaxLifetime + leeway)):
		return fmt.Errorf("%w: exp is more than %s ahead", ErrInvalidAssertion, v.cfg.MaxLifetime)
	case claims.NotBefore != nil && claims.NotBefore.Time().After(now.Add(leeway)):
		return fmt.Errorf("%w: not valid before %s", ErrInvalidAssertion, claims.NotBefore.Time().UTC().Format(time.RFC3339))
	case claims.IssuedAt != nil && claims.IssuedAt.Time().After(now.Add(leeway)):
		return fmt.Errorf("%w: issued in the future", ErrInvalidAssertion)
	case claims.ID == "" || len(claims.ID) > maxJTIBytes:
		return fmt.Errorf("%w: jti is missing or longer than %d bytes", ErrInvalidAssertion, maxJTIBytes)
	}
	fresh, err := v.cfg.Replay.Spend(ctx, replayKey(d.ClientID, claims.ID), claims.Expiry.Time().Add(leeway))
	if err != nil {
		return fmt.Errorf("%w: its jti cannot be recorded: %v", ErrInvalidAssertion, err)
	}
	if !fresh {
		return fmt.Errorf("%w: jti %q", ErrReplayed, truncate(claims.ID))
	}
	return nil
}

// verifySignature finds the key that signed tok and decodes its claims.
func (v *AssertionVerifier) verifySignature(ctx context.Context, d *Document, tok *jwt.JSONWebToken, h jose.Header, claims *jwt.Claims) error {
	set, err := v.cfg.Keys.KeySet(ctx, d, false)
	if err != nil {
		return err
	}
	keys := candidateKeys(set, h.KeyID, h.Algorithm)
	if len(keys) == 0 && d.JWKSURI != "" {
		if set, err = v.cfg.Keys.KeySet(ctx, d, true); err != nil {
			return err
		}
		keys = candidateKeys(set, h.KeyID, h.Algorithm)
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: no key of the client fits kid %q and alg %s", ErrInvalidAssertion, truncate(h.KeyID), h.Algorithm)
	}
	for _, k := range keys {
		if tok.Claims(k.Key, claims) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: the signature does not verify with the client's keys", ErrInvalidAssertion)
}

// candidateKeys are the keys of set that may have made a signature with
// alg and key id kid (any key, without a kid).
func candidateKeys(set *jose.JSONWebKeySet, kid, alg string) []jose.JSONWebKey {
	if set == nil {
		return nil
	}
	var out []jose.JSONWebKey
	for _, k := range set.Keys {
		if kid != "" && k.KeyID != kid || k.Use != "" && k.Use != "sig" || k.Algorithm != "" && k.Algorithm != alg {
			continue
		}
		ok := false
		switch k.Key.(type) {
		case *rsa.PublicKey:
			ok = strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
		case *ecdsa.PublicKey:
			ok = strings.HasPrefix(alg, "ES")
		case ed25519.PublicKey:
			ok = alg == "EdDSA"
		}
		if ok {
			out = append(out, k)
		}
	}
	return out
}

// replayKey namespaces a jti by its client, bounded in length whatever
// their lengths.
func replayKey(clientID, jti string) string {
	h := sha256.Sum256([]byte(clientID + "\x00" + jti))
	return "cimd-assertion:" + base64.RawURLEncoding.EncodeToString(h[:])
}

func signingAlgs() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(SigningAlgs))
	for i, a := range SigningAlgs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}
