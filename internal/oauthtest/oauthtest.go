// Package oauthtest drives the authorization server's flows over real HTTP
// for tests: registration, the authorization code flow with PKCE through
// the sign-in page, and client credentials.
package oauthtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Register performs RFC 7591 registration at base and returns the response.
func Register(ctx context.Context, base string, meta map[string]any) (map[string]any, error) {
	raw, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth2/register", bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated {
		return out, fmt.Errorf("register: %d %v", resp.StatusCode, out)
	}
	return out, nil
}

var csrfField = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// CodeFlow runs the authorization code flow with PKCE (S256) for clientID
// as user (password "demo" for the demo users) and returns the token.
func CodeFlow(ctx context.Context, base, clientID, redirect, user, password, resource string, scopes ...string) (*oauth2.Token, error) {
	cfg := &oauth2.Config{
		ClientID: clientID, RedirectURL: redirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: base + "/oauth2/authorize", TokenURL: base + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	state := "state-" + oauth2.GenerateVerifier()[:16]
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", resource))
	loc, err := Authorize(authURL, user, password)
	if err != nil {
		return nil, err
	}
	if e := loc.Query().Get("error"); e != "" {
		return nil, fmt.Errorf("authorization refused: %s: %s", e, loc.Query().Get("error_description"))
	}
	if loc.Query().Get("state") != state {
		return nil, fmt.Errorf("state mismatch in %s", loc)
	}
	return cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier),
		oauth2.SetAuthURLParam("resource", resource))
}

// Authorize drives the authorization endpoint as a browser would: it loads
// the sign-in page, posts the credentials with the page's CSRF token, and
// returns the redirect the endpoint answers with.
func Authorize(authURL, user, password string) (*url.URL, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		return nil, err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		return nil, fmt.Errorf("sign-in page: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = c.PostForm(authURL, url.Values{"username": {user}, "password": {password},
		"csrf_token": {string(m[1])}, "decision": {"approve"}})
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode/100 != 3 {
		return nil, fmt.Errorf("sign-in answered %d", resp.StatusCode)
	}
	return loc, nil
}

// ClientCredentials gets a token for a confidential client.
func ClientCredentials(ctx context.Context, base, id, secret, resource string, scopes ...string) (*oauth2.Token, error) {
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: base + "/oauth2/token",
		Scopes: scopes, EndpointParams: url.Values{"resource": {resource}}}
	return cc.Token(ctx)
}

// BearerTransport adds a bearer token to every request, as an MCP client
// does.
type BearerTransport struct {
	Token string
	Base  http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *BearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.Token)
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}
