package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// upAgent finds a demo agent's credentials in pbac up's output.
func upAgent(t *testing.T, out, name string) (id, secret string) {
	t.Helper()
	m := regexp.MustCompile(name + `\s+\S+\s+client_id=(\S+)(?: client_secret=(\S+))?`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s in the output", name)
	}
	return m[1], m[2]
}

// gatewayInitialize opens an MCP session at the gateway's backend with
// token and returns the HTTP status: 200 when the token is accepted, 401
// when not.
func gatewayInitialize(t *testing.T, base, backend, token string) int {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp/"+backend, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// exchangeAt runs an RFC 8693 exchange at the binary for a public actor.
func exchangeAt(t *testing.T, base, actor, subject, audience, scope string) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(base+asrv.PathToken, url.Values{"grant_type": {asrv.GrantTypeExchange}, "client_id": {actor},
		"subject_token": {subject}, "subject_token_type": {asrv.TokenTypeAccess}, "audience": {audience}, "scope": {scope}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestUpDelegationLifecycle: against the real `pbac up`, a sub-agent's
// delegated token stops working at the gateway as soon as the planner's
// token it came from is revoked; and a single-use token is exchanged once
// only, for a token that itself works once.
func TestUpDelegationLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dataDir := t.TempDir()
	base, out := startUp(t, dataDir)
	ctx := t.Context()
	resource := base + "/mcp"
	plannerID, _ := upAgent(t, out.String(), "autonomous-planner")
	subID, _ := upAgent(t, out.String(), "claude-code")

	t.Run("revoking the parent token ends the delegated one", func(t *testing.T) {
		tok, err := oauthtest.CodeFlow(ctx, base, plannerID, "http://127.0.0.1:48001/callback", "alice", "demo", resource, "jira:read")
		if err != nil {
			t.Fatal(err)
		}
		status, ex := exchangeAt(t, base, plannerID, tok.AccessToken, subID, "jira:read")
		if status != http.StatusOK {
			t.Fatalf("exchange: %d %v", status, ex)
		}
		sub := ex["access_token"].(string)
		if got := gatewayInitialize(t, base, "jira", sub); got != http.StatusOK {
			t.Fatalf("the delegated token before the revocation: %d", got)
		}
		resp, err := http.PostForm(base+asrv.PathRevoke, url.Values{"token": {tok.AccessToken}, "client_id": {plannerID}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke: %d", resp.StatusCode)
		}
		if got := gatewayInitialize(t, base, "jira", sub); got != http.StatusUnauthorized {
			t.Fatalf("the delegated token after its parent was revoked: %d, want 401", got)
		}
	})

	t.Run("a single-use token is exchanged once, for a single-use token", func(t *testing.T) {
		bin, _ := buildBinary()
		jws, err := exec.Command(bin, "statement", "sign", "--data-dir", dataDir, "--provider", "claude-code", "--single-use").Output()
		if err != nil {
			t.Fatalf("pbac statement sign: %v", err)
		}
		redirect := "http://127.0.0.1:48002/callback"
		reg, err := oauthtest.Register(ctx, base, map[string]any{"client_name": "single-use agent", "redirect_uris": []string{redirect},
			"grant_types":                []string{"authorization_code", "refresh_token", asrv.GrantTypeExchange},
			"token_endpoint_auth_method": "none", "software_statement": strings.TrimSpace(string(jws))})
		if err != nil {
			t.Fatal(err)
		}
		id := reg["client_id"].(string)
		tok, err := oauthtest.CodeFlow(ctx, base, id, redirect, "alice", "demo", resource, "jira:read")
		if err != nil {
			t.Fatal(err)
		}
		status, ex := exchangeAt(t, base, id, tok.AccessToken, subID, "jira:read")
		if status != http.StatusOK {
			t.Fatalf("exchange: %d %v", status, ex)
		}
		if status, again := exchangeAt(t, base, id, tok.AccessToken, subID, "jira:read"); status != http.StatusBadRequest {
			t.Fatalf("second exchange of a single-use token: %d %v, want 400", status, again)
		}
		if got := gatewayInitialize(t, base, "jira", tok.AccessToken); got != http.StatusUnauthorized {
			t.Fatalf("the single-use subject after its exchange: %d, want 401", got)
		}
		sub := ex["access_token"].(string)
		if got := gatewayInitialize(t, base, "jira", sub); got != http.StatusOK {
			t.Fatalf("the derived token's first use: %d", got)
		}
		if got := gatewayInitialize(t, base, "jira", sub); got != http.StatusUnauthorized {
			t.Fatalf("the derived token's second use: %d, want 401 (single-use)", got)
		}
	})
}
