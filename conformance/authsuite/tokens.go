package authsuite

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const needGrant = "needs --client-id, --user and --password: a client policy gives tokens, and a user to sign in as"

func (s *suite) canGrant() bool {
	return s.cfg.ClientID != "" && s.cfg.User != "" && s.asMeta != nil
}

// --- the code flow and the token ---

func (s *suite) checkCodeFlow() (Status, string) {
	if !s.canGrant() {
		return skip(needGrant)
	}
	t, err := s.codeFlow(s.cfg.URL, s.cfg.Scope)
	if err != nil {
		return fail("%v", err)
	}
	if !strings.EqualFold(t.TokenType, "Bearer") {
		return fail("token_type %q, want Bearer", t.TokenType)
	}
	if cc := t.raw.header.Get("Cache-Control"); !strings.Contains(strings.ToLower(cc), "no-store") {
		return fail("the token response's Cache-Control is %q, must be no-store", cc)
	}
	s.tok = t
	return pass("token_type %s, expires_in %.0f, scope %q, refresh token: %t", t.TokenType, t.ExpiresIn, t.Scope, t.RefreshToken != "")
}

func (s *suite) checkIss() (Status, string) {
	if !s.canGrant() {
		return skip(needGrant)
	}
	supported, _ := s.asMeta["authorization_response_iss_parameter_supported"].(bool)
	ar, err := s.authorize(s.cfg.ClientID, s.cfg.RedirectURI, newPKCE(), s.cfg.URL, s.cfg.Scope)
	if err != nil {
		return fail("%v", err)
	}
	switch {
	case supported && ar.iss != s.issuer:
		return fail("metadata says iss is sent; the response's iss is %q, want %q", ar.iss, s.issuer)
	case supported:
		return pass("iss=%s in the authorization response", ar.iss)
	case ar.iss != "":
		return fail("iss %q sent but the metadata does not say so", ar.iss)
	default:
		return pass("iss not supported and not sent, as the metadata says (clients must use distinct redirect URIs per AS)")
	}
}

func (s *suite) checkTokenAccepted() (Status, string) {
	if s.tok == nil {
		return skip("no token (the code flow did not run)")
	}
	r, err := s.mcpPost(s.cfg.URL, s.tok.AccessToken, initializeBody, nil)
	if err != nil {
		return fail("%v", err)
	}
	if r.status != http.StatusOK {
		return fail("initialize with the token: %s", r)
	}
	return pass("initialize: 200")
}

func (s *suite) checkInvalidToken() (Status, string) {
	r, err := s.mcpPost(s.cfg.URL, "not-a-real-token-"+randomState(), initializeBody, nil)
	if err != nil {
		return fail("%v", err)
	}
	scheme, params := authParams(r.header.Get("WWW-Authenticate"))
	if r.status != http.StatusUnauthorized || !strings.EqualFold(scheme, "Bearer") || params["error"] != "invalid_token" {
		return fail("want 401 with Bearer error=\"invalid_token\", got %s, WWW-Authenticate %q", r, r.header.Get("WWW-Authenticate"))
	}
	if params["resource_metadata"] == "" {
		return fail("the invalid_token challenge has no resource_metadata")
	}
	return pass("401 invalid_token")
}

func (s *suite) checkTokenInQuery() (Status, string) {
	if s.tok == nil {
		return skip("no token (the code flow did not run)")
	}
	sep := "?"
	if strings.Contains(s.cfg.URL, "?") {
		sep = "&"
	}
	r, err := s.mcpPost(s.cfg.URL+sep+"access_token="+url.QueryEscape(s.tok.AccessToken), "", initializeBody, nil)
	if err != nil {
		return fail("%v", err)
	}
	if r.status == http.StatusOK {
		return fail("a token in the query string was accepted")
	}
	return pass("refused: %d", r.status)
}

func (s *suite) checkOtherAudience() (Status, string) {
	if s.tok == nil {
		return skip("no token (the code flow did not run)")
	}
	if s.cfg.OtherURL == "" {
		return skip("needs --other-url, a second resource of the same AS")
	}
	if strings.HasPrefix(s.cfg.OtherURL, strings.TrimSuffix(s.cfg.URL, "/")+"/") {
		return skip("--other-url lies under --url, whose tokens it may accept")
	}
	r, err := s.mcpPost(s.cfg.OtherURL, s.tok.AccessToken, initializeBody, nil)
	if err != nil {
		return fail("%v", err)
	}
	if r.status != http.StatusUnauthorized {
		return fail("a token for %s used at %s: want 401, got %s", s.cfg.URL, s.cfg.OtherURL, r)
	}
	return pass("401 at %s", s.cfg.OtherURL)
}

