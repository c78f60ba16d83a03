package asrv_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/cimd"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/certreload/certtest"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// cimdHost is a loopback HTTPS server with a test CA that publishes client
// metadata documents, by path.
type cimdHost struct {
	srv  *httptest.Server
	mu   sync.Mutex
	docs map[string]any
}

func newCIMDHost(t *testing.T) (*cimdHost, cimd.Config) {
	t.Helper()
	pair := certtest.New(t, "cimd host CA")
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	h := &cimdHost{docs: map[string]any{}}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		doc, ok := h.docs[r.URL.Path]
		h.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=60")
		_ = json.NewEncoder(w).Encode(doc)
	}))
	h.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	return h, cimd.Config{Fetch: true, RootCAs: pair.Pool(), AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
}

// publish serves doc at path and returns its client id URL; doc's
// client_id is set to it unless already present.
func (h *cimdHost) publish(path string, doc map[string]any) string {
	id := h.srv.URL + path
	if _, ok := doc["client_id"]; !ok {
		doc["client_id"] = id
	}
	h.mu.Lock()
	h.docs[path] = doc
	h.mu.Unlock()
	return id
}

// withMetadata builds the test AS with a resolver over cfg.
func withMetadata(t *testing.T, cfg cimd.Config) func(*asrv.Config) {
	r, err := cimd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return func(c *asrv.Config) { c.ClientMetadata = r }
}

// admitCIMD is the shipped policy, except that pbac/token admits clients
// of metadata documents in a tier named after their origin: the attestation
// policy (issue 17, item 2) does not exist yet, and the shipped policy
// gives unverified clients nothing. It records what policy saw.
type admitCIMD struct {
	next asrv.Decider
	mu   sync.Mutex
	seen []json.RawMessage
}

