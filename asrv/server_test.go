package asrv_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store/badger"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/internal/policytest"
)

// testAS is a running authorization server on 127.0.0.1 with the shipped
// policy, an in-memory Badger store and a trusted statement issuer.
type testAS struct {
	t        testing.TB
	srv      *httptest.Server
	as       *asrv.Server
	store    *badger.Store
	issuer   *asrv.IssuerKey
	resource string
	// rs is the resource server (the gateway) the AS lets call the
	// introspection endpoint: configured, not registered.
	rsID, rsSecret string
	// cfg is the configuration the AS was built with.
	cfg asrv.Config
}

func newTestAS(t testing.TB, opts ...func(*asrv.Config)) *testAS {
	t.Helper()
	ctx := context.Background()
	reg := policytest.Registry(t)
	store, err := badger.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	key, err := asrv.LoadOrCreateIssuerKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := asrv.NewStatementVerifier(key.Trusted())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	ta := &testAS{t: t, srv: srv, store: store, issuer: key, resource: srv.URL + "/mcp",
		rsID: "gateway", rsSecret: rand.Text()}
	cfg := asrv.Config{
		Issuer:     srv.URL,
		Resources:  []string{ta.resource},
		Scopes:     []string{"drive:read", "drive:write", "jira:read", "jira:write", "slack:read", "slack:write", "gitlab:read", "gitlab:write", "gitlab:approve", "jenkins:read", "jenkins:build", "database:read"},
		Secret:     bytes.Repeat([]byte("k"), 32),
		Store:      store,
		Policy:     reg,
		Users:      asrv.DemoUsers{},
		Statements: verifier,

		Introspectors: []asrv.Introspector{{ClientID: ta.rsID, Secret: ta.rsSecret}},
	}
	for _, o := range opts {
		o(&cfg)
	}
	as, err := asrv.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ta.as, ta.cfg = as, cfg
	srv.Config.Handler = as.Handler()
	t.Cleanup(func() {
		srv.Close()
		_ = store.Close()
	})
	return ta
}

// statement signs a software statement with the trusted test issuer.
func (ta *testAS) statement(provider string, singleUse bool) string {
	jws, err := ta.as.Statement(ta.issuer, asrv.StatementClaims{
		SoftwareID: provider + "-sw", AgentProvider: provider, AgentModel: "test-model",
		SingleUseAccessTokens: singleUse,
	})
	if err != nil {
		ta.t.Fatal(err)
	}
	return jws
}

func (ta *testAS) post(path string, body any) (int, map[string]any) {
	ta.t.Helper()
	return postJSONTo(ta.t, ta.srv.URL+path, body)
}

