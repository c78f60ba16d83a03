package stack_test

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/identity/usersfile"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/internal/stack"
)

// writeUsersFile writes a users file of people name -> groups, each with
// the password "<name>-password" (cheap hashes: tests only).
func writeUsersFile(t *testing.T, path string, people map[string][]string) {
	t.Helper()
	cheap := usersfile.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	for _, name := range slices.Sorted(maps.Keys(people)) {
		e, err := usersfile.NewEntry(name, people[name], []byte(name+"-password"), cheap)
		if err != nil {
			t.Fatal(err)
		}
		if err := usersfile.Append(path, e); err != nil {
			t.Fatal(err)
		}
	}
}

// humanClient registers a public agent (a claude-code statement) that
// signs people in at redirect.
func humanClient(t *testing.T, st *stack.Stack, redirect string) string {
	t.Helper()
	jws, err := st.AuthServer().Statement(st.StatementKey(), asrv.StatementClaims{SoftwareID: "people-test", AgentProvider: "claude-code", AgentModel: "test"})
	if err != nil {
		t.Fatal(err)
	}
	c, _, _, err := st.AuthServer().Register(t.Context(), &asrv.RegistrationRequest{ClientName: "people-test", SoftwareStatement: jws,
		RedirectURIs: []string{redirect}, TokenEndpointAuthMethod: asrv.AuthMethodNone})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// TestPeopleOnlyWhereConfigured: the demo users sign in in the demo tenant
// alone; with demo off, and in the authorization server alone, nobody
// signs in without an identity source — the code flow is refused with
// access_denied naming the configuration — while machine clients still
// get tokens; a users file's people sign in with their groups, recorded
// with the grant; single sign-on is set up without calling the provider
// and names the redirect URI to register.
func TestPeopleOnlyWhereConfigured(t *testing.T) {
	const redirect = "http://127.0.0.1:47011/cb"
	dir := t.TempDir()
	users := filepath.Join(dir, "users.yaml")
	writeUsersFile(t, users, map[string][]string{"dana": {"engineering"}, "erin": {"contractor"}})
	tests := []struct {
		name      string
		configure func(*stack.Config)
		mode      string
		signsIn   map[string]string // user -> password, who gets a token
		refused   []string          // users refused
		noSource  bool              // refused as no identity source
	}{
		{"the demo tenant: its demo users", func(c *stack.Config) { c.Demo.Backends = true },
			"the demo users", map[string]string{"alice": "demo", "carol": "demo"}, nil, false},
		{"demo off: nobody", func(*stack.Config) {}, "", nil, []string{"alice"}, true},
		{"the authorization server alone: nobody", func(c *stack.Config) { c.Gateway = nil }, "", nil, []string{"alice"}, true},
		{"a users file", func(c *stack.Config) { c.AuthServer.Identity.UsersFile = users },
			"the users file " + users, map[string]string{"dana": "dana-password", "erin": "erin-password"}, []string{"alice"}, false},
		{"the demo tenant with a users file: its people, no demo users", func(c *stack.Config) {
			c.Demo.Backends, c.AuthServer.Identity.UsersFile = true, users
		}, "the users file " + users, map[string]string{"dana": "dana-password"}, []string{"alice"}, false},
		{"the authorization server alone with a users file", func(c *stack.Config) {
			c.Gateway, c.AuthServer.Identity.UsersFile = nil, users
		}, "the users file " + users, map[string]string{"dana": "dana-password"}, []string{"alice"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, t.TempDir())
			cfg.Ephemeral = true
			tc.configure(&cfg)
			st, err := stack.New(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_ = st.Close(ctx)
				settle()
			})
			if got := st.SignIn().Mode; !strings.HasPrefix(got, tc.mode) || (tc.mode == "") != (got == "") {
				t.Fatalf("sign-in mode %q, want %q", got, tc.mode)
			}
			client := humanClient(t, st, redirect)
			resource := st.URL() + "/mcp"
			for user, password := range tc.signsIn {
				tok, err := oauthtest.CodeFlow(t.Context(), st.URL(), client, redirect, user, password, resource, "jira:read")
				if err != nil {
					t.Fatalf("%s signs in: %v", user, err)
				}
				in, err := st.AuthServer().Introspect(t.Context(), tok.AccessToken, resource)
				if err != nil || !in.Active || in.Subject != user {
					t.Fatalf("%s's token: %+v %v", user, in, err)
				}
				if tc.mode != "the demo users" && len(in.Groups) == 0 {
					t.Fatalf("%s's token carries no groups: %+v", user, in)
				}
			}
			for _, user := range tc.refused {
				if tc.noSource {
					// Refused before any page: back to the client (a
					// verified one) with access_denied.
					if loc := authorizeOnce(t, st.URL(), client, redirect, resource); loc.Query().Get("error") != "access_denied" ||
						!strings.Contains(loc.Query().Get("error_description"), "identity.oidc or identity.users_file") || loc.Query().Has("code") {
						t.Fatalf("the authorization request: %s, want access_denied naming the missing identity configuration", loc)
					}
					continue
				}
				if _, err := oauthtest.CodeFlow(t.Context(), st.URL(), client, redirect, user, "demo", resource, "jira:read"); err == nil ||
					!strings.Contains(err.Error(), "unknown user or wrong password") {
					t.Fatalf("%s signs in: %v, want the page's refusal", user, err)
				}
			}
			// Machine clients get tokens whoever may sign in.
			machineToken(t, st, resource)
		})
	}
}

