package cimd

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	testIssuer   = "https://as.example"
	testTokenURL = "https://as.example/oauth2/token"
)

type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func newECKey(t testing.TB, kid string) signingKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: jose.ES256, priv: k}
}

func newRSAKey(t testing.TB, kid string) signingKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: jose.RS256, priv: k}
}

func (k signingKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Use: "sig", Algorithm: string(k.alg)}
}

func keySetJSON(t testing.TB, keys ...signingKey) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.public())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign makes an assertion with k; header adds or overrides headers.
func (k signingKey) sign(t testing.TB, claims map[string]any, header map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid)
	for n, v := range header {
		opts = opts.WithHeader(n, v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// privateKeyJWTDoc is a confidential client's document with inline keys.
func privateKeyJWTDoc(t testing.TB, id string, keys ...signingKey) *Document {
	t.Helper()
	doc := publicDoc(id)
	doc["token_endpoint_auth_method"] = "private_key_jwt"
	doc["grant_types"] = []string{"authorization_code", "client_credentials"}
	var set any
	if err := json.Unmarshal(keySetJSON(t, keys...), &set); err != nil {
		t.Fatal(err)
	}
	doc["jwks"] = set
	d, err := ParseDocument(id, mustJSON(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newTestVerifier(t testing.TB, r *Resolver, now func() time.Time) *AssertionVerifier {
	t.Helper()
	v, err := NewAssertionVerifier(AssertionConfig{
		Audiences: []string{testIssuer, testTokenURL}, Keys: r, Replay: NewMemoryReplay(0, now), Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestClientAssertionRules(t *testing.T) {
	const id = "https://agent.example/client.json"
	clk := newClock()
	key := newECKey(t, "k1")
	rsaKey := newRSAKey(t, "r1")
	other := newECKey(t, "k1") // same kid, another key
	doc := privateKeyJWTDoc(t, id, key, rsaKey)
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	now := clk.Now()
	good := func() map[string]any {
		return map[string]any{"iss": id, "sub": id, "aud": testTokenURL, "jti": rand.Text(),
			"iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix()}
	}
	with := func(k string, v any) map[string]any {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	tests := []struct {
		name      string
		doc       *Document
		assertion string
		want      error // nil: accepted
	}{
		{"a good assertion", doc, key.sign(t, good(), nil), nil},
		{"an RSA key", doc, rsaKey.sign(t, good(), nil), nil},
		{"aud is the issuer", doc, key.sign(t, with("aud", testIssuer), nil), nil},
		{"aud is an array naming the token endpoint", doc, key.sign(t, with("aud", []string{"https://other.example", testTokenURL}), nil), nil},
		{"no kid: every key is tried", doc, key.sign(t, good(), map[jose.HeaderKey]any{"kid": ""}), nil},
		{"typ client-authentication+jwt", doc, key.sign(t, good(), map[jose.HeaderKey]any{"typ": "client-authentication+jwt"}), nil},
		{"wrong aud", doc, key.sign(t, with("aud", "https://other-as.example/token"), nil), ErrInvalidAssertion},
		{"aud missing", doc, key.sign(t, with("aud", nil), nil), ErrInvalidAssertion},
		{"expired", doc, key.sign(t, with("exp", now.Add(-time.Minute).Unix()), nil), ErrInvalidAssertion},
		{"exp missing", doc, key.sign(t, with("exp", nil), nil), ErrInvalidAssertion},
		{"exp too far ahead", doc, key.sign(t, with("exp", now.Add(time.Hour).Unix()), nil), ErrInvalidAssertion},
		{"nbf in the future", doc, key.sign(t, with("nbf", now.Add(time.Minute).Unix()), nil), ErrInvalidAssertion},
		{"iat in the future", doc, key.sign(t, with("iat", now.Add(time.Minute).Unix()), nil), ErrInvalidAssertion},
		{"jti missing", doc, key.sign(t, with("jti", nil), nil), ErrInvalidAssertion},
		{"iss is not the client", doc, key.sign(t, with("iss", "https://evil.example/client.json"), nil), ErrInvalidAssertion},
		{"sub is not the client", doc, key.sign(t, with("sub", "someone"), nil), ErrInvalidAssertion},
		{"signed by another key with the same kid", doc, other.sign(t, good(), nil), ErrInvalidAssertion},
		{"a kid the client does not have", doc, key.sign(t, good(), map[jose.HeaderKey]any{"kid": "nope"}), ErrInvalidAssertion},
		{"a key embedded in the header is not trusted", doc, other.sign(t, good(), map[jose.HeaderKey]any{"jwk": other.public(), "kid": ""}), ErrInvalidAssertion},
		{"a jku header is refused", doc, key.sign(t, good(), map[jose.HeaderKey]any{"jku": "https://evil.example/jwks.json"}), ErrInvalidAssertion},
		{"an x5c chain does not make its key trusted", doc, other.sign(t, good(), map[jose.HeaderKey]any{"x5c": []string{selfSignedDER(t, other)}}), ErrInvalidAssertion},
		{"typ of an access token", doc, key.sign(t, good(), map[jose.HeaderKey]any{"typ": "at+jwt"}), ErrInvalidAssertion},
		{"HS256 is refused", doc, hmacAssertion(t, good()), ErrInvalidAssertion},
		{"alg none is refused", doc, "eyJhbGciOiJub25lIn0." + b64(t, good()) + ".", ErrInvalidAssertion},
		{"garbage", doc, "not.a.jwt", ErrInvalidAssertion},
		{"a public client cannot use an assertion", mustParse(t, id, publicDoc(id)), key.sign(t, good(), nil), ErrInvalidAssertion},
		{"the document pins another algorithm", withAlg(doc, "RS256"), key.sign(t, good(), nil), ErrInvalidAssertion},
	}
	v := newTestVerifier(t, r, clk.Now)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Verify(t.Context(), tc.doc, tc.assertion)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestClientAssertionReplay(t *testing.T) {
	clk := newClock()
	key := newECKey(t, "k1")
	a, b := "https://a.example/client.json", "https://b.example/client.json"
	docA, docB := privateKeyJWTDoc(t, a, key), privateKeyJWTDoc(t, b, key)
	r, _ := New(Config{})
	defer r.Close()
	v := newTestVerifier(t, r, clk.Now)
	claims := func(id string) map[string]any {
		return map[string]any{"iss": id, "sub": id, "aud": testIssuer, "jti": "same-jti",
			"exp": clk.Now().Add(time.Minute).Unix()}
	}
	first := key.sign(t, claims(a), nil)
	if err := v.Verify(t.Context(), docA, first); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(t.Context(), docA, first); !errors.Is(err, ErrReplayed) || !errors.Is(err, ErrInvalidAssertion) {
		t.Fatalf("replayed: %v", err)
	}
	if err := v.Verify(t.Context(), docA, key.sign(t, claims(a), nil)); !errors.Is(err, ErrReplayed) {
		t.Fatalf("a new assertion with a used jti: %v", err)
	}
	if err := v.Verify(t.Context(), docB, key.sign(t, claims(b), nil)); err != nil {
		t.Fatalf("another client's jti space: %v", err)
	}
	// Concurrent presentations of one assertion: exactly one is accepted.
	c := claims(a)
	c["jti"] = "race"
	one := key.sign(t, c, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 16 {
		wg.Go(func() {
			if v.Verify(context.Background(), docA, one) == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("%d of 16 concurrent presentations accepted", accepted)
	}
}

func TestMemoryReplayIsBounded(t *testing.T) {
	clk := newClock()
	m := NewMemoryReplay(2, clk.Now)
	ctx := t.Context()
	exp := clk.Now().Add(time.Minute)
	for _, k := range []string{"a", "b"} {
		if ok, err := m.Spend(ctx, k, exp); !ok || err != nil {
			t.Fatal(k, ok, err)
		}
	}
	if ok, err := m.Spend(ctx, "c", exp); ok || err == nil {
		t.Fatalf("full of live keys: %v %v, want a refusal", ok, err)
	}
	clk.Add(2 * time.Minute)
	if ok, err := m.Spend(ctx, "c", clk.Now().Add(time.Minute)); !ok || err != nil {
		t.Fatalf("after expiry: %v %v", ok, err)
	}
	if ok, _ := m.Spend(ctx, "a", clk.Now().Add(time.Minute)); !ok {
		t.Fatal("an expired key is spendable again")
	}
}

// TestClientAssertionKeysFromJWKSURI: keys at jwks_uri are fetched with the
// same rules and cached; a key rotated in is found by fetching again, but
// not more often than CacheMin.
func TestClientAssertionKeysFromJWKSURI(t *testing.T) {
	oldKey, newKey := newECKey(t, "old"), newECKey(t, "new")
	var mu sync.Mutex
	served := keySetJSON(t, oldKey)
	ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		serveJSON(w, served, "Cache-Control", "max-age=3600", "Content-Type", "application/jwk-set+json")
	})
	clk := newClock()
	r := newTestResolver(t, ds, func(c *Config) { c.Now = clk.Now })
	const id = "https://agent.example/client.json"
	doc := publicDoc(id)
	doc["token_endpoint_auth_method"] = "private_key_jwt"
	doc["jwks_uri"] = ds.id("/jwks.json")
	d := mustParse(t, id, doc)
	v := newTestVerifier(t, r, clk.Now)
	claims := func() map[string]any {
		return map[string]any{"iss": id, "sub": id, "aud": testIssuer, "jti": rand.Text(), "exp": clk.Now().Add(time.Minute).Unix()}
	}
	if err := v.Verify(t.Context(), d, oldKey.sign(t, claims(), nil)); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(t.Context(), d, oldKey.sign(t, claims(), nil)); err != nil {
		t.Fatal(err)
	}
	if n := ds.hitsOf("/jwks.json"); n != 1 {
		t.Fatalf("key set fetched %d times, want 1 (cached)", n)
	}
	mu.Lock()
	served = keySetJSON(t, newKey)
	mu.Unlock()
	if err := v.Verify(t.Context(), d, newKey.sign(t, claims(), nil)); !errors.Is(err, ErrInvalidAssertion) {
		t.Fatalf("a new kid right after a fetch: %v (the set is not fetched again within CacheMin)", err)
	}
	clk.Add(2 * time.Minute)
	if err := v.Verify(t.Context(), d, newKey.sign(t, claims(), nil)); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if n := ds.hitsOf("/jwks.json"); n != 2 {
		t.Fatalf("key set fetched %d times, want 2", n)
	}

	// Fetching off: a jwks_uri cannot be read.
	off, _ := New(Config{})
	defer off.Close()
	if _, err := off.KeySet(t.Context(), d, false); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("jwks_uri with fetching off: %v", err)
	}
}

func TestAssertionSubject(t *testing.T) {
	key := newECKey(t, "k")
	if got := AssertionSubject(key.sign(t, map[string]any{"sub": "https://a.example/c.json"}, nil)); got != "https://a.example/c.json" {
		t.Fatal(got)
	}
	if got := AssertionSubject("garbage"); got != "" {
		t.Fatal(got)
	}
}

// selfSignedDER is a base64 (standard) DER certificate for k's public key.
func selfSignedDER(t testing.TB, k signingKey) string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.priv.Public(), k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func mustParse(t testing.TB, id string, doc map[string]any) *Document {
	t.Helper()
	d, err := ParseDocument(id, mustJSON(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func withAlg(d *Document, alg string) *Document {
	cp := d.Clone()
	cp.TokenEndpointAuthSigningAlg = alg
	return cp
}

func hmacAssertion(t testing.TB, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(t testing.TB, v any) string {
	t.Helper()
	return base64.RawURLEncoding.EncodeToString(mustJSON(t, v))
}
