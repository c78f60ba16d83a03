package asrv_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/asrv"
)

// singleUseAgent registers a public agent of provider whose statement
// asks for single-use access tokens.
func (ta *testAS) singleUseAgent(provider, redirect string) string {
	ta.t.Helper()
	jws, err := ta.as.Statement(ta.issuer, asrv.StatementClaims{SoftwareID: provider + "-su", AgentProvider: provider, AgentModel: "m",
		SingleUseAccessTokens: true})
	if err != nil {
		ta.t.Fatal(err)
	}
	return ta.register(map[string]any{"client_name": "single-use " + provider, "redirect_uris": []string{redirect},
		"grant_types":                []string{"authorization_code", "refresh_token", asrv.GrantTypeExchange},
		"token_endpoint_auth_method": "none", "software_statement": jws})["client_id"].(string)
}

// exchange trades subject (a token of actor) for a token of audience.
func (ta *testAS) exchange(actor, subject, audience, scope string) (int, map[string]any) {
	ta.t.Helper()
	return ta.form(asrv.PathToken, "", "", url.Values{"grant_type": {asrv.GrantTypeExchange}, "client_id": {actor},
		"subject_token": {subject}, "subject_token_type": {asrv.TokenTypeAccess}, "audience": {audience}, "scope": {scope}})
}

// TestExchangeSpendsSingleUseSubject: exchanging a single-use token is its
// one use: a second exchange fails, the subject is inactive afterwards, and
// the delegated token is single-use too, so the grant is used once
// whichever token uses it. Of concurrent exchanges, and of exchanges racing
// uses at the gateway, exactly one succeeds.
func TestExchangeSpendsSingleUseSubject(t *testing.T) {
	ta := newTestAS(t)
	redirect := "http://127.0.0.1:43131/cb"
	parent := ta.singleUseAgent("claude-code", redirect)
	child := ta.publicAgent("claude-code", "http://127.0.0.1:43132/cb")

	t.Run("exchanged twice", func(t *testing.T) {
		tok := ta.codeFlow(parent, redirect, "alice", "jira:read", "drive:read")
		status, out := ta.exchange(parent, tok.AccessToken, child, "jira:read")
		if status != http.StatusOK {
			t.Fatalf("first exchange: %d %v", status, out)
		}
		if status, again := ta.exchange(parent, tok.AccessToken, child, "jira:read"); status != http.StatusBadRequest || again["error"] != "invalid_request" {
			t.Fatalf("second exchange of a single-use token: %d %v, want 400 invalid_request", status, again)
		}
		if ta.introspect(tok.AccessToken)["active"] != false {
			t.Fatal("the single-use subject is active after the exchange")
		}
		derived := out["access_token"].(string)
		if info := ta.introspect(derived); info["active"] != true || info["client_id"] != child {
			t.Fatalf("the delegated token: %v", info)
		}
		if ta.introspect(derived)["active"] != false {
			t.Fatal("the token delegated from a single-use token is reusable")
		}
	})

	for _, tc := range []struct {
		name string
		uses int // of 20 concurrent attempts, how many are introspections
	}{{"concurrent exchanges", 0}, {"exchanges racing uses at the gateway", 5}} {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 3 {
				tok := ta.codeFlow(parent, redirect, "alice", "jira:read", "drive:read")
				var (
					wg                     sync.WaitGroup
					mu                     sync.Mutex
					exchanged, used, wrong int
				)
				start := make(chan struct{})
				for i := range 20 {
					wg.Go(func() {
						<-start
						if i < tc.uses {
							res, err := ta.as.Introspect(context.Background(), tok.AccessToken, ta.resource)
							mu.Lock()
							defer mu.Unlock()
							if err != nil {
								wrong++
							} else if res.Active {
								used++
							}
							return
						}
						status, out := ta.exchange(parent, tok.AccessToken, child, "jira:read")
						mu.Lock()
						defer mu.Unlock()
						switch {
						case status == http.StatusOK:
							exchanged++
						case status != http.StatusBadRequest || out["error"] != "invalid_request":
							wrong++
						}
					})
				}
				close(start)
				wg.Wait()
				if wrong != 0 || exchanged+used != 1 {
					t.Fatalf("round %d: %d exchanges and %d uses of one single-use token succeeded (%d odd answers), want exactly 1 in all",
						round, exchanged, used, wrong)
				}
			}
		})
	}

	t.Run("a reusable subject stays reusable", func(t *testing.T) {
		reusable := ta.publicAgent("claude-code", redirect)
		tok := ta.codeFlow(reusable, redirect, "alice", "jira:read")
		for i := range 2 {
			status, out := ta.exchange(reusable, tok.AccessToken, child, "jira:read")
			if status != http.StatusOK {
				t.Fatalf("exchange %d: %d %v", i, status, out)
			}
			for range 2 {
				if ta.introspect(out["access_token"].(string))["active"] != true {
					t.Fatal("a token delegated from a reusable token is single-use")
				}
			}
		}
		if ta.introspect(tok.AccessToken)["active"] != true {
			t.Fatal("exchanging a reusable token used it up")
		}
	})
}

