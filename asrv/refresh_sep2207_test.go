package asrv_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/asrv"
)

// TestRefreshTokenWhenAskedAndAllowed: SEP-2207. A refresh token comes
// with the authorization code's tokens when the client registered the
// refresh_token grant, whether or not it added offline_access; a client
// without that grant gets none, even asking offline_access, and is not
// refused for asking. offline_access is never granted as a scope of the
// access token (it is no resource's scope), and the AS does not advertise
// it while policy has no scope of that name.
func TestRefreshTokenWhenAskedAndAllowed(t *testing.T) {
	ta := newTestAS(t)
	for i, tc := range []struct {
		name        string
		grants      []string
		scopes      []string
		wantRefresh bool
	}{
		{"refresh_token grant, no offline_access", []string{"authorization_code", "refresh_token"}, []string{"jira:read"}, true},
		{"refresh_token grant, offline_access", []string{"authorization_code", "refresh_token"}, []string{"jira:read", "offline_access"}, true},
		{"refresh_token grant, offline_access first", []string{"authorization_code", "refresh_token"}, []string{"offline_access", "jira:read"}, true},
		{"code grant only, offline_access", []string{"authorization_code"}, []string{"jira:read", "offline_access"}, false},
		{"code grant only", []string{"authorization_code"}, []string{"jira:read"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			redirect := "http://127.0.0.1:" + []string{"43301", "43302", "43303", "43304", "43305"}[i] + "/callback"
			reg := ta.register(map[string]any{
				"client_name": "sep2207", "redirect_uris": []string{redirect}, "grant_types": tc.grants,
				"token_endpoint_auth_method": "none", "application_type": "native",
				"software_statement": ta.statement("claude-code", false),
			})
			id := reg["client_id"].(string)
			tok := ta.codeFlow(id, redirect, "alice", tc.scopes...)
			if got := tok.RefreshToken != ""; got != tc.wantRefresh {
				t.Fatalf("refresh token issued: %v, want %v", got, tc.wantRefresh)
			}
			if sc, _ := tok.Extra("scope").(string); sc != "jira:read" {
				t.Fatalf("granted scope %q, want jira:read (never offline_access)", sc)
			}
			if got := ta.introspect(tok.AccessToken)["scope"]; got != "jira:read" {
				t.Fatalf("access token scope %v, want jira:read", got)
			}
			if !tc.wantRefresh {
				return
			}
			cfg := ta.oauthConfig(id, redirect)
			if _, err := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
				t.Fatalf("refresh: %v", err)
			}
		})
	}

	resp, err := http.Get(ta.srv.URL + asrv.PathMetadata)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md struct {
		Scopes []string `json:"scopes_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	for _, sc := range md.Scopes {
		if sc == asrv.ScopeOfflineAccess {
			t.Fatalf("scopes_supported advertises offline_access: %v", md.Scopes)
		}
	}
}

// TestOfflineAccessOnlyScope: an authorization request whose only scope is
// offline_access reaches the sign-in page (it asks for no resource scope;
// policy decides what the grant holds), never invalid_scope.
func TestOfflineAccessOnlyScope(t *testing.T) {
	ta := newTestAS(t)
	const redirect = "http://127.0.0.1:43310/callback"
	id := ta.publicAgent("claude-code", redirect)
	resp, err := browser().Get(ta.authorizeURL(id, redirect, func(v url.Values) { v.Set("scope", "offline_access") }))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); strings.Contains(loc, "invalid_scope") {
		t.Fatalf("offline_access alone refused: %s", loc)
	}
}
