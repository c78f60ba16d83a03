package cimd

import (
	"bytes"
	"crypto/rsa"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Token endpoint authentication methods a document may name. The draft
// ("Client Metadata Document") forbids every method based on a shared
// secret, since no secret can be shared.
const (
	AuthMethodNone          = "none"
	AuthMethodPrivateKeyJWT = "private_key_jwt"
)

// Grant types a document's client may use here; others a document names
// (for other servers) are dropped.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	// GrantJWTBearer carries identity assertion grants (ID-JAG; MCP's
	// enterprise-managed authorization): private_key_jwt only.
	GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// Bounds on a document's contents.
const (
	// DefaultMaxBytes is the largest document fetched by default: the
	// draft recommends 5 kilobytes ("Maximum Response Size").
	DefaultMaxBytes  = 5 << 10
	maxClientNameLen = 200
	maxRedirectURIs  = 32
	maxURILen        = 2048
	maxScopes        = 128
	maxScopeTokenLen = 256
	maxShortString   = 256
	maxKeys          = 16
)

// SigningAlgs are the JWS algorithms a client assertion may use: the
// asymmetric ones (RFC 7518 §3.1, RFC 8037). HMAC would need a shared
// secret; none is no signature.
var SigningAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Document is a validated client metadata document. Only the members the
// authorization server uses are kept; the others are ignored (the draft
// allows additional properties).
type Document struct {
	// ClientID is the document's URL, equal to its client_id member.
	ClientID string
	// Origin is the client id URL's scheme://host[:port]: who published
	// the document, for display and for policy.
	Origin string
	// Host is the client id URL's host (and port): what the consent page
	// shows (the draft, "OAuth Phishing Attacks").
	Host string

	ClientName string
	ClientURI  string
	// RedirectURIs are the registered redirect URIs; an authorization
	// request must name one of them (MatchRedirectURI).
	RedirectURIs  []string
	GrantTypes    []string
	ResponseTypes []string
	// TokenEndpointAuthMethod is AuthMethodNone (a public client; the
	// default) or AuthMethodPrivateKeyJWT, with JWKS or JWKSURI.
	TokenEndpointAuthMethod string
	// TokenEndpointAuthSigningAlg, when set, is the only algorithm the
	// client's assertions may use.
	TokenEndpointAuthSigningAlg string
	JWKSURI                     string
	JWKS                        *jose.JSONWebKeySet
	Scope                       string
	ApplicationType             string
	SoftwareID                  string
	SoftwareVersion             string
	// SoftwareStatement is kept unverified, for an attestation to weigh.
	SoftwareStatement string

	// Pinned is true for a document the operator pinned (never fetched).
	Pinned bool
	// FetchedAt is when it was fetched (zero when pinned).
	FetchedAt time.Time
}

// Clone returns a deep copy: callers may change it.
func (d *Document) Clone() *Document {
	if d == nil {
		return nil
	}
	cp := *d
	cp.RedirectURIs = slices.Clone(d.RedirectURIs)
	cp.GrantTypes = slices.Clone(d.GrantTypes)
	cp.ResponseTypes = slices.Clone(d.ResponseTypes)
	if d.JWKS != nil {
		cp.JWKS = &jose.JSONWebKeySet{Keys: slices.Clone(d.JWKS.Keys)}
	}
	return &cp
}

// ParseDocument validates body as the metadata document at clientID (the
// draft, "Client Metadata Document"; the MCP authorization spec,
// "Client ID Metadata Documents"):
//
//   - one JSON object (RFC 8259) of valid UTF-8, no member name twice;
//   - client_id equals clientID exactly (simple string comparison,
//     RFC 3986 §6.2.1);
//   - client_name and redirect_uris present (MCP: "at least client_id,
//     client_name, redirect_uris"); redirect_uris not empty when the
//     authorization code grant is used; each an absolute URI without
//     fragment or userinfo, http only to a loopback host;
//   - no client_secret or client_secret_expires_at, and a
//     token_endpoint_auth_method of none (the default here: nothing else
//     without a shared secret makes sense) or private_key_jwt, the latter
//     with exactly one of jwks_uri and jwks (RFC 7591 §2), of public
//     asymmetric keys;
//   - grant_types default to authorization_code (RFC 7591 §2); ones this
//     server does not support are dropped; client_credentials and
//     jwt-bearer need private_key_jwt; response_types default to code;
//   - a known member of the wrong type is an error; unknown members are
//     ignored.
//
// Errors wrap ErrInvalidDocument (or ErrInvalidClientID for clientID).
func ParseDocument(clientID string, body []byte) (*Document, error) {
	u, err := ParseClientID(clientID)
	if err != nil {
		return nil, err
	}
	d, err := parseDocument(clientID, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidDocument, clientID, err)
	}
	d.Origin = Origin(u)
	d.Host = u.Host
	return d, nil
}

