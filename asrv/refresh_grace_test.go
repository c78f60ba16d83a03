package asrv_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
)

// refreshWith presents refresh token rt at the token endpoint as the
// public client clientID.
func (ta *testAS) refreshWith(clientID, rt string, extra url.Values) (int, map[string]any) {
	ta.t.Helper()
	v := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}}
	for k, vs := range extra {
		v[k] = vs
	}
	return ta.form(asrv.PathToken, "", "", v)
}

// mustRefresh refreshes and returns the new access and refresh tokens.
func (ta *testAS) mustRefresh(clientID, rt string) (access, refresh string) {
	ta.t.Helper()
	status, out := ta.refreshWith(clientID, rt, nil)
	if status != http.StatusOK {
		ta.t.Fatalf("refresh: %d %v", status, out)
	}
	access, _ = out["access_token"].(string)
	refresh, _ = out["refresh_token"].(string)
	if access == "" || refresh == "" {
		ta.t.Fatalf("refresh answered no pair: %v", out)
	}
	return access, refresh
}

// wantReuseRefused checks a refresh with rt is refused as reuse and that
// the family is revoked: its live access and refresh tokens no longer
// work.
func (ta *testAS) wantReuseRefused(clientID, rt, liveAccess, liveRefresh string) {
	ta.t.Helper()
	status, out := ta.refreshWith(clientID, rt, nil)
	if desc, _ := out["error_description"].(string); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		ta.t.Fatalf("reuse: %d %v (%s), want 400 invalid_grant", status, out, desc)
	}
	if ta.introspect(liveAccess)["active"] != false {
		ta.t.Errorf("the family's access token is still active after the reuse")
	}
	if status, out := ta.refreshWith(clientID, liveRefresh, nil); status != http.StatusBadRequest {
		ta.t.Errorf("the family's refresh token still refreshes after the reuse: %d %v", status, out)
	}
}

