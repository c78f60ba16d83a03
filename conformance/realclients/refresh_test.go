package realclients

import (
	"net/url"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/modelapi"
)

// TestJudgeRefresh: the refresh step passes only when, after the access
// token expired, the CLI got a new token with a refresh_token grant, used
// it on /mcp and the model got the file; a new sign-in is "re-authorized,
// not refreshed"; everything else says what happened.
func TestJudgeRefresh(t *testing.T) {
	core := []clientcheck.Event{
		{Method: "POST", Path: "/oauth2/token", Status: 200, Form: url.Values{"grant_type": {"authorization_code"}}, AccessToken: "T"},
		{Method: "POST", Path: "/mcp", RPC: "tools/call", Bearer: "T", Status: 200},
	}
	grant := func(g, tok string, status int) clientcheck.Event {
		return clientcheck.Event{Method: "POST", Path: "/oauth2/token", Status: status, Form: url.Values{"grant_type": {g}}, AccessToken: tok}
	}
	call := func(tok string, status int) clientcheck.Event {
		return clientcheck.Event{Method: "POST", Path: "/mcp", RPC: "tools/call", Bearer: tok, Status: status}
	}
	sawFile := []modelapi.ToolResult{{Marker: markerRefresh, Content: "# " + allowedText}}
	for _, tc := range []struct {
		name    string
		early   []clientcheck.Event
		after   []clientcheck.Event
		results []modelapi.ToolResult
		noProbe bool
		noCall  bool
		want    string // the start of the result
		has     string
	}{
		{name: "refreshed on the 401", after: []clientcheck.Event{call("T", 401), grant("refresh_token", "T2", 200), call("T2", 200)},
			results: sawFile, want: "pass", has: "on the 401"},
		{name: "refreshed ahead of expiry", after: []clientcheck.Event{grant("refresh_token", "T2", 200), call("T2", 200)},
			results: sawFile, want: "pass", has: "ahead of the 401"},
		{name: "refreshed before the expiry too", early: []clientcheck.Event{grant("refresh_token", "T1", 200), grant("refresh_token", "", 400)},
			after: []clientcheck.Event{grant("refresh_token", "T2", 200), call("T2", 200)}, results: sawFile, want: "pass", has: "it had refreshed 2×, 1 refused"},
		{name: "refreshed, the model did not get the file", after: []clientcheck.Event{grant("refresh_token", "T2", 200), call("T2", 200)},
			want: "refreshed", has: "no result"},
		{name: "refreshed, never used", after: []clientcheck.Event{grant("refresh_token", "T2", 200), call("T", 401)},
			results: sawFile, want: "refreshed, but the new token was never used"},
		{name: "refreshed, then a refresh refused", after: []clientcheck.Event{grant("refresh_token", "T2", 200), {Method: "POST", Path: "/oauth2/token", Status: 400,
			Form: url.Values{"grant_type": {"refresh_token"}}, OAuthError: "invalid_grant: The provided grant is invalid. The refresh token was already used."}},
			want: "refreshed, but the new token was never used on /mcp; a refresh was refused (400 invalid_grant: … The refresh token was already used)"},
		{name: "signed in again", after: []clientcheck.Event{call("T", 401), {Method: "GET", Path: "/oauth2/authorize", SignedIn: true},
			grant("authorization_code", "T3", 200), call("T3", 200)}, results: sawFile, want: "re-authorized, not refreshed"},
		{name: "refresh refused, signed in again", after: []clientcheck.Event{grant("refresh_token", "", 400), {Method: "GET", Path: "/oauth2/authorize"}},
			results: sawFile, want: "re-authorized after its refresh was refused (400)"},
		{name: "refresh refused", after: []clientcheck.Event{grant("refresh_token", "", 400)}, want: "the refresh was refused (400)"},
		{name: "refresh refused, the error said", after: []clientcheck.Event{{Method: "POST", Path: "/oauth2/token", Status: 400,
			Form: url.Values{"grant_type": {"refresh_token"}}, OAuthError: "invalid_grant: gone"}}, want: "the refresh was refused (400 invalid_grant: gone)"},
		{name: "the expired token refused, nothing else", after: []clientcheck.Event{call("T", 401)}, want: "no refresh: the expired token was refused"},
		{name: "no request", want: "the CLI made no request"},
		{name: "dropped its credentials after a refused refresh", early: []clientcheck.Event{{Method: "POST", Path: "/oauth2/token", Status: 400,
			Form: url.Values{"grant_type": {"refresh_token"}}, OAuthError: "invalid_grant: used"}}, after: []clientcheck.Event{call("", 401)},
			want: "no token: it called the gateway without one", has: "1 refused (400 invalid_grant: used)"},
		{name: "the old token still taken", after: []clientcheck.Event{call("T", 200)}, results: sawFile, want: "no refresh and no 401"},
		{name: "no probe", noProbe: true, want: "— (not measured)"},
		{name: "no call after the wait", noCall: true, want: "— (not measured: the driver makes no call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events := append(append(append([]clientcheck.Event{}, core...), tc.early...), tc.after...)
			p := &probe{kind: probeRefresh, ttl: DefaultAccessTokenTTL, from: len(core) + len(tc.early), started: !tc.noCall}
			if tc.noProbe {
				p = nil
			}
			got := judgeRefresh(p, events, tc.results)
			if !strings.HasPrefix(got, tc.want) || !strings.Contains(got, tc.has) {
				t.Fatalf("judgeRefresh = %q, want it to start with %q and say %q", got, tc.want, tc.has)
			}
			if (tc.want == "pass") != (Step{Result: got}).Passed() {
				t.Fatalf("Passed() disagrees with %q", got)
			}
		})
	}
}

// TestDocSnippet: a snippet that worked is shown with pbac up's address
// and CLIENT_ID for the run's.
func TestDocSnippet(t *testing.T) {
	tg := Target{Base: "http://127.0.0.1:41234", ClientID: "abc123"}
	for _, tc := range []struct{ in, want string }{
		{"claude mcp add --client-id abc123 pbac http://127.0.0.1:41234/mcp", "claude mcp add --client-id CLIENT_ID pbac http://127.0.0.1:8080/mcp"},
		{"claude mcp add --transport http pbac http://127.0.0.1:41234/mcp", "claude mcp add --transport http pbac http://127.0.0.1:8080/mcp"},
	} {
		if got := DocSnippet(tc.in, tg); got != tc.want {
			t.Errorf("DocSnippet(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := DocSnippet("x abc", Target{}); got != "x abc" {
		t.Errorf("DocSnippet with no target = %q", got)
	}
}