// postJSONTo posts body as JSON to target.
func postJSONTo(t testing.TB, target string, body any) (int, map[string]any) {
	t.Helper()
	raw, _ := json.Marshal(body)
	resp, err := http.Post(target, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// register performs DCR and fails the test unless it succeeds.
func (ta *testAS) register(meta map[string]any) map[string]any {
	ta.t.Helper()
	status, out := ta.post(asrv.PathRegister, meta)
	if status != http.StatusCreated {
		ta.t.Fatalf("register %v: %d %v", meta, status, out)
	}
	return out
}

// form posts a form, with basic auth when user is set.
func (ta *testAS) form(path, user, pass string, v url.Values) (int, map[string]any) {
	ta.t.Helper()
	return postFormTo(ta.t, ta.srv.URL+path, user, pass, v)
}

// postFormTo posts a form to target, with basic auth when user is set.
func postFormTo(t testing.TB, target, user, pass string, v url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(body, &out)
	return resp.StatusCode, out
}

// introspect asks the introspection endpoint as the resource server.
func (ta *testAS) introspect(token string) map[string]any {
	ta.t.Helper()
	status, out := ta.form(asrv.PathIntrospect, ta.rsID, ta.rsSecret, url.Values{"token": {token}})
	if status != http.StatusOK {
		ta.t.Fatalf("introspect: %d %v", status, out)
	}
	return out
}

// publicAgent registers a public MCP client (PKCE, no secret) with a
// statement for provider ("" for none).
func (ta *testAS) publicAgent(provider string, redirect string) string {
	meta := map[string]any{
		"client_name": "agent " + provider, "redirect_uris": []string{redirect},
		"grant_types":                []string{"authorization_code", "refresh_token", asrv.GrantTypeExchange},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
	}
	if provider != "" {
		meta["software_statement"] = ta.statement(provider, false)
	}
	return ta.register(meta)["client_id"].(string)
}

// machineToken registers a machine agent of provider (client credentials,
// signed statement) and returns an access token with scopes for the AS's
// resource.
func (ta *testAS) machineToken(provider string, scopes ...string) string {
	ta.t.Helper()
	reg := ta.register(map[string]any{
		"client_name": provider, "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
		"software_statement":         ta.statement(provider, false),
	})
	cc := clientcredentials.Config{ClientID: reg["client_id"].(string), ClientSecret: reg["client_secret"].(string),
		TokenURL: ta.srv.URL + asrv.PathToken, Scopes: scopes, EndpointParams: url.Values{"resource": {ta.resource}}}
	tok, err := cc.Token(context.Background())
	if err != nil {
		ta.t.Fatal(err)
	}
	return tok.AccessToken
}

// authorize drives the sign-in page and returns the redirect it answers.
func (ta *testAS) authorize(authURL, user, password string) *url.URL {
	ta.t.Helper()
	loc, err := oauthtest.Authorize(authURL, user, password)
	if err != nil {
		ta.t.Fatal(err)
	}
	return loc
}

func (ta *testAS) oauthConfig(clientID, redirect string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:    clientID,
		RedirectURL: redirect,
		Scopes:      scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   ta.srv.URL + asrv.PathAuthorize,
			TokenURL:  ta.srv.URL + asrv.PathToken,
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
}

// codeFlow runs authorization code + PKCE as user and returns the token.
func (ta *testAS) codeFlow(clientID, redirect, user string, scopes ...string) *oauth2.Token {
	ta.t.Helper()
	cfg := ta.oauthConfig(clientID, redirect, scopes...)
	verifier := oauth2.GenerateVerifier()
	state := "state-for-" + user
	loc := ta.authorize(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("resource", ta.resource)), user, "demo")
	if got := loc.Query().Get("state"); got != state {
		ta.t.Fatalf("state %q, want %q (redirect %s)", got, state, loc)
	}
	if got := loc.Query().Get("iss"); got != ta.srv.URL {
		ta.t.Fatalf("iss %q, want the issuer %q (RFC 9207; redirect %s)", got, ta.srv.URL, loc)
	}
	code := loc.Query().Get("code")
	if code == "" {
		ta.t.Fatalf("no code in redirect %s", loc)
	}
	tok, err := cfg.Exchange(context.Background(), code, oauth2.VerifierOption(verifier),
		oauth2.SetAuthURLParam("resource", ta.resource))
	if err != nil {
		ta.t.Fatalf("exchange code: %v", err)
	}
	return tok
}

func TestMetadata(t *testing.T) {
	ta := newTestAS(t)
	for _, path := range []string{asrv.PathMetadata, asrv.PathOpenIDMetadata} {
		resp, err := http.Get(ta.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var md map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if md["issuer"] != ta.srv.URL || md["token_endpoint"] != ta.srv.URL+asrv.PathToken ||
			fmt.Sprint(md["code_challenge_methods_supported"]) != "[S256]" ||
			md["registration_endpoint"] != ta.srv.URL+asrv.PathRegister {
			t.Fatalf("%s: unexpected metadata %v", path, md)
		}
	}
}

// TestAuthorizationCodeFlow: DCR with a statement → auth code + PKCE as
// alice → introspect → refresh (rotation) → reuse detection → revoke.
func TestAuthorizationCodeFlow(t *testing.T) {
	ta := newTestAS(t)
	redirect := "http://127.0.0.1:43121/callback"
	clientID := ta.publicAgent("claude-code", redirect)
	tok := ta.codeFlow(clientID, redirect, "alice", "jira:read", "jira:write", "drive:read")
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	if exp := time.Until(tok.Expiry); exp <= 0 || exp > 11*time.Minute {
		t.Fatalf("access token lives %v; want the short default", exp)
	}

	info := ta.introspect(tok.AccessToken)
	if info["active"] != true || info["sub"] != "alice" || info["client_id"] != clientID ||
		info["scope"] != "drive:read jira:read jira:write" {
		t.Fatalf("introspection %v", info)
	}
	if aud := fmt.Sprint(info["aud"]); aud != "["+ta.resource+"]" {
		t.Fatalf("audience %s, want the resource", aud)
	}

	cfg := ta.oauthConfig(clientID, redirect)
	refreshed, err := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if refreshed.RefreshToken == tok.RefreshToken || refreshed.AccessToken == tok.AccessToken {
		t.Fatal("refresh did not rotate the tokens")
	}
	if ta.introspect(refreshed.AccessToken)["active"] != true {
		t.Fatal("refreshed access token is not active")
	}

	// Reusing the first refresh token revokes the whole family.
	_, err = cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("refresh reuse: err = %v, want invalid_grant", err)
	}
	if ta.introspect(refreshed.AccessToken)["active"] != false {
		t.Fatal("refresh reuse did not revoke the family's access token")
	}

	// Revocation.
	tok2 := ta.codeFlow(clientID, redirect, "alice", "jira:read")
	if status, out := ta.form(asrv.PathRevoke, "", "", url.Values{"token": {tok2.AccessToken}, "client_id": {clientID}}); status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, out)
	}
	if ta.introspect(tok2.AccessToken)["active"] != false {
		t.Fatal("revoked token is still active")
	}
}

// TestScopesAreTierIntersectRole: bob (analytics) through a developer agent
// gets no Jira write, whatever the agent asks for.
func TestScopesAreTierIntersectRole(t *testing.T) {
	ta := newTestAS(t)
	redirect := "http://127.0.0.1:43122/cb"
	clientID := ta.publicAgent("claude-code", redirect)
	tok := ta.codeFlow(clientID, redirect, "bob", "jira:read", "jira:write", "slack:write")
	if got := ta.introspect(tok.AccessToken)["scope"]; got != "jira:read slack:write" {
		t.Fatalf("bob's scopes %q, want jira:read slack:write", got)
	}
}