// TestRefreshReuseGrace: with a rotation grace period a refresh token its
// own client presents again soon after it was rotated gets a new pair of
// the same grant, and the family stays intact; policy decides it as any
// refresh. Another client presenting it, a reuse after the window, or any
// reuse without a window is refresh-token reuse: refused, the family
// revoked.
func TestRefreshReuseGrace(t *testing.T) {
	const redirect = "http://127.0.0.1:43311/callback"
	withGrace := func(d time.Duration) func(*asrv.Config) {
		return func(c *asrv.Config) { c.RefreshReuseGrace = d }
	}
	signIn := func(ta *testAS) (id, access, refresh string) {
		id = ta.publicAgent("claude-code", redirect)
		tok := ta.codeFlow(id, redirect, "alice", "jira:read", "drive:read")
		return id, tok.AccessToken, tok.RefreshToken
	}

	t.Run("the same client within the window gets a new pair, the family intact", func(t *testing.T) {
		ta := newTestAS(t, withGrace(asrv.MaxRefreshReuseGrace))
		id, _, rt0 := signIn(ta)
		at1, rt1 := ta.mustRefresh(id, rt0)
		at2, rt2 := ta.mustRefresh(id, rt0)
		if at1 == at2 || rt1 == rt2 {
			t.Fatal("the reuse within the window answered the same pair")
		}
		i1, i2 := ta.introspect(at1), ta.introspect(at2)
		for _, k := range []string{"active", "sub", "client_id", "scope", "aud"} {
			if !equalJSON(i1[k], i2[k]) {
				t.Errorf("introspection %s: %v after the first refresh, %v after the reuse", k, i1[k], i2[k])
			}
		}
		if i1["active"] != true || i1["sub"] != "alice" || i1["scope"] != "drive:read jira:read" {
			t.Fatalf("introspection after the first refresh: %v", i1)
		}
		// Both branches of the family go on refreshing.
		ta.mustRefresh(id, rt1)
		ta.mustRefresh(id, rt2)
	})

	t.Run("policy decides a reuse within the window as any refresh", func(t *testing.T) {
		ta := newTestAS(t, withGrace(asrv.MaxRefreshReuseGrace))
		id, _, rt0 := signIn(ta)
		at1, _ := ta.mustRefresh(id, rt0)
		status, out := ta.refreshWith(id, rt0, url.Values{"scope": {"slack:write"}})
		if status != http.StatusBadRequest || out["error"] != "invalid_scope" {
			t.Fatalf("reuse asking a scope the grant lacks: %d %v, want 400 invalid_scope", status, out)
		}
		status, out = ta.refreshWith(id, rt0, url.Values{"scope": {"jira:read"}})
		if status != http.StatusOK || out["scope"] != "jira:read" {
			t.Fatalf("reuse narrowed to jira:read: %d %v", status, out)
		}
		if ta.introspect(at1)["active"] != true {
			t.Error("a refusal by policy within the window revoked the family")
		}
	})

	t.Run("another client within the window is reuse", func(t *testing.T) {
		ta := newTestAS(t, withGrace(asrv.MaxRefreshReuseGrace))
		id, _, rt0 := signIn(ta)
		other := ta.publicAgent("claude-code", redirect)
		at1, rt1 := ta.mustRefresh(id, rt0)
		ta.wantReuseRefused(other, rt0, at1, rt1)
	})

	t.Run("after the window is reuse", func(t *testing.T) {
		const grace = 300 * time.Millisecond
		ta := newTestAS(t, withGrace(grace))
		id, _, rt0 := signIn(ta)
		at1, rt1 := ta.mustRefresh(id, rt0)
		time.Sleep(2 * grace)
		ta.wantReuseRefused(id, rt0, at1, rt1)
	})

	t.Run("without a window any reuse is reuse", func(t *testing.T) {
		ta := newTestAS(t)
		id, _, rt0 := signIn(ta)
		at1, rt1 := ta.mustRefresh(id, rt0)
		ta.wantReuseRefused(id, rt0, at1, rt1)
	})

	t.Run("concurrent refreshes with one token all succeed", func(t *testing.T) {
		ta := newTestAS(t, withGrace(asrv.MaxRefreshReuseGrace))
		id, _, rt0 := signIn(ta)
		const n = 6
		type answer struct {
			status int
			out    map[string]any
		}
		answers := make([]answer, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				answers[i].status, answers[i].out = ta.refreshWith(id, rt0, nil)
			})
		}
		close(start)
		wg.Wait()
		seen := map[string]bool{}
		for i, a := range answers {
			if a.status != http.StatusOK {
				t.Fatalf("refresh %d of %d: %d %v", i+1, n, a.status, a.out)
			}
			seen[a.out["access_token"].(string)] = true
			seen[a.out["refresh_token"].(string)] = true
		}
		if len(seen) != 2*n {
			t.Fatalf("%d distinct tokens from %d refreshes, want %d", len(seen), n, 2*n)
		}
		for _, a := range answers {
			if ta.introspect(a.out["access_token"].(string))["active"] != true {
				t.Errorf("an access token of the concurrent refreshes is not active")
			}
		}
	})

	t.Run("a window longer than a minute is refused", func(t *testing.T) {
		cfg := newTestAS(t).cfg
		cfg.RefreshReuseGrace = 2 * time.Minute
		if _, err := asrv.New(cfg); err == nil || !strings.Contains(err.Error(), "refresh reuse grace") {
			t.Fatalf("New with a 2m grace period: %v, want a refusal", err)
		}
	})
}

// equalJSON compares decoded JSON values of the kinds introspection
// answers (strings, bools, numbers, lists of strings).
func equalJSON(a, b any) bool {
	la, oka := a.([]any)
	lb, okb := b.([]any)
	if oka || okb {
		if !oka || !okb || len(la) != len(lb) {
			return false
		}
		for i := range la {
			if la[i] != lb[i] {
				return false
			}
		}
		return true
	}
	return a == b
}
