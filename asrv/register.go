package asrv

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// RFC 7591 §3.2.2 error codes.
const (
	ErrCodeInvalidRedirectURI          = "invalid_redirect_uri"
	ErrCodeInvalidClientMetadata       = "invalid_client_metadata"
	ErrCodeInvalidSoftwareStatement    = "invalid_software_statement"
	ErrCodeUnapprovedSoftwareStatement = "unapproved_software_statement"
)

// Application types (OpenID Connect Dynamic Client Registration 1.0 §2,
// which the MCP authorization spec of 2026-07-28 has clients send at DCR,
// SEP-837). A native client redirects only to a loopback http URI or a
// private-use scheme; a web client only to https on a host that is not
// loopback.
const (
	ApplicationTypeNative = "native"
	ApplicationTypeWeb    = "web"
)

// Grant types a client may register.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	// GrantJWTBearer carries identity assertion grants (ID-JAG):
	// confidential clients only.
	GrantJWTBearer = GrantTypeJWTBearer
)

const (
	// MaxRegistrationSize is the largest DCR request body accepted.
	MaxRegistrationSize = 64 << 10
	maxClientNameLen    = 200
	maxRedirectURIs     = 32
	maxURILen           = 2048
	maxScopes           = 128
	maxScopeTokenLen    = 256
	maxSoftwareVersion  = 256
)

// RegistrationError is an RFC 7591 §3.2.2 error response.
type RegistrationError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func (e *RegistrationError) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// StatusCode is the HTTP status of every registration error.
func (e *RegistrationError) StatusCode() int { return http.StatusBadRequest }

func dcrMetadataErr(format string, args ...any) *RegistrationError {
	return &RegistrationError{Code: ErrCodeInvalidClientMetadata, Description: fmt.Sprintf(format, args...)}
}

func dcrRedirectErr(format string, args ...any) *RegistrationError {
	return &RegistrationError{Code: ErrCodeInvalidRedirectURI, Description: fmt.Sprintf(format, args...)}
}