func parseDocument(clientID string, body []byte) (*Document, error) {
	if !utf8.Valid(body) {
		return nil, errors.New("not valid UTF-8")
	}
	var members map[string]jsontext.Value
	if err := json.Unmarshal(body, &members); err != nil {
		return nil, errors.New("not one JSON object (or a member name is repeated)")
	}
	if members == nil {
		return nil, errors.New("not a JSON object")
	}
	present := func(name string) bool {
		v, ok := members[name]
		return ok && v.Kind() != 'n'
	}
	str := func(name string, dst *string) error {
		if !present(name) {
			return nil
		}
		if err := json.Unmarshal(members[name], dst); err != nil || members[name].Kind() != '"' {
			return fmt.Errorf("%s must be a string", name)
		}
		return nil
	}
	strs := func(name string, dst *[]string) error {
		if !present(name) {
			return nil
		}
		var elems []jsontext.Value
		if members[name].Kind() != '[' || json.Unmarshal(members[name], &elems) != nil {
			return fmt.Errorf("%s must be an array of strings", name)
		}
		out := make([]string, 0, len(elems))
		for _, e := range elems {
			var s string
			if e.Kind() != '"' || json.Unmarshal(e, &s) != nil {
				return fmt.Errorf("%s must be an array of strings", name)
			}
			out = append(out, s)
		}
		*dst = out
		return nil
	}

	d := &Document{}
	var grantTypes, responseTypes []string
	grantTypesSet, responseTypesSet := present("grant_types"), present("response_types")
	for _, f := range []error{
		str("client_id", &d.ClientID),
		str("client_name", &d.ClientName),
		str("client_uri", &d.ClientURI),
		strs("redirect_uris", &d.RedirectURIs),
		strs("grant_types", &grantTypes),
		strs("response_types", &responseTypes),
		str("token_endpoint_auth_method", &d.TokenEndpointAuthMethod),
		str("token_endpoint_auth_signing_alg", &d.TokenEndpointAuthSigningAlg),
		str("jwks_uri", &d.JWKSURI),
		str("scope", &d.Scope),
		str("application_type", &d.ApplicationType),
		str("software_id", &d.SoftwareID),
		str("software_version", &d.SoftwareVersion),
		str("software_statement", &d.SoftwareStatement),
	} {
		if f != nil {
			return nil, f
		}
	}

	// client_id: the document names itself.
	if !present("client_id") {
		return nil, errors.New("client_id is missing")
	}
	if d.ClientID != clientID {
		return nil, fmt.Errorf("client_id %q does not equal the document's URL", truncate(d.ClientID))
	}

	// No shared secret, ever.
	for _, name := range []string{"client_secret", "client_secret_expires_at"} {
		if _, ok := members[name]; ok {
			return nil, fmt.Errorf("%s must not be used in a client metadata document", name)
		}
	}
	if d.TokenEndpointAuthMethod == "" {
		d.TokenEndpointAuthMethod = AuthMethodNone
	}
	switch m := d.TokenEndpointAuthMethod; {
	case m == AuthMethodNone:
	case m == AuthMethodPrivateKeyJWT:
		if err := d.parseKeys(members, present("jwks")); err != nil {
			return nil, err
		}
	case strings.HasPrefix(m, "client_secret_"):
		return nil, fmt.Errorf("token_endpoint_auth_method %s needs a shared secret, which a client metadata document cannot establish", truncate(m))
	default:
		return nil, fmt.Errorf("token_endpoint_auth_method %s is not supported (none or private_key_jwt)", truncate(m))
	}
	if a := d.TokenEndpointAuthSigningAlg; a != "" && !slices.Contains(SigningAlgs, a) {
		return nil, fmt.Errorf("token_endpoint_auth_signing_alg %s is not supported", truncate(a))
	}

	// Grant and response types.
	if !grantTypesSet {
		grantTypes = []string{GrantAuthorizationCode}
	}
	for _, g := range grantTypes {
		switch g {
		case GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials, GrantTokenExchange, GrantJWTBearer:
			if !slices.Contains(d.GrantTypes, g) {
				d.GrantTypes = append(d.GrantTypes, g)
			}
		}
	}
	if len(d.GrantTypes) == 0 {
		return nil, errors.New("grant_types names no grant type this server supports")
	}
	if slices.Contains(d.GrantTypes, GrantClientCredentials) && d.TokenEndpointAuthMethod != AuthMethodPrivateKeyJWT {
		return nil, errors.New("the client_credentials grant needs private_key_jwt")
	}
	if slices.Contains(d.GrantTypes, GrantJWTBearer) && d.TokenEndpointAuthMethod != AuthMethodPrivateKeyJWT {
		return nil, errors.New("the jwt-bearer grant needs private_key_jwt")
	}
	authCode := slices.Contains(d.GrantTypes, GrantAuthorizationCode)
	if !responseTypesSet && authCode {
		responseTypes = []string{"code"}
	}
	d.ResponseTypes = []string{}
	if slices.Contains(responseTypes, "code") && authCode {
		d.ResponseTypes = []string{"code"}
	}
	if authCode && len(d.ResponseTypes) == 0 {
		return nil, errors.New("response_types must include code for the authorization_code grant")
	}

	// Redirect URIs.
	if !present("redirect_uris") {
		return nil, errors.New("redirect_uris is missing")
	}
	if authCode && len(d.RedirectURIs) == 0 {
		return nil, errors.New("redirect_uris is empty")
	}
	if len(d.RedirectURIs) > maxRedirectURIs {
		return nil, fmt.Errorf("more than %d redirect_uris", maxRedirectURIs)
	}
	for i, r := range d.RedirectURIs {
		if err := checkRedirectURI(r); err != nil {
			return nil, fmt.Errorf("redirect_uris[%d]: %v", i, err)
		}
	}
	d.RedirectURIs = dedupe(d.RedirectURIs)

	// Descriptive members.
	if !present("client_name") || strings.TrimSpace(d.ClientName) == "" {
		return nil, errors.New("client_name is missing")
	}
	if utf8.RuneCountInString(d.ClientName) > maxClientNameLen || hasControl(d.ClientName) {
		return nil, fmt.Errorf("client_name must be at most %d characters without control characters", maxClientNameLen)
	}
	if d.ClientURI != "" {
		cu, err := url.Parse(d.ClientURI)
		if err != nil || len(d.ClientURI) > maxURILen || cu.Scheme != "https" || cu.Host == "" || cu.User != nil || !printableASCII(d.ClientURI) {
			return nil, errors.New("client_uri must be an https URL")
		}
	}
	if err := checkScope(d.Scope); err != nil {
		return nil, fmt.Errorf("scope: %v", err)
	}
	switch d.ApplicationType {
	case "", "native", "web":
	default:
		return nil, errors.New("application_type must be native or web")
	}
	for _, s := range []struct{ name, v string }{{"software_id", d.SoftwareID}, {"software_version", d.SoftwareVersion}} {
		if len(s.v) > maxShortString || hasControl(s.v) {
			return nil, fmt.Errorf("%s must be at most %d bytes without control characters", s.name, maxShortString)
		}
	}
	if hasControl(d.SoftwareStatement) {
		return nil, errors.New("software_statement must be a compact JWS")
	}
	return d, nil
}

