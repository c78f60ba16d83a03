package stack_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/internal/stack"
)

// TestMaxSignInAgeReachesTheAS: asrv.max_sign_in_age is the authorization
// server's bound on a person's sign-in. Unset (24h) a refresh right after
// signing in is answered; at 1ns it is refused with invalid_grant saying
// to sign in again (at 1ms a sign-in, code exchange and refresh could all
// fit in the millisecond on an idle machine, and the refresh was rightly
// answered); a value that is no positive duration stops the stack from
// starting, naming the key.
func TestMaxSignInAgeReachesTheAS(t *testing.T) {
	const redirect = "http://127.0.0.1:47021/cb"
	for _, tc := range []struct {
		name     string
		settings *config.ASrv
		refresh  string // the refresh's answer: "ok", or the error code
		startErr string
	}{
		{name: "unset: 24h", refresh: "ok"},
		{name: "1ns: every refresh comes too late", settings: &config.ASrv{MaxSignInAge: "1ns"}, refresh: "invalid_grant"},
		{name: "zero", settings: &config.ASrv{MaxSignInAge: "0s"}, startErr: `asrv.max_sign_in_age "0s"`},
		{name: "negative", settings: &config.ASrv{MaxSignInAge: "-24h"}, startErr: `asrv.max_sign_in_age "-24h"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := startWithSettings(t, tc.settings, tc.startErr)
			if st == nil {
				return
			}
			clientID := registerVerifiedAgent(t, st, "age-test", redirect)
			tok, err := oauthtest.CodeFlow(t.Context(), st.URL(), clientID, redirect, "alice", "demo", st.URL()+"/mcp", "jira:read")
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.PostForm(st.URL()+"/oauth2/token", url.Values{"grant_type": {"refresh_token"},
				"client_id": {clientID}, "refresh_token": {tok.RefreshToken}})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&out)
			switch {
			case tc.refresh == "ok" && (resp.StatusCode != http.StatusOK || out["refresh_token"] == nil):
				t.Fatalf("refresh: %d %v, want a new pair", resp.StatusCode, out)
			case tc.refresh != "ok" && (out["error"] != tc.refresh || !strings.Contains(out["error_description"].(string), "sign in again")):
				t.Fatalf("refresh: %d %v, want %s saying to sign in again", resp.StatusCode, out, tc.refresh)
			}
		})
	}
}

// TestAccessTokenTTLReachesTheAS: asrv.access_token_ttl bounds the access
// tokens the authorization server issues (unset: 10 minutes; the demo
// agent's policy data asks for longer, so the setting is what bounds it).
func TestAccessTokenTTLReachesTheAS(t *testing.T) {
	const redirect = "http://127.0.0.1:47022/cb"
	for _, tc := range []struct {
		name     string
		settings *config.ASrv
		want     time.Duration
	}{
		{name: "unset: 10m", want: 10 * time.Minute},
		{name: "5s", settings: &config.ASrv{AccessTokenTTL: "5s"}, want: 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := startWithSettings(t, tc.settings, "")
			clientID := registerVerifiedAgent(t, st, "ttl-test", redirect)
			tok, err := oauthtest.CodeFlow(t.Context(), st.URL(), clientID, redirect, "alice", "demo", st.URL()+"/mcp", "jira:read")
			if err != nil {
				t.Fatal(err)
			}
			// expires_in is whole seconds, counted from the request.
			if got := time.Duration(tok.ExpiresIn) * time.Second; got > tc.want || got < tc.want-2*time.Second {
				t.Fatalf("expires_in = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRefreshReuseGraceReachesTheAS: asrv.refresh_reuse_grace is the
// authorization server's rotation grace period. Unset (10s) the client
// presenting its refresh token again right after a refresh gets a new
// pair; at 0 that is reuse (invalid_grant); a value that is no duration
// from 0 to 1m stops the stack from starting, naming the key.
func TestRefreshReuseGraceReachesTheAS(t *testing.T) {
	const redirect = "http://127.0.0.1:47023/cb"
	for _, tc := range []struct {
		name     string
		settings *config.ASrv
		replay   string // the second refresh's answer: "ok", or the error code
		startErr string
	}{
		{name: "unset: 10s", replay: "ok"},
		{name: "0: none", settings: &config.ASrv{RefreshReuseGrace: "0s"}, replay: "invalid_grant"},
		{name: "2m", settings: &config.ASrv{RefreshReuseGrace: "2m"}, startErr: `asrv.refresh_reuse_grace "2m"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := startWithSettings(t, tc.settings, tc.startErr)
			if st == nil {
				return
			}
			clientID := registerVerifiedAgent(t, st, "grace-test", redirect)
			tok, err := oauthtest.CodeFlow(t.Context(), st.URL(), clientID, redirect, "alice", "demo", st.URL()+"/mcp", "jira:read")
			if err != nil {
				t.Fatal(err)
			}
			refresh := func() (int, map[string]any) {
				resp, err := http.PostForm(st.URL()+"/oauth2/token", url.Values{"grant_type": {"refresh_token"},
					"client_id": {clientID}, "refresh_token": {tok.RefreshToken}})
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var out map[string]any
				_ = json.NewDecoder(resp.Body).Decode(&out)
				return resp.StatusCode, out
			}
			if status, out := refresh(); status != http.StatusOK {
				t.Fatalf("first refresh: %d %v", status, out)
			}
			status, out := refresh()
			switch {
			case tc.replay == "ok" && (status != http.StatusOK || out["refresh_token"] == nil):
				t.Fatalf("the same refresh token again: %d %v, want a new pair", status, out)
			case tc.replay != "ok" && out["error"] != tc.replay:
				t.Fatalf("the same refresh token again: %d %v, want %s", status, out, tc.replay)
			}
		})
	}
}

// startWithSettings starts a demo stack on a fresh data dir with the
// authorization server settings given, closed when the test ends. With
// startErr it must refuse to start with an error containing it, and nil
// is returned.
func startWithSettings(t *testing.T, settings *config.ASrv, startErr string) *stack.Stack {
	t.Helper()
	cfg := baseConfig(t, t.TempDir())
	cfg.Ephemeral, cfg.Demo.Backends, cfg.AuthServer.Settings = true, true, settings
	st, err := stack.New(t.Context(), cfg)
	if startErr != "" {
		if err == nil || !strings.Contains(err.Error(), startErr) {
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_ = st.Close(ctx)
			}
			t.Fatalf("stack.New: %v, want an error containing %q", err, startErr)
		}
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = st.Close(ctx)
		settle()
	})
	return st
}

// registerVerifiedAgent registers a public claude-code agent with a
// statement of the stack's own key and redirect, and returns its id.
func registerVerifiedAgent(t *testing.T, st *stack.Stack, name, redirect string) string {
	t.Helper()
	jws, err := st.AuthServer().Statement(st.StatementKey(), asrv.StatementClaims{SoftwareID: name, AgentProvider: "claude-code", AgentModel: "test"})
	if err != nil {
		t.Fatal(err)
	}
	c, _, _, err := st.AuthServer().Register(t.Context(), &asrv.RegistrationRequest{ClientName: name, SoftwareStatement: jws,
		RedirectURIs: []string{redirect}, TokenEndpointAuthMethod: asrv.AuthMethodNone, GrantTypes: []string{"authorization_code", "refresh_token"}})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}
