package stack_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/internal/stack"
)

// TestScopesFollowTheActivePolicy: issue 17 item 5. A policy data change
// that adds a backend's scope is advertised in the authorization server's
// metadata and in the protected resource metadata of /mcp and
// /mcp/<backend>, and accepted at the token endpoint, on the very next
// request — for a client registered before the change — and it is gone
// again, from all three and the token endpoint, when the data change is
// undone. No document advertises offline_access (SEP-2207).
func TestScopesFollowTheActivePolicy(t *testing.T) {
	ctx := t.Context()
	cfg := baseConfig(t, t.TempDir())
	// A backend the shipped data knows nothing of; nothing is called on it.
	cfg.Backends = []config.Backend{{Name: "wiki", URL: "http://127.0.0.1:9/mcp"}}
	st, err := stack.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(ctx) })
	base := st.URL()
	const scope = "wiki:read"

	getJSON := func(t *testing.T, path string) map[string]any {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &m) != nil {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-cache") && !strings.Contains(cc, "no-store") {
			t.Errorf("GET %s: Cache-Control %q lets a cache keep scopes the policy changed", path, cc)
		}
		return m
	}
	docs := []string{asrv.PathMetadata, "/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource/mcp/wiki"}
	advertised := func(t *testing.T) map[string]bool {
		t.Helper()
		out := map[string]bool{}
		for _, d := range docs {
			var l []string
			for _, s := range getJSON(t, d)["scopes_supported"].([]any) {
				l = append(l, s.(string))
			}
			if len(l) == 0 || slices.Contains(l, "offline_access") {
				t.Errorf("%s advertises %v", d, l)
			}
			out[d] = slices.Contains(l, scope)
		}
		return out
	}

	// A machine agent of the ci_agent tier, registered before the change.
	as := st.AuthServer()
	jws, err := as.Statement(st.StatementKey(), asrv.StatementClaims{SoftwareID: "scopes-test", AgentProvider: "ci-bot", AgentModel: "test"})
	if err != nil {
		t.Fatal(err)
	}
	client, secret, _, err := as.Register(ctx, &asrv.RegistrationRequest{ClientName: "scopes-test", SoftwareStatement: jws,
		GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: asrv.AuthMethodSecretBasic})
	if err != nil {
		t.Fatal(err)
	}
	token := func(t *testing.T) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+asrv.PathToken, strings.NewReader(url.Values{
			"grant_type": {"client_credentials"}, "scope": {scope}, "resource": {base + "/mcp/wiki"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(client.ID, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}

	reg := st.Registry()
	shipped, ok := reg.ActiveBundle()
	if !ok {
		t.Fatal("no active policy")
	}
	var data map[string]any
	if err := json.Unmarshal(shipped.Data, &data); err != nil {
		t.Fatal(err)
	}
	data["catalogue"].(map[string]any)["wiki.search"] = map[string]any{"resource": "wiki", "access": "read"}
	data["tiers"].(map[string]any)["ci_agent"].(map[string]any)["grants"].(map[string]any)["wiki"] = []string{"read"}
	withWiki, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}

	for _, step := range []struct {
		name string
		data []byte
		want bool
	}{
		{"before the change", nil, false},
		{"a data change adds the wiki's scope", withWiki, true},
		{"undone", shipped.Data, false},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.data != nil {
				if _, err := reg.SetData(ctx, step.data, "test"); err != nil {
					t.Fatal(err)
				}
			}
			for d, has := range advertised(t) {
				if has != step.want {
					t.Errorf("%s advertises %s: %v, want %v", d, scope, has, step.want)
				}
			}
			status, out := token(t)
			switch {
			case step.want && (status != http.StatusOK || out["scope"] != scope):
				t.Errorf("token for %s: %d %v, want it granted", scope, status, out)
			case !step.want && (status != http.StatusBadRequest || out["error"] != "invalid_scope"):
				t.Errorf("token for %s: %d %v, want invalid_scope", scope, status, out)
			}
		})
	}
}

// TestNoOfflineAccessInChallengesOrResourceMetadata: SEP-2207. Neither the
// 401 challenge nor a protected resource metadata document names
// offline_access, even when the configured list does: whether a refresh
// token comes with a grant is the authorization server's business.
func TestNoOfflineAccessInChallengesOrResourceMetadata(t *testing.T) {
	ctx := t.Context()
	cfg := baseConfig(t, t.TempDir())
	cfg.Gateway = &stack.Gateway{Scopes: []string{"jira:read", "offline_access"}}
	cfg.Backends = []config.Backend{{Name: "wiki", URL: "http://127.0.0.1:9/mcp"}}
	st, err := stack.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(ctx) })
	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource/mcp/wiki"} {
		resp, err := http.Get(st.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		var md struct {
			Scopes []string `json:"scopes_supported"`
		}
		err = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if err != nil || !slices.Equal(md.Scopes, []string{"jira:read"}) {
			t.Errorf("%s: scopes_supported %v (%v), want [jira:read]", path, md.Scopes, err)
		}
	}
	for _, path := range []string{"/mcp", "/mcp/wiki"} {
		resp, err := http.Post(st.URL()+path, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(h, "resource_metadata=") || strings.Contains(h, "offline_access") {
			t.Errorf("POST %s: %d WWW-Authenticate %q", path, resp.StatusCode, h)
		}
	}
}
