package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// signIDJAG signs claims as an identity assertion grant (typ typ) with the
// provider's own signing key, as a provider that issues ID-JAGs would.
func (o *testOP) signIDJAG(typ string, claims map[string]any) string {
	o.t.Helper()
	sk, err := o.storage.SigningKey(context.Background())
	if err != nil {
		o.t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: sk.Key(), KeyID: sk.ID()}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		o.t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		o.t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

// testIDJAGGrant: pbac up with identity.oidc takes the provider's identity
// assertion grants (enterprise-managed authorization) at its token
// endpoint: it advertises them, a grant the provider signed for a
// confidential agent gets a token acting for the person (their groups'
// grants), and a replayed grant, one for another audience, or one typed as
// an ID token gets none.
func testIDJAGGrant(t *testing.T, tn idTenant, o *testOP, resource string) {
	resp, err := http.Get(tn.base + asrv.PathMetadata)
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if !slices.Contains(md["authorization_grant_profiles_supported"].([]any), any(asrv.GrantProfileIDJAG)) ||
		!slices.Contains(md["grant_types_supported"].([]any), any(asrv.GrantTypeJWTBearer)) {
		t.Fatalf("metadata: %v", md)
	}
	key, err := asrv.LoadOrCreateIssuerKey(tn.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	statement, err := key.Sign(asrv.StatementClaims{AgentProvider: "claude-code", AgentModel: "e2e", Audience: []string{tn.base}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := oauthtest.Register(t.Context(), tn.base, map[string]any{"client_name": "enterprise agent",
		"grant_types": []string{asrv.GrantJWTBearer}, "token_endpoint_auth_method": asrv.AuthMethodSecretBasic,
		"software_statement": statement})
	if err != nil {
		t.Fatal(err)
	}
	client, secret := reg["client_id"].(string), reg["client_secret"].(string)
	claims := func(mod func(map[string]any)) map[string]any {
		now := time.Now()
		c := map[string]any{"iss": o.issuer(), "sub": "dana", "aud": tn.base, "client_id": client, "jti": rand.Text(),
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "resource": resource, "scope": "jira:read slack:write",
			"groups": []string{"engineering"}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	redeem := func(assertion string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, tn.base+asrv.PathToken, strings.NewReader(url.Values{
			"grant_type": {asrv.GrantTypeJWTBearer}, "assertion": {assertion}, "scope": {"jira:read"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(client, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	good := o.signIDJAG("oauth-id-jag+jwt", claims(nil))
	status, out := redeem(good)
	if status != http.StatusOK || out["scope"] != "jira:read" || out["refresh_token"] != nil {
		t.Fatalf("a good ID-JAG: %d %v", status, out)
	}
	if ok, why := callTool(t, tn.base, out["access_token"].(string), "jira", "get_issue", map[string]any{"key": "SEC-12"}); !ok {
		t.Fatalf("the ID-JAG's token: %s", why)
	}
	for name, assertion := range map[string]string{
		"replayed":             good,
		"another audience":     o.signIDJAG("oauth-id-jag+jwt", claims(func(c map[string]any) { c["aud"] = "https://other-as.example" })),
		"typed as an ID token": o.signIDJAG("JWT", claims(nil)),
		"another client's":     o.signIDJAG("oauth-id-jag+jwt", claims(func(c map[string]any) { c["client_id"] = "someone-else" })),
	} {
		if status, out := redeem(assertion); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Errorf("%s ID-JAG: %d %v, want invalid_grant", name, status, out)
		}
	}
}
