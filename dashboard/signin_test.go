package dashboard

import (
	"encoding/json"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/signin"
	"github.com/pbac-gateway/pbac/internal/policytest"
)

// TestSignInFormRequired: the dashboard's sign-in takes a form token the
// server issued to this browser just before, once; a made-up header, none,
// another browser's token or a replayed one is refused with 403 before
// any password is checked.
func TestSignInFormRequired(t *testing.T) {
	d := newDash(t, true)
	body := map[string]string{"username": "alice", "password": asrv.DemoPassword}
	for _, tc := range []struct {
		name  string
		setup func()
	}{
		{"no token", func() { d.csrf = "" }},
		{"a made-up token", func() { d.csrf = "x" }},
		{"another browser's token", func() {
			other := newDashOn(t, d)
			other.signInForm()
			d.csrf = other.csrf
		}},
		{"a replayed token", func() {
			d.signInForm()
			if status, _ := d.do("POST", "/ui/api/session", map[string]string{"username": "alice", "password": "wrong"}); status != 401 {
				t.Fatalf("first use: %d", status)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			if status, out := d.do("POST", "/ui/api/session", body); status != 403 || out["error"] == "" {
				t.Fatalf("got %d %v, want 403", status, out)
			}
		})
	}
	d.signIn("alice")
}

// newDashOn is another browser (its own cookies) on d's dashboard.
func newDashOn(t *testing.T, d *dash) *dash {
	jar, _ := cookiejar.New(nil)
	c := *d.http
	c.Jar = jar
	return &dash{t: t, srv: d.srv, http: &c}
}

// TestDashboardSignInThrottled: after 5 wrong passwords alice's dashboard
// sign-in answers 429 with Retry-After, for the right password too, and an
// unknown user gets the same answers; the guard is the one passed in (the
// composition shares the authorization server's).
func TestDashboardSignInThrottled(t *testing.T) {
	now := time.Now()
	guard := signin.New(signin.Config{FailureFloor: time.Millisecond, Now: func() time.Time { return now }})
	h, err := New(Config{GatewayURL: "http://127.0.0.1:9", Issuer: "http://127.0.0.1:9", Registry: policytest.Registry(t),
		Users: asrv.DemoUsers{}, AdminToken: testAdminToken, SignIn: guard})
	if err != nil {
		t.Fatal(err)
	}
	d := serveDash(t, h)
	for _, user := range []string{"alice", "nobody-by-this-name"} {
		var got []int
		for i := range 7 {
			pw := "wrong"
			if i == 6 {
				pw = asrv.DemoPassword
			}
			status, _ := d.postSignIn(map[string]string{"username": user, "password": pw})
			got = append(got, status)
		}
		want := []int{401, 401, 401, 401, 401, 429, 429}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: %v, want %v", user, got, want)
			}
		}
	}
}

// TestSignInFormSpentOnlyByAPasswordAttempt: a sign-in form is spent by
// the first password attempt made with it, and by nothing else: a request
// refused before any credential is checked (a body that is not a sign-in)
// leaves it as it was, and the admin token's sign-in verifies it without
// spending it, so no number of spent forms keeps the operator out.
func TestSignInFormSpentOnlyByAPasswordAttempt(t *testing.T) {
	d := newDash(t, false)
	d.signInForm() // one form for every step
	alice := map[string]string{"username": "alice", "password": asrv.DemoPassword}
	admin := map[string]string{"admin_token": testAdminToken}
	for _, step := range []struct {
		name string
		body any
		want int
	}{
		{"an empty body", map[string]string{}, 400},
		{"an empty body again", map[string]string{}, 400},
		{"not JSON", "x", 400},
		{"an unknown field", map[string]string{"user": "alice"}, 400},
		{"the admin token", admin, 200},
		{"the admin token again", admin, 200},
		{"a password", alice, 200},
		{"the password again: the form is spent", alice, 403},
		{"the admin token after", admin, 200},
	} {
		if status, out := d.do("POST", "/ui/api/session", step.body); status != step.want {
			t.Fatalf("%s: %d %v, want %d", step.name, status, out, step.want)
		}
	}
}

// TestSignInFormsPerAddress: one address cannot use up the dashboard's
// sign-in forms for everyone. Forms it posts with an empty body, as many
// as the table holds, spend nothing; forms it spends on sign-ins that
// succeed (not throttled) stop at maxSignInFormsPerAddress (429) for that
// address alone, and the admin token still signs in from it.
func TestSignInFormsPerAddress(t *testing.T) {
	d := newDash(t, false)
	h := d.srv.Config.Handler.(*Handler)
	// from loads a form and posts body with it from addr, as a browser of
	// its own there would.
	from := func(addr, body string) int {
		t.Helper()
		get := httptest.NewRequest("GET", "/ui/api/session/form", nil)
		get.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, get)
		var form map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &form); err != nil || w.Code != 200 {
			t.Fatalf("form: %d %s", w.Code, w.Body)
		}
		post := httptest.NewRequest("POST", "/ui/api/session", strings.NewReader(body))
		post.RemoteAddr = addr
		post.Header.Set(csrfHeader, form["csrf"])
		for _, c := range w.Result().Cookies() {
			post.AddCookie(c)
		}
		w = httptest.NewRecorder()
		h.ServeHTTP(w, post)
		return w.Code
	}
	const alice = `{"username": "alice", "password": "` + asrv.DemoPassword + `"}`
	for i := range maxSignInForms {
		if status := from("192.0.2.1:1000", `{}`); status != 400 {
			t.Fatalf("empty sign-in %d: %d", i, status)
		}
	}
	for i := range maxSignInFormsPerAddress {
		if status := from("192.0.2.1:1001", alice); status != 200 {
			t.Fatalf("sign-in %d: %d", i, status)
		}
	}
	for _, tc := range []struct {
		name, addr, body string
		want             int
	}{
		{"that address, a password", "192.0.2.1:1002", alice, 429},
		{"that address, the admin token", "192.0.2.1:1003", `{"admin_token": "` + testAdminToken + `"}`, 200},
		{"another address, a password", "192.0.2.2:1000", alice, 200},
	} {
		if status := from(tc.addr, tc.body); status != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, status, tc.want)
		}
	}
}
