package idp_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/identity/idp"
)

// TestSignInThroughTheProvider: a sign-in started here and answered by the
// provider's callback yields the person its ID token names, subject and
// groups from the configured claims; the code is redeemed with the client
// secret and the PKCE verifier.
func TestSignInThroughTheProvider(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*identity.OIDCConfig)
		want identity.Person
	}{
		{"defaults: sub and groups", nil,
			identity.Person{Subject: "u-123", Name: "Dana Engineer", Email: "dana@example.com", Groups: []string{"engineering", "oncall"}}},
		{"subject from email, groups from roles", func(c *identity.OIDCConfig) { c.SubjectClaim, c.GroupsClaim = "email", "roles" },
			identity.Person{Subject: "dana@example.com", Name: "Dana Engineer", Email: "dana@example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newTestProvider(t)
			pr := op.provider(tc.mod)
			pend := op.start(pr)
			got, err := pr.Finish(context.Background(), pend, url.Values{"code": {"good-code"}, "state": {pend.State}})
			if err != nil {
				t.Fatal(err)
			}
			if got.Subject != tc.want.Subject || got.Name != tc.want.Name || got.Email != tc.want.Email || !slices.Equal(got.Groups, tc.want.Groups) {
				t.Fatalf("person %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestSignInRefusals: every way a callback or an ID token can be wrong
// refuses the sign-in, with the error class the page depends on.
func TestSignInRefusals(t *testing.T) {
	other := newKey(t, "k1") // same key id, another key
	for _, tc := range []struct {
		name string
		// token makes the provider's ID token (nil: a good one).
		token func(op *testProvider, nonce string) string
		// callback changes the callback query.
		callback func(q url.Values)
		setup    func(op *testProvider)
		mod      func(*identity.OIDCConfig)
		want     error
	}{
		{name: "wrong issuer", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) { c["iss"] = "https://evil.example" })},
		{name: "wrong audience", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) { c["aud"] = "someone-else" })},
		{name: "several audiences without azp", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) { c["aud"] = []string{clientID, "other"} })},
		{name: "authorized party is another client", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) { c["azp"] = "other" })},
		{name: "wrong key with the provider's key id", want: identity.ErrInvalidToken, token: func(op *testProvider, nonce string) string {
			return other.sign(t, "JWT", op.claims(nonce))
		}},
		{name: "unknown key id", want: identity.ErrInvalidToken, token: func(op *testProvider, nonce string) string {
			return newKey(t, "k9").sign(t, "JWT", op.claims(nonce))
		}},
		{name: "replayed nonce (an earlier sign-in's token)", want: identity.ErrInvalidToken, token: func(op *testProvider, _ string) string {
			return op.goodIDToken("an-earlier-nonce")
		}},
		{name: "no nonce", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) { delete(c, "nonce") })},
		{name: "expired", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) { c["exp"] = c["iat"].(int64) - 1 })},
		{name: "no exp", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) { delete(c, "exp") })},
		{name: "no iat", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) { delete(c, "iat") })},
		{name: "issued in the future", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) {
			c["iat"] = c["iat"].(int64) + 3600
			c["exp"] = c["iat"].(int64) + 300
		})},
		{name: "no subject", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) { delete(c, "sub") })},
		{name: "subject not a string", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) { c["sub"] = 42 })},
		{name: "subject claim missing", want: identity.ErrInvalidToken, mod: func(c *identity.OIDCConfig) { c.SubjectClaim = "employee_id" }},
		{name: "unverified email as subject", want: identity.ErrInvalidToken, mod: func(c *identity.OIDCConfig) { c.SubjectClaim = "email" },
			token: claimsWith(func(c map[string]any) { c["email_verified"] = false })},
		{name: "groups not strings", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) { c["groups"] = []any{"a", 1} })},
		{name: "groups as a distributed claim", want: identity.ErrInvalidToken, token: claimsWith(func(c map[string]any) {
			delete(c, "groups")
			c["_claim_names"] = map[string]string{"groups": "src1"}
			c["_claim_sources"] = map[string]any{"src1": map[string]string{"endpoint": "https://graph.example/groups"}}
		})},
		{name: "signature of another payload", want: identity.ErrInvalidToken, token: func(op *testProvider, nonce string) string {
			good := strings.Split(op.goodIDToken(nonce), ".")
			c := op.claims(nonce)
			c["sub"] = "admin"
			raw, _ := json.Marshal(c)
			return good[0] + "." + base64.RawURLEncoding.EncodeToString(raw) + "." + good[2]
		}},
		{name: "alg none", want: identity.ErrInvalidToken, token: func(op *testProvider, nonce string) string {
			raw, _ := json.Marshal(op.claims(nonce))
			return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"k1"}`)) + "." + base64.RawURLEncoding.EncodeToString(raw) + "."
		}},
		{name: "HS256 keyed with the public key", want: identity.ErrInvalidToken, token: func(op *testProvider, nonce string) string {
			pub, _ := json.Marshal(op.key.public())
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"k1"}`))
			raw, _ := json.Marshal(op.claims(nonce))
			p := base64.RawURLEncoding.EncodeToString(raw)
			m := hmac.New(sha256.New, pub)
			m.Write([]byte(h + "." + p))
			return h + "." + p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
		}},
		{name: "not a JWT", want: identity.ErrInvalidToken, token: func(*testProvider, string) string { return "not-a-jwt" }},
		{name: "callback with another state", want: identity.ErrInvalidToken, callback: func(q url.Values) { q.Set("state", "forged") }},
		{name: "callback naming another issuer", want: identity.ErrInvalidToken, callback: func(q url.Values) { q.Set("iss", "https://evil.example") }},
		{name: "the person cancelled at the provider", want: identity.ErrRefused, callback: func(q url.Values) {
			q.Del("code")
			q.Set("error", "access_denied")
		}},
		{name: "the provider refuses the code", want: identity.ErrRefused, callback: func(q url.Values) { q.Set("code", "stolen-code") }},
		{name: "the token endpoint is down", want: identity.ErrUnavailable, setup: func(op *testProvider) { op.tokenStatus = http.StatusServiceUnavailable }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newTestProvider(t)
			pr := op.provider(tc.mod)
			if tc.token != nil {
				op.idToken = func(nonce string) string { return tc.token(op, nonce) }
			}
			if tc.setup != nil {
				tc.setup(op)
			}
			pend := op.start(pr)
			q := url.Values{"code": {"good-code"}, "state": {pend.State}}
			if tc.callback != nil {
				tc.callback(q)
			}
			got, err := pr.Finish(context.Background(), pend, q)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Finish = %+v, %v; want %v", got, err, tc.want)
			}
			if got.Subject != "" {
				t.Fatalf("a refused sign-in named %q", got.Subject)
			}
		})
	}
}