func (s *suite) checkResourceBinding() (Status, string) {
	if !s.canGrant() {
		return skip(needGrant)
	}
	if s.cfg.OtherURL == "" {
		return skip("needs --other-url, a second resource of the same AS")
	}
	if strings.HasPrefix(s.cfg.URL, strings.TrimSuffix(s.cfg.OtherURL, "/")+"/") {
		return skip("--url lies under --other-url, whose tokens it may accept")
	}
	t, err := s.codeFlow(s.cfg.OtherURL, s.cfg.Scope)
	if err != nil {
		return skip("no token for %s: %v", s.cfg.OtherURL, err)
	}
	r, err := s.mcpPost(s.cfg.URL, t.AccessToken, initializeBody, nil)
	if err != nil {
		return fail("%v", err)
	}
	if r.status != http.StatusUnauthorized {
		return fail("a token issued for %s used at %s: want 401, got %s", s.cfg.OtherURL, s.cfg.URL, r)
	}
	return pass("401")
}

func (s *suite) checkInsufficientScope() (Status, string) {
	if s.tok == nil {
		return skip("no token (the code flow did not run)")
	}
	if s.cfg.StepUpTool == "" {
		return skip("needs --step-up-tool, a tool the token's scope (--scope) does not cover")
	}
	sid, err := s.initialize(s.cfg.URL, s.tok.AccessToken)
	if err != nil {
		return fail("%v", err)
	}
	args, _ := json.Marshal(s.cfg.StepUpArgs)
	if s.cfg.StepUpArgs == nil {
		args = []byte("{}")
	}
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, s.cfg.StepUpTool, args)
	hdr := map[string]string{"MCP-Protocol-Version": "2025-11-25"}
	if sid != "" {
		hdr["Mcp-Session-Id"] = sid
	}
	r, err := s.mcpPost(s.cfg.URL, s.tok.AccessToken, body, hdr)
	if err != nil {
		return fail("%v", err)
	}
	h := r.header.Get("WWW-Authenticate")
	scheme, params := authParams(h)
	if r.status != http.StatusForbidden || !strings.EqualFold(scheme, "Bearer") || params["error"] != "insufficient_scope" {
		return fail("want 403 with Bearer error=\"insufficient_scope\", got %s, WWW-Authenticate %q", r, h)
	}
	if params["scope"] == "" {
		return fail("the challenge names no scope: %q", h)
	}
	if params["resource_metadata"] == "" {
		return fail("the challenge has no resource_metadata: %q", h)
	}
	return pass("403 insufficient_scope, scope=%q", params["scope"])
}

// initialize opens a session (if the server keeps them) and returns its id.
func (s *suite) initialize(u, token string) (string, error) {
	r, err := s.mcpPost(u, token, initializeBody, nil)
	if err != nil {
		return "", err
	}
	if r.status != http.StatusOK {
		return "", fmt.Errorf("initialize: %s", r)
	}
	sid := r.header.Get("Mcp-Session-Id")
	hdr := map[string]string{"MCP-Protocol-Version": "2025-11-25"}
	if sid != "" {
		hdr["Mcp-Session-Id"] = sid
	}
	if _, err := s.mcpPost(u, token, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr); err != nil {
		return "", err
	}
	return sid, nil
}

func (s *suite) checkOrigin() (Status, string) {
	token := ""
	if s.tok != nil {
		token = s.tok.AccessToken
	}
	r, err := s.mcpPost(s.cfg.URL, token, initializeBody, map[string]string{"Origin": "http://attacker.example"})
	if err != nil {
		return fail("%v", err)
	}
	if r.status != http.StatusForbidden {
		return fail("Origin http://attacker.example: want 403, got %s", r)
	}
	return pass("403")
}

