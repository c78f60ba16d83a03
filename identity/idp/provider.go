// Package idp signs people in through the organisation's OpenID Connect
// provider (authorization code with PKCE, state and nonce; the ID token's
// issuer, audience, signature, expiry and nonce checked) and verifies the
// identity assertion grants (ID-JAG) it issues for agents.
//
// The provider is the only peer this package calls: its discovery document
// at <issuer>/.well-known/openid-configuration, and the token endpoint and
// key set that document names, each with a timeout, never following a
// redirect, and nothing named by a token (no jku, no x5u). The discovery
// document and the key set are cached as the provider's headers say (see
// discovery.go and keyset.go for the bounds); nothing runs in the
// background.
package idp

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/identity"
)

// Limits on what is read from the provider's tokens.
const (
	maxTokenBytes   = 64 << 10
	maxClaimBytes   = 256
	maxGroups       = 1000
	clockSkew       = time.Minute
	defaultTimeout  = 10 * time.Second
	maxErrorCodeLen = 64
)

// Options are the Provider's settings that do not come from the
// configuration file.
type Options struct {
	// ASIssuer is the authorization server's issuer: the redirect URI at
	// the provider is identity.CallbackURL(ASIssuer), and ID-JAGs must
	// have it as audience. Required.
	ASIssuer string
	// HTTPClient makes every call to the provider; nil: a client of its
	// own. Redirects are never followed, whatever the client says.
	HTTPClient *http.Client
	// Timeout bounds each call to the provider; default 10 s.
	Timeout time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
}

// Provider is the organisation's OpenID Connect provider. It implements
// identity.RedirectSource. Safe for concurrent use.
type Provider struct {
	cfg         identity.OIDCConfig
	asIssuer    string
	redirectURL string
	secret      string
	client      *http.Client
	timeout     time.Duration
	now         func() time.Time
	log         *slog.Logger

	disco *cached[*metadata]
	keys  *cached[[]jose.JSONWebKey]
}

var _ identity.RedirectSource = (*Provider)(nil)

