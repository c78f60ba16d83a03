package authsuite

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"github.com/pbac-gateway/pbac/conformance"
)

const mcpAuth = "MCP 2025-11-25 Authorization"

// checks is the suite in order: discovery first (later checks need the
// metadata), then registration, the authorization endpoint's refusals, the
// code flow and what it yields, and the token endpoint's attacks.
func checks() []check {
	cs := []check{
		{"challenge-401", "a request without a token gets 401 with WWW-Authenticate Bearer resource_metadata",
			mcpAuth + " §Protected Resource Metadata Discovery Requirements; RFC 9728 §5.1", false, (*suite).checkChallenge},
		{"prm-document", "the protected resource metadata names this resource and at least one authorization server",
			mcpAuth + " §Authorization Server Location; RFC 9728 §2, §3.3", false, (*suite).checkPRM},
		{"prm-well-known", "the metadata is at the path-inserted well-known URL of the resource",
			"RFC 9728 §3.1; " + mcpAuth + " §Protected Resource Metadata Discovery Requirements", false, (*suite).checkPRMWellKnown},
		{"as-metadata", "the AS metadata is at the well-known URL of the issuer and its issuer is identical",
			mcpAuth + " §Authorization Server Metadata Discovery; RFC 8414 §3, §3.3", false, (*suite).checkASMetadata},
		{"as-metadata-fields", "the AS metadata has the required members and code response type",
			"RFC 8414 §2; OAuth 2.1 §4.1", false, (*suite).checkASFields},
		{"as-pkce-s256", "code_challenge_methods_supported lists S256 and not plain",
			mcpAuth + " §Authorization Code Protection; RFC 8414 §2; RFC 9700 §2.1.1", false, (*suite).checkPKCEMetadata},
		{"as-endpoints-secure", "every AS endpoint is https (or loopback http)",
			mcpAuth + " §Communication Security; OAuth 2.1 §1.5", false, (*suite).checkSecureEndpoints},
		{"dcr-register", "dynamic client registration answers 201 with the client id and the registered metadata",
			mcpAuth + " §Dynamic Client Registration; RFC 7591 §3.2.1", false, (*suite).checkDCR},
		{"dcr-confidential", "a confidential client registers and gets a client_secret",
			"RFC 7591 §3.2.1", false, (*suite).checkDCRConfidential},
		{"dcr-invalid-metadata", "invalid client metadata is refused with invalid_client_metadata",
			"RFC 7591 §3.2.2", false, dcrInvalid("invalid_client_metadata")},
		{"dcr-invalid-redirect", "invalid redirect URIs are refused with invalid_redirect_uri",
			"RFC 7591 §3.2.2; RFC 9700 §2.1; OAuth 2.1 §2.3.1", false, dcrInvalid("invalid_redirect_uri")},
	}
	cs = append(cs, authorizeChecks()...)
	cs = append(cs, []check{
		{"code-flow", "the authorization code flow with PKCE S256 and resource yields a bearer token (no-store)",
			mcpAuth + " §Authorization Flow Steps; OAuth 2.1 §4.1.3; RFC 6749 §5.1", false, (*suite).checkCodeFlow},
		{"mix-up-iss", "the authorization response's iss matches the metadata's authorization_response_iss_parameter_supported",
			"RFC 9700 §4.4.2; RFC 9207 §2, §3", false, (*suite).checkIss},
		{"token-accepted", "the token is accepted at the resource it was issued for",
			mcpAuth + " §Access Token Usage", false, (*suite).checkTokenAccepted},
		{"token-invalid", "an unknown token gets 401 with error=\"invalid_token\"",
			mcpAuth + " §Token Handling; RFC 6750 §3.1", false, (*suite).checkInvalidToken},
		{"token-in-query", "a token in the query string is not accepted",
			mcpAuth + " §Token Requirements; RFC 9700 §2.4", false, (*suite).checkTokenInQuery},
		{"token-other-audience", "a token for this resource is refused at another resource (replay at another audience)",
			mcpAuth + " §Token Audience Binding and Validation; RFC 8707 §2; RFC 9700 §4.10", false, (*suite).checkOtherAudience},
		{"resource-binding", "a token issued for another resource is refused here",
			mcpAuth + " §Resource Parameter Implementation; RFC 8707 §2", false, (*suite).checkResourceBinding},
		{"insufficient-scope", "a call the token lacks the scope for gets 403 with error=\"insufficient_scope\" and the scope",
			mcpAuth + " §Scope Challenge Handling; RFC 6750 §3.1", false, (*suite).checkInsufficientScope},
		{"origin-refused", "a request with a foreign Origin is refused with 403",
			"MCP 2025-11-25 Transports §Security Warning (Origin)", false, (*suite).checkOrigin},
		{"origin-own", "a request with the server's own Origin is not refused",
			"MCP 2025-11-25 Transports §Security Warning (Origin)", false, (*suite).checkOwnOrigin},
		{"no-token-passthrough", "the backend never sees the client's token",
			mcpAuth + " §Access Token Privilege Restriction; MCP Security Best Practices §Token Passthrough", true, (*suite).checkPassthrough},
		{"code-injection", "a code is refused for another client",
			"RFC 9700 §4.5; OAuth 2.1 §4.1.3", false, (*suite).checkCodeInjection},
		{"pkce-wrong-verifier", "a code is refused with the wrong code_verifier",
			"RFC 7636 §4.6; RFC 9700 §4.5.3", false, (*suite).checkWrongVerifier},
		{"pkce-downgrade", "a code issued with a challenge is refused without a code_verifier",
			"RFC 9700 §4.8; OAuth 2.1 §4.1.3", false, (*suite).checkNoVerifier},
		{"code-reuse", "a code is redeemed once only",
			"OAuth 2.1 §4.1.2; RFC 9700 §4.5", false, (*suite).checkCodeReuse},
		{"refresh-rotation", "a refresh gives a new refresh token; reusing the old one fails and revokes the family",
			"OAuth 2.1 §4.3.1; RFC 9700 §4.14.2", false, (*suite).checkRefreshReplay},
		{"introspect-auth", "introspection requires client authentication",
			"RFC 7662 §2.1, §4", false, (*suite).checkIntrospectAuth},
		{"introspect-junk", "introspecting junk answers {\"active\": false}",
			"RFC 7662 §2.2", false, (*suite).checkIntrospectJunk},
		{"introspect-active", "introspecting a live token answers active with scope, client_id, exp",
			"RFC 7662 §2.2", false, (*suite).checkIntrospectActive},
		{"introspect-allow-list", "a client anybody can register may not introspect another client's token",
			"RFC 7662 §2.1, §4; RFC 9700 §4.10", true, (*suite).checkIntrospectOthers},
		{"exchange-errors", "token exchange refuses a bad request with invalid_request",
			"RFC 8693 §2.1, §2.2.2", false, (*suite).checkExchangeErrors},
		{"exchange-shape", "token exchange answers with access_token, issued_token_type and token_type",
			"RFC 8693 §2.2.1", false, (*suite).checkExchange},
		{"revoke-unknown", "revoking an unknown token answers 200",
			"RFC 7009 §2.2", false, (*suite).checkRevokeUnknown},
		{"revoke-effective", "a revoked token is refused at the resource",
			"RFC 7009 §2.1, §2.2", false, (*suite).checkRevoke},
	}...)
	return cs
}