func (s *suite) checkOwnOrigin() (Status, string) {
	if s.tok == nil {
		return skip("no token (the code flow did not run)")
	}
	u, _ := url.Parse(s.cfg.URL)
	origin := u.Scheme + "://" + u.Host
	r, err := s.mcpPost(s.cfg.URL, s.tok.AccessToken, initializeBody, map[string]string{"Origin": origin})
	if err != nil {
		return fail("%v", err)
	}
	if r.status == http.StatusForbidden {
		return fail("Origin %s (the server's own) refused: %s", origin, r)
	}
	return pass("Origin %s: %d", origin, r.status)
}

func (s *suite) checkPassthrough() (Status, string) {
	if s.cfg.EchoURL == "" {
		return skip("needs --echo-url, an MCP endpoint whose backend echoes the headers it gets")
	}
	if !s.canGrant() {
		return skip(needGrant)
	}
	t := s.tok
	if !strings.HasPrefix(s.cfg.EchoURL, strings.TrimSuffix(s.cfg.URL, "/")+"/") || t == nil {
		var err error
		if t, err = s.codeFlow(s.cfg.EchoURL, s.cfg.Scope); err != nil {
			return fail("a token for %s: %v", s.cfg.EchoURL, err)
		}
	}
	r, err := s.mcpPost(s.cfg.EchoURL, t.AccessToken, initializeBody, nil)
	if err != nil {
		return fail("%v", err)
	}
	if r.status != http.StatusOK {
		return fail("initialize through the gateway: %s", r)
	}
	seen := EchoedHeaders(r.body)
	if seen == nil {
		return fail("the echo backend's answer carries no headers: %s", r)
	}
	for k, vs := range seen {
		for _, v := range vs {
			if strings.Contains(v, t.AccessToken) {
				return fail("the backend received the client's token in %s", k)
			}
		}
	}
	if _, ok := seen["Authorization"]; ok {
		return fail("the backend received an Authorization header the gateway should not forward")
	}
	return pass("the backend got %d headers, none with the token", len(seen))
}

// --- the token endpoint's attacks ---

func (s *suite) freshCode() (authResult, pkce, error) {
	p := newPKCE()
	ar, err := s.authorize(s.cfg.ClientID, s.cfg.RedirectURI, p, s.cfg.URL, s.cfg.Scope)
	return ar, p, err
}

func (s *suite) checkCodeInjection() (Status, string) {
	if !s.canGrant() {
		return skip(needGrant)
	}
	if s.dcrPub == "" {
		return skip("needs a second client: the AS offers no registration")
	}
	ar, p, err := s.freshCode()
	if err != nil {
		return fail("%v", err)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {ar.code}, "redirect_uri": {s.cfg.RedirectURI},
		"code_verifier": {p.verifier}, "resource": {s.cfg.URL}}
	t, r, err := s.token(form, s.dcrPub, "")
	if err != nil {
		return fail("%v", err)
	}
	if t != nil {
		return fail("another client redeemed the code")
	}
	if e := oauthError(r); e != "invalid_grant" && e != "invalid_client" && e != "unauthorized_client" {
		return fail("want invalid_grant, got %s", r)
	}
	return pass("%s", oauthError(r))
}

func (s *suite) checkWrongVerifier() (Status, string) {
	if !s.canGrant() {
		return skip(needGrant)
	}
	ar, _, err := s.freshCode()
	if err != nil {
		return fail("%v", err)
	}
	t, r, err := s.redeem(ar.code, newPKCE().verifier, s.cfg.URL)
	if err != nil {
		return fail("%v", err)
	}
	if t != nil || oauthError(r) != "invalid_grant" {
		return fail("want invalid_grant, got %v", r)
	}
	return pass("invalid_grant")
}

func (s *suite) checkNoVerifier() (Status, string) {
	if !s.canGrant() {
		return skip(needGrant)
	}
	ar, _, err := s.freshCode()
	if err != nil {
		return fail("%v", err)
	}
	t, r, err := s.redeem(ar.code, "", s.cfg.URL)
	if err != nil {
		return fail("%v", err)
	}
	if t != nil {
		return fail("the code was redeemed without a verifier")
	}
	if e := oauthError(r); e != "invalid_grant" && e != "invalid_request" {
		return fail("want invalid_grant or invalid_request, got %s", r)
	}
	return pass("%s", oauthError(r))
}

