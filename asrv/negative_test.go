package asrv_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/demo"
)

// TestRegistrationRejects: each row is a registration the AS must refuse,
// with the RFC 7591 error it must answer.
func TestRegistrationRejects(t *testing.T) {
	ta := newTestAS(t)
	other, err := asrv.LoadOrCreateIssuerKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := ta.as.Statement(other, asrv.StatementClaims{AgentProvider: "claude-code-trusted", AgentModel: "m"})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ta.issuer.Sign(asrv.StatementClaims{AgentProvider: "claude-code", TTL: time.Second, Audience: []string{ta.srv.URL}}, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	algNone := b64([]byte(`{"alg":"none"}`)) + "." + b64([]byte(`{"iss":"`+asrv.LocalIssuer+`","agent_provider":"claude-code-trusted"}`)) + "."
	base := func(extra map[string]any) map[string]any {
		m := map[string]any{"redirect_uris": []string{"http://127.0.0.1:4000/cb"}, "token_endpoint_auth_method": "none"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name     string
		body     map[string]any
		wantCode string
	}{
		{"garbage statement", base(map[string]any{"software_statement": "not-a-jws"}), "invalid_software_statement"},
		{"alg none statement", base(map[string]any{"software_statement": algNone}), "invalid_software_statement"},
		{"statement signed by an untrusted key", base(map[string]any{"software_statement": foreign}), "unapproved_software_statement"},
		{"expired statement", base(map[string]any{"software_statement": expired}), "invalid_software_statement"},
		{"redirect uri with a fragment", base(map[string]any{"redirect_uris": []string{"https://app.example/cb#x"}}), "invalid_redirect_uri"},
		{"plain http redirect off loopback", base(map[string]any{"redirect_uris": []string{"http://evil.example/cb"}}), "invalid_redirect_uri"},
		{"client credentials for a public client", base(map[string]any{"grant_types": []string{"client_credentials"}}), "invalid_client_metadata"},
		{"unknown grant type", base(map[string]any{"grant_types": []string{"password"}}), "invalid_client_metadata"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := ta.post(asrv.PathRegister, tc.body)
			if status != http.StatusBadRequest || out["error"] != tc.wantCode {
				t.Fatalf("got %d %v, want 400 %s", status, out, tc.wantCode)
			}
		})
	}
}

// TestMetadataWithoutStatementIsNotAClaim: a client that claims a provider
// in plain metadata registers, unverified, and policy gives it nothing.
func TestMetadataWithoutStatementIsNotAClaim(t *testing.T) {
	ta := newTestAS(t)
	redirect := "http://127.0.0.1:4001/cb"
	out := ta.register(map[string]any{
		"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
		"agent_provider": "claude-code-trusted", "software_id": "planner",
	})
	if agent, _ := out["agent"].(map[string]any); agent["verified"] == true || agent["agent_provider"] != nil {
		t.Fatalf("unsigned metadata became a claim: %v", out["agent"])
	}
	cfg := ta.oauthConfig(out["client_id"].(string), redirect)
	loc := ta.authorize(cfg.AuthCodeURL("state-unverified", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "demo")
	if loc.Query().Get("error") != "access_denied" {
		t.Fatalf("unverified client got %s, want access_denied", loc)
	}
}

// TestAuthorizeRejects: authorization requests that must not produce a code.
func TestAuthorizeRejects(t *testing.T) {
	ta := newTestAS(t)
	redirect := "http://127.0.0.1:4002/cb"
	clientID := ta.publicAgent("claude-code", redirect)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := func(mod func(url.Values)) string {
		v := url.Values{
			"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
			"state": {"state-12345678"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
			"code_challenge_method": {"S256"}, "resource": {ta.resource},
		}
		mod(v)
		return ta.srv.URL + asrv.PathAuthorize + "?" + v.Encode()
	}
	tests := []struct {
		name string
		url  string
		// wantRedirectError is the error the client's redirect carries; empty
		// means the AS must not redirect at all (an error page instead).
		wantRedirectError string
	}{
		{"PKCE missing", q(func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }), "invalid_request"},
		{"PKCE plain", q(func(v url.Values) { v.Set("code_challenge_method", "plain") }), "invalid_request"},
		{"unknown resource", q(func(v url.Values) { v.Set("resource", "https://elsewhere.example/mcp") }), "invalid_target"},
		{"redirect uri not registered", q(func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:4002/other") }), ""},
		{"unknown client", q(func(v url.Values) { v.Set("client_id", "nobody") }), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := noRedirect.Get(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if tc.wantRedirectError == "" {
				if resp.StatusCode/100 == 3 || resp.StatusCode == http.StatusOK {
					t.Fatalf("got %d (Location %q); the AS must not redirect to an unverified URI", resp.StatusCode, loc)
				}
				return
			}
			if resp.StatusCode/100 != 3 || loc.Query().Get("error") != tc.wantRedirectError {
				t.Fatalf("got %d Location %q, want a redirect with error=%s", resp.StatusCode, loc, tc.wantRedirectError)
			}
			if loc.Query().Get("iss") != ta.srv.URL {
				t.Errorf("error redirect %q: want iss=%s (RFC 9207)", loc, ta.srv.URL)
			}
		})
	}
}

// TestLoopbackRedirectAnyPort: RFC 8252 §7.3 — a loopback redirect URI
// matches with any port.
func TestLoopbackRedirectAnyPort(t *testing.T) {
	ta := newTestAS(t)
	clientID := ta.publicAgent("claude-code", "http://127.0.0.1/callback")
	tok := ta.codeFlow(clientID, "http://127.0.0.1:51234/callback", "alice", "jira:read")
	if tok.AccessToken == "" {
		t.Fatal("no token")
	}
}

// TestClaudeCodeLocalhostCallback: the demo tenant's human agents carry
// Claude Code's fixed localhost callback beside the any-port 127.0.0.1 one;
// the localhost one matches only on its own port (a host name gets no
// loopback port leeway), and both sign in.
func TestClaudeCodeLocalhostCallback(t *testing.T) {
	ta := newTestAS(t)
	reg := ta.register(map[string]any{
		"client_name": "claude-code", "redirect_uris": demo.HumanRedirectURIs(),
		"token_endpoint_auth_method": "none", "software_statement": ta.statement("claude-code", false),
	})
	clientID := reg["client_id"].(string)
	fixed := fmt.Sprintf("http://localhost:%d/callback", demo.ClaudeCodeCallbackPort)
	if tok := ta.codeFlow(clientID, fixed, "alice", "jira:read"); tok.AccessToken == "" {
		t.Fatal("no token through the localhost callback")
	}
	if tok := ta.codeFlow(clientID, "http://127.0.0.1:40123/callback", "alice", "jira:read"); tok.AccessToken == "" {
		t.Fatal("no token through the 127.0.0.1 callback")
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	v := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {fmt.Sprintf("http://localhost:%d/callback", demo.ClaudeCodeCallbackPort+1)},
		"state": {"state-12345678"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"}, "resource": {ta.resource},
	}
	resp, err := noRedirect.Get(ta.srv.URL + asrv.PathAuthorize + "?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 == 3 || resp.StatusCode == http.StatusOK {
		t.Fatalf("localhost on another port: %d %q, want an error page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := demo.CallbackPort(demo.HumanRedirectURIs()); got != demo.ClaudeCodeCallbackPort {
		t.Errorf("CallbackPort = %d", got)
	}
}

// TestTokenEndpointRejects: token requests that must fail, each with the
// OAuth error it must answer.
func TestTokenEndpointRejects(t *testing.T) {
	ta := newTestAS(t)
	redirect := "http://127.0.0.1:4003/cb"
	clientID := ta.publicAgent("claude-code", redirect)
	otherID := ta.publicAgent("claude-code", "http://127.0.0.1:4004/cb")
	cfg := ta.oauthConfig(clientID, redirect, "jira:read", "drive:read")

	newCode := func() (code, verifier string) {
		verifier = oauth2.GenerateVerifier()
		loc := ta.authorize(cfg.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(verifier),
			oauth2.SetAuthURLParam("resource", ta.resource)), "alice", "demo")
		return loc.Query().Get("code"), verifier
	}
	redeem := func(code, verifier string, extra url.Values) (int, map[string]any) {
		v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
			"client_id": {clientID}, "code_verifier": {verifier}}
		for k, vs := range extra {
			v[k] = vs
		}
		return ta.form(asrv.PathToken, "", "", v)
	}

	t.Run("wrong PKCE verifier", func(t *testing.T) {
		code, _ := newCode()
		if status, out := redeem(code, oauth2.GenerateVerifier(), nil); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Fatalf("got %d %v, want invalid_grant", status, out)
		}
	})
	t.Run("redirect uri differs from the authorization request", func(t *testing.T) {
		code, verifier := newCode()
		if status, out := redeem(code, verifier, url.Values{"redirect_uri": {"http://127.0.0.1:4003/other"}}); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Fatalf("got %d %v, want invalid_grant", status, out)
		}
	})
	t.Run("code reuse revokes what it issued", func(t *testing.T) {
		code, verifier := newCode()
		status, first := redeem(code, verifier, nil)
		if status != http.StatusOK {
			t.Fatalf("first redemption: %d %v", status, first)
		}
		if status, out := redeem(code, verifier, nil); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Fatalf("reuse: got %d %v, want invalid_grant", status, out)
		}
		if ta.introspect(first["access_token"].(string))["active"] != false {
			t.Fatal("the token issued from a reused code is still active")
		}
	})
	t.Run("scope escalation on refresh", func(t *testing.T) {
		code, verifier := newCode()
		_, tok := redeem(code, verifier, nil)
		status, out := ta.form(asrv.PathToken, "", "", url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {tok["refresh_token"].(string)}, "client_id": {clientID}, "scope": {"jira:read slack:write"}})
		if status != http.StatusBadRequest || out["error"] != "invalid_scope" {
			t.Fatalf("got %d %v, want invalid_scope", status, out)
		}
	})
	t.Run("refresh token of another client", func(t *testing.T) {
		code, verifier := newCode()
		_, tok := redeem(code, verifier, nil)
		status, out := ta.form(asrv.PathToken, "", "", url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {tok["refresh_token"].(string)}, "client_id": {otherID}})
		if status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Fatalf("got %d %v, want invalid_grant", status, out)
		}
	})

	code, verifier := newCode()
	_, tok := redeem(code, verifier, nil)
	subject := tok["access_token"].(string)
	exchange := func(client string, extra url.Values) (int, map[string]any) {
		v := url.Values{"grant_type": {asrv.GrantTypeExchange}, "client_id": {client},
			"subject_token": {subject}, "subject_token_type": {asrv.TokenTypeAccess}, "audience": {otherID}}
		for k, vs := range extra {
			v[k] = vs
		}
		return ta.form(asrv.PathToken, "", "", v)
	}
	for _, tc := range []struct {
		name, client string
		extra        url.Values
		wantError    string
	}{
		{"exchange scope escalation", clientID, url.Values{"scope": {"jira:write"}}, "invalid_scope"},
		{"exchange to an unregistered audience", clientID, url.Values{"audience": {"no-such-agent"}}, "invalid_target"},
		{"exchange of another client's token", otherID, nil, "invalid_request"}, // RFC 8693 §2.2.2
		{"forged actor token", clientID, url.Values{"actor_token": {"ory_at_forged.signature"}, "actor_token_type": {asrv.TokenTypeAccess}}, "invalid_request"},
		{"forged subject token", clientID, url.Values{"subject_token": {"ory_at_forged.signature"}}, "invalid_request"},
		{"exchange without subject token type", clientID, url.Values{"subject_token_type": {""}}, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, out := exchange(tc.client, tc.extra); status/100 != 4 || out["error"] != tc.wantError {
				t.Fatalf("got %d %v, want %s", status, out, tc.wantError)
			}
		})
	}
}

