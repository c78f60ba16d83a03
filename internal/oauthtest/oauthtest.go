// Package oauthtest drives the authorization server's flows over real HTTP
// for tests: registration, the authorization code flow with PKCE through
// the sign-in page, and client credentials.
package oauthtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/pbac-gateway/pbac/demo"
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

// Authorize drives the authorization endpoint as a browser would (see
// demo.SignIn) and returns the redirect the endpoint answers with.
func Authorize(authURL, user, password string) (*url.URL, error) {
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return demo.SignIn(context.Background(), c, authURL, user, password)
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