func (s *suite) checkCodeReuse() (Status, string) {
	if !s.canGrant() {
		return skip(needGrant)
	}
	ar, p, err := s.freshCode()
	if err != nil {
		return fail("%v", err)
	}
	first, r, err := s.redeem(ar.code, p.verifier, s.cfg.URL)
	if err != nil || first == nil {
		return fail("first redemption: %v %v", err, r)
	}
	again, r, err := s.redeem(ar.code, p.verifier, s.cfg.URL)
	if err != nil {
		return fail("%v", err)
	}
	if again != nil || oauthError(r) != "invalid_grant" {
		return fail("second redemption: want invalid_grant, got %v", r)
	}
	// RFC 9700 §4.5 / OAuth 2.1 §4.1.2: the AS SHOULD revoke what the code
	// yielded; reported, not required.
	msg := "second redemption invalid_grant"
	if rr, err := s.mcpPost(s.cfg.URL, first.AccessToken, initializeBody, nil); err == nil {
		msg += fmt.Sprintf("; the first token then answers %d", rr.status)
	}
	return pass("%s", msg)
}

func (s *suite) checkRefreshReplay() (Status, string) {
	if !s.canGrant() {
		return skip(needGrant)
	}
	t, err := s.codeFlow(s.cfg.URL, s.cfg.Scope)
	if err != nil {
		return fail("%v", err)
	}
	if t.RefreshToken == "" {
		return skip("the AS issued no refresh token to this client")
	}
	refresh := func(rt string) (*tokenResponse, *response, error) {
		return s.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, s.cfg.ClientID, s.cfg.ClientSecret)
	}
	t2, r, err := refresh(t.RefreshToken)
	rotated := time.Now()
	if err != nil || t2 == nil {
		return fail("refresh: %v %v", err, r)
	}
	if t2.RefreshToken == "" || t2.RefreshToken == t.RefreshToken {
		if s.cfg.ClientSecret == "" {
			return fail("a public client's refresh token was not rotated")
		}
		return pass("not rotated (confidential client)")
	}
	grace := ""
	if g := s.cfg.RefreshReuseGrace; g > 0 {
		// Within the AS's rotation grace period the same client gets a new
		// pair; the replay that counts comes after it.
		within, r, err := refresh(t.RefreshToken)
		if err != nil {
			return fail("%v", err)
		}
		if within == nil || within.AccessToken == "" || within.AccessToken == t2.AccessToken {
			return fail("replaying the old refresh token within the rotation grace period (%s): want a new pair, got %v", g, r)
		}
		grace = fmt.Sprintf("; within the rotation grace period (%s) a new pair", g)
		select {
		case <-time.After(time.Until(rotated.Add(g + 500*time.Millisecond))):
		case <-s.ctx.Done():
			return fail("%v", s.ctx.Err())
		}
	}
	replay, r, err := refresh(t.RefreshToken)
	if err != nil {
		return fail("%v", err)
	}
	if replay != nil || oauthError(r) != "invalid_grant" {
		if replay != nil && s.cfg.RefreshReuseGrace == 0 {
			return fail("replaying the old refresh token answered a new pair: an AS with a rotation grace period needs it given (Config.RefreshReuseGrace, --refresh-reuse-grace)")
		}
		return fail("replaying the old refresh token: want invalid_grant, got %v", r)
	}
	// Reuse detection: the family is revoked, so the rotated token fails too.
	t3, r, err := refresh(t2.RefreshToken)
	if err != nil {
		return fail("%v", err)
	}
	if t3 != nil {
		return fail("after the replay, the rotated refresh token still works: reuse does not revoke the family")
	}
	if rr, err := s.mcpPost(s.cfg.URL, t2.AccessToken, initializeBody, nil); err == nil && rr.status == http.StatusOK {
		return fail("after the replay, the access token of the rotated grant still works")
	}
	return pass("rotated%s; replay refused (%s); the family is revoked", grace, oauthError(r))
}

// --- introspection (RFC 7662) ---

func (s *suite) introspect(token, user, secret string) (*response, error) {
	ep := s.endpoint("introspection_endpoint")
	return s.postForm(ep, url.Values{"token": {token}}, user, secret)
}

func (s *suite) introspector() (string, string) {
	if s.cfg.IntrospectorID != "" {
		return s.cfg.IntrospectorID, s.cfg.IntrospectorSecret
	}
	if s.dcrConf.id != "" {
		return s.dcrConf.id, s.dcrConf.secret
	}
	return s.cfg.ClientID, s.cfg.ClientSecret
}

