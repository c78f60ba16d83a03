package asrv_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/contract"
)

// TestSignInPageSaysWhoIsAsking: issue 16 item 5. Before anyone types a
// password the first page says who is asking — the agent's name, provider
// and model and how that is known, its trust tier, the scopes, the
// resource, where the browser returns (and a warning for a metadata
// document's localhost-only client) — and then offers the sign-in the
// server has (single sign-on, the password form). An agent policy refuses
// whoever signs in is told so on that first page, with policy's reason,
// and offered no sign-in; the refusal goes back to the client only where
// its redirect may be trusted with one.
func TestSignInPageSaysWhoIsAsking(t *testing.T) {
	const loopback = "http://127.0.0.1:43177/callback"
	type setup struct {
		ta                 *testAS
		clientID, redirect string
		scopes             []string
		cimdHost           string
	}
	demoAS := newTestAS(t)
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T) setup
		status int
		want   []string
		absent []string
	}{
		{
			name: "a verified client: who, how known, tier, scopes, resource, redirect, then the password form",
			setup: func(t *testing.T) setup {
				return setup{ta: demoAS, clientID: demoAS.publicAgent("claude-code", loopback), redirect: loopback, scopes: []string{"jira:read", "drive:write"}}
			},
			status: http.StatusOK,
			want: []string{`<strong id="client-name">agent claude-code</strong>`, `id="verified">verified<`,
				`Provider <code>claude-code</code>, model <code>test-model</code>: verified by a software statement signed by <code>` + asrv.LocalIssuer + `</code>`,
				`tier developer`, `<li><code>jira:read</code></li>`, `<li><code>drive:write</code></li>`,
				`<code class="resource">{{resource}}</code>`, `<code id="redirect-host">127.0.0.1:43177</code>`,
				`name="csrf_token"`, `name="password"`, `Sign in and approve`, `Demo users: alice (engineering, dba), bob (analytics, release)`},
			absent: []string{`id="refused"`, `id="sso"`, `localhost only`, `nobody vouched for`},
		},
		{
			name: "an unverified self-registered client is refused on the first page, with policy's reason",
			setup: func(t *testing.T) setup {
				return setup{ta: demoAS, clientID: demoAS.publicAgent("", loopback), redirect: loopback}
			},
			status: http.StatusForbidden,
			want: []string{`id="verified">unverified<`, `tier unverified`, `registered itself without a signed software statement`,
				`Policy refuses this agent, whoever signs in`, `<li>client is not attested (no trusted statement, operator approval or known metadata document vouches for it); it gets the least tier, which grants nothing</li>`,
				`<code id="redirect-host">127.0.0.1:43177</code>`,
				`id="return" href="http://127.0.0.1:43177/callback?error=access_denied&amp;`, `client&#43;is&#43;not&#43;attested`,
				`id="awaits-review"`, `<em>Start here → Pending review</em> (with the agents), client id <code>{{client}}</code>`},
			absent: []string{`name="password"`, `name="csrf_token"`, `Sign in and approve`, `id="sso"`},
		},
		{
			name: "a verified client asking only for what no one may grant it is refused on the first page",
			setup: func(t *testing.T) setup {
				return setup{ta: demoAS, clientID: demoAS.publicAgent("ci-bot", loopback), redirect: loopback, scopes: []string{"gitlab:approve"}}
			},
			status: http.StatusForbidden,
			want: []string{`id="verified">verified<`, `tier ci_agent`, `<li><code>gitlab:approve</code></li>`,
				`<li>none of the requested scopes are permitted for tier ci_agent, whatever the person&#39;s role</li>`},
			absent: []string{`name="password"`, `id="awaits-review"`},
		},
		{
			name: "a metadata document's client with localhost-only redirects: its publisher, where it returns, a warning",
			setup: func(t *testing.T) setup {
				host, cfg := newCIMDHost(t)
				pol := &admitCIMD{}
				ta := newTestAS(t, withMetadata(t, cfg), func(c *asrv.Config) { pol.next = c.Policy; c.Policy = pol })
				id := host.publish("/oauth/client.json", map[string]any{
					"client_name": "Localhost Agent", "redirect_uris": []string{"http://localhost/callback"},
					"token_endpoint_auth_method": "none",
				})
				return setup{ta: ta, clientID: id, redirect: "http://localhost:51234/callback", scopes: []string{"drive:read"},
					cimdHost: strings.TrimPrefix(host.srv.URL, "https://")}
			},
			status: http.StatusOK,
			want: []string{`<strong id="client-name">Localhost Agent</strong>`, `id="verified">unverified<`,
				`Described by a client ID metadata document published by <code>{{cimd}}</code>`,
				`<code id="redirect-host">localhost:51234</code>`, `id="localhost-only"`, `localhost only`, `name="password"`},
			absent: []string{`id="refused"`},
		},
		{
			name: "a metadata document's client under the shipped policy: refused first, the warning still shown",
			setup: func(t *testing.T) setup {
				host, cfg := newCIMDHost(t)
				ta := newTestAS(t, withMetadata(t, cfg))
				id := host.publish("/oauth/client.json", map[string]any{
					"client_name": "Localhost Agent", "redirect_uris": []string{"http://localhost/callback"},
				})
				return setup{ta: ta, clientID: id, redirect: "http://localhost:51234/callback"}
			},
			status: http.StatusForbidden,
			want:   []string{`id="localhost-only"`, `Policy refuses this agent`, `id="return" href="http://localhost:51234/callback?error=access_denied`},
			absent: []string{`name="password"`, `id="awaits-review"`},
		},
		{
			name: "single sign-on configured: the button names the provider, no password form without a users source",
			setup: func(t *testing.T) setup {
				ta, _ := newSSOTestAS(t, nil)
				return setup{ta: ta, clientID: ta.publicAgent("claude-code", loopback), redirect: loopback, scopes: []string{"jira:read"}}
			},
			status: http.StatusOK,
			want:   []string{`id="sso"`, `Sign in with 127.0.0.1:`, `tier developer`, `name="csrf_token"`},
			absent: []string{`name="password"`, `Demo users`, `id="refused"`},
		},
		{
			name: "an unverified client known by another attestation says which, and by whom",
			setup: func(t *testing.T) setup {
				c := &asrv.Client{ID: "attested-agent", Name: "Attested Agent", RedirectURIs: []string{loopback},
					GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: asrv.AuthMethodNone,
					Attestation: &contract.Attestation{Kind: "operator_approval", Origin: "ops@example.com"}, CreatedAt: time.Now()}
				if err := demoAS.store.CreateClient(t.Context(), c); err != nil {
					t.Fatal(err)
				}
				return setup{ta: demoAS, clientID: c.ID, redirect: loopback}
			},
			status: http.StatusForbidden,
			want:   []string{`Known by attestation <code>operator_approval</code> from <code>ops@example.com</code>`, `tier unverified`},
		},
		{
			name: "what a client says of itself is escaped",
			setup: func(t *testing.T) setup {
				id := demoAS.register(map[string]any{"client_name": `<script>alert("x")</script>`, "redirect_uris": []string{loopback},
					"token_endpoint_auth_method": "none"})["client_id"].(string)
				return setup{ta: demoAS, clientID: id, redirect: loopback}
			},
			status: http.StatusForbidden,
			want:   []string{`&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`},
			absent: []string{`<script>`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.setup(t)
			u := s.ta.authorizeURL(s.clientID, s.redirect, func(v url.Values) {
				if len(s.scopes) > 0 {
					v.Set("scope", strings.Join(s.scopes, " "))
				}
			})
			resp, err := browser().Get(u)
			if err != nil {
				t.Fatal(err)
			}
			page := readBody(t, resp)
			if resp.StatusCode != tc.status || resp.Header.Get("Location") != "" {
				t.Fatalf("got %d Location %q, want %d and a page:\n%s", resp.StatusCode, resp.Header.Get("Location"), tc.status, page)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			fill := strings.NewReplacer("{{resource}}", s.ta.resource, "{{cimd}}", s.cimdHost, "{{client}}", s.clientID)
			for _, w := range tc.want {
				if w = fill.Replace(w); !strings.Contains(page, w) {
					t.Errorf("the page lacks %s", w)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(page, a) {
					t.Errorf("the page has %s", a)
				}
			}
			if t.Failed() {
				t.Log(page)
			}
		})
	}
}

// TestRefusedClientNeverReachesThePassword: a post to the authorization
// endpoint for a client policy refuses whoever signs in is refused before
// the password is looked at — a wrong password gets the same refusal as
// the right one, never "wrong password", and never a code.
func TestRefusedClientNeverReachesThePassword(t *testing.T) {
	ta := newTestAS(t)
	const redirect = "http://127.0.0.1:43178/callback"
	id := ta.publicAgent("", redirect)
	for _, pw := range []string{asrv.DemoPassword, "wrong"} {
		resp, err := browser().PostForm(ta.authorizeURL(id, redirect, nil), url.Values{"username": {"alice"}, "password": {pw}, "decision": {"approve"}})
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(t, resp)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Query().Get("error") != "access_denied" ||
			!strings.Contains(loc.Query().Get("error_description"), "client is not attested") || loc.Query().Get("code") != "" {
			t.Fatalf("password %q: %d Location %q\n%s", pw, resp.StatusCode, loc, body)
		}
	}
}
