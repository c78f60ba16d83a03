package asrv_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/identity/usersfile"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// TestNoIdentitySourceRefusesPeople: an AS with neither a password source
// nor single sign-on (production without identity configured: the demo
// users exist only in the demo) refuses every authorization request with
// access_denied naming the missing configuration — as a redirect to a
// client it may redirect to, as a page otherwise — while machine clients
// keep getting tokens.
func TestNoIdentitySourceRefusesPeople(t *testing.T) {
	ta := newTestAS(t, func(cfg *asrv.Config) { cfg.Users = nil })
	client := ta.publicAgent("claude-code", agentRedirect)
	authURL, _ := ta.ssoAuthURL(client, agentRedirect, "jira:read")
	resp, err := browser().Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := location(resp)
	if loc == nil || loc.Query().Get("error") != "access_denied" || loc.Query().Get("code") != "" ||
		!strings.Contains(loc.Query().Get("error_description"), "identity.oidc or identity.users_file") {
		t.Fatalf("a loopback client's authorization request: %d %v", resp.StatusCode, loc)
	}

	web := ta.register(map[string]any{"client_name": "web agent", "redirect_uris": []string{"https://agent.example/cb"},
		"grant_types": []string{"authorization_code"}, "response_types": []string{"code"}, "token_endpoint_auth_method": "none"})["client_id"].(string)
	authURL, _ = ta.ssoAuthURL(web, "https://agent.example/cb", "jira:read")
	resp, err = browser().Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "No identity source is configured") ||
		!strings.Contains(string(body), "access_denied") {
		t.Fatalf("an unverified client's authorization request: %d\n%s", resp.StatusCode, body)
	}
	if tok := ta.machineToken("ci-bot", "jira:read"); tok == "" {
		t.Fatal("a machine client got no token")
	}
}

// TestUsersFileSignIn: people of a users file sign in with their password;
// the grant carries their groups, and since the file is the source of
// truth, each use of the token sees the file as it is now: a group moved
// there narrows the token at its next use, a person removed there ends it.
func TestUsersFileSignIn(t *testing.T) {
	clock := &fileClock{t: time.Unix(2e9, 0)}
	path := filepath.Join(t.TempDir(), "users.yaml")
	cheap := usersfile.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	add := func(name, password string, groups ...string) {
		e, err := usersfile.NewEntry(name, groups, []byte(password), cheap)
		if err != nil {
			t.Fatal(err)
		}
		if err := usersfile.Append(path, e); err != nil {
			t.Fatal(err)
		}
	}
	add("dana", "dana's password", "engineering")
	add("erin", "erin's password", "contractor")
	file, err := usersfile.Open(path, usersfile.Options{Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	ta := newTestAS(t, func(cfg *asrv.Config) { cfg.Users = asrv.PasswordUsers(file) })
	client := ta.publicAgent("claude-code", agentRedirect)
	signIn := func(user, password string) (string, error) {
		authURL, verifier := ta.ssoAuthURL(client, agentRedirect, "jira:write", "drive:read", "slack:write")
		loc, err := oauthtest.Authorize(authURL, user, password)
		if err != nil {
			return "", err
		}
		return ta.exchangeCode(client, loc.Query().Get("code"), verifier).AccessToken, nil
	}
	if _, err := signIn("dana", "demo"); err == nil {
		t.Fatal("the demo password signed in a users-file person")
	}
	if _, err := signIn("alice", "demo"); err == nil {
		t.Fatal("a demo user signed in on a users-file AS")
	}
	tok, err := signIn("dana", "dana's password")
	if err != nil {
		t.Fatal(err)
	}
	in, _ := ta.as.Introspect(context.Background(), tok, ta.resource)
	if !in.Active || in.Subject != "dana" || !slices.Equal(in.Groups, []string{"engineering"}) ||
		strings.Join(in.Scopes, " ") != "drive:read jira:write slack:write" {
		t.Fatalf("dana's token: %+v", in)
	}

	// Move dana to analytics and remove erin.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	add("dana", "dana's password", "analytics")
	clock.add(2 * time.Second)
	in, _ = ta.as.Introspect(context.Background(), tok, ta.resource)
	if !in.Active || !slices.Equal(in.Groups, []string{"analytics"}) || strings.Join(in.Scopes, " ") != "drive:read slack:write" {
		t.Fatalf("dana's token after her group moved: %+v", in)
	}
	if err := os.WriteFile(path, []byte("users: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock.add(2 * time.Second)
	if in, _ = ta.as.Introspect(context.Background(), tok, ta.resource); in.Active {
		t.Fatalf("dana's token after she left the users file: %+v", in)
	}
}

type fileClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fileClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fileClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestSignInPageOffersTheConfiguredSources: the sign-in page offers what
// the AS has: the single sign-on button, the name and password form (the
// demo's with its note), or both.
func TestSignInPageOffersTheConfiguredSources(t *testing.T) {
	page := func(ta *testAS) string {
		client := ta.publicAgent("claude-code", agentRedirect)
		authURL, _ := ta.ssoAuthURL(client, agentRedirect, "jira:read")
		resp, err := browser().Get(authURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d\n%s", resp.StatusCode, b)
		}
		return string(b)
	}
	sso, o := newSSOTestAS(t, nil)
	both, _ := newSSOTestAS(t, func(cfg *asrv.Config) { cfg.Users = asrv.DemoUsers{} })
	demo := newTestAS(t)
	for _, tc := range []struct {
		name              string
		ta                *testAS
		sso, pw, demoNote bool
	}{
		{"single sign-on only", sso, true, false, false},
		{"single sign-on and the demo users", both, true, true, true},
		{"the demo", demo, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := page(tc.ta)
			host := strings.TrimPrefix(o.issuer, "http://")
			if got := strings.Contains(p, `value="sso"`) && strings.Contains(p, "Sign in with 127.0.0.1:"); got != tc.sso {
				t.Errorf("single sign-on button: %v, want %v (%s)", got, tc.sso, host)
			}
			if got := strings.Contains(p, `name="password"`) && strings.Contains(p, "Sign in and approve"); got != tc.pw {
				t.Errorf("password form: %v, want %v", got, tc.pw)
			}
			if got := strings.Contains(p, "Demo users: alice (engineering, dba)"); got != tc.demoNote {
				t.Errorf("demo note: %v, want %v", got, tc.demoNote)
			}
			if t.Failed() {
				t.Log(p)
			}
		})
	}
}