// parseKeys checks the keys of a private_key_jwt client: exactly one of
// jwks_uri (an https URL) and jwks (public asymmetric keys).
func (d *Document) parseKeys(members map[string]jsontext.Value, hasJWKS bool) error {
	switch {
	case d.JWKSURI != "" && hasJWKS:
		return errors.New("jwks_uri and jwks must not both be present (RFC 7591 §2)")
	case d.JWKSURI == "" && !hasJWKS:
		return errors.New("private_key_jwt needs jwks_uri or jwks")
	case d.JWKSURI != "":
		if _, err := parseFetchURL(d.JWKSURI, false); err != nil {
			return fmt.Errorf("jwks_uri: %v", err)
		}
		return nil
	}
	set, err := ParseKeySet(members["jwks"])
	if err != nil {
		return fmt.Errorf("jwks: %v", err)
	}
	d.JWKS = set
	return nil
}

// ParseKeySet validates a JSON Web Key Set (RFC 7517 §5) of a client's
// signing keys: at most 16 keys, each public, asymmetric (RSA of at least
// 2048 bits, EC, or OKP), not marked for encryption only. Errors do not
// wrap a sentinel; callers add theirs.
func ParseKeySet(raw []byte) (*jose.JSONWebKeySet, error) {
	var probe struct {
		Keys []stdjson.RawMessage `json:"keys"`
	}
	if err := stdjson.Unmarshal(raw, &probe); err != nil || probe.Keys == nil {
		return nil, errors.New("not a JSON Web Key Set")
	}
	if len(probe.Keys) == 0 || len(probe.Keys) > maxKeys {
		return nil, fmt.Errorf("must hold 1 to %d keys", maxKeys)
	}
	set := &jose.JSONWebKeySet{}
	for i, kr := range probe.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(bytes.TrimSpace(kr)); err != nil {
			return nil, fmt.Errorf("key %d: not a valid JSON Web Key", i)
		}
		if err := checkSigningKey(&k); err != nil {
			return nil, fmt.Errorf("key %d: %v", i, err)
		}
		set.Keys = append(set.Keys, k)
	}
	return set, nil
}

