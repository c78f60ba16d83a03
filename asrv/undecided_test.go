package asrv_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/internal/policytest"
)

// A token request policy cannot decide (here, one that runs until the
// evaluation deadline stops it) is refused as temporarily_unavailable (503),
// with nothing of the engine's error in the answer; other clients' requests
// are decided as usual.
func TestUndecidedTokenRequestIsTemporarilyUnavailable(t *testing.T) {
	reg := policytest.Empty(t)
	if _, err := reg.Activate(context.Background(), policytest.Runaway(t), "runaway"); err != nil {
		t.Fatal(err)
	}
	ta := newTestAS(t, func(c *asrv.Config) { c.Policy = reg })
	register := func(softwareID string) (string, string) {
		jws, err := ta.as.Statement(ta.issuer, asrv.StatementClaims{SoftwareID: softwareID, AgentProvider: "ci-bot", AgentModel: "test-model"})
		if err != nil {
			t.Fatal(err)
		}
		out := ta.register(map[string]any{
			"client_name": softwareID, "grant_types": []string{"client_credentials"},
			"token_endpoint_auth_method": "client_secret_basic", "software_statement": jws,
		})
		return out["client_id"].(string), out["client_secret"].(string)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"jira:read"}, "resource": {ta.resource}}

	id, secret := register(policytest.RunawaySoftwareID)
	status, out := ta.form(asrv.PathToken, id, secret, form)
	if status != http.StatusServiceUnavailable || out["error"] != "temporarily_unavailable" {
		t.Fatalf("an undecided token request: %d %v, want 503 temporarily_unavailable", status, out)
	}
	desc, _ := out["error_description"].(string)
	for _, internal := range []string{"eval", "wasm", "timed out", "pbac/token"} {
		if strings.Contains(desc, internal) {
			t.Fatalf("the answer tells the client the engine's error (%q): %s", internal, desc)
		}
	}

	id, secret = register("ordinary-ci")
	if status, out := ta.form(asrv.PathToken, id, secret, form); status != http.StatusOK || out["access_token"] == nil {
		t.Fatalf("an ordinary token request: %d %v", status, out)
	}
}
