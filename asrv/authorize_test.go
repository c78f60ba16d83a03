package asrv_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/asrv"
)

// authorizeURL is an authorization request of clientID to redirect, with
// PKCE and the AS's resource, modified by mod.
func (ta *testAS) authorizeURL(clientID, redirect string, mod func(url.Values)) string {
	v := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"state": {"state-12345678"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"}, "resource": {ta.resource},
	}
	if mod != nil {
		mod(v)
	}
	return ta.srv.URL + asrv.PathAuthorize + "?" + v.Encode()
}

// browser is an HTTP client with cookies that does not follow redirects.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfField = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// TestAuthorizeNeverRedirectsUntrustedClients: RFC 9700 §4.11.2. An
// unverified, self-registered client whose redirect URI is not loopback
// gets no redirect from a failed or denied authorization request, only an
// error page; the sign-in page says where approving leads. A verified
// client, and any client on a loopback redirect (Claude Code, OpenCode,
// the Inspector), keep getting their errors delivered.
func TestAuthorizeNeverRedirectsUntrustedClients(t *testing.T) {
	ta := newTestAS(t)
	const phish = "https://attacker.example/phish"
	unverified := ta.register(map[string]any{"client_name": "innocent", "redirect_uris": []string{phish},
		"token_endpoint_auth_method": "none"})["client_id"].(string)
	unverifiedLoopback := ta.publicAgent("", "http://127.0.0.1/callback")
	verifiedHTTPS := ta.publicAgent("claude-code", "https://agent.example/cb")
	noPKCE := func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }

	for _, tc := range []struct {
		name, client, redirect string
		mod                    func(url.Values)
		wantRedirect           bool
	}{
		{"unverified https client, PKCE missing", unverified, phish, noPKCE, false},
		{"unverified https client, unknown resource", unverified, phish, func(v url.Values) { v.Set("resource", "https://x.example/mcp") }, false},
		{"unverified https client, implicit grant", unverified, phish, func(v url.Values) { v.Set("response_type", "token") }, false},
		{"unverified loopback client, PKCE missing", unverifiedLoopback, "http://127.0.0.1:5555/callback", noPKCE, true},
		{"verified https client, PKCE missing", verifiedHTTPS, "https://agent.example/cb", noPKCE, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := browser().Get(ta.authorizeURL(tc.client, tc.redirect, tc.mod))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if tc.wantRedirect {
				if resp.StatusCode/100 != 3 || !strings.HasPrefix(loc, tc.redirect) || !strings.Contains(loc, "error=") {
					t.Fatalf("got %d Location %q, want the error redirected to the client", resp.StatusCode, loc)
				}
				return
			}
			if resp.StatusCode/100 == 3 || loc != "" {
				t.Fatalf("got %d Location %q: an open redirect", resp.StatusCode, loc)
			}
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "cannot be completed") {
				t.Fatalf("got %d %s, want 400 and the error page", resp.StatusCode, body)
			}
		})
	}

	// Under the shipped policy an unverified client is refused on the
	// first page (TestSignInPageSaysWhoIsAsking): the page names where its
	// redirect leads, and only a trusted redirect gets the refusal.
	t.Run("the first page names the unverified destination and the refusal stays here", func(t *testing.T) {
		b := browser()
		u := ta.authorizeURL(unverified, phish, nil)
		resp, err := b.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(page), "https://attacker.example") ||
			strings.Contains(string(page), `id="return"`) || resp.Header.Get("Location") != "" {
			t.Fatalf("first page %d does not name where approving leads, or leads there:\n%s", resp.StatusCode, page)
		}
		resp, err = b.PostForm(u, url.Values{"decision": {"approve"}, "username": {"alice"}, "password": {asrv.DemoPassword}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 || loc != "" {
			t.Fatalf("a post answered %d Location %q, want the error page", resp.StatusCode, loc)
		}
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("a post answered %d, want 403 access_denied on the error page", resp.StatusCode)
		}
	})

	t.Run("a trusted destination is not flagged and gets the refusal", func(t *testing.T) {
		resp, err := browser().Get(ta.authorizeURL(unverifiedLoopback, "http://127.0.0.1:5555/callback", nil))
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || strings.Contains(string(page), "nobody vouched for") ||
			!strings.Contains(string(page), `id="return" href="http://127.0.0.1:5555/callback?error=access_denied`) {
			t.Fatalf("loopback client's first page %d flags its destination or offers no way back:\n%s", resp.StatusCode, page)
		}
	})

	t.Run("a verified client's page names where approving leads, and denying is redirected", func(t *testing.T) {
		b := browser()
		u := ta.authorizeURL(verifiedHTTPS, "https://agent.example/cb", nil)
		resp, err := b.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `<code id="redirect-host">agent.example</code>`) ||
			strings.Contains(string(page), "nobody vouched for") {
			t.Fatalf("sign-in page %d:\n%s", resp.StatusCode, page)
		}
		m := csrfField.FindSubmatch(page)
		if m == nil {
			t.Fatal("no CSRF field")
		}
		resp, err = b.PostForm(u, url.Values{"csrf_token": {string(m[1])}, "decision": {"deny"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 != 3 || !strings.HasPrefix(loc, "https://agent.example/cb?error=access_denied") {
			t.Fatalf("deny answered %d Location %q, want access_denied redirected to the verified client", resp.StatusCode, loc)
		}
	})
}

// TestAuthorizeRedirectUserinfo: a loopback redirect with userinfo, which
// registration refuses, is refused by the authorization endpoint too, with
// an error page, before and after sign-in; and so is a repeated
// redirect_uri. The plain loopback URI keeps working.
func TestAuthorizeRedirectUserinfo(t *testing.T) {
	ta := newTestAS(t)
	if status, out := ta.post(asrv.PathRegister, map[string]any{"redirect_uris": []string{"http://evil.com@127.0.0.1:5555/callback"},
		"token_endpoint_auth_method": "none"}); status != http.StatusBadRequest || out["error"] != "invalid_redirect_uri" {
		t.Fatalf("registration of a userinfo redirect: %d %v", status, out)
	}
	clientID := ta.publicAgent("claude-code", "http://127.0.0.1/callback")
	for _, tc := range []struct {
		name string
		mod  func(url.Values)
	}{
		{"userinfo", func(v url.Values) { v.Set("redirect_uri", "http://evil.com@127.0.0.1:5555/callback") }},
		{"userinfo with password", func(v url.Values) { v.Set("redirect_uri", "http://evil.com:x@127.0.0.1:5555/callback") }},
		{"userinfo, PKCE missing", func(v url.Values) {
			v.Set("redirect_uri", "http://evil.com@127.0.0.1:5555/callback")
			v.Del("code_challenge")
		}},
		{"repeated redirect_uri", func(v url.Values) { v.Add("redirect_uri", "http://127.0.0.1:6666/callback") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := browser().Get(ta.authorizeURL(clientID, "http://127.0.0.1:5555/callback", tc.mod))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusBadRequest || loc != "" {
				t.Fatalf("got %d Location %q, want 400 and the error page", resp.StatusCode, loc)
			}
		})
	}
	if tok := ta.codeFlow(clientID, "http://127.0.0.1:5555/callback", "alice", "jira:read"); tok.AccessToken == "" {
		t.Fatal("the plain loopback redirect no longer signs in")
	}
}
