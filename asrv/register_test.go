package asrv

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"golang.org/x/crypto/bcrypt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const regLoopbackCB = `"redirect_uris": ["http://127.0.0.1:8976/callback"]`

func TestRegisterParseRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want string // RFC 7591 error code, "" = accepted
	}{
		// Redirect URIs.
		{"redirect uris required for authorization_code", `{"client_name": "x"}`, ErrCodeInvalidRedirectURI},
		{"redirect uris empty array for authorization_code", `{"redirect_uris": []}`, ErrCodeInvalidRedirectURI},
		{"redirect uri must be absolute", `{"redirect_uris": ["/callback"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri must not have a fragment", `{"redirect_uris": ["https://app.example/cb#frag"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri must not have an empty fragment", `{"redirect_uris": ["https://app.example/cb#"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri https accepted", `{"redirect_uris": ["https://app.example/cb?x=1"]}`, ""},
		{"redirect uri https needs a host", `{"redirect_uris": ["https:///cb"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri https opaque refused", `{"redirect_uris": ["https:app.example"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri http non-loopback refused", `{"redirect_uris": ["http://app.example/cb"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri http loopback look-alike refused", `{"redirect_uris": ["http://127.0.0.1.evil.example/cb"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri http 127.0.0.1 any port", `{"redirect_uris": ["http://127.0.0.1:49152/cb", "http://127.0.0.1/cb"]}`, ""},
		{"redirect uri http [::1] any port", `{"redirect_uris": ["http://[::1]:8080/cb"]}`, ""},
		{"redirect uri http localhost", `{"redirect_uris": ["http://localhost:3000/cb"]}`, ""},
		{"redirect uri private-use scheme with a dot", `{"redirect_uris": ["com.example.app:/oauth2redirect"]}`, ""},
		{"redirect uri private-use scheme without a dot refused", `{"redirect_uris": ["myapp:/cb"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri javascript refused", `{"redirect_uris": ["javascript:alert(1)"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri data refused", `{"redirect_uris": ["data:text/html,x"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri userinfo refused", `{"redirect_uris": ["https://user@app.example/cb"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri with spaces refused", `{"redirect_uris": ["https://app.example/a b"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uri non-ASCII refused", `{"redirect_uris": ["https://äpp.example/cb"]}`, ErrCodeInvalidRedirectURI},
		{"redirect uris must be an array", `{"redirect_uris": "https://app.example/cb"}`, ErrCodeInvalidRedirectURI},
		{"redirect uris elements must be strings", `{"redirect_uris": [null]}`, ErrCodeInvalidRedirectURI},
		{"redirect uris too many", `{"redirect_uris": [` + strings.TrimSuffix(strings.Repeat(`"https://a.example/cb",`, 33), ",") + `]}`, ErrCodeInvalidRedirectURI},

		// Grant and response types.
		{"grant types default authorization_code", `{` + regLoopbackCB + `}`, ""},
		{"grant type implicit refused", `{` + regLoopbackCB + `, "grant_types": ["implicit"]}`, ErrCodeInvalidClientMetadata},
		{"grant type password refused", `{` + regLoopbackCB + `, "grant_types": ["authorization_code", "password"]}`, ErrCodeInvalidClientMetadata},
		{"grant types empty refused", `{` + regLoopbackCB + `, "grant_types": []}`, ErrCodeInvalidClientMetadata},
		{"grant types all supported", `{` + regLoopbackCB + `, "grant_types": ["authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]}`, ""},
		{"response type token refused", `{` + regLoopbackCB + `, "response_types": ["token"]}`, ErrCodeInvalidClientMetadata},
		{"response type code without authorization_code refused", `{"grant_types": ["client_credentials"], "response_types": ["code"]}`, ErrCodeInvalidClientMetadata},
		{"authorization_code without response type code refused", `{` + regLoopbackCB + `, "response_types": []}`, ErrCodeInvalidClientMetadata},
		{"grant types wrong type", `{` + regLoopbackCB + `, "grant_types": "authorization_code"}`, ErrCodeInvalidClientMetadata},

		// Client authentication.
		{"auth method none is public", `{` + regLoopbackCB + `, "token_endpoint_auth_method": "none"}`, ""},
		{"auth method client_secret_post", `{` + regLoopbackCB + `, "token_endpoint_auth_method": "client_secret_post"}`, ""},
		{"auth method private_key_jwt refused", `{` + regLoopbackCB + `, "token_endpoint_auth_method": "private_key_jwt"}`, ErrCodeInvalidClientMetadata},
		{"client_credentials requires a confidential client", `{"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}`, ErrCodeInvalidClientMetadata},
		{"client_credentials confidential without redirect uris", `{"grant_types": ["client_credentials"]}`, ""},

		// Scope.
		{"scope space-delimited", `{` + regLoopbackCB + `, "scope": "drive:read jira:write mcp"}`, ""},
		{"scope double space refused", `{` + regLoopbackCB + `, "scope": "drive:read  jira:write"}`, ErrCodeInvalidClientMetadata},
		{"scope leading space refused", `{` + regLoopbackCB + `, "scope": " drive:read"}`, ErrCodeInvalidClientMetadata},
		{"scope tab refused", `{` + regLoopbackCB + `, "scope": "a\tb"}`, ErrCodeInvalidClientMetadata},
		{"scope quote refused", `{` + regLoopbackCB + `, "scope": "a\"b"}`, ErrCodeInvalidClientMetadata},
		{"scope backslash refused", `{` + regLoopbackCB + `, "scope": "a\\b"}`, ErrCodeInvalidClientMetadata},
		{"scope non-ASCII refused", `{` + regLoopbackCB + `, "scope": "drïve"}`, ErrCodeInvalidClientMetadata},
		{"scope wrong type", `{` + regLoopbackCB + `, "scope": ["a"]}`, ErrCodeInvalidClientMetadata},

		// Descriptive metadata.
		{"client name 200 chars", `{` + regLoopbackCB + `, "client_name": "` + strings.Repeat("é", 200) + `"}`, ""},
		{"client name over 200 chars refused", `{` + regLoopbackCB + `, "client_name": "` + strings.Repeat("a", 201) + `"}`, ErrCodeInvalidClientMetadata},
		{"client name control characters refused", `{` + regLoopbackCB + `, "client_name": "a\u001b[31m"}`, ErrCodeInvalidClientMetadata},
		{"client name wrong type", `{` + regLoopbackCB + `, "client_name": 7}`, ErrCodeInvalidClientMetadata},
		{"client uri https", `{` + regLoopbackCB + `, "client_uri": "https://app.example"}`, ""},
		{"client uri javascript refused", `{` + regLoopbackCB + `, "client_uri": "javascript:alert(1)"}`, ErrCodeInvalidClientMetadata},
		{"software statement oversize", `{` + regLoopbackCB + `, "software_statement": "` + strings.Repeat("a", MaxStatementSize+1) + `"}`, ErrCodeInvalidSoftwareStatement},

		// Body.
		{"unknown fields ignored", `{` + regLoopbackCB + `, "logo_uri": "https://x", "jwks": {"keys": []}, "agent_provider": "claude-code-trusted"}`, ""},
		{"null members are absent", `{` + regLoopbackCB + `, "client_name": null, "grant_types": null}`, ""},
		{"member names match exactly", `{"Redirect_URIs": ["http://127.0.0.1/cb"]}`, ErrCodeInvalidRedirectURI},
		{"duplicate keys refused", `{` + regLoopbackCB + `, "client_name": "a", "client_name": "b"}`, ErrCodeInvalidClientMetadata},
		{"duplicate keys in a nested unknown member refused", `{` + regLoopbackCB + `, "x": {"a": 1, "a": 2}}`, ErrCodeInvalidClientMetadata},
		{"escaped duplicate keys refused", `{` + regLoopbackCB + `, "scope": "a", "sc\u006fpe": "b"}`, ErrCodeInvalidClientMetadata},
		{"body must be an object", `[` + regLoopbackCB + `]`, ErrCodeInvalidClientMetadata},
		{"body null refused", `null`, ErrCodeInvalidClientMetadata},
		{"body empty refused", ``, ErrCodeInvalidClientMetadata},
		{"body invalid JSON refused", `{"redirect_uris": [}`, ErrCodeInvalidClientMetadata},
		{"body trailing data refused", `{` + regLoopbackCB + `} {}`, ErrCodeInvalidClientMetadata},
		{"body invalid UTF-8 refused", "{" + regLoopbackCB + ", \"client_name\": \"\xff\"}", ErrCodeInvalidClientMetadata},
		{"body nested too deeply refused", `{` + regLoopbackCB + `, "x": ` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, ErrCodeInvalidClientMetadata},
		{"body over 64 KiB refused", `{` + regLoopbackCB + `, "x": "` + strings.Repeat("a", MaxRegistrationSize) + `"}`, ErrCodeInvalidClientMetadata},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseRegistration([]byte(tc.body))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if req == nil {
					t.Fatal("nil request")
				}
				return
			}
			var re *RegistrationError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a RegistrationError %s", err, tc.want)
			}
			if re.Code != tc.want {
				t.Fatalf("code %s (%s), want %s", re.Code, re.Description, tc.want)
			}
			if re.StatusCode() != 400 || re.Description == "" {
				t.Fatalf("bad error %+v", re)
			}
		})
	}
}

func TestRegisterDefaults(t *testing.T) {
	req, err := ParseRegistration([]byte(`{` + regLoopbackCB + `, "scope": "a b a"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(req.GrantTypes, []string{GrantAuthorizationCode}) ||
		!slices.Equal(req.ResponseTypes, []string{"code"}) ||
		req.TokenEndpointAuthMethod != AuthMethodSecretBasic {
		t.Fatalf("defaults: %+v", req)
	}
	req, err = ParseRegistration([]byte(`{"grant_types": ["client_credentials"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(req.ResponseTypes) != 0 {
		t.Fatalf("client_credentials client got response types %v", req.ResponseTypes)
	}
}

func TestRegisterMetadataNeverSetsAgentClaims(t *testing.T) {
	body := `{` + regLoopbackCB + `, "token_endpoint_auth_method": "none",
		"software_id": "claimed", "agent_provider": "claude-code-trusted", "agent_model": "x",
		"single_use_access_tokens": false, "agent": {"verified": true, "agent_provider": "claude-code-trusted"},
		"verified": true}`
	req, err := ParseRegistration([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	ks := loadStatementKeys(t)
	c, secret, _, err := NewClient(req, stmtTestVerifier(t, ks), stmtNow)
	if err != nil {
		t.Fatal(err)
	}
	if c.Agent != (AgentClaims{}) {
		t.Fatalf("metadata became agent claims: %+v", c.Agent)
	}
	if secret != "" || c.SecretHash != nil || !c.IsPublic() {
		t.Fatal("public client got a secret")
	}
	resp := RegistrationResponse(c, secret, "", "")
	if _, ok := resp["software_id"]; ok {
		t.Fatal("unverified software_id echoed as if verified")
	}
	if resp["agent"].(AgentClaims).Verified {
		t.Fatal("response says verified")
	}
}

func TestRegisterWithStatement(t *testing.T) {
	ks := loadStatementKeys(t)
	v := stmtTestVerifier(t, ks)
	good := stmtSign(t, jose.EdDSA, ks.ed, stmtEdKID, stmtClaims(stmtEdIssuer))
	for _, tc := range []struct {
		name string
		jws  string
		v    *StatementVerifier
		want string
	}{
		{"verified statement sets claims", good, v, ""},
		{"expired statement is invalid_software_statement",
			stmtSign(t, jose.EdDSA, ks.ed, stmtEdKID, stmtClaims(stmtEdIssuer, claimSet("exp", stmtNow.Unix()-1))), v, ErrCodeInvalidSoftwareStatement},
		{"malformed statement is invalid_software_statement", "garbage", v, ErrCodeInvalidSoftwareStatement},
		{"unknown issuer is unapproved_software_statement",
			stmtSign(t, jose.EdDSA, ks.ed, stmtEdKID, stmtClaims("https://evil.example")), v, ErrCodeUnapprovedSoftwareStatement},
		{"wrong key is unapproved_software_statement",
			stmtSign(t, jose.EdDSA, ks.edOther, stmtEdKID, stmtClaims(stmtEdIssuer)), v, ErrCodeUnapprovedSoftwareStatement},
		{"no trusted issuers is unapproved_software_statement", good, nil, ErrCodeUnapprovedSoftwareStatement},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{
				"redirect_uris": []string{"http://127.0.0.1/cb"}, "token_endpoint_auth_method": "none",
				"software_id": "from-metadata", "software_statement": tc.jws,
			})
			req, err := ParseRegistration(body)
			if err != nil {
				t.Fatal(err)
			}
			c, _, _, err := NewClient(req, tc.v, stmtNow)
			if tc.want != "" {
				var re *RegistrationError
				if !errors.As(err, &re) || re.Code != tc.want {
					t.Fatalf("err = %v, want %s", err, tc.want)
				}
				if strings.Contains(re.Description, tc.jws) {
					t.Fatal("error echoes the statement")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := AgentClaims{Verified: true, Issuer: stmtEdIssuer, SoftwareID: "4f9c2b1e-claude-code",
				AgentProvider: "claude-code", AgentModel: "claude-opus-4", SingleUseAccessTokens: true,
				StatementID: "statement-1", KeyID: stmtEdKID}
			if c.Agent != want {
				t.Fatalf("claims %+v, want %+v", c.Agent, want)
			}
			resp := RegistrationResponse(c, "", "", "")
			if resp["software_statement"] != tc.jws || resp["software_id"] != want.SoftwareID {
				t.Fatalf("response %v", resp)
			}
		})
	}
}

func TestRegisterNewClientSecretsAndTokens(t *testing.T) {
	req, err := ParseRegistration([]byte(`{` + regLoopbackCB + `, "client_name": "CI bot", "scope": "jira:write drive:read",
		"grant_types": ["authorization_code", "refresh_token", "client_credentials"]}`))
	if err != nil {
		t.Fatal(err)
	}
	c, secret, regToken, err := NewClient(req, nil, stmtNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ID) != 22 || secret == "" || regToken == "" || c.IsPublic() {
		t.Fatalf("id %q secret %q token %q", c.ID, secret, regToken)
	}
	if err := (secretHasher{}).Compare(t.Context(), c.SecretHash, []byte(secret)); err != nil {
		t.Fatalf("secret hash does not match: %v", err)
	}
	if err := (secretHasher{}).Compare(t.Context(), c.SecretHash, []byte(secret+"x")); err == nil {
		t.Fatal("a wrong secret matches the hash")
	}
	if strings.Contains(string(c.SecretHash), secret) {
		t.Fatal("secret stored in clear")
	}
	if h := sha256.Sum256([]byte(regToken)); !slices.Equal(h[:], c.RegistrationTokenHash) {
		t.Fatal("registration token hash is not its SHA-256")
	}
	if !CheckRegistrationToken(c, regToken) {
		t.Fatal("registration token refused")
	}
	for _, bad := range []string{"", secret, regToken + "x", strings.ToUpper(regToken)} {
		if CheckRegistrationToken(c, bad) {
			t.Fatalf("accepted %q", bad)
		}
	}
	if CheckRegistrationToken(nil, regToken) || CheckRegistrationToken(&Client{}, regToken) {
		t.Fatal("accepted for a client without a token hash")
	}
	if !slices.Equal(c.Scopes, []string{"jira:write", "drive:read"}) || c.Name != "CI bot" || !c.CreatedAt.Equal(stmtNow) {
		t.Fatalf("client %+v", c)
	}

	c2, secret2, regToken2, err := NewClient(req, nil, stmtNow)
	if err != nil {
		t.Fatal(err)
	}
	if c2.ID == c.ID || secret2 == secret || regToken2 == regToken {
		t.Fatal("identifiers repeat")
	}

	resp := RegistrationResponse(c, secret, regToken, "https://as.example/register/"+c.ID)
	data, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"client_id": c.ID, "client_secret": secret, "client_secret_expires_at": float64(0),
		"client_id_issued_at": float64(stmtNow.Unix()), "registration_access_token": regToken,
		"registration_client_uri":    "https://as.example/register/" + c.ID,
		"token_endpoint_auth_method": "client_secret_basic", "client_name": "CI bot",
		"scope": "jira:write drive:read",
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if agent, ok := got["agent"].(map[string]any); !ok || agent["verified"] != false {
		t.Errorf("agent = %v", got["agent"])
	}
	if _, ok := got["secret_hash"]; ok {
		t.Error("response leaks the secret hash")
	}
	// A read (RFC 7592) without secret or token omits them.
	read := RegistrationResponse(c, "", "", "")
	for _, k := range []string{"client_secret", "client_secret_expires_at", "registration_access_token"} {
		if _, ok := read[k]; ok {
			t.Errorf("read response has %s", k)
		}
	}
}

func TestRegisterNewClientValidatesDirectRequests(t *testing.T) {
	req := &RegistrationRequest{RedirectURIs: []string{"http://evil.example/cb"}}
	_, _, _, err := NewClient(req, nil, stmtNow)
	var re *RegistrationError
	if !errors.As(err, &re) || re.Code != ErrCodeInvalidRedirectURI {
		t.Fatalf("err = %v", err)
	}
	if req.GrantTypes != nil {
		t.Fatal("NewClient modified the caller's request")
	}
	if _, _, _, err := NewClient(nil, nil, stmtNow); err == nil {
		t.Fatal("nil request accepted")
	}
}

// registrationSeeds seed FuzzParseRegistration; TestRegisterFuzzSeeds runs
// them under the plain test runner too.
var registrationSeeds = []string{
	`{` + regLoopbackCB + `}`,
	`{"redirect_uris": ["https://app.example/cb"], "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none", "scope": "a b"}`,
	`{"grant_types": ["client_credentials"], "client_name": "bot"}`,
	`{"redirect_uris": ["com.example.app:/cb", "http://[::1]:1/x"], "response_types": ["code"], "client_uri": "https://x.example"}`,
	`{"a": {"b": [1, 2, {"c": null}]}, "redirect_uris": ["http://localhost/cb"]}`,
	`{"redirect_uris": ["http://127.0.0.1/cb"], "redirect_uris": []}`,
	`[]`, `{}`, `null`, `{"scope": "\u0000"}`,
}

var (
	regFuzzGrants = map[string]bool{GrantAuthorizationCode: true, GrantRefreshToken: true,
		GrantClientCredentials: true, GrantTokenExchange: true}
	regFuzzCodes = map[string]bool{ErrCodeInvalidRedirectURI: true, ErrCodeInvalidClientMetadata: true,
		ErrCodeInvalidSoftwareStatement: true, ErrCodeUnapprovedSoftwareStatement: true}
)

// checkRegistrationInvariants holds for every body: errors are RFC 7591
// errors; accepted requests satisfy every validation rule.
func checkRegistrationInvariants(t *testing.T, body []byte) {
	req, err := ParseRegistration(body)
	if err != nil {
		var re *RegistrationError
		if !errors.As(err, &re) || !regFuzzCodes[re.Code] || req != nil {
			t.Fatalf("bad error %v", err)
		}
		return
	}
	if len(body) > MaxRegistrationSize {
		t.Fatal("accepted an oversize body")
	}
	authCode := false
	for _, g := range req.GrantTypes {
		if !regFuzzGrants[g] {
			t.Fatalf("grant type %q accepted", g)
		}
		authCode = authCode || g == GrantAuthorizationCode
	}
	if len(req.GrantTypes) == 0 {
		t.Fatal("no grant types")
	}
	if authCode != slices.Contains(req.ResponseTypes, "code") || len(req.ResponseTypes) > 1 {
		t.Fatalf("response types %v with grants %v", req.ResponseTypes, req.GrantTypes)
	}
	if authCode && len(req.RedirectURIs) == 0 {
		t.Fatal("authorization_code without redirect uris")
	}
	for _, u := range req.RedirectURIs {
		if strings.ContainsAny(u, "# ") || checkRedirectURI(u) != nil {
			t.Fatalf("bad redirect uri %q accepted", u)
		}
		if strings.HasPrefix(u, "http:") && !strings.HasPrefix(u, "http://127.0.0.1") &&
			!strings.HasPrefix(u, "http://[::1]") && !strings.HasPrefix(strings.ToLower(u), "http://localhost") {
			t.Fatalf("non-loopback http redirect %q accepted", u)
		}
	}
	switch req.TokenEndpointAuthMethod {
	case AuthMethodNone:
		if slices.Contains(req.GrantTypes, GrantClientCredentials) {
			t.Fatal("public client_credentials client")
		}
	case AuthMethodSecretBasic, AuthMethodSecretPost:
	default:
		t.Fatalf("auth method %q", req.TokenEndpointAuthMethod)
	}
	// Validation is idempotent.
	again := *req
	if err := again.Validate(); err != nil {
		t.Fatalf("revalidation failed: %v", err)
	}
	// Public clients without a statement always yield unverified clients.
	if req.TokenEndpointAuthMethod == AuthMethodNone && req.SoftwareStatement == "" {
		c, secret, _, err := NewClient(req, nil, stmtNow)
		if err != nil || secret != "" || c.Agent != (AgentClaims{}) {
			t.Fatalf("NewClient: %v, %q, %+v", err, secret, c)
		}
	}
}

func TestRegisterFuzzSeeds(t *testing.T) {
	for _, s := range registrationSeeds {
		checkRegistrationInvariants(t, []byte(s))
	}
}

func FuzzParseRegistration(f *testing.F) {
	for _, s := range registrationSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkRegistrationInvariants)
}

func TestSecretHasherVerifiesBcrypt(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("old-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := (secretHasher{}).Compare(t.Context(), h, []byte("old-secret")); err != nil {
		t.Fatalf("bcrypt hash does not verify: %v", err)
	}
	if err := (secretHasher{}).Compare(t.Context(), h, []byte("wrong")); err == nil {
		t.Fatal("wrong secret verifies against a bcrypt hash")
	}
}

// TestRegistrationApplicationType: application_type (SEP-837; OIDC DCR
// §2) is native or web, checked against the redirect URIs, inferred from
// them when left out, stored on the client and returned.
func TestRegistrationApplicationType(t *testing.T) {
	const (
		loopback = "http://127.0.0.1:33418/callback"
		localh   = "http://localhost:8080/mcp/oauth/callback"
		private  = "com.example.agent:/oauth"
		web      = "https://agent.example/cb"
		webLocal = "https://localhost/cb"
	)
	for _, tc := range []struct {
		name     string
		appType  string
		redirect []string
		grants   []string
		want     string // stored type; "" when refused
		code     string // error code when refused
	}{
		{"native loopback", "native", []string{loopback}, nil, ApplicationTypeNative, ""},
		{"native localhost", "native", []string{localh}, nil, ApplicationTypeNative, ""},
		{"native private-use scheme", "native", []string{private, loopback}, nil, ApplicationTypeNative, ""},
		{"native refuses https", "native", []string{web}, nil, "", ErrCodeInvalidRedirectURI},
		{"native refuses one https among loopback", "native", []string{loopback, web}, nil, "", ErrCodeInvalidRedirectURI},
		{"web https", "web", []string{web}, nil, ApplicationTypeWeb, ""},
		{"web refuses loopback http", "web", []string{loopback}, nil, "", ErrCodeInvalidRedirectURI},
		{"web refuses https localhost", "web", []string{webLocal}, nil, "", ErrCodeInvalidRedirectURI},
		{"web refuses private-use scheme", "web", []string{private}, nil, "", ErrCodeInvalidRedirectURI},
		{"omitted, loopback: native", "", []string{loopback}, nil, ApplicationTypeNative, ""},
		{"omitted, private-use scheme: native", "", []string{private}, nil, ApplicationTypeNative, ""},
		{"omitted, https: web", "", []string{web}, nil, ApplicationTypeWeb, ""},
		{"omitted, mixed: refused", "", []string{loopback, web}, nil, "", ErrCodeInvalidRedirectURI},
		{"omitted, no redirect: web", "", nil, []string{GrantClientCredentials}, ApplicationTypeWeb, ""},
		{"native without redirect", "native", nil, []string{GrantClientCredentials}, ApplicationTypeNative, ""},
		{"unknown type", "desktop", []string{loopback}, nil, "", ErrCodeInvalidClientMetadata},
		{"case matters", "Native", []string{loopback}, nil, "", ErrCodeInvalidClientMetadata},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"redirect_uris": tc.redirect}
			if tc.appType != "" {
				body["application_type"] = tc.appType
			}
			if tc.grants != nil {
				body["grant_types"] = tc.grants
			}
			raw, _ := json.Marshal(body)
			req, err := ParseRegistration(raw)
			if tc.want == "" {
				var re *RegistrationError
				if !errors.As(err, &re) || re.Code != tc.code {
					t.Fatalf("ParseRegistration = %v, want %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRegistration: %v", err)
			}
			c, _, _, err := NewClient(req, nil, time.Now())
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			if c.ApplicationType != tc.want {
				t.Fatalf("stored application_type %q, want %q", c.ApplicationType, tc.want)
			}
			if got := RegistrationResponse(c, "", "", "")["application_type"]; got != tc.want {
				t.Fatalf("response application_type %v, want %q", got, tc.want)
			}
		})
	}
}

// TestRegistrationApplicationTypeType: a non-string application_type is
// invalid client metadata.
func TestRegistrationApplicationTypeType(t *testing.T) {
	_, err := ParseRegistration([]byte(`{"redirect_uris":["http://127.0.0.1/cb"],"application_type":["native"]}`))
	var re *RegistrationError
	if !errors.As(err, &re) || re.Code != ErrCodeInvalidClientMetadata {
		t.Fatalf("ParseRegistration = %v, want invalid_client_metadata", err)
	}
}
