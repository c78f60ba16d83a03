package asrv_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
)

// TestMaxSignInAge: a person's sign-in lasts Config.MaxSignInAge at most.
// A refresh within it is answered (and rotates); one beyond is refused
// with invalid_grant saying to sign in again, and the family is left as
// it was: with the clock back within the bound its access token is active
// and its refresh token still works.
func TestMaxSignInAge(t *testing.T) {
	for _, c := range []struct {
		name   string
		maxAge time.Duration // 0: the default, 24 h
		after  time.Duration // time since sign-in at the refresh
		ok     bool
	}{
		{"default: a refresh 23 h after sign-in is answered", 0, 23 * time.Hour, true},
		{"default: a refresh 25 h after sign-in is refused", 0, 25 * time.Hour, false},
		{"1 h: a refresh 59 min after sign-in is answered", time.Hour, 59 * time.Minute, true},
		{"1 h: a refresh 61 min after sign-in is refused", time.Hour, 61 * time.Minute, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := &testClock{t: time.Now()}
			ta := newTestAS(t, func(cfg *asrv.Config) { cfg.Now, cfg.MaxSignInAge = clock.now, c.maxAge })
			redirect := "http://127.0.0.1:43171/callback"
			clientID := ta.publicAgent("claude-code", redirect)
			tok := ta.codeFlow(clientID, redirect, "alice", "jira:read")
			if tok.RefreshToken == "" {
				t.Fatal("no refresh token")
			}
			signedIn := clock.now()
			clock.add(c.after)
			refresh := url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID}, "refresh_token": {tok.RefreshToken}}
			status, out := ta.form(asrv.PathToken, "", "", refresh)
			if c.ok {
				if status != http.StatusOK || out["refresh_token"] == nil || out["refresh_token"] == tok.RefreshToken {
					t.Fatalf("refresh %v after sign-in: %d %v; want a rotated pair", c.after, status, out)
				}
				return
			}
			if status != http.StatusBadRequest || out["error"] != "invalid_grant" ||
				!strings.Contains(out["error_description"].(string), "sign in again") {
				t.Fatalf("refresh %v after sign-in: %d %v; want invalid_grant saying to sign in again", c.after, status, out)
			}
			// Back within the bound (and the access token's lifetime), the
			// family is as it was: the refusal neither rotated nor revoked
			// it.
			clock.t = signedIn.Add(time.Minute)
			if ta.introspect(tok.AccessToken)["active"] != true {
				t.Fatal("the refusal revoked the family's access token")
			}
			if status, out := ta.form(asrv.PathToken, "", "", refresh); status != http.StatusOK {
				t.Fatalf("the refused refresh token no longer works: %d %v", status, out)
			}
		})
	}
}

// TestMaxSignInAgeIDJAG: an identity assertion grant counts as a sign-in
// when its provider issued it (iat): one older than Config.MaxSignInAge
// is refused with invalid_grant, a younger one gets a token (and, as for
// every ID-JAG, no refresh token to outlive it).
func TestMaxSignInAgeIDJAG(t *testing.T) {
	for _, c := range []struct {
		name  string
		after time.Duration // the AS's clock ahead of the assertion's iat
		ok    bool
	}{
		{"an assertion issued 30 min ago is redeemed", 30 * time.Minute, true},
		{"an assertion issued 61 min ago is refused", 61 * time.Minute, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := &testClock{t: time.Now().Add(c.after)}
			j := newJagAS(t, func(cfg *asrv.Config) { cfg.Now, cfg.MaxSignInAge = clock.now, time.Hour })
			// The provider's keys check iat and exp against the real
			// time: the assertion is valid there.
			status, out := j.redeem(j.agent, j.secret, j.idp.sign(t, j.idp.key, "oauth-id-jag+jwt", j.claims("age-"+c.name)), nil)
			if c.ok {
				if status != http.StatusOK || out["refresh_token"] != nil {
					t.Fatalf("redeem: %d %v; want an access token, no refresh token", status, out)
				}
				return
			}
			if status != http.StatusBadRequest || out["error"] != "invalid_grant" ||
				!strings.Contains(out["error_description"].(string), "sign in again") {
				t.Fatalf("redeem: %d %v; want invalid_grant saying to sign in again", status, out)
			}
		})
	}
}