func TestClientCredentialsForCIBot(t *testing.T) {
	ta := newTestAS(t)
	reg := ta.register(map[string]any{
		"client_name": "ci bot", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
		"software_statement":         ta.statement("ci-bot", false),
	})
	cc := clientcredentials.Config{
		ClientID: reg["client_id"].(string), ClientSecret: reg["client_secret"].(string),
		TokenURL: ta.srv.URL + asrv.PathToken, Scopes: []string{"jira:write", "drive:read"},
		EndpointParams: url.Values{"resource": {ta.resource}},
	}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	info := ta.introspect(tok.AccessToken)
	if info["active"] != true || info["scope"] != "drive:read jira:write" || info["sub"] != nil {
		t.Fatalf("ci bot introspection %v", info)
	}
	if info["pbac_tier"] != "ci_agent" {
		t.Fatalf("tier %v, want ci_agent", info["pbac_tier"])
	}
	// Slack is not granted to the ci_agent tier.
	cc.Scopes = []string{"slack:write"}
	if _, err := cc.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "invalid_scope") {
		t.Fatalf("ci bot slack token: err = %v, want invalid_scope", err)
	}
}

// TestTokenExchange: alice's developer agent delegates to a sub-agent; the
// new token names alice, carries the act chain, and only the narrowed scope.
func TestTokenExchange(t *testing.T) {
	ta := newTestAS(t)
	redirect := "http://127.0.0.1:43123/cb"
	parentID := ta.publicAgent("claude-code", redirect)
	childID := ta.publicAgent("claude-code", "http://127.0.0.1:43124/cb")
	tok := ta.codeFlow(parentID, redirect, "alice", "jira:read", "jira:write", "drive:read")

	status, out := ta.form(asrv.PathToken, "", "", url.Values{
		"grant_type":         {asrv.GrantTypeExchange},
		"client_id":          {parentID},
		"subject_token":      {tok.AccessToken},
		"subject_token_type": {asrv.TokenTypeAccess},
		"audience":           {childID},
		"scope":              {"jira:read"},
	})
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %v", status, out)
	}
	if out["issued_token_type"] != asrv.TokenTypeAccess {
		t.Fatalf("exchange response %v", out)
	}
	info := ta.introspect(out["access_token"].(string))
	act, _ := info["act"].(map[string]any)
	if info["active"] != true || info["sub"] != "alice" || info["client_id"] != childID ||
		info["scope"] != "jira:read" || act["sub"] != parentID {
		t.Fatalf("delegated token %v", info)
	}
}

func TestSingleUseTokenRacingIntrospections(t *testing.T) {
	ta := newTestAS(t)
	reg := ta.register(map[string]any{
		"client_name": "scanner", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
		"software_statement":         ta.statement("security-scanner", true),
	})
	cc := clientcredentials.Config{ClientID: reg["client_id"].(string), ClientSecret: reg["client_secret"].(string),
		TokenURL: ta.srv.URL + asrv.PathToken, Scopes: []string{"drive:read"}}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if exp := time.Until(tok.Expiry); exp > 301*time.Second {
		t.Fatalf("scanner token lives %v; the read_only tier caps it at 300 s", exp)
	}
	const n = 50
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		active int
	)
	for range n {
		wg.Go(func() {
			res, err := ta.as.Introspect(context.Background(), tok.AccessToken, "")
			if err != nil {
				t.Error(err)
				return
			}
			if res.Active {
				mu.Lock()
				active++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if active != 1 {
		t.Fatalf("%d of %d racing introspections succeeded, want exactly 1", active, n)
	}
	if ta.introspect(tok.AccessToken)["active"] != false {
		t.Fatal("a consumed single-use token is active again")
	}
}

// TestRegisteredScopeIsNotACeiling: a client that registered with one scope
// may later ask for another (the MCP step-up after a 403
// insufficient_scope); policy, not the registration, decides what it gets.
func TestRegisteredScopeIsNotACeiling(t *testing.T) {
	ta := newTestAS(t)
	reg := ta.register(map[string]any{"client_name": "stepper", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "scope": "jira:read",
		"software_statement": ta.statement("ci-bot", false)})
	if got := reg["scope"]; got == "jira:read" {
		t.Fatalf("the registration kept its scope as a ceiling: %v", got)
	}
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)
	status, tok := ta.form(asrv.PathToken, id, secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"jira:read jira:write"}})
	if status != 200 || !strings.Contains(tok["scope"].(string), "jira:write") {
		t.Fatalf("step-up scope refused: %d %v", status, tok)
	}
	// Policy still narrows: the ci_agent tier grants no slack.
	status, tok = ta.form(asrv.PathToken, id, secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"slack:write"}})
	if status == 200 && strings.Contains(tok["scope"].(string), "slack:write") {
		t.Fatalf("policy did not narrow: %d %v", status, tok)
	}
}
