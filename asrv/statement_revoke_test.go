package asrv_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
)

// replica is another authorization server on ta's store and secret, as
// its configuration changed by mod.
func (ta *testAS) replica(t *testing.T, mod func(*asrv.Config)) (*asrv.Server, string) {
	t.Helper()
	cfg := ta.cfg
	mod(&cfg)
	as, err := asrv.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(as.Handler())
	t.Cleanup(srv.Close)
	return as, srv.URL
}

// TestRevokedStatement: revoking a software statement (by its jti), or its
// issuer key (by kid), refuses the statement at registration and makes the
// clients registered with it unverified from then on: their live tokens
// turn inactive and they get no new ones; other agents are unaffected.
func TestRevokedStatement(t *testing.T) {
	ta := newTestAS(t)
	ctx := context.Background()
	jws := ta.statement("ci-bot", false)
	reg := ta.register(map[string]any{"client_name": "ci", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "software_statement": jws})
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)
	tok := func(as string) (int, map[string]any) {
		return postFormTo(t, as+asrv.PathToken, id, secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"jira:read"}})
	}
	status, out := tok(ta.srv.URL)
	if status != http.StatusOK {
		t.Fatalf("token before the revocation: %d %v", status, out)
	}
	live := out["access_token"].(string)
	client, err := ta.store.Client(ctx, id)
	if err != nil || client.Agent.StatementID == "" || client.Agent.KeyID != ta.issuer.KeyID() {
		t.Fatalf("the client does not record its statement: %+v %v", client.Agent, err)
	}
	other := ta.machineToken("ci-bot", "jira:read") // another statement of the same key

	for name, r := range map[string]asrv.StatementRevocations{
		"statement":  {StatementIDs: []string{client.Agent.StatementID}},
		"issuer key": {KeyIDs: []string{ta.issuer.KeyID()}},
	} {
		t.Run(name, func(t *testing.T) {
			as, base := ta.replica(t, func(c *asrv.Config) { c.Statements = c.Statements.WithRevoked(r) })
			if res, err := as.Introspect(ctx, live, ""); err != nil || res.Active {
				t.Fatalf("a token of a client whose %s is revoked: active=%v %v", name, res.Active, err)
			}
			if status, out := tok(base); status == http.StatusOK {
				t.Fatalf("a new token for it: %d %v", status, out)
			}
			status, out := postJSONTo(t, base+asrv.PathRegister, map[string]any{"client_name": "again", "grant_types": []string{"client_credentials"},
				"token_endpoint_auth_method": "client_secret_basic", "software_statement": jws})
			if status != http.StatusBadRequest || out["error"] != "unapproved_software_statement" {
				t.Fatalf("registering with the revoked statement: %d %v", status, out)
			}
			res, err := as.Introspect(ctx, other, "")
			if wantOther := name == "statement"; err != nil || res.Active != wantOther {
				t.Fatalf("another agent's token (its own statement, same key): active=%v %v, want %v", res.Active, err, wantOther)
			}
		})
	}
	if res, err := ta.as.Introspect(ctx, live, ""); err != nil || !res.Active {
		t.Fatalf("without revocations the token is active: %v %v", res.Reasons, err)
	}
}