// introspectorRefused tells whether the AS refused the caller as an
// introspector (403, or 401 for a client it does know) when none was
// configured: an allow-list, which RFC 7662 §2.1 allows.
func (s *suite) introspectorRefused(r *response) bool {
	return s.cfg.IntrospectorID == "" && (r.status == http.StatusForbidden || r.status == http.StatusUnauthorized)
}

const introspectorHint = "the AS lets only allow-listed resource servers introspect (RFC 7662 §2.1): give --introspection-client-id and --introspection-client-secret"

func (s *suite) checkIntrospectAuth() (Status, string) {
	if s.endpoint("introspection_endpoint") == "" {
		return skip("the AS metadata names no introspection_endpoint")
	}
	r, err := s.introspect("junk", "", "")
	if err != nil {
		return fail("%v", err)
	}
	if r.status != http.StatusUnauthorized && r.status != http.StatusBadRequest {
		return fail("without client authentication: want 401, got %s", r)
	}
	if r.status == http.StatusOK {
		return fail("answered without client authentication")
	}
	return pass("%d %s", r.status, oauthError(r))
}

func (s *suite) checkIntrospectJunk() (Status, string) {
	if s.endpoint("introspection_endpoint") == "" {
		return skip("the AS metadata names no introspection_endpoint")
	}
	id, secret := s.introspector()
	if secret == "" {
		return skip("needs a confidential client (registration or --client-secret)")
	}
	r, err := s.introspect("junk-"+randomState(), id, secret)
	if err != nil {
		return fail("%v", err)
	}
	if s.introspectorRefused(r) {
		return skip("%s (%d %s)", introspectorHint, r.status, oauthError(r))
	}
	m := r.json()
	if r.status != http.StatusOK || m["active"] != false {
		return fail("want 200 {\"active\": false}, got %s", r)
	}
	if len(m) != 1 {
		return fail("an inactive answer carries more than active: %s", r)
	}
	return pass("{\"active\": false}")
}

func (s *suite) checkIntrospectActive() (Status, string) {
	if s.endpoint("introspection_endpoint") == "" {
		return skip("the AS metadata names no introspection_endpoint")
	}
	id, secret := s.introspector()
	if secret == "" {
		return skip("needs a confidential client (registration or --client-secret)")
	}
	if s.tok == nil {
		return skip("no token (the code flow did not run)")
	}
	r, err := s.introspect(s.tok.AccessToken, id, secret)
	if err != nil {
		return fail("%v", err)
	}
	if s.introspectorRefused(r) {
		return skip("%s (%d %s)", introspectorHint, r.status, oauthError(r))
	}
	m := r.json()
	if r.status != http.StatusOK || m["active"] != true {
		return fail("want active true, got %s", r)
	}
	if _, ok := m["scope"].(string); !ok {
		return fail("scope is not a space-separated string: %v", m["scope"])
	}
	if _, ok := m["exp"].(float64); !ok {
		return fail("exp is not a number: %v", m["exp"])
	}
	if c, _ := m["client_id"].(string); c != s.cfg.ClientID {
		return fail("client_id %v, want %s", m["client_id"], s.cfg.ClientID)
	}
	return pass("active, client_id %s, scope %q", m["client_id"], m["scope"])
}

// checkIntrospectOthers (ours): a confidential client anybody can
// register is not a resource server: it may not introspect the suite's
// token, and learns nothing of it.
func (s *suite) checkIntrospectOthers() (Status, string) {
	if s.endpoint("introspection_endpoint") == "" {
		return skip("the AS metadata names no introspection_endpoint")
	}
	if s.dcrConf.id == "" {
		return skip("no registered confidential client (dcr-confidential did not pass)")
	}
	if s.tok == nil {
		return skip("no token (the code flow did not run)")
	}
	r, err := s.introspect(s.tok.AccessToken, s.dcrConf.id, s.dcrConf.secret)
	if err != nil {
		return fail("%v", err)
	}
	if r.status == http.StatusOK || r.json()["active"] == true || r.json()["sub"] != nil {
		return fail("a freshly registered client introspected another client's token: %s", r)
	}
	return pass("refused with %d %s", r.status, oauthError(r))
}

// --- token exchange (RFC 8693) ---