func (a *admitCIMD) Decide(ctx context.Context, ep contract.Entrypoint, input []byte) (asrv.Decision, error) {
	var in struct {
		Client *struct {
			Verified    bool              `json:"verified"`
			Attestation map[string]string `json:"attestation"`
		} `json:"client"`
		Request struct {
			Scopes []string `json:"scopes"`
		} `json:"request"`
	}
	if ep == contract.Token && json.Unmarshal(input, &in) == nil && in.Client != nil && in.Client.Attestation["kind"] == "cimd" {
		a.mu.Lock()
		a.seen = append(a.seen, append(json.RawMessage(nil), input...))
		a.mu.Unlock()
		res, _ := json.Marshal(map[string]any{"allow": true, "tier": "cimd " + in.Client.Attestation["origin"],
			"scopes": in.Request.Scopes, "ttl_seconds": 300})
		return asrv.Decision{Allow: true, Result: res}, nil
	}
	return a.next.Decide(ctx, ep, input)
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCIMDMetadataAdvertised: the draft, "Authorization Server Metadata".
func TestCIMDMetadataAdvertised(t *testing.T) {
	_, cfg := newCIMDHost(t)
	with := newTestAS(t, withMetadata(t, cfg)).as.Metadata()
	if with["client_id_metadata_document_supported"] != true {
		t.Fatalf("metadata %v", with)
	}
	if m, _ := with["token_endpoint_auth_methods_supported"].([]string); !strings.Contains(strings.Join(m, " "), "private_key_jwt") {
		t.Errorf("token_endpoint_auth_methods_supported %v", m)
	}
	if with["token_endpoint_auth_signing_alg_values_supported"] == nil {
		t.Error("private_key_jwt without token_endpoint_auth_signing_alg_values_supported (RFC 8414 §2)")
	}
	without := newTestAS(t).as.Metadata()
	if _, ok := without["client_id_metadata_document_supported"]; ok {
		t.Error("advertised without a resolver")
	}
}

// TestCIMDAuthorizeEnforcesTheDocument: an MCP-style authorization request
// whose client_id is a document URL reaches the sign-in page only for a
// redirect URI the document registers; every failure is an error page,
// never a redirect.
func TestCIMDAuthorizeEnforcesTheDocument(t *testing.T) {
	host, cfg := newCIMDHost(t)
	// A policy that admits these clients, so that the pages are sign-in
	// pages (the shipped one refuses them on the first page).
	pol := &admitCIMD{}
	ta := newTestAS(t, withMetadata(t, cfg), func(c *asrv.Config) { pol.next = c.Policy; c.Policy = pol })
	good := host.publish("/oauth/client.json", map[string]any{
		"client_name": "Loopback Agent", "redirect_uris": []string{"http://localhost/callback", "http://127.0.0.1/callback"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	web := host.publish("/web/client.json", map[string]any{
		"client_name": "Web Agent", "redirect_uris": []string{"https://agent.example/cb"},
	})
	mismatched := host.publish("/mismatch.json", map[string]any{
		"client_id": "https://claude.ai/oauth/claude-code-client-metadata", "client_name": "Impostor",
		"redirect_uris": []string{"http://localhost/callback"},
	})
	secret := host.publish("/secret.json", map[string]any{
		"client_name": "Secretive", "redirect_uris": []string{"http://localhost/callback"}, "client_secret": "hunter2",
	})

	for _, tc := range []struct {
		name, client, redirect string
		status                 int
		want                   []string
	}{
		{"a loopback redirect on the client's port", good, "http://127.0.0.1:53124/callback", http.StatusOK,
			[]string{"Loopback Agent", "127.0.0.1:53124", "localhost only", strings.TrimPrefix(host.srv.URL, "https://")}},
		{"localhost on any port (Claude Code's document)", good, "http://localhost:8080/callback", http.StatusOK, []string{"localhost:8080"}},
		{"the exact registered https URI", web, "https://agent.example/cb", http.StatusOK, []string{"Web Agent", "agent.example"}},
		{"a path the document does not register", good, "http://127.0.0.1:53124/other", http.StatusBadRequest, []string{"redirect"}},
		{"an https URI the document does not register", good, "https://attacker.example/callback", http.StatusBadRequest, nil},
		{"the web client on another path", web, "https://agent.example/cb2", http.StatusBadRequest, nil},
		{"a document whose client_id is another URL", mismatched, "http://localhost:5555/callback", http.StatusUnauthorized, []string{"metadata document is not valid"}},
		{"a document with a client secret", secret, "http://localhost:5555/callback", http.StatusUnauthorized, []string{"metadata document is not valid"}},
		{"no document at the URL", host.srv.URL + "/missing.json", "http://localhost:5555/callback", http.StatusUnauthorized, []string{"could not be fetched"}},
		{"an http client id", "http://agent.example/client.json", "http://localhost:5555/callback", http.StatusUnauthorized, []string{"not a valid client metadata document URL"}},
		{"a client id without a path", "https://agent.example", "http://localhost:5555/callback", http.StatusUnauthorized, []string{"not a valid client metadata document URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := browser().Get(ta.authorizeURL(tc.client, tc.redirect, nil))
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != tc.status || resp.Header.Get("Location") != "" {
				t.Fatalf("got %d Location %q, want %d and no redirect\n%s", resp.StatusCode, resp.Header.Get("Location"), tc.status, body)
			}
			if tc.status == http.StatusOK && !csrfField.MatchString(body) {
				t.Fatal("not the sign-in page")
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q:\n%s", w, body)
				}
			}
		})
	}
}

// TestCIMDCodeFlow: the whole flow of a public client of a metadata
// document: sign-in, code, token, refresh; policy sees its attestation;
// its tokens are tied to a stored, unverified snapshot of it.
func TestCIMDCodeFlow(t *testing.T) {
	host, cfg := newCIMDHost(t)
	clk := &testClock{t: time.Now()}
	cfg.Now = clk.now
	pol := &admitCIMD{}
	ta := newTestAS(t, withMetadata(t, cfg), func(c *asrv.Config) { pol.next = c.Policy; c.Policy = pol })
	id := host.publish("/oauth/client.json", map[string]any{
		"client_name": "Loopback Agent", "redirect_uris": []string{"http://127.0.0.1/callback"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	ctx := t.Context()
	tok, err := oauthtest.CodeFlow(ctx, ta.srv.URL, id, "http://127.0.0.1:40123/callback", "alice", asrv.DemoPassword, ta.resource, "drive:read")
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("token %+v", tok)
	}
	pol.mu.Lock()
	seen := len(pol.seen)
	first := string(pol.seen[0])
	pol.mu.Unlock()
	if seen < 2 || !strings.Contains(first, `"attestation":{"kind":"cimd","by":"`+host.srv.URL+`","origin":"`+host.srv.URL+`"}`) || !strings.Contains(first, `"verified":false`) {
		t.Fatalf("policy saw %d inputs, the first %s", seen, first)
	}
	stored, err := ta.store.Client(ctx, id)
	if err != nil {
		t.Fatalf("the client's snapshot: %v", err)
	}
	if stored.Attestation == nil || stored.Attestation.Kind != asrv.AttestationCIMD || stored.Agent.Verified || stored.Name != "Loopback Agent" {
		t.Fatalf("snapshot %+v", stored)
	}
	if _, pending, _ := ta.store.CountClients(ctx); pending != 0 {
		t.Errorf("%d pending clients: a client with a code is not pending", pending)
	}

	// Refresh, as the client does later.
	status, out := ta.form(asrv.PathToken, "", "", url.Values{"grant_type": {"refresh_token"}, "client_id": {id},
		"refresh_token": {tok.RefreshToken}})
	if status != http.StatusOK || out["access_token"] == nil {
		t.Fatalf("refresh: %d %v", status, out)
	}
	// The stored snapshot is no registration: once the document is gone
	// (and the cached copy expired), the client cannot refresh, whatever
	// the store holds.
	host.mu.Lock()
	delete(host.docs, "/oauth/client.json")
	host.mu.Unlock()
	clk.add(2 * time.Minute)
	status, out = ta.form(asrv.PathToken, "", "", url.Values{"grant_type": {"refresh_token"}, "client_id": {id},
		"refresh_token": {out["refresh_token"].(string)}})
	if status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Fatalf("refresh after the document is gone: %d %v", status, out)
	}
	if _, err := ta.store.Client(ctx, id); err != nil {
		t.Fatalf("the snapshot is still stored: %v", err)
	}
}

// TestCIMDFirstCodeAndTheRegistrationCaps: a metadata document's client
// is stored on its first code, after policy allowed the grant, and gets
// its code at once, so it is never left pending: the caps on pending
// clients, full of unverified registrations, do not refuse it. The cap on
// clients does.
func TestCIMDFirstCodeAndTheRegistrationCaps(t *testing.T) {
	for _, tc := range []struct {
		name        string
		limits      asrv.RegistrationLimits
		wantErr     string // "": the code flow succeeds
		wantClients int    // stored at the end, the registration's included
	}{
		{"the pending caps are full", asrv.RegistrationLimits{MaxPending: 1, MaxPendingPerAddress: 1}, "", 2},
		{"the client cap is full", asrv.RegistrationLimits{MaxClients: 1}, "temporarily_unavailable", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, cfg := newCIMDHost(t)
			pol := &admitCIMD{}
			ta := newTestAS(t, withMetadata(t, cfg), func(c *asrv.Config) {
				pol.next, c.Policy, c.Registration = c.Policy, pol, tc.limits
			})
			if status, _, out := ta.registerFrom("127.0.0.1:1", anonymousClient); status != http.StatusCreated {
				t.Fatalf("the unverified registration that fills the caps: %d %v", status, out)
			}
			id := host.publish("/oauth/client.json", map[string]any{
				"client_name": "Loopback Agent", "redirect_uris": []string{"http://127.0.0.1/callback"},
				"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
			})
			_, err := oauthtest.CodeFlow(t.Context(), ta.srv.URL, id, "http://127.0.0.1:40123/callback", "alice", asrv.DemoPassword, ta.resource, "drive:read")
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("the client's first code and token: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("the client's first code and token: %v, want %s", err, tc.wantErr)
			}
			total, pending, err := ta.store.CountClients(t.Context())
			if err != nil || total != tc.wantClients || pending != 1 {
				t.Fatalf("%d clients, %d pending (%v); want %d, and the registration pending", total, pending, err, tc.wantClients)
			}
		})
	}
}

// TestCIMDShippedPolicyGivesNothing: under the shipped policy a client of
// a metadata document is unverified, and so refused after sign-in.
func TestCIMDShippedPolicyGivesNothing(t *testing.T) {
	host, cfg := newCIMDHost(t)
	ta := newTestAS(t, withMetadata(t, cfg))
	id := host.publish("/c.json", map[string]any{"client_name": "A", "redirect_uris": []string{"http://127.0.0.1/callback"}})
	_, err := oauthtest.CodeFlow(t.Context(), ta.srv.URL, id, "http://127.0.0.1:40123/callback", "alice", asrv.DemoPassword, ta.resource, "drive:read")
	if err == nil || !strings.Contains(err.Error(), "access_denied") {
		t.Fatalf("shipped policy: %v, want access_denied", err)
	}
}

// TestCIMDSoftwareStatement: a document's software_statement is verified
// as a registration's: one this server's key signed makes the client
// verified by "local" (the shipped policy then gives claude-code its tier,
// and the stored snapshot says so); one nobody trusts leaves the client an
// unverified client of its document, never refused for it.
func TestCIMDSoftwareStatement(t *testing.T) {
	host, cfg := newCIMDHost(t)
	pol := &admitCIMD{}
	ta := newTestAS(t, withMetadata(t, cfg), func(c *asrv.Config) { pol.next = c.Policy; c.Policy = pol })
	ctx := t.Context()
	const redirect = "http://127.0.0.1:40123/callback"

	local, err := ta.issuer.Sign(asrv.StatementClaims{AgentProvider: "claude-code", Audience: []string{ta.srv.URL}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id := host.publish("/local.json", map[string]any{"client_name": "Local Agent", "redirect_uris": []string{"http://127.0.0.1/callback"},
		"software_statement": local})
	if _, err := oauthtest.CodeFlow(ctx, ta.srv.URL, id, redirect, "alice", asrv.DemoPassword, ta.resource, "drive:read"); err != nil {
		t.Fatalf("a document with this server's statement: %v", err)
	}
	stored, err := ta.store.Client(ctx, id)
	if err != nil || !stored.Agent.Verified || stored.Agent.IssuerName != asrv.LocalIssuerName ||
		stored.Attestation == nil || stored.Attestation.Kind != asrv.AttestationCIMD {
		t.Fatalf("the snapshot %+v %v, want verified by local", stored, err)
	}
	if a := stored.PolicyAttestation(); a == nil || a.Kind != contract.AttestationStatement || a.By != asrv.LocalIssuerName || a.Provider != "claude-code" {
		t.Fatalf("attestation %+v", a)
	}

	stranger, err := asrv.LoadOrCreateIssuerKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := stranger.Sign(asrv.StatementClaims{AgentProvider: "claude-code", Audience: []string{ta.srv.URL}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id = host.publish("/foreign.json", map[string]any{"client_name": "Foreign Agent", "redirect_uris": []string{"http://127.0.0.1/callback"},
		"software_statement": foreign})
	if _, err := oauthtest.CodeFlow(ctx, ta.srv.URL, id, redirect, "alice", asrv.DemoPassword, ta.resource, "drive:read"); err != nil {
		t.Fatalf("a document with an untrusted statement (admitted as a document by the test policy): %v", err)
	}
	pol.mu.Lock()
	last := string(pol.seen[len(pol.seen)-1])
	pol.mu.Unlock()
	if !strings.Contains(last, `"client_id":"`+id+`"`) || !strings.Contains(last, `"verified":false`) || !strings.Contains(last, `"kind":"cimd"`) {
		t.Fatalf("policy saw %s", last)
	}
}

// TestCIMDPinnedWithFetchingOff: air-gapped, a pinned document works and
// any other URL client id is refused with a clear error.
func TestCIMDPinnedWithFetchingOff(t *testing.T) {
	const id = "https://agent.example/oauth/client.json"
	doc, _ := json.Marshal(map[string]any{"client_id": id, "client_name": "Pinned Agent", "redirect_uris": []string{"http://127.0.0.1/callback"}})
	pol := &admitCIMD{}
	ta := newTestAS(t, withMetadata(t, cimd.Config{Fetch: false, Pinned: map[string][]byte{id: doc}}),
		func(c *asrv.Config) { pol.next = c.Policy; c.Policy = pol })
	resp, err := browser().Get(ta.authorizeURL(id, "http://127.0.0.1:5000/callback", nil))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Pinned Agent") {
		t.Fatalf("pinned: %d\n%s", resp.StatusCode, body)
	}
	resp, err = browser().Get(ta.authorizeURL("https://other.example/client.json", "http://127.0.0.1:5000/callback", nil))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "does not fetch client metadata documents, and none is pinned") {
		t.Fatalf("unpinned: %d\n%s", resp.StatusCode, body)
	}
}

// TestCIMDPrivateKeyJWT: a confidential client of a metadata document
// authenticates at the token endpoint with RFC 7523 assertions signed by a
// key of its jwks_uri, fetched from its host.
func TestCIMDPrivateKeyJWT(t *testing.T) {
	host, cfg := newCIMDHost(t)
	pol := &admitCIMD{}
	ta := newTestAS(t, withMetadata(t, cfg), func(c *asrv.Config) { pol.next = c.Policy; c.Policy = pol })
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var set map[string]any
	raw, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Use: "sig", Algorithm: "ES256"}}})
	_ = json.Unmarshal(raw, &set)
	host.publish("/jwks.json", set)
	id := host.publish("/service/client.json", map[string]any{
		"client_name": "Batch Agent", "redirect_uris": []string{}, "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": host.srv.URL + "/jwks.json",
	})
	public := host.publish("/public/client.json", map[string]any{"client_name": "Public", "redirect_uris": []string{"http://127.0.0.1/cb"}})
	// A machine of a metadata document acts for no person only with a key
	// of its own: the document that would do it without one is refused.
	keyless := host.publish("/keyless/client.json", map[string]any{"client_name": "Keyless batch", "redirect_uris": []string{},
		"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "none"})
	tokenURL := ta.srv.URL + asrv.PathToken
	assertion := func(signer *ecdsa.PrivateKey, sub, aud string, exp time.Duration) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: signer}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		out, err := jwt.Signed(s).Claims(jwt.Claims{Issuer: sub, Subject: sub, Audience: jwt.Audience{aud}, ID: rand.Text(),
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(exp))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	form := func(clientID, a string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "resource": {ta.resource}, "scope": {"drive:read"},
			"client_assertion_type": {cimd.ClientAssertionType}, "client_assertion": {a}}
		if clientID != "" {
			v.Set("client_id", clientID)
		}
		return v
	}

	good := assertion(key, id, tokenURL, time.Minute)
	if status, out := ta.form(asrv.PathToken, "", "", form(id, good)); status != http.StatusOK || out["access_token"] == nil {
		t.Fatalf("a good assertion: %d %v", status, out)
	}
	for _, tc := range []struct {
		name   string
		values url.Values
	}{
		{"the same assertion again (jti replay)", form(id, good)},
		{"aud of another server", form(id, assertion(key, id, "https://other-as.example/token", time.Minute))},
		{"expired", form(id, assertion(key, id, tokenURL, -time.Minute))},
		{"signed by another key", form(id, assertion(other, id, tokenURL, time.Minute))},
		{"no assertion", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "resource": {ta.resource}}},
		{"a public client's document", form(public, assertion(key, public, tokenURL, time.Minute))},
		{"client_credentials without private_key_jwt", url.Values{"grant_type": {"client_credentials"}, "client_id": {keyless}, "resource": {ta.resource}}},
		{"client_credentials without private_key_jwt, with an assertion", form(keyless, assertion(key, keyless, tokenURL, time.Minute))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, out := ta.form(asrv.PathToken, "", "", tc.values); status != http.StatusUnauthorized && status != http.StatusBadRequest || out["access_token"] != nil {
				t.Fatalf("got %d %v, want a refusal", status, out)
			}
		})
	}
	// Without client_id the assertion's sub names the client (RFC 7521 §4.2);
	// the issuer is an audience too.
	if status, out := ta.form(asrv.PathToken, "", "", form("", assertion(key, id, ta.srv.URL, time.Minute))); status != http.StatusOK {
		t.Fatalf("assertion without client_id, aud = issuer: %d %v", status, out)
	}
}

