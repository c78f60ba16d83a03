package dashboard

import (
	"net/http/cookiejar"
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