// --- discovery ---

func (s *suite) checkChallenge() (Status, string) {
	r, err := s.mcpPost(s.cfg.URL, "", initializeBody, nil)
	if err != nil {
		return fail("%v", err)
	}
	if r.status != http.StatusUnauthorized {
		return fail("want 401, got %s", r)
	}
	h := r.header.Get("WWW-Authenticate")
	scheme, params := authParams(h)
	if !strings.EqualFold(scheme, "Bearer") {
		return fail("WWW-Authenticate %q is not a Bearer challenge", h)
	}
	u := params["resource_metadata"]
	if u == "" {
		return fail("WWW-Authenticate %q has no resource_metadata", h)
	}
	if _, err := absURL(u); err != nil {
		return fail("resource_metadata: %v", err)
	}
	s.prmURL = u
	return pass("401, resource_metadata=%s", u)
}

func (s *suite) checkPRM() (Status, string) {
	u := s.prmURL
	if u == "" {
		u = wellKnown(s.cfg.URL, "oauth-protected-resource")
	}
	r, err := s.get(u)
	if err != nil {
		return fail("%v", err)
	}
	m := r.json()
	if r.status != http.StatusOK || m == nil {
		return fail("GET %s: %s", u, r)
	}
	s.prm = m
	res, _ := m["resource"].(string)
	if res != s.cfg.URL {
		return fail("resource is %q, want the MCP URL %q", res, s.cfg.URL)
	}
	as := stringList(m["authorization_servers"])
	if len(as) == 0 {
		return fail("authorization_servers is missing or empty")
	}
	for _, a := range as {
		if _, err := absURL(a); err != nil {
			return fail("authorization server %q: %v", a, err)
		}
	}
	return pass("resource=%s authorization_servers=%v", res, as)
}