// TestCIMDSignInThroughSSO: a client of a metadata document whose
// document lists a port-less localhost redirect URI (as Claude Code's
// does) completes a single sign-on at a real OpenID provider: the sign-in
// page names the document's host and warns that the client is localhost
// only, the authorization request resumed by the provider's callback is
// matched against the document again (the requested port included), and
// the code is issued to a stored snapshot of the client, for the person
// and their groups.
func TestCIMDSignInThroughSSO(t *testing.T) {
	host, cfg := newCIMDHost(t)
	pol := &admitCIMD{}
	ta, _ := newSSOTestAS(t, func(c *asrv.Config) {
		withMetadata(t, cfg)(c)
		pol.next = c.Policy
		c.Policy = pol
	})
	id := host.publish("/oauth/claude-code.json", map[string]any{
		"client_name": "Localhost Agent", "redirect_uris": []string{"http://localhost/callback"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	const redirect = "http://localhost:9/callback"
	authURL, verifier := ta.ssoAuthURL(id, redirect, "drive:read")

	resp, err := browser().Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page := readBody(t, resp)
	for _, want := range []string{`value="sso"`, "Localhost Agent", strings.TrimPrefix(host.srv.URL, "https://"), "localhost only", "localhost:9"} {
		if !strings.Contains(page, want) {
			t.Fatalf("the sign-in page lacks %q:\n%s", want, page)
		}
	}

	res := ssoSignIn(t, authURL, redirect, "dana", opPeople["dana"].password, nil)
	if res.redirect == nil {
		t.Fatalf("the sign-in ended on a page: %d\n%s", res.status, res.body)
	}
	code := res.redirect.Query().Get("code")
	if code == "" || res.redirect.Host != "localhost:9" {
		t.Fatalf("redirect to the agent: %s", res.redirect)
	}
	tok, err := ta.oauthConfig(id, redirect).Exchange(t.Context(), code, oauth2.VerifierOption(verifier), resourceParam(ta.resource))
	if err != nil {
		t.Fatalf("exchange the code: %v", err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("token %+v", tok)
	}
	// The shipped policy would refuse the token at introspection (the
	// client is unverified); what policy was asked at the grant shows who
	// it is for.
	// (The first question, before sign-in, had no person.)
	pol.mu.Lock()
	grant := string(pol.seen[len(pol.seen)-1])
	pol.mu.Unlock()
	for _, want := range []string{`"client_id":"` + id + `"`, `"attestation":{"kind":"cimd","by":"` + host.srv.URL + `","origin":"` + host.srv.URL + `"}`,
		`"sub":"dana"`, `"groups":["engineering"]`} {
		if !strings.Contains(grant, want) {
			t.Fatalf("policy was asked without %s: %s", want, grant)
		}
	}
	stored, err := ta.store.Client(t.Context(), id)
	if err != nil || !isCIMD(stored) {
		t.Fatalf("the client's snapshot: %+v, %v", stored, err)
	}

	// A path the document does not list is refused, the snapshot
	// notwithstanding: enforcement reads the document.
	other, _ := ta.ssoAuthURL(id, "http://localhost:9/elsewhere", "drive:read")
	resp, err = browser().Get(other)
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("a path the document does not list: %d %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

func isCIMD(c *asrv.Client) bool {
	return c != nil && c.Attestation != nil && c.Attestation.Kind == asrv.AttestationCIMD && !c.Agent.Verified
}
