package identity

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// CallbackPath is where the identity provider sends the browser back to
// the authorization server: register <AS issuer>/oauth2/idp/callback as
// the redirect URI of the AS's client at the IdP.
const CallbackPath = "/oauth2/idp/callback"

// CallbackURL is the redirect URI to register at the IdP for an
// authorization server with this issuer.
func CallbackURL(asIssuer string) string {
	return strings.TrimSuffix(asIssuer, "/") + CallbackPath
}

// Config is the identity section of the configuration file: where people
// who sign in come from. Both may be set (the sign-in page then offers
// both); with neither, people cannot sign in at all and only machine
// clients get tokens.
type Config struct {
	// OIDC is the organisation's OpenID Connect provider (single sign-on).
	OIDC *OIDCConfig `yaml:"oidc,omitempty" json:"oidc,omitempty"`
	// UsersFile is a YAML file of people with argon2id password hashes and
	// groups (pbac user add writes entries), re-read when it changes.
	UsersFile string `yaml:"users_file,omitempty" json:"users_file,omitempty"`
}

// OIDCConfig configures single sign-on through an OpenID Connect provider.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL; its discovery document is read
	// from <issuer>/.well-known/openid-configuration, and ID tokens must
	// name exactly this issuer.
	Issuer string `yaml:"issuer" json:"issuer"`
	// ClientID is the authorization server's client at the provider; ID
	// tokens must have it as audience.
	ClientID string `yaml:"client_id" json:"client_id"`
	// ClientSecretFile holds the client's secret (surrounding white space
	// is ignored). Empty: a public client, authenticated by PKCE alone.
	ClientSecretFile string `yaml:"client_secret_file,omitempty" json:"client_secret_file,omitempty"`
	// Scopes asked of the provider; default [openid, profile, email]. Must
	// include openid.
	Scopes []string `yaml:"scopes,omitempty" json:"scopes,omitempty"`
	// GroupsClaim is the ID token claim holding the person's groups (a
	// list of strings, or one string); default groups.
	GroupsClaim string `yaml:"groups_claim,omitempty" json:"groups_claim,omitempty"`
	// SubjectClaim is the ID token claim that becomes the person's subject
	// (sub in tokens, policy and audit); default sub. email or
	// preferred_username give readable subjects, but only where the
	// provider guarantees they are unique and never reassigned.
	SubjectClaim string `yaml:"subject_claim,omitempty" json:"subject_claim,omitempty"`
}

// Defaults of OIDCConfig's optional fields.
var (
	DefaultScopes = []string{"openid", "profile", "email"}
)

const (
	DefaultGroupsClaim  = "groups"
	DefaultSubjectClaim = "sub"
)

// Configured tells whether any source of people is configured.
func (c Config) Configured() bool {
	return c.OIDC != nil || c.UsersFile != ""
}

// Validate checks the section without reading files or the network.
func (c Config) Validate() error {
	if c.OIDC != nil {
		if err := c.OIDC.Validate(); err != nil {
			return fmt.Errorf("identity.oidc: %w", err)
		}
	}
	if c.UsersFile != "" && strings.TrimSpace(c.UsersFile) != c.UsersFile {
		return errors.New("identity.users_file: the path has surrounding white space")
	}
	return nil
}

// WithDefaults returns c with the defaults filled in.
func (c OIDCConfig) WithDefaults() OIDCConfig {
	if len(c.Scopes) == 0 {
		c.Scopes = slices.Clone(DefaultScopes)
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = DefaultGroupsClaim
	}
	if c.SubjectClaim == "" {
		c.SubjectClaim = DefaultSubjectClaim
	}
	return c
}

// Validate checks the provider's settings (defaults applied).
func (c OIDCConfig) Validate() error {
	c = c.WithDefaults()
	if err := CheckIssuerURL(c.Issuer); err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	if strings.TrimSpace(c.ClientID) == "" {
		return errors.New("client_id is required")
	}
	if !slices.Contains(c.Scopes, "openid") {
		return errors.New("scopes must include openid")
	}
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return fmt.Errorf("scope %q is not a valid OAuth scope", s)
		}
	}
	for name, claim := range map[string]string{"groups_claim": c.GroupsClaim, "subject_claim": c.SubjectClaim} {
		if strings.TrimSpace(claim) != claim || len(claim) > 256 {
			return fmt.Errorf("%s %q is not a claim name", name, claim)
		}
	}
	switch c.SubjectClaim {
	case "iss", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash", "c_hash", "auth_time", "jti":
		return fmt.Errorf("subject_claim %q is a protocol claim, not a person's identifier", c.SubjectClaim)
	}
	return nil
}

// CheckIssuerURL checks an IdP issuer: an absolute https URL without query
// or fragment, or http on a loopback host (tests, a local IdP).
func CheckIssuerURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return errors.New("is required")
	case err != nil:
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return fmt.Errorf("%q must be an absolute URL without user, query or fragment", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && IsLoopbackHost(u.Hostname()):
		return nil
	default:
		return fmt.Errorf("%q must be an https URL (or http on a loopback host)", raw)
	}
}

// IsLoopbackHost tells whether host (no port) is localhost or a loopback IP.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