// wellKnown inserts /.well-known/<name> between the host and the path
// (RFC 8414 §3.1, RFC 9728 §3.1).
func wellKnown(resource, name string) string {
	u, err := url.Parse(resource)
	if err != nil {
		return ""
	}
	path := strings.TrimSuffix(u.Path, "/")
	return u.Scheme + "://" + u.Host + "/.well-known/" + name + path
}

func (s *suite) checkPRMWellKnown() (Status, string) {
	u := wellKnown(s.cfg.URL, "oauth-protected-resource")
	r, err := s.get(u)
	if err != nil {
		return fail("%v", err)
	}
	if r.status != http.StatusOK {
		if s.prmURL != "" {
			return pass("not served at %s (%d); the challenge names %s, which clients use first", u, r.status, s.prmURL)
		}
		return fail("GET %s: %s, and the 401 named no metadata URL", u, r)
	}
	if res, _ := r.json()["resource"].(string); res != s.cfg.URL {
		return fail("%s has resource %q, want %q", u, res, s.cfg.URL)
	}
	return pass("%s", u)
}

func (s *suite) checkASMetadata() (Status, string) {
	if s.prm == nil {
		return skip("no protected resource metadata")
	}
	iss := stringList(s.prm["authorization_servers"])[0]
	// RFC 8414 path insertion first, then OpenID Connect discovery, as
	// the MCP specification has clients try them.
	tried := []string{wellKnown(iss, "oauth-authorization-server"), wellKnown(iss, "openid-configuration"),
		strings.TrimSuffix(iss, "/") + "/.well-known/openid-configuration"}
	for _, u := range tried {
		r, err := s.get(u)
		if err != nil {
			return fail("%v", err)
		}
		m := r.json()
		if r.status != http.StatusOK || m == nil {
			continue
		}
		s.asMeta = m
		got, _ := m["issuer"].(string)
		if got != iss {
			return fail("%s has issuer %q, not the authorization server's identifier %q", u, got, iss)
		}
		s.issuer = got
		return pass("%s, issuer %s", u, got)
	}
	return fail("no metadata at %v", tried)
}