// claimsWith makes a token of the good claims changed by mod, signed with
// the provider's key.
func claimsWith(mod func(map[string]any)) func(*testProvider, string) string {
	return func(op *testProvider, nonce string) string {
		c := op.claims(nonce)
		mod(c)
		return op.key.sign(op.t, "JWT", c)
	}
}

// TestProviderDown: with the provider unreachable a sign-in cannot start
// (ErrUnavailable, for the page to say so) and nothing is cached from the
// failure; once it is back, sign-in works.
func TestProviderDown(t *testing.T) {
	op := newTestProvider(t)
	pr := op.provider(nil)
	op.down.Store(true)
	if _, err := pr.Start(context.Background()); !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("Start with the provider down: %v, want ErrUnavailable", err)
	}
	op.clock.add(10 * time.Second)
	op.down.Store(false)
	pend := op.start(pr)
	if _, err := pr.Finish(context.Background(), pend, url.Values{"code": {"good-code"}, "state": {pend.State}}); err != nil {
		t.Fatal(err)
	}

	closed := newTestProvider(t)
	pr = closed.provider(nil)
	closed.srv.Close()
	if _, err := pr.Start(context.Background()); !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("Start with nothing listening: %v, want ErrUnavailable", err)
	}
}

// TestCancelledSignInIsNotAProviderFailure: a sign-in whose request went
// away while the provider was asked does not make the next one wait out
// the failure back-off.
func TestCancelledSignInIsNotAProviderFailure(t *testing.T) {
	op := newTestProvider(t)
	pr := op.provider(nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pr.Start(ctx); err == nil {
		t.Fatal("Start with a cancelled context succeeded")
	}
	if _, err := pr.Start(context.Background()); err != nil {
		t.Fatalf("the next sign-in: %v", err)
	}
}

// TestDiscoveryAndKeysCachedPerHeaders: the discovery document and the key
// set are fetched once and kept as long as the provider's Cache-Control
// says, within the bounds (discovery 5 min to 24 h, keys 1 min to 24 h);
// a provider that then goes down is served from the cache for up to 24 h
// past the lifetime, and not asked again more than every 5 s.
func TestDiscoveryAndKeysCachedPerHeaders(t *testing.T) {
	op := newTestProvider(t)
	op.cacheControl = "public, max-age=600"
	pr := op.provider(nil)
	signIn := func() error {
		pend := op.start(pr)
		_, err := pr.Finish(context.Background(), pend, url.Values{"code": {"good-code"}, "state": {pend.State}})
		return err
	}
	for range 3 {
		if err := signIn(); err != nil {
			t.Fatal(err)
		}
	}
	if d, k := op.discoveryHits.Load(), op.keyHits.Load(); d != 1 || k != 1 {
		t.Fatalf("three sign-ins fetched discovery %d and keys %d times, want once each", d, k)
	}
	op.clock.add(599 * time.Second)
	_ = signIn()
	if d, k := op.discoveryHits.Load(), op.keyHits.Load(); d != 1 || k != 1 {
		t.Fatalf("within max-age: discovery %d, keys %d fetches, want 1 each", d, k)
	}
	op.clock.add(2 * time.Second)
	if err := signIn(); err != nil {
		t.Fatal(err)
	}
	if d, k := op.discoveryHits.Load(), op.keyHits.Load(); d != 2 || k != 2 {
		t.Fatalf("after max-age: discovery %d, keys %d fetches, want 2 each", d, k)
	}

	// no-store is held to the floors: five minutes for discovery, one for keys.
	op.cacheControl = "no-store"
	op.clock.add(11 * time.Minute)
	_ = signIn()
	op.clock.add(2 * time.Minute)
	_ = signIn()
	if d, k := op.discoveryHits.Load(), op.keyHits.Load(); d != 3 || k != 4 {
		t.Fatalf("no-store: discovery %d, keys %d fetches, want 3 and 4", d, k)
	}

	// Down: the cached documents still verify ID tokens (a token endpoint
	// that works is the test's), and the provider is asked at most every 5 s.
	op.down.Store(true)
	op.clock.add(10 * time.Minute)
	before := op.discoveryHits.Load()
	pend := identity.Pending{State: "s", Nonce: "n"}
	if _, err := pr.VerifyIDToken(context.Background(), op.goodIDToken(pend.Nonce), pend.Nonce); err != nil {
		t.Fatalf("with the provider down, a token its cached keys verify: %v", err)
	}
	for range 5 {
		_, _ = pr.VerifyIDToken(context.Background(), op.goodIDToken(pend.Nonce), pend.Nonce)
	}
	if got := op.discoveryHits.Load() - before; got != 1 {
		t.Fatalf("6 verifications with the provider down asked it %d times, want 1", got)
	}
	op.clock.add(25 * time.Hour)
	if _, err := pr.VerifyIDToken(context.Background(), op.goodIDToken(pend.Nonce), pend.Nonce); !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("a day past the lifetime with the provider down: %v, want ErrUnavailable", err)
	}
}

