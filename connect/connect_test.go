package connect_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/connect"
)

// TestPresetsObeyTheRegistrationRule: each client's redirect URIs pass the
// authorization server's registration rule (RFC 7591 at /oauth2/register),
// what it sends matches them under the authorization endpoint's rule, and
// its snippet names what it sends where the client takes a redirect URI or
// port from configuration. (TestClientPresetsSignIn in internal/stack runs
// the code flow with each.)
func TestPresetsObeyTheRegistrationRule(t *testing.T) {
	target := connect.Target{MCPURL: "https://gw.example.com/mcp", ClientID: "client-123"}
	seen := map[string]bool{}
	for _, c := range connect.Clients() {
		t.Run(c.ID, func(t *testing.T) {
			if seen[c.ID] || c.ID == connect.Custom || len(c.RedirectURIs) == 0 || len(c.Sends) == 0 || c.Source == "" {
				t.Fatalf("preset %+v", c)
			}
			seen[c.ID] = true
			req := &asrv.RegistrationRequest{ClientName: c.Label, RedirectURIs: c.RedirectURIs,
				GrantTypes: []string{"authorization_code"}, TokenEndpointAuthMethod: asrv.AuthMethodNone}
			if err := req.Validate(); err != nil {
				t.Fatalf("registering %v: %v", c.RedirectURIs, err)
			}
			for _, sent := range c.Sends {
				if !asrv.RedirectAccepted(sent, c.RedirectURIs) {
					t.Errorf("%s is not accepted for %v", sent, c.RedirectURIs)
				}
			}
			s := c.Snippet(target)
			if !strings.Contains(s, target.MCPURL) || (!c.SelfRegisters && !strings.Contains(s, target.ClientID)) {
				t.Errorf("snippet:\n%s", s)
			}
			if c.File != "" && strings.HasSuffix(c.File, ".json") {
				var v any
				if err := json.Unmarshal([]byte(s), &v); err != nil {
					t.Errorf("%s is not JSON: %v\n%s", c.File, err, s)
				}
			}
		})
	}
	// Where the snippet fixes the redirect URI, it is the one sent.
	for id, want := range map[string]string{"opencode": `"redirectUri": "http://127.0.0.1:19876/mcp/oauth/callback"`,
		"codex": `callback_url = "http://127.0.0.1:33421/callback"`, "gemini-cli": `"redirectUri": "http://localhost:7777/oauth/callback"`,
		"claude-code": "--callback-port 33418", "mcp-remote": `"33422"`} {
		c, ok := connect.Lookup(id)
		if !ok || !strings.Contains(c.Snippet(target), want) {
			t.Errorf("%s's snippet lacks %s:\n%s", id, want, c.Snippet(target))
		}
	}
	if _, ok := connect.Lookup(connect.Custom); ok {
		t.Error("custom is not a client")
	}
}
