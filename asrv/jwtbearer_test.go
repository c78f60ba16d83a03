package asrv_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/cimd"
	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/identity/idp"
)

// jagIDP is an organisation's identity provider as the AS sees it for
// ID-JAGs: a discovery document and a key set on 127.0.0.1, and the key
// that signs (a second key, never published, forges).
type jagIDP struct {
	issuer       string
	key, forgery *ecdsa.PrivateKey
}

func newJagIDP(t *testing.T) *jagIDP {
	t.Helper()
	p := &jagIDP{}
	for _, k := range []**ecdsa.PrivateKey{&p.key, &p.forgery} {
		var err error
		if *k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.issuer, "authorization_endpoint": p.issuer + "/authorize", "token_endpoint": p.issuer + "/token",
			"jwks_uri": p.issuer + "/jwks", "id_token_signing_alg_values_supported": []string{"ES256"},
			"code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: string(jose.ES256), Use: "sig"}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p.issuer = srv.URL
	return p
}

// sign signs claims as an ID-JAG of typ with key, under the published key
// id.
func (p *jagIDP) sign(t *testing.T, key *ecdsa.PrivateKey, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", "k1")
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(claims)
	jws, err := signer.Sign(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// jagAS is an AS that accepts the IdP's ID-JAGs, with a confidential agent
// registered for the jwt-bearer grant.
type jagAS struct {
	*testAS
	idp           *jagIDP
	agent, secret string
	// public is a public client; plain a confidential one not registered
	// for the grant.
	public, plain string
	plainSecret   string
}

func newJagAS(t *testing.T, opts ...func(*asrv.Config)) *jagAS {
	t.Helper()
	op := newJagIDP(t)
	ta := newTestAS(t, func(c *asrv.Config) {
		p, err := idp.New(identity.OIDCConfig{Issuer: op.issuer, ClientID: "pbac"}, idp.Options{ASIssuer: c.Issuer})
		if err != nil {
			t.Fatal(err)
		}
		c.Assertions = p
		for _, o := range opts {
			o(c)
		}
	})
	j := &jagAS{testAS: ta, idp: op}
	reg := func(grants []string, auth string) map[string]any {
		return ta.register(map[string]any{
			"client_name": "enterprise agent", "grant_types": grants, "token_endpoint_auth_method": auth,
			"redirect_uris": []string{"http://127.0.0.1:43161/cb"}, "response_types": responseTypes(grants),
			"software_statement": ta.statement("claude-code", false),
		})
	}
	agent := reg([]string{asrv.GrantJWTBearer}, asrv.AuthMethodSecretBasic)
	j.agent, j.secret = agent["client_id"].(string), agent["client_secret"].(string)
	plain := reg([]string{"client_credentials"}, asrv.AuthMethodSecretBasic)
	j.plain, j.plainSecret = plain["client_id"].(string), plain["client_secret"].(string)
	j.public = reg([]string{"authorization_code"}, asrv.AuthMethodNone)["client_id"].(string)
	return j
}

func responseTypes(grants []string) []string {
	if slices.Contains(grants, "authorization_code") {
		return []string{"code"}
	}
	return []string{}
}

// claims are a good ID-JAG's claims for the agent, acting for dana of the
// engineering group at the AS's resource.
func (j *jagAS) claims(jti string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": j.idp.issuer, "sub": "dana", "aud": j.srv.URL, "client_id": j.agent, "jti": jti,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "resource": j.resource,
		"scope": "jira:read drive:read", "groups": []string{"engineering"},
	}
}

// redeem presents assertion at the token endpoint as client.
func (j *jagAS) redeem(client, secret, assertion string, extra url.Values) (int, map[string]any) {
	j.t.Helper()
	v := url.Values{"grant_type": {asrv.GrantTypeJWTBearer}, "assertion": {assertion}}
	for k, vs := range extra {
		v[k] = vs
	}
	if client == j.public {
		v.Set("client_id", client)
		return j.form(asrv.PathToken, "", "", v)
	}
	return j.form(asrv.PathToken, client, secret, v)
}

// TestIDJAGGrant: an ID-JAG the organisation's provider signed for this
// AS, the presenting client and a resource served here gets an access
// token for the person it names (sub, groups as at sign-in), with the
// scopes requested within those the provider allowed and policy grants,
// bound to the resource; no refresh token.
func TestIDJAGGrant(t *testing.T) {
	j := newJagAS(t)
	status, out := j.redeem(j.agent, j.secret, j.idp.sign(t, j.idp.key, "oauth-id-jag+jwt", j.claims("happy")), url.Values{"scope": {"jira:read jira:write"}})
	if status != http.StatusOK {
		t.Fatalf("redeem: %d %v", status, out)
	}
	if out["scope"] != "jira:read" || out["refresh_token"] != nil || out["token_type"] != "bearer" {
		t.Fatalf("token response %v: want jira:read only (jira:write is not in the grant), no refresh token", out)
	}
	info := j.introspect(out["access_token"].(string))
	if info["active"] != true || info["sub"] != "dana" || info["client_id"] != j.agent || info["aud"] == nil {
		t.Fatalf("introspection %v", info)
	}
	if aud, _ := info["aud"].([]any); len(aud) != 1 || aud[0] != j.resource {
		t.Fatalf("token audience %v, want the grant's resource", info["aud"])
	}
	// Without a scope parameter: the grant's scopes, as policy allows.
	status, out = j.redeem(j.agent, j.secret, j.idp.sign(t, j.idp.key, "oauth-id-jag+jwt", j.claims("all")), nil)
	if status != http.StatusOK || out["scope"] != "drive:read jira:read" {
		t.Fatalf("redeem without scope: %d %v", status, out)
	}
	// The person's tokens end with "revoke everything acting for".
	if r, err := j.as.RevokeSubject(t.Context(), "dana"); err != nil || r.AccessTokens != 2 {
		t.Fatalf("RevokeSubject(dana) = %+v, %v", r, err)
	}
	if j.introspect(out["access_token"].(string))["active"] == true {
		t.Fatal("dana's token outlived the revocation")
	}

	md := j.as.Metadata()
	if !slices.Contains(md["grant_types_supported"].([]string), asrv.GrantTypeJWTBearer) ||
		!slices.Equal(md["authorization_grant_profiles_supported"].([]string), []string{asrv.GrantProfileIDJAG}) {
		t.Fatalf("metadata does not advertise the grant: %v", md)
	}
}

// TestIDJAGGrantRefusals: each check of the grant refuses the token, with
// the OAuth error the specification names.
func TestIDJAGGrantRefusals(t *testing.T) {
	j := newJagAS(t)
	good := func(jti string) string { return j.idp.sign(t, j.idp.key, "oauth-id-jag+jwt", j.claims(jti)) }
	with := func(jti string, mod func(map[string]any)) string {
		c := j.claims(jti)
		mod(c)
		return j.idp.sign(t, j.idp.key, "oauth-id-jag+jwt", c)
	}
	replayed := good("replayed")
	if status, out := j.redeem(j.agent, j.secret, replayed, nil); status != http.StatusOK {
		t.Fatalf("first use: %d %v", status, out)
	}
	for _, tc := range []struct {
		name           string
		client, secret string
		assertion      string
		extra          url.Values
		wantError      string
	}{
		{name: "wrong typ (an ID token's)", assertion: j.idp.sign(t, j.idp.key, "JWT", j.claims("typ")), wantError: "invalid_grant"},
		{name: "no typ", assertion: j.idp.sign(t, j.idp.key, "", j.claims("notyp")), wantError: "invalid_grant"},
		{name: "another issuer", assertion: with("iss", func(c map[string]any) { c["iss"] = "https://evil.example" }), wantError: "invalid_grant"},
		{name: "another audience", assertion: with("aud", func(c map[string]any) { c["aud"] = "https://other-as.example" }), wantError: "invalid_grant"},
		{name: "issued to another client", assertion: with("cid", func(c map[string]any) { c["client_id"] = "someone-else" }), wantError: "invalid_grant"},
		{name: "expired", assertion: with("exp", func(c map[string]any) {
			c["iat"] = time.Now().Add(-10 * time.Minute).Unix()
			c["exp"] = time.Now().Add(-5 * time.Minute).Unix()
		}), wantError: "invalid_grant"},
		{name: "replayed jti", assertion: replayed, wantError: "invalid_grant"},
		{name: "signed by a key the provider does not publish", assertion: j.idp.sign(t, j.idp.forgery, "oauth-id-jag+jwt", j.claims("forged")), wantError: "invalid_grant"},
		{name: "a resource not served here", assertion: with("res", func(c map[string]any) { c["resource"] = "https://elsewhere.example/mcp" }), wantError: "invalid_grant"},
		{name: "a resource parameter outside the grant", assertion: good("resparam"), extra: url.Values{"resource": {"https://elsewhere.example/mcp"}}, wantError: "invalid_target"},
		{name: "scopes all outside the grant", assertion: good("scope"), extra: url.Values{"scope": {"slack:write"}}, wantError: "invalid_scope"},
		{name: "a person in no group policy maps", assertion: with("nogroup", func(c map[string]any) { c["groups"] = []string{"visitors"} }), wantError: "access_denied"},
		{name: "no assertion", assertion: "", wantError: "invalid_request"},
		{name: "garbage", assertion: "not.a.jwt", wantError: "invalid_grant"},
		{name: "a client not registered for the grant", client: "plain", assertion: good("plain"), wantError: "unauthorized_client"},
		{name: "a public client", client: "public", assertion: good("public"), wantError: "unauthorized_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, secret := j.agent, j.secret
			switch tc.client {
			case "plain":
				client, secret = j.plain, j.plainSecret
			case "public":
				client, secret = j.public, ""
			}
			status, out := j.redeem(client, secret, tc.assertion, tc.extra)
			if status == http.StatusOK || out["error"] != tc.wantError || out["access_token"] != nil {
				t.Fatalf("got %d %v, want error %s", status, out, tc.wantError)
			}
		})
	}
	// A refused grant spends nothing: its jti is still good in a good grant.
	if status, out := j.redeem(j.agent, j.secret, good("aud"), nil); status != http.StatusOK {
		t.Fatalf("a jti only a refused grant carried: %d %v", status, out)
	}
}

// TestIDJAGGrantNotOffered: without a provider the grant is not offered,
// nor advertised.
func TestIDJAGGrantNotOffered(t *testing.T) {
	ta := newTestAS(t)
	if slices.Contains(ta.as.Metadata()["grant_types_supported"].([]string), asrv.GrantTypeJWTBearer) || ta.as.Metadata()["authorization_grant_profiles_supported"] != nil {
		t.Fatal("the jwt-bearer grant is advertised without a provider")
	}
	status, out := ta.form(asrv.PathToken, "", "", url.Values{"grant_type": {asrv.GrantTypeJWTBearer}, "assertion": {"x"}, "client_id": {"nobody"}})
	if status == http.StatusOK {
		t.Fatalf("jwt-bearer without a provider: %d %v", status, out)
	}
}

// TestIDJAGGrantForAMetadataDocumentClient: a client that is not
// registered here but known by its Client ID Metadata Document redeems an
// ID-JAG authenticating with private_key_jwt (as the extension allows);
// the same document without private_key_jwt is not a client of the grant.
func TestIDJAGGrantForAMetadataDocumentClient(t *testing.T) {
	op := newJagIDP(t)
	host, cfg := newCIMDHost(t)
	pol := &admitCIMD{}
	ta := newTestAS(t, withMetadata(t, cfg), func(c *asrv.Config) {
		pol.next = c.Policy
		c.Policy = pol
		p, err := idp.New(identity.OIDCConfig{Issuer: op.issuer, ClientID: "pbac"}, idp.Options{ASIssuer: c.Issuer})
		if err != nil {
			t.Fatal(err)
		}
		c.Assertions = p
	})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var set map[string]any
	raw, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Use: "sig", Algorithm: "ES256"}}})
	_ = json.Unmarshal(raw, &set)
	host.publish("/jwks.json", set)
	id := host.publish("/enterprise/client.json", map[string]any{
		"client_name": "Enterprise Agent", "redirect_uris": []string{}, "grant_types": []string{asrv.GrantJWTBearer},
		"response_types": []string{}, "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": host.srv.URL + "/jwks.json",
	})
	clientAssertion := func() string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		out, err := jwt.Signed(s).Claims(jwt.Claims{Issuer: id, Subject: id, Audience: jwt.Audience{ta.srv.URL + asrv.PathToken}, ID: rand.Text(),
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	now := time.Now()
	jag := op.sign(t, op.key, "oauth-id-jag+jwt", map[string]any{
		"iss": op.issuer, "sub": "dana", "aud": ta.srv.URL, "client_id": id, "jti": "cimd-1",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "resource": ta.resource, "scope": "jira:read", "groups": []string{"engineering"},
	})
	status, out := ta.form(asrv.PathToken, "", "", url.Values{"grant_type": {asrv.GrantTypeJWTBearer}, "assertion": {jag}, "client_id": {id},
		"client_assertion_type": {cimd.ClientAssertionType}, "client_assertion": {clientAssertion()}})
	if status != http.StatusOK || out["scope"] != "jira:read" {
		t.Fatalf("a metadata document's client redeems an ID-JAG: %d %v", status, out)
	}
	// Policy decided the grant for dana, as the client of the document.
	// (The shipped policy gives such clients nothing at introspection:
	// the attestation policy is issue 17's.)
	pol.mu.Lock()
	var seen struct {
		Client struct {
			ClientID string `json:"client_id"`
		} `json:"client"`
		Subject struct {
			Sub    string   `json:"sub"`
			Groups []string `json:"groups"`
		} `json:"subject"`
		Request struct {
			GrantType string `json:"grant_type"`
		} `json:"request"`
	}
	if len(pol.seen) > 0 {
		_ = json.Unmarshal(pol.seen[len(pol.seen)-1], &seen)
	}
	pol.mu.Unlock()
	if seen.Client.ClientID != id || seen.Subject.Sub != "dana" || !slices.Equal(seen.Subject.Groups, []string{"engineering"}) ||
		seen.Request.GrantType != asrv.GrantTypeJWTBearer {
		t.Fatalf("policy saw %+v", seen)
	}
	// Without its client assertion it is not authenticated.
	status, out = ta.form(asrv.PathToken, "", "", url.Values{"grant_type": {asrv.GrantTypeJWTBearer}, "assertion": {jag}, "client_id": {id}})
	if status == http.StatusOK {
		t.Fatalf("an ID-JAG redeemed without the client's assertion: %d %v", status, out)
	}
}

// TestIDJAGIssuedBeforeARevocation: an ID-JAG the provider issued before
// "revoke everything acting for dana" is refused after it (the grant's
// sign-in time is the ID-JAG's iat, not its redemption), and one issued
// after the revocation is accepted.
func TestIDJAGIssuedBeforeARevocation(t *testing.T) {
	j := newJagAS(t)
	c := j.claims("before-revocation")
	c["iat"] = time.Now().Add(-2 * time.Minute).Unix()
	before := j.idp.sign(t, j.idp.key, "oauth-id-jag+jwt", c)
	if _, err := j.as.RevokeSubject(t.Context(), "dana"); err != nil {
		t.Fatal(err)
	}
	if status, out := j.redeem(j.agent, j.secret, before, nil); status == http.StatusOK {
		t.Fatalf("an ID-JAG issued before the revocation got a token after it: %v", out)
	}
	time.Sleep(1100 * time.Millisecond) // sign-in times are kept to the second
	after := j.idp.sign(t, j.idp.key, "oauth-id-jag+jwt", j.claims("after-revocation"))
	if status, out := j.redeem(j.agent, j.secret, after, nil); status != http.StatusOK {
		t.Fatalf("an ID-JAG issued after the revocation: %d %v", status, out)
	}
}

// TestIDJAGEmailSubjectMustBeVerified: with subject_claim email, the
// address names the person only when the provider says it verified it: a
// missing email_verified is refused like a false one.
func TestIDJAGEmailSubjectMustBeVerified(t *testing.T) {
	op := newJagIDP(t)
	ta := newTestAS(t, func(c *asrv.Config) {
		p, err := idp.New(identity.OIDCConfig{Issuer: op.issuer, ClientID: "pbac", SubjectClaim: "email"}, idp.Options{ASIssuer: c.Issuer})
		if err != nil {
			t.Fatal(err)
		}
		c.Assertions = p
	})
	j := &jagAS{testAS: ta, idp: op}
	agent := ta.register(map[string]any{
		"client_name": "enterprise agent", "grant_types": []string{asrv.GrantJWTBearer}, "token_endpoint_auth_method": asrv.AuthMethodSecretBasic,
		"redirect_uris": []string{"http://127.0.0.1:43161/cb"}, "response_types": []string{},
		"software_statement": ta.statement("claude-code", false),
	})
	j.agent, j.secret = agent["client_id"].(string), agent["client_secret"].(string)
	for _, tc := range []struct {
		name     string
		verified any // nil: no email_verified claim
		ok       bool
	}{{"absent", nil, false}, {"false", false, false}, {"a string", "true", false}, {"true", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := j.claims("email-" + tc.name)
			c["email"] = "dana@example.com"
			if tc.verified != nil {
				c["email_verified"] = tc.verified
			}
			status, out := j.redeem(j.agent, j.secret, j.idp.sign(t, j.idp.key, "oauth-id-jag+jwt", c), nil)
			if (status == http.StatusOK) != tc.ok {
				t.Fatalf("email_verified %v: %d %v", tc.verified, status, out)
			}
			if tc.ok {
				if sub := j.introspect(out["access_token"].(string))["sub"]; sub != "dana@example.com" {
					t.Fatalf("sub = %v", sub)
				}
			}
		})
	}
}