// TestKeyRotation: a token signed with a key the cached set lacks fetches
// the set again (the provider rotated) and is accepted; forged key ids
// fetch it at most once per 30 s.
func TestKeyRotation(t *testing.T) {
	op := newTestProvider(t)
	op.cacheControl = "max-age=3600"
	pr := op.provider(nil)
	ctx := context.Background()
	if _, err := pr.VerifyIDToken(ctx, op.goodIDToken("n"), "n"); err != nil {
		t.Fatal(err)
	}
	rotated := newKey(t, "k2")
	op.mu.Lock()
	op.published = append(op.published, rotated.public())
	op.mu.Unlock()
	op.clock.add(31 * time.Second)
	if _, err := pr.VerifyIDToken(ctx, rotated.sign(t, "JWT", op.claims("n")), "n"); err != nil {
		t.Fatalf("a token of the rotated key: %v", err)
	}
	hits := op.keyHits.Load()
	for i := range 20 {
		forged := newKey(t, "forged-"+string(rune('a'+i)))
		if _, err := pr.VerifyIDToken(ctx, forged.sign(t, "JWT", op.claims("n")), "n"); !errors.Is(err, identity.ErrInvalidToken) {
			t.Fatalf("forged kid: %v", err)
		}
	}
	if got := op.keyHits.Load() - hits; got != 0 {
		t.Fatalf("20 forged key ids within 30 s of a fetch fetched the key set %d times, want 0", got)
	}
	op.clock.add(31 * time.Second)
	_, _ = pr.VerifyIDToken(ctx, newKey(t, "forged-z").sign(t, "JWT", op.claims("n")), "n")
	_, _ = pr.VerifyIDToken(ctx, newKey(t, "forged-y").sign(t, "JWT", op.claims("n")), "n")
	if got := op.keyHits.Load() - hits; got != 1 {
		t.Fatalf("after 30 s, two forged key ids fetched the key set %d times, want 1", got)
	}
}

