package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sync"
	"testing"

	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/plugins"
)

// testProvider plays the organisation's identity provider: each sign-in it
// starts gets a code, which completes it once, for the person named when
// the browser signed in there.
type testProvider struct {
	mu    sync.Mutex
	codes map[string]string // code -> state
	// people: code -> who signed in at the provider with it
	people map[string]identity.Person
}

func newTestProvider() *testProvider {
	return &testProvider{codes: map[string]string{}, people: map[string]identity.Person{}}
}

func (p *testProvider) Label() string { return "test provider" }

func (p *testProvider) Start(context.Context) (identity.Redirect, error) {
	pending := identity.Pending{State: rand.Text(), Nonce: rand.Text(), Verifier: rand.Text()}
	return identity.Redirect{URL: "https://idp.example/authorize?state=" + pending.State, Pending: pending}, nil
}

// signIn is the person signing in at the provider for the sign-in of this
// authorization URL: where the provider sends the browser back.
func (p *testProvider) signIn(t *testing.T, authURL string, who identity.Person) url.Values {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil || u.Host != "idp.example" {
		t.Fatalf("the sign-in went to %q, not the provider", authURL)
	}
	code := rand.Text()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.codes[code], p.people[code] = u.Query().Get("state"), who
	return url.Values{"state": {u.Query().Get("state")}, "code": {code}}
}

func (p *testProvider) Finish(_ context.Context, pending identity.Pending, cb url.Values) (identity.Person, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	code := cb.Get("code")
	state, ok := p.codes[code]
	if !ok || state != pending.State {
		return identity.Person{}, fmt.Errorf("%w: unknown code", identity.ErrRefused)
	}
	delete(p.codes, code) // a code is spent once
	return p.people[code], nil
}

// noFollow is a browser that does not follow redirects.
func noFollow() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestSSOSignInIsKeptByTheBrowser: a started single sign-on is sealed in the
// browser's cookie, so hundreds of sign-ins started and abandoned by
// someone who is not signed in leave nothing on the server and keep
// nobody out; the callback completes only in the browser that started it,
// with its own sealed state, once.
func TestSSOSignInIsKeptByTheBrowser(t *testing.T) {
	idp := newTestProvider()
	var reg *plugins.Registry
	d := newDashWith(t, false, func(c *Config) { c.SSO, reg = idp, c.Registry })
	setOperatorGroups(t, reg, "pbac-operators")
	h := d.srv.Config.Handler.(*Handler)

	start := func(b *http.Client) (authURL string) {
		t.Helper()
		resp, err := b.Get(d.srv.URL + "/ui/api/session/sso")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("start: %d", resp.StatusCode)
		}
		return resp.Header.Get("Location")
	}
	callback := func(b *http.Client, q url.Values) *http.Response {
		t.Helper()
		resp, err := b.Get(d.srv.URL + identity.CallbackPath + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// 300 sign-ins started, none finished, each from a fresh browser.
	for range 300 {
		start(noFollow())
	}
	h.mu.Lock()
	spent := len(h.ssoSpent)
	h.mu.Unlock()
	if spent != 0 {
		t.Fatalf("the server holds %d sign-ins nobody completed", spent)
	}

	olga := identity.Person{Subject: "olga", Name: "Olga", Groups: []string{"pbac-operators"}}
	for _, tc := range []struct {
		name string
		// run starts and completes a sign-in its own way; the status of the
		// callback it returns is checked, and on success the session.
		run  func(t *testing.T) (*http.Client, *http.Response)
		want int
	}{
		{"the browser that started it signs in", func(t *testing.T) (*http.Client, *http.Response) {
			b := noFollow()
			return b, callback(b, idp.signIn(t, start(b), olga))
		}, http.StatusSeeOther},
		{"another browser does not", func(t *testing.T) (*http.Client, *http.Response) {
			q := idp.signIn(t, start(noFollow()), olga)
			b := noFollow()
			return b, callback(b, q)
		}, http.StatusBadRequest},
		{"a replay with the same sealed cookie does not", func(t *testing.T) (*http.Client, *http.Response) {
			b := noFollow()
			q := idp.signIn(t, start(b), olga)
			u, _ := url.Parse(d.srv.URL + identity.CallbackPath)
			kept := b.Jar.Cookies(u)
			if resp := callback(b, q); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("first callback: %d", resp.StatusCode)
			}
			replay := noFollow()
			replay.Jar.SetCookies(u, kept)
			return replay, callback(replay, q)
		}, http.StatusBadRequest},
		{"a cookie sealed for another state does not", func(t *testing.T) (*http.Client, *http.Response) {
			b := noFollow()
			start(b)
			u, _ := url.Parse(d.srv.URL + identity.CallbackPath)
			other := noFollow()
			second := idp.signIn(t, start(other), olga)
			// the first sign-in's cookie, under the second's name
			c := b.Jar.Cookies(u)[0]
			other.Jar.SetCookies(u, []*http.Cookie{{Name: h.ssoSeal.CookieName(second.Get("state")), Value: c.Value, Path: identity.CallbackPath}})
			return other, callback(other, second)
		}, http.StatusBadRequest},
		{"a tampered cookie does not", func(t *testing.T) (*http.Client, *http.Response) {
			b := noFollow()
			q := idp.signIn(t, start(b), olga)
			u, _ := url.Parse(d.srv.URL + identity.CallbackPath)
			c := b.Jar.Cookies(u)[0]
			flip := []byte(c.Value)
			flip[len(flip)/2] ^= 'A' ^ 'B'
			b.Jar.SetCookies(u, []*http.Cookie{{Name: c.Name, Value: string(flip), Path: identity.CallbackPath}})
			return b, callback(b, q)
		}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, resp := tc.run(t)
			if resp.StatusCode != tc.want {
				t.Fatalf("callback: %d, want %d", resp.StatusCode, tc.want)
			}
			signedIn := resp.StatusCode == http.StatusSeeOther
			if signedIn && resp.Header.Get("Location") != "/ui/" {
				t.Fatalf("signed in, sent to %q", resp.Header.Get("Location"))
			}
			sr, err := b.Get(d.srv.URL + "/ui/api/session")
			if err != nil {
				t.Fatal(err)
			}
			var sess struct {
				User     struct{ Sub string }
				Operator bool
			}
			_ = json.NewDecoder(sr.Body).Decode(&sess)
			sr.Body.Close()
			if got := sr.StatusCode == http.StatusOK; got != signedIn {
				t.Fatalf("session: %d, signed in %v", sr.StatusCode, signedIn)
			}
			if signedIn && (sess.User.Sub != "olga" || !sess.Operator) {
				t.Fatalf("the session is %+v, want olga operating", sess)
			}
		})
	}
}
