package asrv_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
)

// TestClientCredentialsBoundToIssuer: SEP-2352. A client's credentials
// belong to the authorization server that issued them: a client is
// recorded with the issuer it registered at, and a server with another
// issuer identifier refuses it even on the same store (a changed public
// URL, a replica configured for another) — invalid_client at the token
// endpoint, an error page and never a redirect at the authorization
// endpoint — so the client registers again there. A client stored before
// the issuer was recorded stays usable.
func TestClientCredentialsBoundToIssuer(t *testing.T) {
	a := newTestAS(t)
	b := newTestAS(t, func(c *asrv.Config) { c.Store = a.store })
	if a.cfg.Issuer == b.cfg.Issuer {
		t.Fatal("the two servers share an issuer")
	}
	reg := a.register(map[string]any{
		"client_name": "batch", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "software_statement": a.statement("ci-bot", false),
	})
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)
	stored, err := a.store.Client(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Issuer != a.cfg.Issuer {
		t.Fatalf("stored issuer %q, want %q", stored.Issuer, a.cfg.Issuer)
	}
	// A client of the same store without a recorded issuer.
	legacy := *stored
	legacy.ID, legacy.Issuer = "legacy-"+id, ""
	if err := a.store.CreateClient(context.Background(), &legacy); err != nil {
		t.Fatal(err)
	}
	const redirect = "http://127.0.0.1:43320/callback"
	public := a.publicAgent("claude-code", redirect)

	cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"jira:read"}}
	for _, tc := range []struct {
		name   string
		as     *testAS
		id     string
		status int
		errStr string
	}{
		{"token at the issuer it registered at", a, id, http.StatusOK, ""},
		{"token at another issuer", b, id, http.StatusUnauthorized, "invalid_client"},
		{"legacy client at another issuer", b, legacy.ID, http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := url.Values{"resource": {tc.as.resource}}
			for k, vs := range cc {
				v[k] = vs
			}
			status, out := tc.as.form(asrv.PathToken, tc.id, secret, v)
			if status != tc.status || (tc.errStr != "" && out["error"] != tc.errStr) {
				t.Fatalf("got %d %v, want %d %s", status, out, tc.status, tc.errStr)
			}
		})
	}
	for _, tc := range []struct {
		name     string
		as       *testAS
		status   int
		redirect bool
	}{
		{"authorize at the issuer it registered at", a, http.StatusOK, false},
		{"authorize at another issuer", b, http.StatusUnauthorized, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := browser().Get(tc.as.authorizeURL(public, redirect, func(v url.Values) { v.Set("scope", "jira:read") }))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Location") != "" {
				t.Fatalf("got %d, Location %q; want %d and no redirect", resp.StatusCode, resp.Header.Get("Location"), tc.status)
			}
		})
	}
}