// TestSingleSignOnConfigured: an OpenID provider in the identity section is
// set up without calling it (the stack starts while it is down) and the
// redirect URI to register is the issuer's /oauth2/idp/callback; a
// provider that is misconfigured fails New with the key's name.
func TestSingleSignOnConfigured(t *testing.T) {
	cfg := baseConfig(t, t.TempDir())
	cfg.Ephemeral = true
	cfg.AuthServer.Identity.OIDC = &identity.OIDCConfig{Issuer: "http://127.0.0.1:1/idp", ClientID: "pbac"}
	st, err := stack.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	si := st.SignIn()
	// The same provider's identity assertion grants are accepted, and the
	// metadata says so (enterprise-managed authorization).
	md := st.AuthServer().Metadata()
	grants, _ := md["grant_types_supported"].([]string)
	profiles, _ := md["authorization_grant_profiles_supported"].([]string)
	_ = st.Close(t.Context())
	settle()
	if !slices.Contains(grants, asrv.GrantTypeJWTBearer) || !slices.Equal(profiles, []string{asrv.GrantProfileIDJAG}) {
		t.Fatalf("metadata with identity.oidc: grant types %v, grant profiles %v", grants, profiles)
	}
	if si.SSO != "http://127.0.0.1:1/idp" || si.RedirectURI != st.URL()+"/oauth2/idp/callback" || si.Demo || si.UsersFile ||
		si.Mode != "single sign-on at http://127.0.0.1:1/idp" {
		t.Fatalf("sign-in %+v", si)
	}
	// Beside the organisation's provider the demo tenant has no demo
	// users: they would be a second, well-known way in.
	cfg = baseConfig(t, t.TempDir())
	cfg.Ephemeral, cfg.Demo.Backends = true, true
	cfg.AuthServer.Identity.OIDC = &identity.OIDCConfig{Issuer: "http://127.0.0.1:1/idp", ClientID: "pbac"}
	st, err = stack.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	si = st.SignIn()
	_ = st.Close(t.Context())
	settle()
	if si.Demo || si.SSO == "" || strings.Contains(si.Mode, "demo") {
		t.Fatalf("the demo tenant beside single sign-on: %+v, want no demo users", si)
	}

	for _, tc := range []struct {
		name string
		id   identity.Config
		want string
	}{
		{"a secret file that is not there", identity.Config{OIDC: &identity.OIDCConfig{Issuer: "https://login.example.com", ClientID: "pbac",
			ClientSecretFile: filepath.Join(t.TempDir(), "none")}}, "identity.oidc: read the client secret"},
		{"an issuer over http elsewhere", identity.Config{OIDC: &identity.OIDCConfig{Issuer: "http://login.example.com", ClientID: "pbac"}}, "identity.oidc: issuer"},
		{"a users file that is not there", identity.Config{UsersFile: filepath.Join(t.TempDir(), "users.yaml")}, "identity.users_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, t.TempDir())
			cfg.Ephemeral = true
			cfg.AuthServer.Identity = tc.id
			st, err := stack.New(t.Context(), cfg)
			if err == nil {
				_ = st.Close(t.Context())
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// authorizeOnce sends an authorization request of client (PKCE, resource)
// and returns where the server redirected the browser.
func authorizeOnce(t *testing.T, base, client, redirect, resource string) *url.URL {
	t.Helper()
	q := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect}, "state": {"state-of-the-test"}, "scope": {"jira:read"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}, "resource": {resource}}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/oauth2/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("the authorization endpoint answered %d without a redirect", resp.StatusCode)
	}
	return loc
}

// machineToken registers a CI bot (a signed statement, client
// credentials) and gets it a token for resource.
func machineToken(t *testing.T, st *stack.Stack, resource string) {
	t.Helper()
	as := st.AuthServer()
	jws, err := as.Statement(st.StatementKey(), asrv.StatementClaims{SoftwareID: "people-test", AgentProvider: "ci-bot", AgentModel: "test"})
	if err != nil {
		t.Fatal(err)
	}
	c, secret, _, err := as.Register(t.Context(), &asrv.RegistrationRequest{ClientName: "people-test", SoftwareStatement: jws,
		GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: asrv.AuthMethodSecretBasic})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := oauthtest.ClientCredentials(t.Context(), st.URL(), c.ID, secret, resource, "jira:read")
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("client credentials: %v", err)
	}
}
