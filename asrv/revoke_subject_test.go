package asrv_test

import (
	"context"
	"net/http"
	"testing"

	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/asrv"
)

// TestRevokeSubject: revoking everything acting for a person ends, over
// the AS's own endpoints, their access tokens, the tokens delegated from
// them, and their refresh families — of every agent — and nobody else's;
// the person can sign in again at once.
func TestRevokeSubject(t *testing.T) {
	ta := newTestAS(t)
	redirect1, redirect2 := "http://127.0.0.1:43151/cb", "http://127.0.0.1:43152/cb"
	agent1, agent2 := ta.publicAgent("claude-code", redirect1), ta.publicAgent("claude-code", redirect2)
	child := ta.publicAgent("claude-code", "http://127.0.0.1:43153/cb")
	alice1 := ta.codeFlow(agent1, redirect1, "alice", "jira:read", "drive:read")
	alice2 := ta.codeFlow(agent2, redirect2, "alice", "jira:read")
	bob := ta.codeFlow(agent1, redirect1, "bob", "drive:read")
	status, out := ta.exchange(agent1, alice1.AccessToken, child, "jira:read")
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %v", status, out)
	}
	delegated := out["access_token"].(string)
	active := func(tok string) bool { return ta.introspect(tok)["active"] == true }
	for _, tok := range []string{alice1.AccessToken, alice2.AccessToken, delegated, bob.AccessToken} {
		if !active(tok) {
			t.Fatal("a token is not active to begin with")
		}
	}

	got, err := ta.as.RevokeSubject(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if want := (asrv.SubjectRevocation{AccessTokens: 3, RefreshTokens: 2}); got != want {
		t.Errorf("RevokeSubject = %+v, want %+v", got, want)
	}
	for name, tok := range map[string]string{"agent 1's": alice1.AccessToken, "agent 2's": alice2.AccessToken, "the delegated": delegated} {
		if active(tok) {
			t.Errorf("alice's %s access token is still active", name)
		}
	}
	if !active(bob.AccessToken) {
		t.Error("bob's token died with alice's")
	}
	for _, c := range []struct {
		agent, redirect string
		tok             *oauth2.Token
	}{{agent1, redirect1, alice1}, {agent2, redirect2, alice2}} {
		_, err := ta.oauthConfig(c.agent, c.redirect).TokenSource(context.Background(), &oauth2.Token{RefreshToken: c.tok.RefreshToken}).Token()
		if err == nil {
			t.Error("alice's refresh token still refreshes")
		}
	}
	if _, err := ta.oauthConfig(agent1, redirect1).TokenSource(context.Background(), &oauth2.Token{RefreshToken: bob.RefreshToken}).Token(); err != nil {
		t.Errorf("bob's refresh token: %v", err)
	}
	if status, _ := ta.exchange(agent1, alice1.AccessToken, child, "jira:read"); status == http.StatusOK {
		t.Error("alice's revoked token was exchanged")
	}
	again := ta.codeFlow(agent1, redirect1, "alice", "jira:read")
	if !active(again.AccessToken) {
		t.Error("alice signed in again and got no active token")
	}
	if _, err := ta.as.RevokeSubject(context.Background(), ""); err == nil {
		t.Error("RevokeSubject of an empty subject succeeded")
	}
}