// TestDiscoveryRefusals: a discovery document for another issuer, one
// naming plain-http endpoints for an https issuer, and a redirect are
// refused (the provider's documents come only from the configured issuer).
func TestDiscoveryRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  func(iss string) map[string]any
	}{
		{"another issuer", func(iss string) map[string]any { return discoveryDoc("https://evil.example") }},
		{"endpoints elsewhere over http", func(iss string) map[string]any {
			d := discoveryDoc(iss)
			d["jwks_uri"] = "http://keys.evil.example/jwks"
			return d
		}},
		{"no token endpoint", func(iss string) map[string]any {
			d := discoveryDoc(iss)
			delete(d, "token_endpoint")
			return d
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var iss string
			srv := newTLSServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(tc.doc(iss))
			})
			iss = srv.URL
			pr := tlsProvider(t, srv)
			if _, err := pr.Start(context.Background()); !errors.Is(err, identity.ErrUnavailable) {
				t.Fatalf("Start: %v, want ErrUnavailable", err)
			}
		})
	}
	t.Run("redirect", func(t *testing.T) {
		srv := newTLSServer(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://evil.example/.well-known/openid-configuration", http.StatusFound)
		})
		if _, err := tlsProvider(t, srv).Start(context.Background()); !errors.Is(err, identity.ErrUnavailable) {
			t.Fatalf("Start: %v, want ErrUnavailable", err)
		}
	})
}

func discoveryDoc(iss string) map[string]any {
	return map[string]any{"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token", "jwks_uri": iss + "/jwks"}
}

// TestConfigValidate: the identity section's rules.
func TestConfigValidate(t *testing.T) {
	good := identity.OIDCConfig{Issuer: "https://login.example.com", ClientID: "pbac"}
	for _, tc := range []struct {
		name string
		mod  func(*identity.OIDCConfig)
		ok   bool
	}{
		{"minimal", func(*identity.OIDCConfig) {}, true},
		{"http on loopback", func(c *identity.OIDCConfig) { c.Issuer = "http://127.0.0.1:5556/dex" }, true},
		{"http elsewhere", func(c *identity.OIDCConfig) { c.Issuer = "http://login.example.com" }, false},
		{"no issuer", func(c *identity.OIDCConfig) { c.Issuer = "" }, false},
		{"issuer with a query", func(c *identity.OIDCConfig) { c.Issuer = "https://login.example.com?x=1" }, false},
		{"no client id", func(c *identity.OIDCConfig) { c.ClientID = " " }, false},
		{"scopes without openid", func(c *identity.OIDCConfig) { c.Scopes = []string{"profile"} }, false},
		{"a scope with a space", func(c *identity.OIDCConfig) { c.Scopes = []string{"openid", "a b"} }, false},
		{"subject from a protocol claim", func(c *identity.OIDCConfig) { c.SubjectClaim = "aud" }, false},
		{"subject from email", func(c *identity.OIDCConfig) { c.SubjectClaim = "email" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			err := identity.Config{OIDC: &c}.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	d := good.WithDefaults()
	if !slices.Equal(d.Scopes, []string{"openid", "profile", "email"}) || d.GroupsClaim != "groups" || d.SubjectClaim != "sub" {
		t.Fatalf("defaults: %+v", d)
	}
	if got := identity.CallbackURL("https://as.example/"); got != "https://as.example/oauth2/idp/callback" {
		t.Fatalf("CallbackURL = %s", got)
	}
}

func newTLSServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// tlsProvider is a provider for srv's URL, trusting its certificate.
func tlsProvider(t *testing.T, srv *httptest.Server) *idp.Provider {
	pr, err := idp.New(identity.OIDCConfig{Issuer: srv.URL, ClientID: clientID}, idp.Options{ASIssuer: asIssuer, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return pr
}
