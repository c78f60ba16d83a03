package asrv_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/identity/idp"
)

// The identity provider of these tests is a real one no one here wrote:
// zitadel's OpenID provider (github.com/zitadel/oidc/v3, its example server:
// in-memory storage, login page, discovery, keys, code flow with PKCE),
// running in the test process on 127.0.0.1. The test adds what an
// organisation's provider has: its people (dana in engineering, erin a
// contractor) and a groups claim in their ID tokens.

const (
	opClientID     = "pbac"
	opClientSecret = "pbac-client-secret"
)

// opPerson is a person at the provider.
type opPerson struct {
	password string
	groups   []string
}

var opPeople = map[string]opPerson{
	"dana": {password: "dana-at-the-idp", groups: []string{"engineering"}},
	"erin": {password: "erin-at-the-idp", groups: []string{"contractor"}},
}

// opUsers is the provider's user store.
type opUsers struct{}

func (opUsers) GetUserByID(id string) *storage.User {
	p, ok := opPeople[id]
	if !ok {
		return nil
	}
	return &storage.User{ID: id, Username: id, Password: p.password, FirstName: strings.ToUpper(id[:1]) + id[1:],
		LastName: "Example", Email: id + "@example.com", EmailVerified: true}
}

func (u opUsers) GetUserByUsername(name string) *storage.User { return u.GetUserByID(name) }
func (opUsers) ExampleClientID() string                       { return storage.ServiceUserID }

// opStorage is the example's storage with the groups scope and claim.
type opStorage struct{ *storage.Storage }

// groupsClient lets the client ask for the groups scope.
type groupsClient struct{ op.Client }

func (c groupsClient) IsScopeAllowed(scope string) bool {
	return scope == "groups" || c.Client.IsScopeAllowed(scope)
}

func (s opStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return groupsClient{c}, nil
}

// SetUserinfoFromRequest adds the groups claim to ID tokens asked for with
// the groups scope.
func (s opStorage) SetUserinfoFromRequest(ctx context.Context, info *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	if slices.Contains(scopes, "groups") {
		info.AppendClaims("groups", opPeople[req.GetSubject()].groups)
	}
	return nil
}

// realOP is the running provider and the wire between it and the AS,
// which a test may tamper with (a forged ID token on the token response).
type realOP struct {
	t       testing.TB
	srv     *httptest.Server
	issuer  string
	storage opStorage

	mu sync.Mutex
	// forge, when set, replaces the ID token of the token endpoint's
	// answers to the AS.
	forge func(idToken string) string
	// lastIDToken is the ID token of the latest genuine token response.
	lastIDToken string
}

