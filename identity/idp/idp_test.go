package idp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pbac-gateway/pbac/asrv/signin"
	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/identity/idp"
)

// The tests here run against testProvider: an OpenID provider played by
// the test, so that it can sign what a real one never would (another
// issuer, another audience, an old nonce) with the key it publishes. The
// whole sign-in through a real provider (zitadel's) is in asrv's tests.

const (
	asIssuer = "https://as.example"
	clientID = "pbac"
	secret   = "s3cret"
	resource = "https://gw.example/mcp"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// signingKey is a key pair with its id.
type signingKey struct {
	kid  string
	priv *ecdsa.PrivateKey
}

func newKey(t testing.TB, kid string) signingKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, priv: k}
}

func (k signingKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: "ES256", Use: "sig"}
}

// sign makes a compact JWS of claims with typ.
func (k signingKey) sign(t testing.TB, typ string, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(claims)
	jws, err := s.Sign(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// testProvider is an OpenID provider on 127.0.0.1 whose answers the test
// sets.
type testProvider struct {
	t      testing.TB
	srv    *httptest.Server
	issuer string
	clock  *clock
	key    signingKey

	mu sync.Mutex
	// published is the key set at jwks_uri.
	published []jose.JSONWebKey
	// cacheControl is sent with the discovery document and the key set.
	cacheControl string
	// idToken makes the token endpoint's ID token for the authorization
	// request's nonce; nil: a good one.
	idToken func(nonce string) string
	// challenge and nonce are the last authorization request's.
	challenge, nonce string
	// tokenStatus, when set, is the token endpoint's answer.
	tokenStatus int

	discoveryHits, keyHits, tokenHits atomic.Int32
	down                              atomic.Bool
}

func newTestProvider(t testing.TB) *testProvider {
	t.Helper()
	p := &testProvider{t: t, clock: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, key: newKey(t, "k1")}
	p.published = []jose.JSONWebKey{p.key.public()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discoveryHits.Add(1)
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		p.writeJSON(w, map[string]any{
			"issuer": p.issuer, "authorization_endpoint": p.issuer + "/authorize", "token_endpoint": p.issuer + "/token",
			"jwks_uri": p.issuer + "/jwks", "id_token_signing_alg_values_supported": []string{"ES256", "RS256"},
			"code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		p.keyHits.Add(1)
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		p.mu.Lock()
		keys := jose.JSONWebKeySet{Keys: p.published}
		p.mu.Unlock()
		p.writeJSON(w, keys)
	})
	mux.HandleFunc("POST /token", p.serveToken)
	p.srv = httptest.NewServer(mux)
	p.issuer = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

func (p *testProvider) writeJSON(w http.ResponseWriter, v any) {
	p.mu.Lock()
	cc := p.cacheControl
	p.mu.Unlock()
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// serveToken is the token endpoint: the client must authenticate, the
// code be "good-code", the redirect URI the AS's callback, and the PKCE
// verifier match the authorization request's challenge.
func (p *testProvider) serveToken(w http.ResponseWriter, r *http.Request) {
	p.tokenHits.Add(1)
	p.mu.Lock()
	status, challenge, nonce, mint := p.tokenStatus, p.challenge, p.nonce, p.idToken
	p.mu.Unlock()
	if p.down.Load() {
		http.Error(w, "down", http.StatusBadGateway)
		return
	}
	if status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
		return
	}
	id, sec, _ := r.BasicAuth()
	sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
	if id != clientID || sec != secret || r.PostFormValue("code") != "good-code" || r.PostFormValue("grant_type") != "authorization_code" ||
		r.PostFormValue("redirect_uri") != identity.CallbackURL(asIssuer) || base64.RawURLEncoding.EncodeToString(sum[:]) != challenge {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
		return
	}
	tok := p.goodIDToken(nonce)
	if mint != nil {
		tok = mint(nonce)
	}
	p.writeJSON(w, map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": tok})
}

// claims are a good ID token's claims for nonce.
func (p *testProvider) claims(nonce string) map[string]any {
	now := p.clock.now()
	return map[string]any{
		"iss": p.issuer, "sub": "u-123", "aud": clientID, "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(),
		"nonce": nonce, "name": "Dana Engineer", "email": "dana@example.com", "email_verified": true,
		"groups": []string{"engineering", "oncall"},
	}
}

func (p *testProvider) goodIDToken(nonce string) string {
	return p.key.sign(p.t, "JWT", p.claims(nonce))
}

// provider is an idp.Provider for this test provider.
func (p *testProvider) provider(mod func(*identity.OIDCConfig)) *idp.Provider {
	p.t.Helper()
	f := filepath.Join(p.t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
		p.t.Fatal(err)
	}
	cfg := identity.OIDCConfig{Issuer: p.issuer, ClientID: clientID, ClientSecretFile: f}
	if mod != nil {
		mod(&cfg)
	}
	pr, err := idp.New(cfg, idp.Options{ASIssuer: asIssuer, Now: p.clock.now, Timeout: 2 * time.Second})
	if err != nil {
		p.t.Fatal(err)
	}
	return pr
}

// start begins a sign-in and records the authorization request's
// challenge and nonce as the provider's authorization endpoint would.
func (p *testProvider) start(pr *idp.Provider) identity.Pending {
	p.t.Helper()
	red, err := pr.Start(context.Background())
	if err != nil {
		p.t.Fatal(err)
	}
	u, err := url.Parse(red.URL)
	if err != nil {
		p.t.Fatal(err)
	}
	q := u.Query()
	for k, want := range map[string]string{"client_id": clientID, "response_type": "code", "code_challenge_method": "S256",
		"redirect_uri": asIssuer + "/oauth2/idp/callback", "state": red.Pending.State, "nonce": red.Pending.Nonce} {
		if q.Get(k) != want {
			p.t.Fatalf("authorization request %s = %q, want %q (%s)", k, q.Get(k), want, red.URL)
		}
	}
	if u.Scheme+"://"+u.Host+u.Path != p.issuer+"/authorize" {
		p.t.Fatalf("authorization request sent to %s", red.URL)
	}
	p.mu.Lock()
	p.challenge, p.nonce = q.Get("code_challenge"), q.Get("nonce")
	p.mu.Unlock()
	return red.Pending
}

// spender is an in-memory jti store.
func spender(c *clock) identity.Spender { return signin.NewMemorySpender(1000, 0, c.now) }