// New returns the provider cfg describes, reading the client secret file.
// It does not call the provider: discovery happens at the first sign-in,
// so an authorization server starts (and its issued tokens keep working)
// while the provider is down.
func New(cfg identity.OIDCConfig, o Options) (*Provider, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("identity.oidc: %w", err)
	}
	if o.ASIssuer == "" {
		return nil, errors.New("idp: the authorization server's issuer is required")
	}
	var secret string
	if cfg.ClientSecretFile != "" {
		raw, err := os.ReadFile(cfg.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("identity.oidc: read the client secret: %w", err)
		}
		if secret = strings.TrimSpace(string(raw)); secret == "" {
			return nil, fmt.Errorf("identity.oidc: the client secret file %s is empty", cfg.ClientSecretFile)
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	client := newHTTPClient(o.Timeout)
	if o.HTTPClient != nil {
		c := *o.HTTPClient
		c.CheckRedirect = client.CheckRedirect
		if c.Timeout <= 0 {
			c.Timeout = o.Timeout
		}
		client = &c
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Provider{
		cfg: cfg, asIssuer: strings.TrimSuffix(o.ASIssuer, "/"), redirectURL: identity.CallbackURL(o.ASIssuer),
		secret: secret, client: client, timeout: o.Timeout, now: o.Now, log: o.Logger,
		disco: newCached[*metadata](), keys: newCached[[]jose.JSONWebKey](),
	}, nil
}

// Issuer is the provider's issuer URL.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// RedirectURL is the redirect URI to register at the provider.
func (p *Provider) RedirectURL() string { return p.redirectURL }

// Label implements identity.RedirectSource: the provider's host.
func (p *Provider) Label() string {
	u, err := url.Parse(p.cfg.Issuer)
	if err != nil {
		return p.cfg.Issuer
	}
	return u.Host
}

// Start implements identity.RedirectSource: an authorization request with
// a fresh state, nonce and PKCE (S256) verifier.
func (p *Provider) Start(ctx context.Context) (identity.Redirect, error) {
	md, err := p.metadata(ctx)
	if err != nil {
		return identity.Redirect{}, err
	}
	pend := identity.Pending{State: rand.Text(), Nonce: rand.Text(), Verifier: oauth2.GenerateVerifier()}
	u := p.oauthConfig(md).AuthCodeURL(pend.State, oauth2.S256ChallengeOption(pend.Verifier), oidc.Nonce(pend.Nonce))
	return identity.Redirect{URL: u, Pending: pend}, nil
}

// Finish implements identity.RedirectSource: the callback's code is
// exchanged (with the PKCE verifier) for an ID token, which is verified
// and must carry the sign-in's nonce.
func (p *Provider) Finish(ctx context.Context, pend identity.Pending, q url.Values) (identity.Person, error) {
	if pend.State == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pend.State)) != 1 {
		return identity.Person{}, fmt.Errorf("%w: the callback's state is not this sign-in's", identity.ErrInvalidToken)
	}
	// RFC 9207: a provider that names itself must name the right one.
	if iss, ok := q["iss"]; ok && (len(iss) != 1 || iss[0] != p.cfg.Issuer) {
		return identity.Person{}, fmt.Errorf("%w: the callback names issuer %q, not %q (mix-up)", identity.ErrInvalidToken, q.Get("iss"), p.cfg.Issuer)
	}
	if e := q.Get("error"); e != "" {
		return identity.Person{}, fmt.Errorf("%w: %s", identity.ErrRefused, errorCode(e))
	}
	code := q.Get("code")
	if code == "" {
		return identity.Person{}, fmt.Errorf("%w: the callback has neither a code nor an error", identity.ErrRefused)
	}
	md, err := p.metadata(ctx)
	if err != nil {
		return identity.Person{}, err
	}
	tctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	tok, err := p.oauthConfig(md).Exchange(context.WithValue(tctx, oauth2.HTTPClient, p.client), code, oauth2.VerifierOption(pend.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
			return identity.Person{}, fmt.Errorf("%w: the token endpoint refused the code: %s", identity.ErrRefused, errorCode(re.ErrorCode))
		}
		return identity.Person{}, fmt.Errorf("%w: redeem the code: %w", identity.ErrUnavailable, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return identity.Person{}, fmt.Errorf("%w: the token response has no ID token", identity.ErrInvalidToken)
	}
	return p.VerifyIDToken(ctx, raw, pend.Nonce)
}

// VerifyIDToken checks an ID token from the provider's token endpoint:
// signed by one of the provider's keys with an accepted algorithm, issued
// by the configured issuer for the configured client (and, with several
// audiences, authorized for it: azp), not expired or issued in the future,
// and carrying nonce. It returns the person the token names.
func (p *Provider) VerifyIDToken(ctx context.Context, raw, nonce string) (identity.Person, error) {
	if len(raw) > maxTokenBytes {
		return identity.Person{}, fmt.Errorf("%w: the ID token is larger than %d bytes", identity.ErrInvalidToken, maxTokenBytes)
	}
	md, err := p.metadata(ctx)
	if err != nil {
		return identity.Person{}, err
	}
	ks := &recordingKeySet{keySet: keySet{p}}
	v := oidc.NewVerifier(p.cfg.Issuer, ks, &oidc.Config{ClientID: p.cfg.ClientID, SupportedSigningAlgs: md.algs, Now: p.now})
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		if u := ks.unavailable(); u != nil {
			return identity.Person{}, u
		}
		return identity.Person{}, fmt.Errorf("%w: %w", identity.ErrInvalidToken, err)
	}
	if nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return identity.Person{}, fmt.Errorf("%w: the nonce is not this sign-in's (a replayed or injected token)", identity.ErrInvalidToken)
	}
	if idt.IssuedAt.IsZero() || idt.IssuedAt.After(p.now().Add(clockSkew)) {
		return identity.Person{}, fmt.Errorf("%w: iat is missing or in the future", identity.ErrInvalidToken)
	}
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return identity.Person{}, fmt.Errorf("%w: %w", identity.ErrInvalidToken, err)
	}
	// OpenID Connect Core §3.1.3.7 items 4 and 5.
	var azp string
	if raw, ok := claims["azp"]; ok && json.Unmarshal(raw, &azp) != nil {
		return identity.Person{}, fmt.Errorf("%w: azp is not a string", identity.ErrInvalidToken)
	}
	if (azp != "" && azp != p.cfg.ClientID) || (len(idt.Audience) > 1 && azp == "") {
		return identity.Person{}, fmt.Errorf("%w: the token was authorized for %q, not this client", identity.ErrInvalidToken, azp)
	}
	return p.person(claims)
}