func TestIntrospectionRequiresClientAuth(t *testing.T) {
	ta := newTestAS(t)
	publicID := ta.publicAgent("claude-code", "http://127.0.0.1:4005/cb")
	for _, tc := range []struct {
		name, user, pass string
		form             url.Values
	}{
		{"no client authentication", "", "", url.Values{"token": {"x"}}},
		{"wrong secret", ta.rsID, "wrong", url.Values{"token": {"x"}}},
		{"public client", "", "", url.Values{"token": {"x"}, "client_id": {publicID}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := ta.form(asrv.PathIntrospect, tc.user, tc.pass, tc.form)
			if status != http.StatusUnauthorized || out["error"] != "invalid_client" {
				t.Fatalf("got %d %v, want 401 invalid_client", status, out)
			}
		})
	}
}

func TestTokenForAnotherResourceIsInactive(t *testing.T) {
	ta := newTestAS(t)
	redirect := "http://127.0.0.1:4006/cb"
	tok := ta.codeFlow(ta.publicAgent("claude-code", redirect), redirect, "alice", "jira:read")
	ctx := context.Background()
	if res, _ := ta.as.Introspect(ctx, tok.AccessToken, ta.resource); !res.Active {
		t.Fatalf("token inactive at its own resource: %v", res.Reasons)
	}
	if res, _ := ta.as.Introspect(ctx, tok.AccessToken, "https://other.example/mcp"); res.Active {
		t.Fatal("token active at a resource it was not issued for")
	}
	// A token with a valid MAC from another AS secret is unknown here.
	if res, _ := ta.as.Introspect(ctx, tok.AccessToken+"x", ""); res.Active {
		t.Fatal("a tampered token is active")
	}
}

func TestClientConfigurationEndpoint(t *testing.T) {
	ta := newTestAS(t)
	out := ta.register(map[string]any{"redirect_uris": []string{"http://127.0.0.1:4007/cb"}, "token_endpoint_auth_method": "none"})
	uri, token := out["registration_client_uri"].(string), out["registration_access_token"].(string)
	do := func(method, bearer string) int {
		req, _ := http.NewRequest(method, uri, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := do(http.MethodGet, ""); got != http.StatusUnauthorized {
		t.Fatalf("read without token: %d", got)
	}
	if got := do(http.MethodGet, token+"x"); got != http.StatusUnauthorized {
		t.Fatalf("read with wrong token: %d", got)
	}
	if got := do(http.MethodGet, token); got != http.StatusOK {
		t.Fatalf("read: %d", got)
	}
	if got := do(http.MethodDelete, token); got != http.StatusNoContent {
		t.Fatalf("delete: %d", got)
	}
	if got := do(http.MethodGet, token); got != http.StatusUnauthorized {
		t.Fatalf("read after delete: %d", got)
	}
}