func checkSigningKey(k *jose.JSONWebKey) error {
	if !k.Valid() {
		return errors.New("not a valid key")
	}
	if _, ok := k.Key.([]byte); ok {
		return errors.New("symmetric keys are not allowed")
	}
	if !k.IsPublic() {
		return errors.New("must be a public key (private key material published)")
	}
	if k.Use != "" && k.Use != "sig" {
		return errors.New("not a signing key (use is not sig)")
	}
	if k.Algorithm != "" && !slices.Contains(SigningAlgs, k.Algorithm) {
		return fmt.Errorf("algorithm %s is not supported", truncate(k.Algorithm))
	}
	if bits := rsaBits(k); bits != 0 && bits < 2048 {
		return fmt.Errorf("RSA key of %d bits (at least 2048)", bits)
	}
	return nil
}

// checkRedirectURI is the document's structural rule for a redirect URI
// (RFC 6749 §3.1.2, RFC 9700 §2.1, RFC 8252 §7): absolute, printable ASCII,
// no fragment, no userinfo, http only to a loopback host. The server may
// refuse more when a request names one.
func checkRedirectURI(raw string) error {
	if raw == "" || len(raw) > maxURILen || !printableASCII(raw) {
		return fmt.Errorf("must be printable ASCII of 1 to %d bytes", maxURILen)
	}
	if strings.Contains(raw, "#") {
		return errors.New("must not contain a fragment")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return errors.New("must be an absolute URI")
	}
	if u.User != nil {
		return errors.New("must not contain userinfo")
	}
	switch u.Scheme {
	case "https":
		if u.Opaque != "" || u.Hostname() == "" {
			return errors.New("https URI needs a host")
		}
	case "http":
		if u.Opaque != "" || !isLoopbackHost(u.Hostname()) {
			return errors.New("http only to a loopback host")
		}
	}
	return nil
}

// MatchRedirectURI returns the registered redirect URI a request's
// redirect_uri matches, and whether one does: the same string (RFC 9700
// §2.1: exact matching), or, for http to a loopback host, the same host,
// path and query on any port (RFC 8252 §7.3: native apps listen on a port
// of their choosing; RFC 9700 §2.1 exempts localhost ports). Real clients
// publish port-less loopback URIs and listen on ephemeral ports.
func (d *Document) MatchRedirectURI(requested string) (string, bool) {
	if slices.Contains(d.RedirectURIs, requested) {
		return requested, true
	}
	if checkRedirectURI(requested) != nil {
		return "", false
	}
	ru, err := url.Parse(requested)
	if err != nil || ru.Scheme != "http" || !isLoopbackHost(ru.Hostname()) {
		return "", false
	}
	for _, reg := range d.RedirectURIs {
		gu, err := url.Parse(reg)
		if err != nil || gu.Scheme != "http" || !isLoopbackHost(gu.Hostname()) {
			continue
		}
		if strings.EqualFold(gu.Hostname(), ru.Hostname()) && gu.EscapedPath() == ru.EscapedPath() &&
			gu.RawQuery == ru.RawQuery && gu.ForceQuery == ru.ForceQuery {
			return reg, true
		}
	}
	return "", false
}

// LoopbackOnly tells whether every redirect URI leads to the user's own
// machine: any program there could claim to be the client (MCP security
// considerations, "Localhost Redirect URI Risks").
func (d *Document) LoopbackOnly() bool {
	if len(d.RedirectURIs) == 0 {
		return false
	}
	for _, r := range d.RedirectURIs {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "http" || !isLoopbackHost(u.Hostname()) {
			return false
		}
	}
	return true
}

func rsaBits(k *jose.JSONWebKey) int {
	if pk, ok := k.Key.(*rsa.PublicKey); ok && pk.N != nil {
		return pk.N.BitLen()
	}
	return 0
}

func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func isLoopbackHost(h string) bool {
	return h == "127.0.0.1" || h == "::1" || strings.EqualFold(h, "localhost")
}

// checkScope checks an RFC 6749 §3.3 scope string.
func checkScope(scope string) error {
	if scope == "" {
		return nil
	}
	parts := strings.Split(scope, " ")
	if len(parts) > maxScopes {
		return fmt.Errorf("at most %d scopes", maxScopes)
	}
	for _, p := range parts {
		if p == "" || len(p) > maxScopeTokenLen {
			return errors.New("scope tokens are 1 to 256 bytes separated by single spaces")
		}
		for i := 0; i < len(p); i++ {
			if c := p[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				return errors.New("scope tokens must be printable ASCII without space, '\"' or '\\'")
			}
		}
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

// truncate bounds a value echoed into an error message.
func truncate(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
