package asrv_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
)

// TestIntrospectionAllowList: only the configured introspectors may call
// the RFC 7662 endpoint. Any other confidential client — a self-registered
// unverified one, or a verified agent — is refused with 403 before the
// token is read: it learns nothing and does not spend another agent's
// single-use token, which the gateway can still use once. A configured
// introspector can do nothing else; a registered client may be listed by
// id; with no introspectors at all nobody may introspect.
func TestIntrospectionAllowList(t *testing.T) {
	ta := newTestAS(t)
	reg := ta.register(map[string]any{"client_name": "rs by registration", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic"})
	registered, registeredSecret := reg["client_id"].(string), reg["client_secret"].(string)

	attacker := ta.register(map[string]any{"client_name": "nosy", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic"})
	verified := ta.register(map[string]any{"client_name": "ci", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "software_statement": ta.statement("ci-bot", false)})
	single := ta.singleUseToken()

	for _, tc := range []struct {
		name, id, secret string
	}{
		{"self-registered unverified client", attacker["client_id"].(string), attacker["client_secret"].(string)},
		{"verified agent", verified["client_id"].(string), verified["client_secret"].(string)},
		{"registered client not listed on this AS", registered, registeredSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := ta.form(asrv.PathIntrospect, tc.id, tc.secret, url.Values{"token": {single}})
			if status != http.StatusForbidden || out["error"] != "unauthorized_client" || out["active"] != nil || out["sub"] != nil {
				t.Fatalf("got %d %v, want 403 unauthorized_client and nothing about the token", status, out)
			}
		})
	}
	if res, err := ta.as.Introspect(context.Background(), single, ""); err != nil || !res.Active || !res.Consumed {
		t.Fatalf("the single-use token after refused introspections: %+v %v; want active once, for the gateway", res, err)
	}

	t.Run("configured introspector", func(t *testing.T) {
		tok := ta.machineToken("ci-bot", "jira:read")
		if out := ta.introspect(tok); out["active"] != true {
			t.Fatalf("introspector sees %v", out)
		}
		// It holds no grant: no token for it.
		status, out := ta.form(asrv.PathToken, ta.rsID, ta.rsSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"jira:read"}})
		if status == http.StatusOK || out["access_token"] != nil {
			t.Fatalf("the introspector got a token: %d %v", status, out)
		}
		// Nor is it a registered client one could read or delete.
		if _, err := ta.store.Client(context.Background(), ta.rsID); err == nil {
			t.Fatal("the configured introspector was stored")
		}
		if status, _ := ta.form(asrv.PathIntrospect, ta.rsID, "wrong-"+ta.rsSecret, url.Values{"token": {tok}}); status != http.StatusUnauthorized {
			t.Fatalf("wrong introspector secret: %d, want 401", status)
		}
	})

	t.Run("registered client listed by id", func(t *testing.T) {
		// A replica of the AS on the same store, listing the registered client.
		cfg := ta.cfg
		cfg.Introspectors = []asrv.Introspector{{ClientID: registered}}
		replica, err := asrv.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(replica.Handler())
		defer srv.Close()
		tok := ta.machineToken("ci-bot", "jira:read")
		req, _ := http.NewRequest(http.MethodPost, srv.URL+asrv.PathIntrospect, strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(registered, registeredSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || out["active"] != true {
			t.Fatalf("listed registered client: %d %v", resp.StatusCode, out)
		}
	})

	t.Run("no introspectors", func(t *testing.T) {
		closed := newTestAS(t, func(c *asrv.Config) { c.Introspectors = nil })
		tok := closed.machineToken("ci-bot", "jira:read")
		if status, _ := closed.form(asrv.PathIntrospect, closed.rsID, closed.rsSecret, url.Values{"token": {tok}}); status != http.StatusUnauthorized {
			t.Fatalf("an unconfigured introspector: %d, want 401", status)
		}
		c := closed.register(map[string]any{"client_name": "any", "grant_types": []string{"client_credentials"},
			"token_endpoint_auth_method": "client_secret_basic"})
		if status, _ := closed.form(asrv.PathIntrospect, c["client_id"].(string), c["client_secret"].(string), url.Values{"token": {tok}}); status != http.StatusForbidden {
			t.Fatalf("a registered client with no introspectors configured: %d, want 403", status)
		}
	})

	t.Run("bad configuration fails at start-up", func(t *testing.T) {
		for _, list := range [][]asrv.Introspector{
			{{ClientID: ""}},
			{{ClientID: "gw", Secret: "short"}},
			{{ClientID: "gw", Secret: rand.Text()}, {ClientID: "gw"}},
		} {
			if _, err := asrv.New(asrv.Config{Issuer: "http://127.0.0.1:1", Resources: []string{"http://127.0.0.1:1/mcp"},
				Secret: make([]byte, 32), Store: ta.store, Policy: asrv.DeciderFunc(nil), Users: asrv.DemoUsers{},
				Introspectors: list}); err == nil {
				t.Errorf("introspectors %+v accepted", list)
			}
		}
	})
}

// singleUseToken is an access token of a single-use machine agent (the
// security scanner's statement asks for single use).
func (ta *testAS) singleUseToken() string {
	ta.t.Helper()
	reg := ta.register(map[string]any{"client_name": "scanner", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "software_statement": ta.statement("security-scanner", true)})
	status, out := ta.form(asrv.PathToken, reg["client_id"].(string), reg["client_secret"].(string),
		url.Values{"grant_type": {"client_credentials"}, "scope": {"drive:read"}})
	if status != http.StatusOK {
		ta.t.Fatalf("single-use token: %d %v", status, out)
	}
	return out["access_token"].(string)
}

// Introspection reads a token from the Badger store's read cache without
// copying the record; what it returns is the caller's own, so a caller that
// changes it changes nothing for the next introspection.
func TestIntrospectionResultIsNotTheCachedRecord(t *testing.T) {
	ta := newTestAS(t)
	token := ta.machineToken("ci-bot", "jira:read")
	ctx := context.Background()
	first, err := ta.as.Introspect(ctx, token, ta.resource)
	if err != nil || !first.Active || len(first.Audience) == 0 {
		t.Fatalf("%+v %v", first, err)
	}
	want := slices.Clone(first.Audience)
	for i := range first.Audience {
		first.Audience[i] = "https://attacker.example/mcp"
	}
	again, err := ta.as.Introspect(ctx, token, ta.resource)
	if err != nil || !again.Active || !slices.Equal(again.Audience, want) {
		t.Fatalf("second introspection: %+v %v; want active with audience %v", again, err, want)
	}
}