// newSSOTestAS starts the provider and an AS that signs people in there
// (and has no password source unless mod gives one).
func newSSOTestAS(t *testing.T, mod func(*asrv.Config)) (*testAS, *realOP) {
	t.Helper()
	o := &realOP{t: t, srv: httptest.NewUnstartedServer(nil)}
	o.issuer = "http://" + o.srv.Listener.Addr().String()
	secretFile := filepath.Join(t.TempDir(), "oidc-client-secret")
	if err := os.WriteFile(secretFile, []byte(opClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ta := newTestAS(t, func(cfg *asrv.Config) {
		client := storage.WebClient(opClientID, opClientSecret, identity.CallbackURL(cfg.Issuer))
		o.storage = opStorage{storage.NewStorageWithClients(opUsers{}, map[string]*storage.Client{opClientID: client})}
		o.srv.Config.Handler = exampleop.SetupServer(o.issuer, o.storage, nil, false)
		o.srv.Start()
		t.Cleanup(o.srv.Close)
		pr, err := idp.New(identity.OIDCConfig{
			Issuer: o.issuer, ClientID: opClientID, ClientSecretFile: secretFile,
			Scopes: []string{"openid", "profile", "email", "groups"},
		}, idp.Options{ASIssuer: cfg.Issuer, HTTPClient: &http.Client{Transport: o}})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Users, cfg.SSO = nil, pr
		if mod != nil {
			mod(cfg)
		}
	})
	return ta, o
}

// RoundTrip is the AS's wire to the provider: token responses pass
// through forge when a test set it.
func (o *realOP) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/token") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var tok map[string]any
	if err := json.Unmarshal(body, &tok); err != nil {
		return nil, err
	}
	o.mu.Lock()
	forge := o.forge
	if forge == nil {
		o.lastIDToken, _ = tok["id_token"].(string)
	}
	o.mu.Unlock()
	if forge != nil {
		tok["id_token"] = forge(tok["id_token"].(string))
		body, _ = json.Marshal(tok)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

func (o *realOP) setForge(f func(string) string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.forge = f
}

// resign returns the claims of idToken changed by mod, signed with the
// provider's own signing key (or with key, when not nil, under the
// provider's key id).
func (o *realOP) resign(idToken string, key *rsa.PrivateKey, mod func(map[string]any)) string {
	o.t.Helper()
	parts := strings.Split(idToken, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		o.t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		o.t.Fatal(err)
	}
	mod(claims)
	sk, err := o.storage.SigningKey(context.Background())
	if err != nil {
		o.t.Fatal(err)
	}
	var priv any = sk.Key()
	if key != nil {
		priv = key
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: priv, KeyID: sk.ID()}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		o.t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		o.t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

// ssoResult is where a browser-less sign-in ended: a redirect to the
// client, or a page.
type ssoResult struct {
	redirect *url.URL
	status   int
	body     string
	// callback is the provider's redirect to the AS (with its cookies,
	// in jar), for replay tests.
	callback *url.URL
	jar      http.CookieJar
}

// ssoSignIn is a person in a browser: the AS's sign-in page, its SSO
// button, the provider's login page (user, password), and back through
// the AS's callback, until the AS redirects to the client's redirect URI
// or shows a page. beforeCallback, if set, runs before the browser follows
// the provider's redirect to the AS, with the browser's cookies.
func ssoSignIn(t *testing.T, authURL, clientRedirect, user, password string, beforeCallback func(*url.URL, http.CookieJar)) ssoResult {
	t.Helper()
	b := browser()
	resp, err := b.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		return ssoResult{status: resp.StatusCode, body: string(page), redirect: location(resp)}
	}
	if !bytes.Contains(page, []byte(`value="sso"`)) {
		t.Fatalf("the sign-in page has no single sign-on button:\n%s", page)
	}
	resp, err = b.PostForm(authURL, url.Values{"csrf_token": {string(m[1])}, "decision": {"sso"}})
	if err != nil {
		t.Fatal(err)
	}
	res := ssoResult{jar: b.Jar}
	for range 20 {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch loc := location(resp); {
		case loc != nil && strings.HasPrefix(loc.String(), clientRedirect):
			res.redirect = loc
			return res
		case loc != nil:
			if loc.Path == asrv.PathIDPCallback {
				res.callback = loc
				if beforeCallback != nil {
					beforeCallback(loc, b.Jar)
				}
			}
			resp, err = b.Get(loc.String())
		case resp.StatusCode == http.StatusOK && resp.Request.URL.Path == "/login/username":
			// The provider's login page.
			login := resp.Request.URL.ResolveReference(&url.URL{Path: "/login/username"})
			resp, err = b.PostForm(login.String(), url.Values{"id": {resp.Request.URL.Query().Get("authRequestID")},
				"username": {user}, "password": {password}})
		default:
			res.status, res.body = resp.StatusCode, string(body)
			return res
		}
		if err != nil {
			res.status, res.body = 0, err.Error()
			return res
		}
	}
	t.Fatal("more than 20 redirects")
	return res
}

func location(resp *http.Response) *url.URL {
	if resp.StatusCode < 300 || resp.StatusCode > 399 {
		return nil
	}
	loc, err := resp.Location()
	if err != nil {
		return nil
	}
	return loc
}

// ssoAuthURL is an authorization request of clientID for scopes, with its
// PKCE verifier.
func (ta *testAS) ssoAuthURL(clientID, redirect string, scopes ...string) (string, string) {
	verifier := oauthVerifier()
	cfg := ta.oauthConfig(clientID, redirect, scopes...)
	return cfg.AuthCodeURL("client-state", s256(verifier), resourceParam(ta.resource)), verifier
}

const agentRedirect = "http://127.0.0.1:9/callback"

// TestSSOSignInThroughARealProvider: a person signs in at the provider
// through the AS's sign-in page; the agent's token acts for them with the
// subject and groups of their ID token, recorded with the grant and sent
// to policy as subject.groups: dana (group engineering) gets what the
// engineering role allows, erin (group contractor) the contractor's
// narrower grant; a refreshed token and a token delegated from it (RFC
// 8693) keep the groups.
func TestSSOSignInThroughARealProvider(t *testing.T) {
	ta, _ := newSSOTestAS(t, nil)
	client := ta.publicAgent("claude-code", agentRedirect)
	subAgent := ta.publicAgent("claude-code", "http://127.0.0.1:10/callback")
	for _, tc := range []struct {
		person     string
		wantScopes string
	}{
		{"dana", "drive:read jira:write slack:write"},
		{"erin", "drive:read jira:write"},
	} {
		t.Run(tc.person, func(t *testing.T) {
			authURL, verifier := ta.ssoAuthURL(client, agentRedirect, "jira:write", "drive:read", "slack:write")
			res := ssoSignIn(t, authURL, agentRedirect, tc.person, opPeople[tc.person].password, nil)
			if res.redirect == nil {
				t.Fatalf("the sign-in ended on a page: %d\n%s", res.status, res.body)
			}
			q := res.redirect.Query()
			if q.Get("code") == "" || q.Get("state") != "client-state" || q.Get("iss") != ta.srv.URL {
				t.Fatalf("redirect to the agent: %s", res.redirect)
			}
			tok := ta.exchangeCode(client, q.Get("code"), verifier)
			if got := strings.Join(sortedFields(tok.Extra("scope")), " "); got != tc.wantScopes {
				t.Fatalf("scopes %q, want %q", got, tc.wantScopes)
			}
			in, err := ta.as.Introspect(context.Background(), tok.AccessToken, ta.resource)
			if err != nil || !in.Active {
				t.Fatalf("introspect: %+v, %v", in, err)
			}
			want := opPeople[tc.person].groups
			if in.Subject != tc.person || !slices.Equal(in.Groups, want) || len(in.Roles) != 0 {
				t.Fatalf("token acts for %q with groups %v and roles %v, want %q with groups %v", in.Subject, in.Groups, in.Roles, tc.person, want)
			}
			rfc := ta.introspect(tok.AccessToken)
			if rfc["sub"] != tc.person || strings.Join(toStrings(rfc["pbac_groups"]), ",") != strings.Join(want, ",") {
				t.Fatalf("RFC 7662 introspection: %v", rfc)
			}
			refreshed := ta.refresh(client, tok.RefreshToken)
			in, err = ta.as.Introspect(context.Background(), refreshed.AccessToken, ta.resource)
			if err != nil || !in.Active || in.Subject != tc.person || !slices.Equal(in.Groups, want) {
				t.Fatalf("refreshed token: %+v, %v", in, err)
			}
			status, out := ta.exchange(client, refreshed.AccessToken, subAgent, "jira:write")
			if status != http.StatusOK {
				t.Fatalf("exchange: %d %v", status, out)
			}
			in, err = ta.as.Introspect(context.Background(), out["access_token"].(string), "")
			if err != nil || !in.Active || in.Subject != tc.person || !slices.Equal(in.Groups, want) || in.ClientID != subAgent {
				t.Fatalf("delegated token: %+v, %v", in, err)
			}
		})
	}
}

// TestSSOForgedIDTokenRefused: an ID token on the provider's token
// response that is not what the provider issued for this sign-in — even
// when signed with the provider's own key — gets the agent access_denied
// and no code.
func TestSSOForgedIDTokenRefused(t *testing.T) {
	ta, o := newSSOTestAS(t, nil)
	client := ta.publicAgent("claude-code", agentRedirect)
	// An earlier genuine sign-in, whose ID token is replayed below.
	authURL, _ := ta.ssoAuthURL(client, agentRedirect, "jira:read")
	if res := ssoSignIn(t, authURL, agentRedirect, "dana", opPeople["dana"].password, nil); res.redirect == nil || res.redirect.Query().Get("code") == "" {
		t.Fatalf("the genuine sign-in: %+v", res)
	}
	o.mu.Lock()
	earlier := o.lastIDToken
	o.mu.Unlock()
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		forge func(idToken string) string
	}{
		{"wrong issuer", func(tok string) string {
			return o.resign(tok, nil, func(c map[string]any) { c["iss"] = "http://127.0.0.1:1" })
		}},
		{"wrong audience", func(tok string) string {
			return o.resign(tok, nil, func(c map[string]any) { c["aud"] = []string{"another-app"}; c["azp"] = "another-app" })
		}},
		{"wrong key", func(tok string) string { return o.resign(tok, otherKey, func(map[string]any) {}) }},
		{"replayed nonce (an earlier sign-in's ID token)", func(string) string { return earlier }},
		{"expired", func(tok string) string {
			return o.resign(tok, nil, func(c map[string]any) { c["iat"] = c["iat"].(float64) - 7200; c["exp"] = c["iat"].(float64) + 60 })
		}},
		{"missing subject", func(tok string) string { return o.resign(tok, nil, func(c map[string]any) { delete(c, "sub") }) }},
		{"another person's subject under the original signature", func(tok string) string {
			parts := strings.Split(tok, ".")
			raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
			raw = bytes.Replace(raw, []byte(`"sub":"dana"`), []byte(`"sub":"erin"`), 1)
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw) + "." + parts[2]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o.setForge(tc.forge)
			defer o.setForge(nil)
			authURL, _ := ta.ssoAuthURL(client, agentRedirect, "jira:read")
			res := ssoSignIn(t, authURL, agentRedirect, "dana", opPeople["dana"].password, nil)
			if res.redirect == nil {
				t.Fatalf("ended on a page %d:\n%s", res.status, res.body)
			}
			q := res.redirect.Query()
			if q.Get("code") != "" || q.Get("error") != "access_denied" || !strings.Contains(q.Get("error_description"), "did not pass verification") {
				t.Fatalf("redirect %s, want access_denied and no code", res.redirect)
			}
		})
	}
}

// TestSSOProviderDown: with the provider unreachable nobody signs in — the
// sign-in page says so when it cannot even start, a clear error page when
// it goes down before the code is redeemed, no code either way — and the
// tokens issued before keep working.
func TestSSOProviderDown(t *testing.T) {
	ta, o := newSSOTestAS(t, nil)
	client := ta.publicAgent("claude-code", agentRedirect)
	authURL, verifier := ta.ssoAuthURL(client, agentRedirect, "jira:read")
	res := ssoSignIn(t, authURL, agentRedirect, "dana", opPeople["dana"].password, nil)
	if res.redirect == nil {
		t.Fatalf("sign-in: %d %s", res.status, res.body)
	}
	before := ta.exchangeCode(client, res.redirect.Query().Get("code"), verifier)

	t.Run("down before the redirect back", func(t *testing.T) {
		authURL, _ := ta.ssoAuthURL(client, agentRedirect, "jira:read")
		res := ssoSignIn(t, authURL, agentRedirect, "dana", opPeople["dana"].password, func(*url.URL, http.CookieJar) { o.srv.Close() })
		if res.redirect != nil || res.status != http.StatusServiceUnavailable ||
			!strings.Contains(res.body, "cannot be reached") || !strings.Contains(res.body, "no token was issued") {
			t.Fatalf("got %v %d:\n%s", res.redirect, res.status, res.body)
		}
	})
	t.Run("down when the sign-in starts", func(t *testing.T) {
		// A new AS (nothing cached) with the provider gone.
		ta2, o2 := newSSOTestAS(t, nil)
		o2.srv.Close()
		client := ta2.publicAgent("claude-code", agentRedirect)
		authURL, _ := ta2.ssoAuthURL(client, agentRedirect, "jira:read")
		res := ssoSignIn(t, authURL, agentRedirect, "dana", "", nil)
		if res.redirect != nil || res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "cannot be reached right now") {
			t.Fatalf("got %v %d:\n%s", res.redirect, res.status, res.body)
		}
	})
	in, err := ta.as.Introspect(context.Background(), before.AccessToken, ta.resource)
	if err != nil || !in.Active || in.Subject != "dana" || !slices.Equal(in.Groups, []string{"engineering"}) {
		t.Fatalf("a token issued before the provider went down: %+v, %v", in, err)
	}
	if refreshed := ta.refresh(client, before.RefreshToken); refreshed.AccessToken == "" {
		t.Fatal("no refreshed token")
	}
}

