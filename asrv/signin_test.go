package asrv_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/signin"
)

// signInPage is a browser on the sign-in page of one authorization
// request.
type signInPage struct {
	t      *testing.T
	client *http.Client
	url    string
	csrf   string
}

func (ta *testAS) openSignIn(t *testing.T, clientID, redirect string, mod func(url.Values)) *signInPage {
	t.Helper()
	p := &signInPage{t: t, client: browser(), url: ta.authorizeURL(clientID, redirect, mod)}
	resp, err := p.client.Get(p.url)
	if err != nil {
		t.Fatal(err)
	}
	p.read(resp, http.StatusOK)
	return p
}

// read takes the page's form token from resp, which must have status.
func (p *signInPage) read(resp *http.Response, status int) string {
	p.t.Helper()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status {
		p.t.Fatalf("got %d (Location %q), want %d:\n%s", resp.StatusCode, resp.Header.Get("Location"), status, body)
	}
	if m := csrfField.FindSubmatch(body); m != nil {
		p.csrf = string(m[1])
	}
	return string(body)
}

// post submits the form with user and password and the page's token.
func (p *signInPage) post(user, password string) *http.Response {
	p.t.Helper()
	resp, err := p.client.PostForm(p.url, url.Values{"username": {user}, "password": {password}, "csrf_token": {p.csrf}, "decision": {"approve"}})
	if err != nil {
		p.t.Fatal(err)
	}
	return resp
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestSignInThrottled: the 401 guesses at the authorization
// endpoint. After 5 wrong passwords alice's sign-in answers 429 with
// Retry-After — for the right password too — until the back-off passes; a
// user name that does not exist gets exactly the same answers; a correct
// sign-in after the wait works.
func TestSignInThrottled(t *testing.T) {
	clock := &testClock{t: time.Now()}
	guard := signin.New(signin.Config{Now: clock.now, FailureFloor: time.Millisecond})
	ta := newTestAS(t, func(c *asrv.Config) { c.SignIn = guard })
	redirect := "http://127.0.0.1:43151/cb"
	clientID := ta.publicAgent("claude-code", redirect)

	answers := func(user string) []string {
		p := ta.openSignIn(t, clientID, redirect, nil)
		var got []string
		for i := range 8 {
			pw := "guess"
			if i == 7 {
				pw = asrv.DemoPassword
			}
			resp := p.post(user, pw)
			status := resp.StatusCode
			body := p.read(resp, status)
			switch status {
			case http.StatusTooManyRequests:
				if resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many failed sign-in attempts") {
					t.Fatalf("429 without Retry-After or message:\n%s", body)
				}
				got = append(got, "429")
			case http.StatusUnauthorized:
				got = append(got, "401")
			default:
				got = append(got, resp.Status)
			}
		}
		return got
	}
	want := "401 401 401 401 401 429 429 429"
	if got := strings.Join(answers("alice"), " "); got != want {
		t.Fatalf("alice: %s, want %s", got, want)
	}
	if got := strings.Join(answers("nobody-by-this-name"), " "); got != want {
		t.Fatalf("an unknown user: %s, want the same answers as alice's, %s", got, want)
	}
	clock.add(time.Second)
	p := ta.openSignIn(t, clientID, redirect, nil)
	resp := p.post("alice", asrv.DemoPassword)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "code=") {
		t.Fatalf("after the back-off, the right password: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestSignInFormForgery: the sign-in form's token is bound to server-side
// state of its authorization request. A non-browser cannot forge one (a
// double-submitted cookie x and field x), nor use one from another
// authorization request or another browser, nor use one twice.
func TestSignInFormForgery(t *testing.T) {
	ta := newTestAS(t)
	redirect := "http://127.0.0.1:43152/cb"
	clientID := ta.publicAgent("claude-code", redirect)
	u, _ := url.Parse(ta.srv.URL)
	post := func(t *testing.T, c *http.Client, target, token string) *http.Response {
		t.Helper()
		resp, err := c.PostForm(target, url.Values{"username": {"alice"}, "password": {asrv.DemoPassword}, "csrf_token": {token}, "decision": {"approve"}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	refused := func(t *testing.T, resp *http.Response) {
		t.Helper()
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" || !strings.Contains(string(body), "form expired") {
			t.Fatalf("got %d Location %q, want 403 and the sign-in page again", resp.StatusCode, resp.Header.Get("Location"))
		}
	}

	t.Run("double-submitted made-up value", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		jar.SetCookies(u, []*http.Cookie{{Name: "pbac_authz_csrf", Value: "x", Path: asrv.PathAuthorize}})
		c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		refused(t, post(t, c, ta.authorizeURL(clientID, redirect, nil), "x"))
	})
	t.Run("no sign-in page loaded", func(t *testing.T) {
		refused(t, post(t, browser(), ta.authorizeURL(clientID, redirect, nil), ""))
	})
	t.Run("a token of another authorization request", func(t *testing.T) {
		p := ta.openSignIn(t, clientID, redirect, func(v url.Values) { v.Set("state", "first-request-state") })
		other := ta.authorizeURL(clientID, redirect, func(v url.Values) { v.Set("state", "second-request-state") })
		refused(t, post(t, p.client, other, p.csrf))
	})
	t.Run("a parameter changed in the posted body", func(t *testing.T) {
		p := ta.openSignIn(t, clientID, redirect, nil)
		resp, err := p.client.PostForm(p.url, url.Values{"username": {"alice"}, "password": {asrv.DemoPassword}, "csrf_token": {p.csrf},
			"decision": {"approve"}, "scope": {"jira:write"}})
		if err != nil {
			t.Fatal(err)
		}
		refused(t, resp)
	})
	t.Run("another browser's token", func(t *testing.T) {
		p := ta.openSignIn(t, clientID, redirect, nil)
		other := ta.openSignIn(t, clientID, redirect, nil)
		refused(t, post(t, other.client, p.url, p.csrf))
	})
	t.Run("a token used twice", func(t *testing.T) {
		p := ta.openSignIn(t, clientID, redirect, nil)
		first := p.csrf
		p.read(p.post("alice", "wrong"), http.StatusUnauthorized)
		refused(t, post(t, p.client, p.url, first))
	})
	t.Run("the real form still works", func(t *testing.T) {
		p := ta.openSignIn(t, clientID, redirect, nil)
		resp := p.post("alice", asrv.DemoPassword)
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "code=") {
			t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}