// TestDelegatedTokensDieWithTheirChain: a delegated token (and one
// delegated from it) is inactive as soon as its subject token is revoked
// (RFC 7009), its subject's refresh family is revoked on reuse, or the
// delegating client is deleted (RFC 7592); revoking the delegated token
// leaves its subject alone.
func TestDelegatedTokensDieWithTheirChain(t *testing.T) {
	ta := newTestAS(t)
	redirect := "http://127.0.0.1:43141/cb"
	type chain struct {
		parent                  *oauth2.Token
		parentID, child, grand  string
		childTok, grandchildTok string
		parentReg               map[string]any
	}
	build := func(t *testing.T) chain {
		t.Helper()
		reg := ta.register(map[string]any{"client_name": "parent", "redirect_uris": []string{redirect},
			"grant_types":                []string{"authorization_code", "refresh_token", asrv.GrantTypeExchange},
			"token_endpoint_auth_method": "none", "software_statement": ta.statement("claude-code", false)})
		ch := chain{parentID: reg["client_id"].(string), parentReg: reg,
			child: ta.publicAgent("claude-code", "http://127.0.0.1:43142/cb"),
			grand: ta.publicAgent("claude-code", "http://127.0.0.1:43143/cb")}
		ch.parent = ta.codeFlow(ch.parentID, redirect, "alice", "jira:read", "drive:read")
		status, out := ta.exchange(ch.parentID, ch.parent.AccessToken, ch.child, "jira:read")
		if status != http.StatusOK {
			t.Fatalf("exchange: %d %v", status, out)
		}
		ch.childTok = out["access_token"].(string)
		if status, out = ta.exchange(ch.child, ch.childTok, ch.grand, "jira:read"); status != http.StatusOK {
			t.Fatalf("second exchange: %d %v", status, out)
		}
		ch.grandchildTok = out["access_token"].(string)
		return ch
	}
	active := func(tok string) bool { return ta.introspect(tok)["active"] == true }

	for _, tc := range []struct {
		name                 string
		act                  func(t *testing.T, ch chain)
		parent, child, grand bool
	}{
		{"the parent token revoked", func(t *testing.T, ch chain) {
			if status, out := ta.form(asrv.PathRevoke, "", "", url.Values{"token": {ch.parent.AccessToken}, "client_id": {ch.parentID}}); status != http.StatusOK {
				t.Fatalf("revoke: %d %v", status, out)
			}
		}, false, false, false},
		{"the parent's refresh family revoked on reuse", func(t *testing.T, ch chain) {
			cfg := ta.oauthConfig(ch.parentID, redirect)
			if _, err := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: ch.parent.RefreshToken}).Token(); err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if _, err := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: ch.parent.RefreshToken}).Token(); err == nil {
				t.Fatal("refresh token reuse succeeded")
			}
		}, false, false, false},
		{"the delegating client deleted", func(t *testing.T, ch chain) {
			req, _ := http.NewRequest(http.MethodDelete, ch.parentReg["registration_client_uri"].(string), nil)
			req.Header.Set("Authorization", "Bearer "+ch.parentReg["registration_access_token"].(string))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("delete client: %d", resp.StatusCode)
			}
		}, false, false, false},
		{"the delegating client rejected by an operator", func(t *testing.T, ch chain) {
			if _, err := ta.as.ReviewClient(t.Context(), ch.parentID, asrv.ClientReview{Status: asrv.ReviewRejected, By: "admin", Comment: "not ours"}); err != nil {
				t.Fatal(err)
			}
		}, false, false, false},
		{"the middle client rejected by an operator", func(t *testing.T, ch chain) {
			if _, err := ta.as.ReviewClient(t.Context(), ch.child, asrv.ClientReview{Status: asrv.ReviewRejected, By: "admin", Comment: "not ours"}); err != nil {
				t.Fatal(err)
			}
		}, true, false, false},
		{"the child token revoked", func(t *testing.T, ch chain) {
			if status, out := ta.form(asrv.PathRevoke, "", "", url.Values{"token": {ch.childTok}, "client_id": {ch.child}}); status != http.StatusOK {
				t.Fatalf("revoke: %d %v", status, out)
			}
		}, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := build(t)
			if !active(ch.parent.AccessToken) || !active(ch.childTok) || !active(ch.grandchildTok) {
				t.Fatal("the chain is not active to begin with")
			}
			tc.act(t, ch)
			for _, tok := range []struct {
				name, token string
				want        bool
			}{{"parent", ch.parent.AccessToken, tc.parent}, {"child", ch.childTok, tc.child}, {"grandchild", ch.grandchildTok, tc.grand}} {
				if got := active(tok.token); got != tok.want {
					t.Errorf("%s active = %v, want %v", tok.name, got, tok.want)
				}
			}
		})
	}
}
