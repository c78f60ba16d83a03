package asrv

import (
	"net/url"
	"strings"
	"testing"

	"github.com/ory/fosite"
)

// redirectRuleCases: one row per rule of checkRedirectURI, which both
// registration and the authorization endpoint apply.
var redirectRuleCases = []struct {
	name, uri string
	ok        bool
}{
	{"https", "https://agent.example/cb", true},
	{"https with port and query", "https://agent.example:8443/cb?x=1", true},
	{"loopback ipv4 any port", "http://127.0.0.1:5555/callback", true},
	{"loopback ipv6", "http://[::1]:5555/callback", true},
	{"localhost", "http://localhost:54545/callback", true},
	{"localhost upper case", "http://LOCALHOST:54545/callback", true},
	{"private-use scheme", "com.example.agent:/oauth/cb", true},
	{"userinfo on loopback", "http://evil.com@127.0.0.1:5555/callback", false},
	{"userinfo with password on loopback", "http://u:p@127.0.0.1/callback", false},
	{"empty userinfo on loopback", "http://@127.0.0.1/callback", false},
	{"userinfo on https", "https://user@agent.example/cb", false},
	{"http to a remote host", "http://agent.example/cb", false},
	{"http to a loopback-looking name", "http://127.0.0.1.evil.example/cb", false},
	{"http to another 127/8 address", "http://127.0.0.2/cb", false},
	{"fragment", "https://agent.example/cb#x", false},
	{"relative", "/cb", false},
	{"no host", "https:///cb", false},
	{"opaque https", "https:agent.example", false},
	{"space", "https://agent.example/c b", false},
	{"control character", "https://agent.example/cb\x00", false},
	{"non-ascii", "https://agént.example/cb", false},
	{"scheme without a dot", "myapp:/cb", false},
	{"javascript", "javascript:alert(1)", false},
	{"empty", "", false},
	{"too long", "https://agent.example/" + strings.Repeat("a", maxURILen), false},
}

// TestRedirectURIOneRule: registration and the authorization endpoint
// (before fosite's redirect and in fosite's secure-redirect check) accept
// exactly the same redirect URIs.
func TestRedirectURIOneRule(t *testing.T) {
	for _, tc := range redirectRuleCases {
		t.Run(tc.name, func(t *testing.T) {
			req := RegistrationRequest{RedirectURIs: []string{tc.uri}, TokenEndpointAuthMethod: AuthMethodNone}
			regErr := req.Validate()
			if (regErr == nil) != tc.ok {
				t.Errorf("registration: err = %v, want ok=%v", regErr, tc.ok)
			}
			form := url.Values{"redirect_uri": {tc.uri}}
			ar := fosite.NewAuthorizeRequest()
			ar.Client = &Client{ID: "c", RedirectURIs: []string{tc.uri}}
			ar.RedirectURI, _ = url.Parse(tc.uri)
			if ar.RedirectURI == nil {
				ar.RedirectURI = &url.URL{}
			}
			authErr := checkAuthorizeParams(form, ar)
			if (authErr == nil) != tc.ok {
				t.Errorf("authorization: err = %v, want ok=%v", authErr, tc.ok)
			}
			// (on URIs url.String gives back unchanged: fosite checks the parsed URI)
			if u, err := url.Parse(tc.uri); err == nil && u.String() == tc.uri && tc.ok != secureRedirect(t.Context(), u) {
				t.Errorf("secureRedirect = %v, want %v", !tc.ok, tc.ok)
			}
		})
	}
}

// FuzzRedirectURI: for a registered URI and a requested one, when fosite
// matches the request to the registration and the authorization endpoint
// lets it through, the requested URI is one registration accepts itself,
// with the registered scheme, host and path and no userinfo; and fosite's
// secure-redirect check agrees with the rule on every URI it accepts.
func FuzzRedirectURI(f *testing.F) {
	for _, tc := range redirectRuleCases {
		f.Add("http://127.0.0.1/callback", tc.uri)
		f.Add(tc.uri, tc.uri)
	}
	f.Add("http://127.0.0.1/callback", "http://evil.com@127.0.0.1:5555/callback")
	f.Add("http://[::1]/cb", "http://x@[::1]:1/cb")
	f.Add("http://localhost:33418/cb", "http://localhost:33418/cb?")
	f.Fuzz(func(t *testing.T, registered, requested string) {
		if checkRedirectURI(registered) != nil {
			return
		}
		client := &Client{ID: "c", RedirectURIs: []string{registered}}
		matched, err := fosite.MatchRedirectURIWithClientRedirectURIs(requested, client)
		if err != nil {
			return
		}
		ar := fosite.NewAuthorizeRequest()
		ar.Client, ar.RedirectURI = client, matched
		if checkAuthorizeParams(url.Values{"redirect_uri": {requested}}, ar) != nil {
			return
		}
		if requested != "" && checkRedirectURI(requested) != nil {
			t.Fatalf("authorization let %q through; registration refuses it", requested)
		}
		if matched.User != nil {
			t.Fatalf("authorization let userinfo through: %q", requested)
		}
		reg, _ := url.Parse(registered)
		if matched.Scheme != reg.Scheme || matched.Hostname() != reg.Hostname() || matched.Path != reg.Path {
			t.Fatalf("requested %q leads elsewhere than registered %q", requested, registered)
		}
		if !secureRedirect(t.Context(), matched) {
			t.Fatalf("fosite's check refuses %q, which the rule accepts", matched)
		}
	})
}

// TestRedirectAccepted: the authorization endpoint's rule, as the dashboard
// asks it: exact, or any port for a loopback IP literal; a host name only
// on its port; never what registration refuses.
func TestRedirectAccepted(t *testing.T) {
	registered := []string{"http://127.0.0.1/cb", "http://localhost:7777/oauth/callback", "https://app.example.com/cb"}
	for _, tc := range []struct {
		sent string
		want bool
	}{
		{"http://127.0.0.1:5555/cb", true},
		{"http://127.0.0.1/cb", true},
		{"http://127.0.0.1:5555/cb2", false},
		{"http://[::1]:5555/cb", false},
		{"http://localhost:7777/oauth/callback", true},
		{"http://localhost:7778/oauth/callback", false},
		{"https://app.example.com/cb", true},
		{"https://app.example.com:444/cb", false},
		{"http://evil.example@127.0.0.1:5555/cb", false},
		{"http://127.0.0.1:5555/cb#x", false},
	} {
		if got := RedirectAccepted(tc.sent, registered); got != tc.want {
			t.Errorf("RedirectAccepted(%q) = %v, want %v", tc.sent, got, tc.want)
		}
	}
}