// TestSSOCallbackOnce: the provider's redirect back completes the sign-in
// once, in the browser that started it. Opened in another browser (login
// CSRF: the victim's browser fed the attacker's callback) it is refused and
// spends nothing; with a cookie this server did not seal it is refused;
// replayed with the very cookie, after it completed, it is refused.
func TestSSOCallbackOnce(t *testing.T) {
	ta, _ := newSSOTestAS(t, nil)
	client := ta.publicAgent("claude-code", agentRedirect)
	get := func(c *http.Client, u string) (int, string) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	var (
		cb       *url.URL
		captured []*http.Cookie
	)
	authURL, _ := ta.ssoAuthURL(client, agentRedirect, "jira:read")
	res := ssoSignIn(t, authURL, agentRedirect, "dana", opPeople["dana"].password, func(u *url.URL, jar http.CookieJar) {
		cb, captured = u, jar.Cookies(u)
		status, body := get(browser(), u.String())
		if status != http.StatusBadRequest || !strings.Contains(body, "unknown to this browser") {
			t.Errorf("the callback in another browser: %d\n%s", status, body)
		}
	})
	if res.redirect == nil || res.redirect.Query().Get("code") == "" {
		t.Fatalf("the sign-in after another browser tried its callback: %+v", res)
	}
	if len(captured) != 1 || !strings.HasPrefix(captured[0].Name, "pbac_sso_") {
		t.Fatalf("cookies sent to the callback: %v", captured)
	}
	if left := res.jar.Cookies(cb); len(left) != 0 {
		t.Fatalf("the sign-on cookie was not cleared: %v", left)
	}
	replay := browser()
	replay.Jar.SetCookies(cb, captured)
	if status, body := get(replay, cb.String()); status != http.StatusBadRequest || !strings.Contains(body, "already completed") {
		t.Fatalf("the callback replayed with its cookie: %d\n%s", status, body)
	}

	authURL, _ = ta.ssoAuthURL(client, agentRedirect, "jira:read")
	res = ssoSignIn(t, authURL, agentRedirect, "dana", opPeople["dana"].password, func(u *url.URL, jar http.CookieJar) {
		c := jar.Cookies(u)[0]
		v := []byte(c.Value)
		v[len(v)/2] ^= 1
		jar.SetCookies(u, []*http.Cookie{{Name: c.Name, Value: string(v), Path: asrv.PathIDPCallback}})
	})
	if res.redirect != nil || res.status != http.StatusBadRequest || !strings.Contains(res.body, "unknown to this browser") {
		t.Fatalf("a tampered sign-on cookie: %v %d\n%s", res.redirect, res.status, res.body)
	}
}

