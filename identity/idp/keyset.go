package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/pbac-gateway/pbac/identity"
)

// The provider's key set (JWKS) is cached as its headers say, within these
// bounds (ten minutes when they say nothing). A token signed with a key id
// the cached set lacks makes the set be fetched again (the provider rotated
// its keys), at most once per unknownKidRefresh: forged key ids cannot make
// this server hammer the provider. A known key id whose signature fails
// fetches nothing.
const (
	keysDefaultTTL    = 10 * time.Minute
	keysMinTTL        = time.Minute
	keysMaxTTL        = 24 * time.Hour
	unknownKidRefresh = 30 * time.Second
	maxKeys           = 100
)

// joseAlgs are signingAlgs as go-jose names them.
var joseAlgs = func() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(signingAlgs))
	for i, a := range signingAlgs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}()

// keySet verifies signatures with the provider's published keys. It is the
// oidc.KeySet of the ID token verifier (in place of go-oidc's remote key
// set, which keeps keys forever, fetches on every failed signature, from a
// goroutine of its own, and reads unbounded bodies).
type keySet struct{ p *Provider }

var _ oidc.KeySet = keySet{}

// VerifySignature implements oidc.KeySet: the payload of a JWS that one of
// the provider's keys signed.
func (k keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, joseAlgs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", identity.ErrInvalidToken, err)
	}
	return k.verify(ctx, jws)
}

func (k keySet) verify(ctx context.Context, jws *jose.JSONWebSignature) ([]byte, error) {
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures, want one", identity.ErrInvalidToken, len(jws.Signatures))
	}
	h := jws.Signatures[0].Header
	keys, err := k.keys(ctx)
	if err != nil {
		return nil, err
	}
	if h.KeyID != "" && !hasKeyID(keys, h.KeyID) {
		since := k.p.now().Add(-unknownKidRefresh)
		keys, err = k.p.keys.refresh(ctx, k.p.now, func(ok bool, fetchedAt, _ time.Time) bool {
			return !ok || !fetchedAt.After(since)
		}, k.fetch, k.p.log, "key set")
		if err != nil {
			return nil, err
		}
	}
	for _, key := range keys {
		if (h.KeyID != "" && key.KeyID != h.KeyID) || (key.Algorithm != "" && key.Algorithm != h.Algorithm) ||
			(key.Use != "" && key.Use != "sig") || !key.IsPublic() {
			continue
		}
		if payload, err := jws.Verify(key.Key); err == nil {
			return payload, nil
		}
	}
	return nil, fmt.Errorf("%w: no key of the provider verifies the signature (kid %q, alg %s)", identity.ErrInvalidToken, h.KeyID, h.Algorithm)
}

// keys returns the cached key set, fetched again when its lifetime is
// over.
func (k keySet) keys(ctx context.Context) ([]jose.JSONWebKey, error) {
	if keys, ok := k.p.keys.fresh(k.p.now()); ok {
		return keys, nil
	}
	return k.p.keys.refresh(ctx, k.p.now, expired(k.p.now), k.fetch, k.p.log, "key set")
}

// fetch reads the key set from the jwks_uri of the discovery document.
// Keys of types this server does not understand are skipped (RFC 7517
// §5); symmetric and private keys are never used.
func (k keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, time.Duration, error) {
	md, err := k.p.metadata(ctx)
	if err != nil {
		return nil, 0, err
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	h, err := k.p.fetchJSON(ctx, md.JWKSURI, &doc)
	if err != nil {
		return nil, 0, err
	}
	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil || !key.Valid() || !key.IsPublic() {
			continue
		}
		keys = append(keys, key)
		if len(keys) == maxKeys {
			break
		}
	}
	if len(keys) == 0 {
		return nil, 0, fmt.Errorf("%w: the key set at %s has no usable public key", identity.ErrUnavailable, md.JWKSURI)
	}
	return keys, lifetime(h, keysDefaultTTL, keysMinTTL, keysMaxTTL), nil
}

func hasKeyID(keys []jose.JSONWebKey, kid string) bool {
	for _, k := range keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}

// recordingKeySet is a keySet that keeps its last error: go-oidc reports a
// key set's error as text, and a provider that cannot be reached must not
// read as a forged token.
type recordingKeySet struct {
	keySet
	err error
}

func (r *recordingKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := r.keySet.VerifySignature(ctx, jwt)
	r.err = err
	return payload, err
}

// unavailable is the key set's error when it could not get the keys.
func (r *recordingKeySet) unavailable() error {
	if errors.Is(r.err, identity.ErrUnavailable) {
		return r.err
	}
	return nil
}
