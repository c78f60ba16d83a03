package idp

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/identity"
)

// Discovery documents are cached as the provider's headers say, within
// these bounds (an hour when they say nothing); a document that cannot be
// refreshed is used for up to maxStale past its lifetime, so a provider
// that is briefly down does not stop ID-JAG grants whose keys are cached.
const (
	discoveryDefaultTTL = time.Hour
	discoveryMinTTL     = 5 * time.Minute
	discoveryMaxTTL     = 24 * time.Hour
	maxStale            = 24 * time.Hour
)

// metadata is what the AS uses of the provider's discovery document
// (OpenID Connect Discovery 1.0 §3).
type metadata struct {
	Issuer                           string   `json:"issuer"`
	AuthorizationEndpoint            string   `json:"authorization_endpoint"`
	TokenEndpoint                    string   `json:"token_endpoint"`
	JWKSURI                          string   `json:"jwks_uri"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	CodeChallengeMethodsSupported    []string `json:"code_challenge_methods_supported"`
	// TokenEndpointAuthMethodsSupported picks how the client secret is
	// sent (default client_secret_basic, as the specification says).
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`

	algs []string
}

// discoveryURL is where the issuer's discovery document is.
func discoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// metadata returns the provider's discovery document, fetching it when the
// cached one has expired. Concurrent callers share one fetch.
func (p *Provider) metadata(ctx context.Context) (*metadata, error) {
	if md, ok := p.disco.fresh(p.now()); ok {
		return md, nil
	}
	return p.disco.refresh(ctx, p.now, expired(p.now), func(ctx context.Context) (*metadata, time.Duration, error) {
		var md metadata
		h, err := p.fetchJSON(ctx, discoveryURL(p.cfg.Issuer), &md)
		if err != nil {
			return nil, 0, err
		}
		if err := p.checkMetadata(&md); err != nil {
			return nil, 0, err
		}
		return &md, lifetime(h, discoveryDefaultTTL, discoveryMinTTL, discoveryMaxTTL), nil
	}, p.log, "discovery document")
}

// checkMetadata refuses a discovery document for another issuer (OpenID
// Connect Discovery §4.3) or whose endpoints are not URLs this server may
// call, and settles the signing algorithms ID tokens may use.
func (p *Provider) checkMetadata(md *metadata) error {
	if md.Issuer != p.cfg.Issuer {
		return fmt.Errorf("%w: the discovery document names issuer %q, not the configured %q", identity.ErrUnavailable, md.Issuer, p.cfg.Issuer)
	}
	for name, raw := range map[string]string{"authorization_endpoint": md.AuthorizationEndpoint, "token_endpoint": md.TokenEndpoint, "jwks_uri": md.JWKSURI} {
		if err := p.checkEndpoint(raw); err != nil {
			return fmt.Errorf("%w: discovery document: %s: %w", identity.ErrUnavailable, name, err)
		}
	}
	md.algs = nil
	for _, a := range md.IDTokenSigningAlgValuesSupported {
		if slices.Contains(signingAlgs, a) && !slices.Contains(md.algs, a) {
			md.algs = append(md.algs, a)
		}
	}
	if len(md.algs) == 0 {
		md.algs = []string{"RS256"} // OpenID Connect Core §15.1: every provider supports it
	}
	return nil
}

// checkEndpoint: an endpoint the discovery document names is an absolute
// https URL (http only on loopback, and only when the issuer is too).
func (p *Provider) checkEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	if u.Scheme == "https" {
		return nil
	}
	iss, _ := url.Parse(p.cfg.Issuer)
	if u.Scheme == "http" && iss.Scheme == "http" && identity.IsLoopbackHost(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("%q is not an https URL", raw)
}

// signingAlgs are the JWS algorithms accepted from the provider: public-key
// signatures only (never none, never HMAC with a public key as secret).
var signingAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