func (s *suite) checkASFields() (Status, string) {
	if s.asMeta == nil {
		return skip("no AS metadata")
	}
	var missing []string
	for _, k := range []string{"issuer", "authorization_endpoint", "token_endpoint", "response_types_supported"} {
		if _, ok := s.asMeta[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fail("missing %v", missing)
	}
	if !containsFold(stringList(s.asMeta["response_types_supported"]), "code") {
		return fail("response_types_supported %v lacks code", s.asMeta["response_types_supported"])
	}
	if gt := stringList(s.asMeta["grant_types_supported"]); len(gt) > 0 {
		for _, bad := range []string{"implicit", "password"} {
			if containsFold(gt, bad) {
				return fail("grant_types_supported lists %s, which OAuth 2.1 removes", bad)
			}
		}
	}
	return pass("issuer, authorization_endpoint, token_endpoint, response_types_supported [code]")
}

func (s *suite) checkPKCEMetadata() (Status, string) {
	if s.asMeta == nil {
		return skip("no AS metadata")
	}
	m := stringList(s.asMeta["code_challenge_methods_supported"])
	if !containsFold(m, "S256") {
		return fail("code_challenge_methods_supported %v: MCP clients must refuse an AS that does not list S256", m)
	}
	if containsFold(m, "plain") {
		return fail("code_challenge_methods_supported lists plain")
	}
	return pass("%v", m)
}

func (s *suite) checkSecureEndpoints() (Status, string) {
	if s.asMeta == nil {
		return skip("no AS metadata")
	}
	for k, v := range s.asMeta {
		str, ok := v.(string)
		if !ok || !(k == "issuer" || strings.HasSuffix(k, "_endpoint")) {
			continue
		}
		u, err := url.Parse(str)
		if err != nil {
			return fail("%s %q: %v", k, str, err)
		}
		h := u.Hostname()
		if u.Scheme != "https" && !(u.Scheme == "http" && (h == "127.0.0.1" || h == "::1" || h == "localhost")) {
			return fail("%s %q is not https", k, str)
		}
	}
	return pass("every endpoint")
}

// --- registration ---

func (s *suite) register(meta map[string]any) (*response, error) {
	ep := s.endpoint("registration_endpoint")
	if ep == "" {
		return nil, errNoRegistration
	}
	raw, _ := json.Marshal(meta)
	return s.postJSON(ep, string(raw))
}

var errNoRegistration = fmt.Errorf("the AS metadata has no registration_endpoint")

func (s *suite) checkDCR() (Status, string) {
	if s.asMeta == nil {
		return skip("no AS metadata")
	}
	meta := map[string]any{"client_name": "pbac conformance (public)", "redirect_uris": []string{s.cfg.RedirectURI},
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
		"token_endpoint_auth_method": "none"}
	r, err := s.register(meta)
	if err == errNoRegistration {
		return skip("the AS does not offer dynamic client registration")
	}
	if err != nil {
		return fail("%v", err)
	}
	m := r.json()
	if r.status != http.StatusCreated {
		return fail("want 201, got %s", r)
	}
	id, _ := m["client_id"].(string)
	if id == "" {
		return fail("no client_id in %s", r)
	}
	if got := stringList(m["redirect_uris"]); len(got) != 1 || got[0] != s.cfg.RedirectURI {
		return fail("redirect_uris %v is not the registered %q", m["redirect_uris"], s.cfg.RedirectURI)
	}
	if m["token_endpoint_auth_method"] != "none" {
		return fail("token_endpoint_auth_method %v, registered none", m["token_endpoint_auth_method"])
	}
	if _, has := m["client_secret"]; has {
		return fail("a public client (auth method none) was given a client_secret")
	}
	s.dcrPub = id
	return pass("client_id %s", id)
}

func (s *suite) checkDCRConfidential() (Status, string) {
	if s.asMeta == nil {
		return skip("no AS metadata")
	}
	r, err := s.register(map[string]any{"client_name": "pbac conformance (confidential)", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic"})
	if err == errNoRegistration {
		return skip("the AS does not offer dynamic client registration")
	}
	if err != nil {
		return fail("%v", err)
	}
	m := r.json()
	id, _ := m["client_id"].(string)
	secret, _ := m["client_secret"].(string)
	if r.status != http.StatusCreated || id == "" || secret == "" {
		return fail("want 201 with client_id and client_secret, got %s", r)
	}
	if exp, ok := m["client_secret_expires_at"]; !ok {
		return fail("client_secret_expires_at is required with a client_secret")
	} else if _, isNum := exp.(float64); !isNum {
		return fail("client_secret_expires_at %v is not a number", exp)
	}
	s.dcrConf.id, s.dcrConf.secret = id, secret
	return pass("client_id %s with a secret", id)
}

type regVector struct {
	Name  string `json:"name"`
	Body  string `json:"body"`
	Error string `json:"error"`
}

func loadJSON(name string, v any) error {
	raw, err := fs.ReadFile(conformance.Vectors(), name)
	if err != nil {
		return fmt.Errorf("read the vectors: %w", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("parse %s: %w", name, err)
	}
	return nil
}

func dcrInvalid(code string) func(*suite) (Status, string) {
	return func(s *suite) (Status, string) {
		if s.endpoint("registration_endpoint") == "" {
			return skip("the AS does not offer dynamic client registration")
		}
		var v struct {
			Invalid []regVector `json:"invalid"`
		}
		if err := loadJSON("registration.json", &v); err != nil {
			return fail("%v", err)
		}
		n := 0
		for _, vec := range v.Invalid {
			if vec.Error != code {
				continue
			}
			n++
			r, err := s.postJSON(s.endpoint("registration_endpoint"), strings.ReplaceAll(vec.Body, "{redirect}", s.cfg.RedirectURI))
			if err != nil {
				return fail("%s: %v", vec.Name, err)
			}
			if r.status != http.StatusBadRequest || oauthError(r) != code {
				return fail("%s: want 400 %s, got %s", vec.Name, code, r)
			}
		}
		return pass("%d vectors refused with %s", n, code)
	}
}

// --- the authorization endpoint's refusals (testdata/authorize.json) ---

type authzVector struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Ref      string `json:"ref"`
	Query    string `json:"query"`
	Redirect bool   `json:"redirect"`
	Error    string `json:"error"`
}

func authorizeChecks() []check {
	var v struct {
		Refused []authzVector `json:"refused"`
	}
	if err := loadJSON("authorize.json", &v); err != nil {
		return []check{{"authorize-vectors", "the authorization vectors load", "—", false,
			func(*suite) (Status, string) { return fail("%v", err) }}}
	}
	var out []check
	for _, vec := range v.Refused {
		out = append(out, check{"authorize-" + vec.ID, vec.Title, vec.Ref, false,
			func(s *suite) (Status, string) { return s.checkRefusedAuthorize(vec) }})
	}
	return out
}

func (s *suite) checkRefusedAuthorize(vec authzVector) (Status, string) {
	ep := s.endpoint("authorization_endpoint")
	if ep == "" {
		return skip("no authorization_endpoint")
	}
	client := s.dcrPub
	if client == "" {
		client = s.cfg.ClientID
	}
	if client == "" {
		return skip("no client: the AS offers no registration and no --client-id was given")
	}
	p := newPKCE()
	q := strings.NewReplacer("{client_id}", url.QueryEscape(client), "{redirect}", url.QueryEscape(s.cfg.RedirectURI),
		"{challenge}", p.challenge).Replace(vec.Query)
	r, err := s.get(ep + "?" + q)
	if err != nil {
		return fail("%v", err)
	}
	loc := r.header.Get("Location")
	if r.status/100 == 3 && loc != "" {
		target, err := url.Parse(loc)
		if err != nil {
			return fail("redirect to %q", loc)
		}
		if !strings.HasPrefix(target.String(), s.cfg.RedirectURI+"?") && target.String() != s.cfg.RedirectURI {
			if strings.Contains(loc, "attacker.example") || strings.Contains(loc, "evil") {
				return fail("redirected to %s: an open redirect", loc)
			}
			return fail("redirected to %s, not to the client", loc)
		}
		if !vec.Redirect {
			return fail("the refusal was redirected to %s; an unverified redirect URI must not be used", loc)
		}
		if target.Query().Get("code") != "" {
			return fail("a code was issued: %s", loc)
		}
		if e := target.Query().Get("error"); vec.Error != "" && e != vec.Error {
			return fail("error %q, want %q (%s)", e, vec.Error, target.Query().Get("error_description"))
		}
		return pass("redirected with error=%s", target.Query().Get("error"))
	}
	if r.status == http.StatusOK {
		return fail("the AS answered 200 (a sign-in page?) instead of refusing")
	}
	if r.status/100 == 4 {
		if e := oauthError(r); vec.Error != "" && e != "" && e != vec.Error {
			return fail("error %q, want %q", e, vec.Error)
		}
		return pass("refused with %d without redirecting", r.status)
	}
	return fail("unexpected answer %s", r)
}