// TestSSOClientRejectedMeanwhile: an operator rejects the client while the
// person is at the provider. The callback refuses it as the authorization
// endpoint does, with the page that says so, and redirects nothing to the
// client: no code.
func TestSSOClientRejectedMeanwhile(t *testing.T) {
	ta, _ := newSSOTestAS(t, nil)
	client := ta.publicAgent("claude-code", agentRedirect)
	authURL, _ := ta.ssoAuthURL(client, agentRedirect, "jira:read")
	res := ssoSignIn(t, authURL, agentRedirect, "dana", opPeople["dana"].password, func(*url.URL, http.CookieJar) {
		if _, err := ta.as.ReviewClient(t.Context(), client, asrv.ClientReview{Status: asrv.ReviewRejected, By: "admin"}); err != nil {
			t.Fatal(err)
		}
	})
	if res.redirect != nil || res.status != http.StatusForbidden ||
		!strings.Contains(res.body, "An operator of this gateway rejected this agent (client id "+client+")") {
		t.Fatalf("the callback for a client rejected meanwhile: redirect %v, %d:\n%s", res.redirect, res.status, res.body)
	}
}

// exchangeCode redeems an authorization code with its PKCE verifier.
func (ta *testAS) exchangeCode(clientID, code, verifier string) *oauth2.Token {
	ta.t.Helper()
	tok, err := ta.oauthConfig(clientID, agentRedirect).Exchange(context.Background(), code, oauth2.VerifierOption(verifier),
		oauth2.SetAuthURLParam("resource", ta.resource))
	if err != nil {
		ta.t.Fatalf("exchange the code: %v", err)
	}
	return tok
}

// refresh uses a refresh token.
func (ta *testAS) refresh(clientID, refreshToken string) *oauth2.Token {
	ta.t.Helper()
	tok, err := ta.oauthConfig(clientID, agentRedirect).TokenSource(context.Background(), &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		ta.t.Fatalf("refresh: %v", err)
	}
	return tok
}

func oauthVerifier() string { return oauth2.GenerateVerifier() }

func s256(verifier string) oauth2.AuthCodeOption { return oauth2.S256ChallengeOption(verifier) }

func resourceParam(r string) oauth2.AuthCodeOption { return oauth2.SetAuthURLParam("resource", r) }

func sortedFields(v any) []string {
	s, _ := v.(string)
	return slices.Sorted(slices.Values(strings.Fields(s)))
}

func toStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