// RegistrationRequest is RFC 7591 client metadata. Agent identity never
// comes from here: only a verified SoftwareStatement sets AgentClaims.
type RegistrationRequest struct {
	RedirectURIs            []string `json:"redirect_uris,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	SoftwareID              string   `json:"software_id,omitempty"`
	SoftwareVersion         string   `json:"software_version,omitempty"`
	SoftwareStatement       string   `json:"software_statement,omitempty"`
	ApplicationType         string   `json:"application_type,omitempty"`
}

// ParseRegistration decodes and validates a DCR body: at most 64 KiB of
// UTF-8, one JSON object, no duplicate member names at any depth. Unknown
// members are ignored (RFC 7591 §2); known ones must have their type, and
// member names match exactly. Defaults are filled in. Errors are
// *RegistrationError.
func ParseRegistration(body []byte) (*RegistrationRequest, error) {
	if len(body) > MaxRegistrationSize {
		return nil, dcrMetadataErr("request body larger than %d bytes", MaxRegistrationSize)
	}
	fields, err := decodeStrictObject(body, maxJSONDepth)
	if err != nil {
		return nil, dcrMetadataErr("request body: %v", err)
	}
	req := &RegistrationRequest{}
	for _, f := range []struct {
		name string
		dst  any
	}{
		{"redirect_uris", &req.RedirectURIs},
		{"grant_types", &req.GrantTypes},
		{"response_types", &req.ResponseTypes},
		{"token_endpoint_auth_method", &req.TokenEndpointAuthMethod},
		{"client_name", &req.ClientName},
		{"client_uri", &req.ClientURI},
		{"scope", &req.Scope},
		{"software_id", &req.SoftwareID},
		{"software_version", &req.SoftwareVersion},
		{"software_statement", &req.SoftwareStatement},
		{"application_type", &req.ApplicationType},
	} {
		raw, ok := fields[f.name]
		if !ok || string(raw) == "null" {
			continue
		}
		if err := decodeMember(raw, f.dst); err != nil {
			if f.name == "redirect_uris" {
				return nil, dcrRedirectErr("redirect_uris must be an array of strings")
			}
			return nil, dcrMetadataErr("%s: %v", f.name, err)
		}
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return req, nil
}

// decodeMember decodes a string or an array of strings; null elements are
// refused.
func decodeMember(raw json.RawMessage, dst any) error {
	switch d := dst.(type) {
	case *string:
		s, ok := stmtJSONString(raw)
		if !ok {
			return errors.New("must be a string")
		}
		*d = s
	case *[]string:
		var elems []json.RawMessage
		if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
			return errors.New("must be an array of strings")
		}
		out := make([]string, 0, len(elems))
		for _, e := range elems {
			s, ok := stmtJSONString(e)
			if !ok {
				return errors.New("must be an array of strings")
			}
			out = append(out, s)
		}
		*d = out
	}
	return nil
}

// Validate checks the metadata and fills in defaults (RFC 7591 §2): grant
// types [authorization_code], response types [code] when the authorization
// code grant is registered, auth method client_secret_basic. It is
// idempotent. Errors are *RegistrationError.
func (r *RegistrationRequest) Validate() error {
	// Auth method.
	if r.TokenEndpointAuthMethod == "" {
		r.TokenEndpointAuthMethod = AuthMethodSecretBasic
	}
	switch r.TokenEndpointAuthMethod {
	case AuthMethodNone, AuthMethodSecretBasic, AuthMethodSecretPost:
	default:
		return dcrMetadataErr("token_endpoint_auth_method must be one of none, client_secret_basic, client_secret_post")
	}

	// Grant types.
	if r.GrantTypes == nil {
		r.GrantTypes = []string{GrantAuthorizationCode}
	}
	if len(r.GrantTypes) == 0 {
		return dcrMetadataErr("grant_types must not be empty")
	}
	r.GrantTypes = dcrDedupe(r.GrantTypes)
	for _, g := range r.GrantTypes {
		switch g {
		case GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials, GrantTokenExchange, GrantJWTBearer:
		default:
			return dcrMetadataErr("unsupported grant type (supported: authorization_code, refresh_token, client_credentials, %s, %s)", GrantTokenExchange, GrantJWTBearer)
		}
	}
	if slices.Contains(r.GrantTypes, GrantJWTBearer) && r.TokenEndpointAuthMethod == AuthMethodNone {
		return dcrMetadataErr("the jwt-bearer grant requires a confidential client (token_endpoint_auth_method must not be none)")
	}
	authCode := slices.Contains(r.GrantTypes, GrantAuthorizationCode)
	if slices.Contains(r.GrantTypes, GrantClientCredentials) && r.TokenEndpointAuthMethod == AuthMethodNone {
		return dcrMetadataErr("client_credentials requires a confidential client (token_endpoint_auth_method must not be none)")
	}

	// Response types, consistent with grant types (RFC 7591 §2.1).
	if r.ResponseTypes == nil {
		if authCode {
			r.ResponseTypes = []string{"code"}
		} else {
			r.ResponseTypes = []string{}
		}
	}
	r.ResponseTypes = dcrDedupe(r.ResponseTypes)
	for _, rt := range r.ResponseTypes {
		if rt != "code" {
			return dcrMetadataErr("unsupported response type (supported: code)")
		}
	}
	if hasCode := slices.Contains(r.ResponseTypes, "code"); hasCode != authCode {
		return dcrMetadataErr("response_types and grant_types are inconsistent: response type code goes with grant type authorization_code")
	}

	// Redirect URIs.
	if authCode && len(r.RedirectURIs) == 0 {
		return dcrRedirectErr("redirect_uris is required for the authorization_code grant")
	}
	if len(r.RedirectURIs) > maxRedirectURIs {
		return dcrRedirectErr("at most %d redirect_uris", maxRedirectURIs)
	}
	r.RedirectURIs = dcrDedupe(r.RedirectURIs)
	for i, u := range r.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return dcrRedirectErr("redirect_uris[%d]: %v", i, err)
		}
	}

	if err := r.checkApplicationType(); err != nil {
		return err
	}

	// Scope.
	if _, err := dcrParseScope(r.Scope); err != nil {
		return dcrMetadataErr("scope: %v", err)
	}

	// Descriptive metadata.
	if utf8.RuneCountInString(r.ClientName) > maxClientNameLen {
		return dcrMetadataErr("client_name longer than %d characters", maxClientNameLen)
	}
	if dcrHasControl(r.ClientName) {
		return dcrMetadataErr("client_name contains control characters")
	}
	if r.ClientURI != "" {
		if err := dcrCheckWebURI(r.ClientURI); err != nil {
			return dcrMetadataErr("client_uri: %v", err)
		}
	}
	if len(r.SoftwareID) > maxClaimStringLen || dcrHasControl(r.SoftwareID) {
		return dcrMetadataErr("software_id must be at most %d bytes without control characters", maxClaimStringLen)
	}
	if len(r.SoftwareVersion) > maxSoftwareVersion || dcrHasControl(r.SoftwareVersion) {
		return dcrMetadataErr("software_version must be at most %d bytes without control characters", maxSoftwareVersion)
	}
	if len(r.SoftwareStatement) > MaxStatementSize {
		return &RegistrationError{Code: ErrCodeInvalidSoftwareStatement,
			Description: fmt.Sprintf("software_statement larger than %d bytes", MaxStatementSize)}
	}
	return nil
}

// checkApplicationType validates application_type against the redirect
// URIs (SEP-837; OIDC DCR §2) and, when the client left it out, fills it
// in from them: native when every redirect URI is native-style, web
// otherwise, web too for a client without redirect URIs (the OIDC
// default). Clients of earlier MCP revisions omit it, so a list of
// loopback redirect URIs must keep registering; a list that mixes the two
// kinds fits neither type and is refused, with a reason that says so.
func (r *RegistrationRequest) checkApplicationType() error {
	explicit := r.ApplicationType != ""
	if !explicit {
		r.ApplicationType = ApplicationTypeWeb
		if len(r.RedirectURIs) > 0 && !slices.ContainsFunc(r.RedirectURIs, func(u string) bool { return !isNativeRedirect(u) }) {
			r.ApplicationType = ApplicationTypeNative
		}
	}
	switch r.ApplicationType {
	case ApplicationTypeNative:
		for i, u := range r.RedirectURIs {
			if !isNativeRedirect(u) {
				return dcrRedirectErr("redirect_uris[%d]: a native application redirects only to http on a loopback host or to a private-use scheme", i)
			}
		}
	case ApplicationTypeWeb:
		for i, u := range r.RedirectURIs {
			if isNativeRedirect(u) && !explicit {
				return dcrRedirectErr("redirect_uris mix native (loopback http, private-use scheme) and web (https) URIs: register each kind as its own client, with application_type native or web")
			}
			if !isWebRedirect(u) {
				return dcrRedirectErr("redirect_uris[%d]: a web application redirects only to https on a host that is not loopback (use application_type native for loopback or private-use scheme redirects)", i)
			}
		}
	default:
		return dcrMetadataErr("application_type must be native or web")
	}
	return nil
}

// isNativeRedirect tells whether a redirect URI (checked by
// checkRedirectURI) is a native application's: http to a loopback host
// (RFC 8252 §7.3) or a private-use scheme (RFC 8252 §7.1).
func isNativeRedirect(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	return isLoopbackRedirect(u) || (u.Scheme != "http" && u.Scheme != "https")
}

// isWebRedirect tells whether a redirect URI (checked by checkRedirectURI)
// is a web application's: https to a host that is not loopback.
func isWebRedirect(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "https" && u.Hostname() != "" && !isLoopbackHost(u.Hostname())
}

// dcrCheckWebURI accepts an absolute http(s) URL with a host and no userinfo.
func dcrCheckWebURI(raw string) error {
	if len(raw) > maxURILen {
		return fmt.Errorf("longer than %d bytes", maxURILen)
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= 0x20 || raw[i] >= 0x7f {
			return errors.New("must be printable ASCII without spaces")
		}
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Opaque != "" || u.Hostname() == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	if u.User != nil {
		return errors.New("must not contain userinfo")
	}
	return nil
}

// dcrParseScope splits an RFC 6749 §3.3 scope: tokens separated by single
// spaces, each 1*( %x21 / %x23-5B / %x5D-7E ). Duplicates are dropped.
func dcrParseScope(scope string) ([]string, error) {
	if scope == "" {
		return nil, nil
	}
	parts := strings.Split(scope, " ")
	if len(parts) > maxScopes {
		return nil, fmt.Errorf("at most %d scopes", maxScopes)
	}
	for _, p := range parts {
		if p == "" {
			return nil, errors.New("scopes must be separated by single spaces")
		}
		if len(p) > maxScopeTokenLen {
			return nil, fmt.Errorf("scope token longer than %d bytes", maxScopeTokenLen)
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				return nil, errors.New("scope tokens must be printable ASCII without space, '\"' or '\\'")
			}
		}
	}
	return dcrDedupe(parts), nil
}

func dcrHasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

func dcrDedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// NewClient builds the client to store for a registration request. It
// validates req (on a copy), verifies the software statement with v when
// one is present (a failing statement is an error; without one the client
// is unverified), and generates the client id, the client secret (for
// confidential clients) and the RFC 7592 registration access token. Secret
// and token are returned once; the client keeps only their hashes (bcrypt
// for the secret, as fosite's default hasher expects; SHA-256 for the
// registration token). Request errors are *RegistrationError.
func NewClient(req *RegistrationRequest, v *StatementVerifier, now time.Time) (c *Client, secret, registrationToken string, err error) {
	if req == nil {
		return nil, "", "", dcrMetadataErr("missing registration request")
	}
	r := *req
	r.RedirectURIs = slices.Clone(req.RedirectURIs)
	r.GrantTypes = slices.Clone(req.GrantTypes)
	r.ResponseTypes = slices.Clone(req.ResponseTypes)
	if err := r.Validate(); err != nil {
		return nil, "", "", err
	}
	scopes, _ := dcrParseScope(r.Scope) // validated above

	agent := AgentClaims{Verified: false}
	if r.SoftwareStatement != "" {
		if v == nil {
			return nil, "", "", &RegistrationError{Code: ErrCodeUnapprovedSoftwareStatement,
				Description: "no software statement issuers are trusted"}
		}
		agent, err = v.Verify(r.SoftwareStatement, now)
		if err != nil {
			code := ErrCodeInvalidSoftwareStatement
			if errors.Is(err, ErrUntrustedStatement) {
				code = ErrCodeUnapprovedSoftwareStatement
			}
			return nil, "", "", &RegistrationError{Code: code, Description: err.Error()}
		}
	}

	id := randomToken(16)
	registrationToken = randomToken(32)
	tokenHash := sha256.Sum256([]byte(registrationToken))
	c = &Client{
		ID:                      id,
		RedirectURIs:            r.RedirectURIs,
		GrantTypes:              r.GrantTypes,
		ResponseTypes:           r.ResponseTypes,
		Scopes:                  scopes,
		TokenEndpointAuthMethod: r.TokenEndpointAuthMethod,
		ApplicationType:         r.ApplicationType,
		Name:                    r.ClientName,
		URI:                     r.ClientURI,
		Agent:                   agent,
		SoftwareStatement:       r.SoftwareStatement,
		RegistrationTokenHash:   tokenHash[:],
		CreatedAt:               now.UTC(),
	}
	if !agent.Verified {
		c.ClaimedSoftwareID = r.SoftwareID
	}
	if r.TokenEndpointAuthMethod != AuthMethodNone {
		secret = randomToken(32)
		c.SecretHash = hashSecret([]byte(secret))
	}
	return c, secret, registrationToken, nil
}

// CheckRegistrationToken reports whether presented is c's registration
// access token, comparing SHA-256 digests in constant time.
func CheckRegistrationToken(c *Client, presented string) bool {
	if c == nil || presented == "" || len(c.RegistrationTokenHash) != sha256.Size {
		return false
	}
	h := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(h[:], c.RegistrationTokenHash) == 1
}

// RegistrationResponse renders the RFC 7591 §3.2.1 client information
// response (also usable for RFC 7592 reads with secret "" and, if the token
// is not rotated, regToken ""): client_id, client_id_issued_at, the secret
// and client_secret_expires_at 0 when a secret is given, the registration
// access token and client configuration URI when given, the registered
// metadata, and the verified agent claims under "agent".
func RegistrationResponse(c *Client, secret, regToken, configURI string) map[string]any {
	resp := map[string]any{
		"client_id":                  c.ID,
		"client_id_issued_at":        c.CreatedAt.Unix(),
		"redirect_uris":              dcrNonNil(c.RedirectURIs),
		"grant_types":                dcrNonNil(c.GrantTypes),
		"response_types":             dcrNonNil(c.ResponseTypes),
		"token_endpoint_auth_method": c.TokenEndpointAuthMethod,
		"agent":                      c.Agent,
	}
	if secret != "" {
		resp["client_secret"] = secret
		resp["client_secret_expires_at"] = 0
	}
	if regToken != "" {
		resp["registration_access_token"] = regToken
	}
	if configURI != "" {
		resp["registration_client_uri"] = configURI
	}
	if len(c.Scopes) > 0 {
		resp["scope"] = strings.Join(c.Scopes, " ")
	}
	if c.ApplicationType != "" {
		resp["application_type"] = c.ApplicationType
	}
	if c.Name != "" {
		resp["client_name"] = c.Name
	}
	if c.URI != "" {
		resp["client_uri"] = c.URI
	}
	if c.Agent.Verified && c.Agent.SoftwareID != "" {
		resp["software_id"] = c.Agent.SoftwareID
	}
	if c.SoftwareStatement != "" {
		resp["software_statement"] = c.SoftwareStatement
	}
	return resp
}

func dcrNonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}