// person reads the person a verified token's claims name: the subject
// from the subject claim, the groups from the groups claim.
func (p *Provider) person(claims map[string]json.RawMessage) (identity.Person, error) {
	sub, err := stringClaim(claims, p.cfg.SubjectClaim)
	if err != nil || sub == "" {
		return identity.Person{}, fmt.Errorf("%w: the subject claim %s is missing or not a string", identity.ErrInvalidToken, p.cfg.SubjectClaim)
	}
	if !printable(sub) {
		return identity.Person{}, fmt.Errorf("%w: the subject claim %s is longer than %d bytes or not printable", identity.ErrInvalidToken, p.cfg.SubjectClaim, maxClaimBytes)
	}
	if p.cfg.SubjectClaim == "email" {
		// An address the provider did not say it verified names nobody:
		// a missing email_verified is not a yes (some providers omit it
		// and let people edit their address).
		var verified bool
		if raw, ok := claims["email_verified"]; !ok || json.Unmarshal(raw, &verified) != nil || !verified {
			return identity.Person{}, fmt.Errorf("%w: the subject is an email address the provider has not verified", identity.ErrInvalidToken)
		}
	}
	groups, err := p.groups(claims)
	if err != nil {
		return identity.Person{}, err
	}
	person := identity.Person{Subject: sub, Groups: groups}
	for _, c := range []string{"name", "preferred_username"} {
		if n, err := stringClaim(claims, c); err == nil && n != "" && printable(n) {
			person.Name = n
			break
		}
	}
	if person.Name == "" {
		person.Name = sub
	}
	if e, err := stringClaim(claims, "email"); err == nil && printable(e) {
		person.Email = e
	}
	return person, nil
}

// groups reads the groups claim: a list of strings, or one string; absent
// is no groups. Anything else refuses the token: policy may deny by group,
// so groups the provider sent must never be silently lost. A provider that
// moved the groups elsewhere (a distributed claim, such as Entra ID's
// groups overage) is refused for the same reason.
func (p *Provider) groups(claims map[string]json.RawMessage) ([]string, error) {
	name := p.cfg.GroupsClaim
	if raw, ok := claims["_claim_names"]; ok {
		var names map[string]json.RawMessage
		if json.Unmarshal(raw, &names) == nil {
			if _, moved := names[name]; moved {
				return nil, fmt.Errorf("%w: the provider sent the %s claim as a distributed claim; configure it to put the groups in the ID token", identity.ErrInvalidToken, name)
			}
		}
	}
	raw, ok := claims[name]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		var one string
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, fmt.Errorf("%w: the groups claim %s is not a list of strings", identity.ErrInvalidToken, name)
		}
		list = []string{one}
	}
	if len(list) > maxGroups {
		return nil, fmt.Errorf("%w: the groups claim %s has more than %d groups", identity.ErrInvalidToken, name, maxGroups)
	}
	for _, g := range list {
		if g == "" || !printable(g) {
			return nil, fmt.Errorf("%w: the groups claim %s has an empty, over-long or unprintable group", identity.ErrInvalidToken, name)
		}
	}
	slices.Sort(list)
	return slices.Compact(list), nil
}

func stringClaim(claims map[string]json.RawMessage, name string) (string, error) {
	raw, ok := claims[name]
	if !ok {
		return "", nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// printable: at most maxClaimBytes of valid UTF-8 without control
// characters, so a claim reaches pages, logs and policy unaltered.
func printable(s string) bool {
	if len(s) > maxClaimBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// errorCode keeps an OAuth error code from the provider fit for logs: the
// RFC 6749 error character set, bounded.
func errorCode(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= maxErrorCodeLen {
			break
		}
		if r >= 0x20 && r <= 0x7e && r != '"' && r != '\\' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "(no error code)"
	}
	return b.String()
}

// oauthConfig is the code flow's client configuration for md.
func (p *Provider) oauthConfig(md *metadata) *oauth2.Config {
	style := oauth2.AuthStyleInHeader
	if p.secret == "" || (len(md.TokenEndpointAuthMethodsSupported) > 0 &&
		!slices.Contains(md.TokenEndpointAuthMethodsSupported, "client_secret_basic") &&
		slices.Contains(md.TokenEndpointAuthMethodsSupported, "client_secret_post")) {
		style = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID: p.cfg.ClientID, ClientSecret: p.secret, RedirectURL: p.redirectURL, Scopes: p.cfg.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: md.AuthorizationEndpoint, TokenURL: md.TokenEndpoint, AuthStyle: style},
	}
}
