package asrv_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
)

// TestScopesFollowActiveScopes: with Config.ActiveScopes the scopes the
// server advertises and accepts are those of the moment. A scope that
// goes away is gone from the metadata and refused (invalid_scope) on the
// next authorization request, and a refresh token whose grant held it is
// refreshed without it rather than failing; a scope that comes back is
// advertised and accepted again.
func TestScopesFollowActiveScopes(t *testing.T) {
	all := []string{"drive:read", "jira:read", "jira:write"}
	var active atomic.Pointer[[]string]
	active.Store(&all)
	ta := newTestAS(t, func(c *asrv.Config) {
		c.Scopes = nil
		c.ActiveScopes = func() []string { return *active.Load() }
	})
	const redirect = "http://127.0.0.1:43190/callback"
	id := ta.publicAgent("claude-code", redirect)
	tok := ta.codeFlow(id, redirect, "alice", "drive:read", "jira:read")
	if got := tok.Extra("scope"); got != "drive:read jira:read" {
		t.Fatalf("granted %v", got)
	}

	advertised := func() []string {
		t.Helper()
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
		return md.Scopes
	}
	authorize := func(scope string) url.Values {
		t.Helper()
		resp, err := browser().Get(ta.authorizeURL(id, redirect, func(v url.Values) { v.Set("scope", scope) }))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode == http.StatusOK {
			return url.Values{} // the sign-in page: accepted
		}
		if loc == nil {
			t.Fatalf("authorize %s: %d", scope, resp.StatusCode)
		}
		return loc.Query()
	}

	without := []string{"jira:read", "jira:write"}
	active.Store(&without)
	if got := advertised(); slices.Contains(got, "drive:read") || !slices.Equal(got, without) {
		t.Fatalf("after drive:read went away, the metadata advertises %v", got)
	}
	if q := authorize("drive:read"); q.Get("error") != "invalid_scope" {
		t.Fatalf("an authorization request for a scope gone: %v, want invalid_scope", q)
	}
	status, out := ta.form(asrv.PathToken, "", "", url.Values{"grant_type": {"refresh_token"}, "client_id": {id},
		"refresh_token": {tok.RefreshToken}})
	if status != http.StatusOK || out["scope"] != "jira:read" {
		t.Fatalf("refresh after drive:read went away: %d %v, want the token without it", status, out)
	}

	active.Store(&all)
	if got := advertised(); !slices.Equal(got, all) {
		t.Fatalf("after drive:read came back, the metadata advertises %v", got)
	}
	if q := authorize("drive:read"); len(q) != 0 {
		t.Fatalf("an authorization request for a scope back: %v, want the sign-in page", q)
	}
	if strings.Contains(strings.Join(advertised(), " "), "offline_access") {
		t.Fatal("offline_access advertised")
	}
}