func (s *suite) exchangeSupported() bool {
	return containsFold(stringList(s.asMeta["grant_types_supported"]), "urn:ietf:params:oauth:grant-type:token-exchange")
}

const tokenTypeAccess = "urn:ietf:params:oauth:token-type:access_token"

func (s *suite) checkExchangeErrors() (Status, string) {
	if !s.exchangeSupported() {
		return skip("the AS metadata does not list the token-exchange grant")
	}
	if s.tok == nil {
		return skip("no token (the code flow did not run)")
	}
	aud := s.cfg.ExchangeAudience
	if aud == "" {
		aud = s.cfg.ClientID
	}
	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"no subject_token_type", url.Values{"subject_token": {s.tok.AccessToken}, "audience": {aud}}},
		{"an invalid subject_token", url.Values{"subject_token": {"junk-" + randomState()}, "subject_token_type": {tokenTypeAccess}, "audience": {aud}}},
	} {
		tc.form.Set("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
		t, r, err := s.token(tc.form, s.cfg.ClientID, s.cfg.ClientSecret)
		if err != nil {
			return fail("%s: %v", tc.name, err)
		}
		if t != nil {
			return fail("%s: a token was issued", tc.name)
		}
		if r.status != http.StatusBadRequest || oauthError(r) != "invalid_request" {
			return fail("%s: want 400 invalid_request, got %s", tc.name, r)
		}
	}
	return pass("missing subject_token_type and an invalid subject_token: invalid_request")
}

func (s *suite) checkExchange() (Status, string) {
	if !s.exchangeSupported() {
		return skip("the AS metadata does not list the token-exchange grant")
	}
	if s.tok == nil {
		return skip("no token (the code flow did not run)")
	}
	if s.cfg.ExchangeAudience == "" {
		return skip("needs --exchange-audience, a client a token may be exchanged for")
	}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {s.tok.AccessToken},
		"subject_token_type": {tokenTypeAccess}, "audience": {s.cfg.ExchangeAudience}}
	t, r, err := s.token(form, s.cfg.ClientID, s.cfg.ClientSecret)
	if err != nil {
		return fail("%v", err)
	}
	if t == nil {
		return fail("exchange refused: %s", r)
	}
	if t.IssuedTokenType == "" {
		return fail("no issued_token_type")
	}
	if t.TokenType == "" {
		return fail("no token_type")
	}
	if t.AccessToken == s.tok.AccessToken {
		return fail("the exchange returned the subject token itself")
	}
	return pass("issued_token_type %s, token_type %s", t.IssuedTokenType, t.TokenType)
}

// --- revocation (RFC 7009) ---

func (s *suite) revoke(token string) (*response, error) {
	form := url.Values{"token": {token}}
	user := ""
	if s.cfg.ClientSecret != "" {
		user = s.cfg.ClientID
	} else {
		form.Set("client_id", s.cfg.ClientID)
	}
	return s.postForm(s.endpoint("revocation_endpoint"), form, user, s.cfg.ClientSecret)
}

func (s *suite) checkRevokeUnknown() (Status, string) {
	if s.endpoint("revocation_endpoint") == "" {
		return skip("the AS metadata names no revocation_endpoint")
	}
	if s.cfg.ClientID == "" {
		return skip("needs --client-id")
	}
	r, err := s.revoke("unknown-" + randomState())
	if err != nil {
		return fail("%v", err)
	}
	if r.status != http.StatusOK {
		return fail("want 200, got %s", r)
	}
	return pass("200")
}

func (s *suite) checkRevoke() (Status, string) {
	if s.endpoint("revocation_endpoint") == "" {
		return skip("the AS metadata names no revocation_endpoint")
	}
	if !s.canGrant() {
		return skip(needGrant)
	}
	t, err := s.codeFlow(s.cfg.URL, s.cfg.Scope)
	if err != nil {
		return fail("%v", err)
	}
	r, err := s.revoke(t.AccessToken)
	if err != nil {
		return fail("%v", err)
	}
	if r.status != http.StatusOK {
		return fail("revoke: want 200, got %s", r)
	}
	after, err := s.mcpPost(s.cfg.URL, t.AccessToken, initializeBody, nil)
	if err != nil {
		return fail("%v", err)
	}
	if after.status != http.StatusUnauthorized {
		return fail("the revoked token: want 401, got %s", after)
	}
	return pass("revoked; then 401")
}
