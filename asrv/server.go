// Package asrv is the OAuth 2.1 authorization server of the gateway: agents
// register dynamically with signed software statements, get opaque tokens
// held in a Store, and every registration, token issuance, exchange and
// introspection is decided by policy.
package asrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/pkce"

	"github.com/pbac-gateway/pbac/asrv/cimd"
	"github.com/pbac-gateway/pbac/asrv/signin"
	"github.com/pbac-gateway/pbac/identity"
)

// Endpoint paths, fixed so every client, document and test agrees.
const (
	PathMetadata        = "/.well-known/oauth-authorization-server"
	PathOpenIDMetadata  = "/.well-known/openid-configuration"
	PathRegister        = "/oauth2/register"
	PathAuthorize       = "/oauth2/authorize"
	PathToken           = "/oauth2/token"
	PathIntrospect      = "/oauth2/introspect"
	PathRevoke          = "/oauth2/revoke"
	GrantTypeExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccess     = "urn:ietf:params:oauth:token-type:access_token"
	maxRequestBodyBytes = 64 << 10
	// MaxRefreshReuseGrace bounds Config.RefreshReuseGrace: the window
	// exists for concurrent refreshes, which are seconds apart; a stolen
	// refresh token replayed within it is not detected as reuse.
	MaxRefreshReuseGrace = time.Minute
	// DefaultMaxSignInAge is Config.MaxSignInAge's default.
	DefaultMaxSignInAge = 24 * time.Hour
	// DefaultAccessTokenTTL is Config.AccessTokenTTL's default.
	DefaultAccessTokenTTL = 10 * time.Minute
)

// Config configures a Server. Issuer, Resources, Secret, Store and Policy
// are required.
type Config struct {
	// Instrument, when set, wraps each endpoint's handler, given its route
	// pattern ("POST /oauth2/token"): tracing names the endpoint's span
	// after it.
	Instrument func(pattern string, h http.Handler) http.Handler
	// Issuer is the AS's base URL (https, or http on loopback for the demo).
	Issuer string
	// Resources are the protected resources (RFC 8707 identifiers, e.g. the
	// gateway's MCP URL) this AS issues tokens for. The first is the default
	// for clients that send no resource parameter.
	Resources []string
	// Scopes, when not nil, are the scopes clients may ask for
	// (scopes_supported), fixed for the server's life.
	Scopes []string
	// ActiveScopes, when Scopes is nil, gives the scopes clients may ask
	// for at each request: those of the active policy version
	// (contract.Data.Scopes), so a policy change that adds or removes a
	// backend's scopes is advertised and accepted from the next request.
	// It must be cheap and safe for concurrent use. With neither, clients
	// may ask for what they registered.
	ActiveScopes func() []string
	// UserAttestable, when set, gives the providers a person may vouch
	// for a client as at sign-in, per the active policy
	// (contract.Data.UserAttestable); nil or empty: nobody may.
	UserAttestable func() []string
	// Secret keys the HMAC of opaque tokens: at least 32 bytes, kept across
	// restarts so issued tokens stay valid.
	Secret []byte
	Store  Store
	Policy Decider
	// Users signs people in with a name and a password: DemoUsers in the
	// demo tenant only, or a users file (PasswordUsers). nil: no password
	// form.
	Users UserSource
	// SSO signs people in at the organisation's identity provider
	// (identity/idp); the sign-in page offers it as a button. nil: none.
	// With neither Users nor SSO people cannot sign in: the authorization
	// endpoint refuses (access_denied) and only machine clients get
	// tokens.
	SSO identity.RedirectSource
	// Assertions is the identity provider whose identity assertion grants
	// (ID-JAG, MCP's enterprise-managed authorization) the token endpoint
	// accepts as RFC 7523 jwt-bearer grants: the identity.oidc issuer,
	// whose keys are its JWKS. nil: the grant is not offered. Accepting
	// it does not need people to sign in here (Users, SSO).
	Assertions identity.AssertionIssuer
	// Statements verifies software statements; nil trusts no issuer, so
	// every client registers unverified.
	Statements *StatementVerifier
	// Registration limits dynamic client registration; zero fields take
	// the defaults.
	Registration RegistrationLimits
	// SignIn throttles and audits password sign-in; nil: a guard of its
	// own with the defaults. Share one with the dashboard's sign-in.
	SignIn *signin.Guard
	// Introspectors are the only clients that may call the RFC 7662
	// introspection endpoint: resource servers, such as a gateway that runs
	// apart from this AS. Empty: nobody may (a gateway in the same process
	// calls Introspect directly).
	Introspectors []Introspector
	// ClientMetadata, when set, resolves client ids that are https URLs:
	// Client ID Metadata Documents (the AS metadata then says
	// client_id_metadata_document_supported). Nil: such ids are looked up
	// in the store like any other. The caller closes it.
	ClientMetadata *cimd.Resolver

	AccessTokenTTL  time.Duration // default 10 min
	RefreshTokenTTL time.Duration // default 24 h
	AuthCodeTTL     time.Duration // default 1 min
	// MaxSignInAge bounds how long a person's sign-in lasts (default
	// 24 h): a refresh, or an identity assertion grant, whose sign-in
	// (Session.AuthTime) is older is refused with invalid_grant, and the
	// person signs in again — which is also when their groups are read
	// afresh. Refreshes renew the refresh token's lifetime, so without it
	// a grant would never end.
	MaxSignInAge time.Duration
	// RefreshReuseGrace is the refresh token rotation grace period (0,
	// the default, none): a refresh token rotated less than this long ago
	// may be presented again by its own client, and gets a new pair of the
	// same grant (policy deciding as for any refresh), where otherwise it
	// would be reuse and revoke the whole family. Clients that refresh
	// several times at once need it. At most MaxRefreshReuseGrace.
	RefreshReuseGrace time.Duration

	// Events, when set, receives every registration, authorization,
	// token request and revocation, granted or refused with the reason,
	// for the audit trail. It is called on the request's goroutine and
	// must not block.
	Events func(context.Context, Event)

	Logger *slog.Logger
	Now    func() time.Time
}

// Server is the authorization server. Its Handler serves every endpoint;
// Introspect serves the gateway in process.
type Server struct {
	cfg      Config
	provider fosite.OAuth2Provider
	fcfg     *fosite.Config
	strategy *oauth2.HMACSHAStrategy
	store    Store
	policy   Decider
	users    UserSource
	sso      identity.RedirectSource
	log      *slog.Logger
	now      func() time.Time
	issuer   *url.URL
	signIn   *signin.Guard
	forms    *signin.Forms
	// ssoSeal seals the state of single sign-ons in their cookies.
	ssoSeal *identity.SignInSeal
	reg     *registrations
	// introspectors are the clients Config.Introspectors allows, by id;
	// those configured with a secret are their own *Client, never stored.
	introspectors map[string]*Client
	// clients is the client registry fosite sees.
	clients configuredClients
	// introspected decodes pbac/introspect's results.
	introspected resultDecoder
}

// New builds a Server; a configuration mistake fails here, not mid-request.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("asrv: a store is required")
	case cfg.Policy == nil:
		return nil, errors.New("asrv: a policy decider is required")
	case len(cfg.Secret) < 32:
		return nil, errors.New("asrv: the token secret must be at least 32 bytes")
	case len(cfg.Resources) == 0:
		return nil, errors.New("asrv: at least one protected resource is required")
	}
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || iss.Host == "" || (iss.Scheme != "https" && !(iss.Scheme == "http" && isLoopbackHost(iss.Hostname()))) {
		return nil, fmt.Errorf("asrv: issuer %q must be an https URL (or http on loopback)", cfg.Issuer)
	}
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL <= 0 {
		cfg.RefreshTokenTTL = 24 * time.Hour
	}
	if cfg.AuthCodeTTL <= 0 {
		cfg.AuthCodeTTL = time.Minute
	}
	if cfg.MaxSignInAge <= 0 {
		cfg.MaxSignInAge = DefaultMaxSignInAge
	}
	if cfg.RefreshReuseGrace < 0 || cfg.RefreshReuseGrace > MaxRefreshReuseGrace {
		return nil, fmt.Errorf("asrv: the refresh reuse grace period %s must be between 0 and %s", cfg.RefreshReuseGrace, MaxRefreshReuseGrace)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SignIn == nil {
		cfg.SignIn = signin.New(signin.Config{Logger: cfg.Logger})
	}
	forms, err := signin.NewForms(signInFormsKey(cfg.Secret), signInFormTTL, storeSpender{cfg.Store}, cfg.Now)
	if err != nil {
		return nil, err
	}
	ssoSeal, err := newSSOSeal(cfg.Secret)
	if err != nil {
		return nil, err
	}
	introspectors, err := newIntrospectors(cfg.Introspectors)
	if err != nil {
		return nil, err
	}
	cfg.Registration = cfg.Registration.withDefaults()
	// Statements are for this server: their aud names its issuer.
	if cfg.Statements != nil && len(cfg.Statements.Audiences()) == 0 {
		base := strings.TrimSuffix(cfg.Issuer, "/")
		cfg.Statements = cfg.Statements.WithAudience(base, base+"/")
	}
	metadata, err := newMetadataClients(&cfg, cfg.Store)
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(cfg.Issuer, "/")
	fc := &fosite.Config{
		AccessTokenLifespan:            cfg.AccessTokenTTL,
		RefreshTokenLifespan:           cfg.RefreshTokenTTL,
		AuthorizeCodeLifespan:          cfg.AuthCodeTTL,
		GlobalSecret:                   cfg.Secret,
		TokenURL:                       base + PathToken,
		AccessTokenIssuer:              base,
		EnforcePKCE:                    true,
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: false,
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       resourceAudience(cfg.Resources),
		// Refresh tokens for every grant that issues them; policy decides
		// scopes, not an offline_access convention.
		RefreshTokenScopes:         []string{},
		SendDebugMessagesToClients: false,
		MinParameterEntropy:        fosite.MinParameterEntropy,
		RedirectSecureChecker:      secureRedirect,
		TokenEntropy:               32,
		ClientSecretsHasher:        secretHasher{},
	}
	strategy := compose.NewOAuth2HMACStrategy(fc)
	s := &Server{
		cfg:      cfg,
		fcfg:     fc,
		strategy: strategy,
		store:    cfg.Store,
		policy:   cfg.Policy,
		users:    cfg.Users,
		sso:      cfg.SSO,
		log:      cfg.Logger,
		now:      cfg.Now,
		issuer:   iss,
		signIn:   cfg.SignIn,
		forms:    forms,
		ssoSeal:  ssoSeal,
		reg:      newRegistrations(cfg.Registration, cfg.Now),

		introspectors: introspectors,
	}
	s.clients = configuredClients{Store: cfg.Store, introspectors: introspectors, metadata: metadata, scopes: s.scopes}
	fc.ClientAuthenticationStrategy = s.authenticateClient
	// Only the grants MCP needs, composed here so a missing piece fails at
	// start-up: authorization code + PKCE, refresh, client credentials,
	// token exchange, the jwt-bearer grant of identity assertions (with
	// Config.Assertions); introspection and revocation.
	handlers := []any{
		&oauth2.AuthorizeExplicitGrantHandler{
			AccessTokenStrategy:    strategy,
			RefreshTokenStrategy:   strategy,
			AuthorizeCodeStrategy:  strategy,
			CoreStorage:            grantStore{cfg.Store},
			TokenRevocationStorage: cfg.Store,
			Config:                 fc,
		},
		&pkce.Handler{AuthorizeCodeStrategy: strategy, Storage: cfg.Store, Config: fc},
		refreshGrantHandler{&oauth2.RefreshTokenGrantHandler{
			AccessTokenStrategy:    strategy,
			RefreshTokenStrategy:   strategy,
			TokenRevocationStorage: refreshStore{Store: cfg.Store, scopes: s.scopes, grace: cfg.RefreshReuseGrace, log: cfg.Logger},
			Config:                 fc,
		}},
		&oauth2.ClientCredentialsGrantHandler{
			HandleHelper: &oauth2.HandleHelper{AccessTokenStrategy: strategy, AccessTokenStorage: cfg.Store, Config: fc},
			Config:       fc,
		},
		&tokenExchangeHandler{server: s},
		&jwtBearerHandler{server: s},
		&oauth2.CoreValidator{CoreStrategy: strategy, CoreStorage: cfg.Store, Config: fc},
		&oauth2.TokenRevocationHandler{
			TokenRevocationStorage: cfg.Store,
			AccessTokenStrategy:    strategy,
			RefreshTokenStrategy:   strategy,
		},
	}
	if cfg.Assertions == nil {
		handlers = slices.DeleteFunc(handlers, func(h any) bool { _, ok := h.(*jwtBearerHandler); return ok })
	}
	for _, h := range handlers {
		if ah, ok := h.(fosite.AuthorizeEndpointHandler); ok {
			fc.AuthorizeEndpointHandlers.Append(ah)
		}
		if th, ok := h.(fosite.TokenEndpointHandler); ok {
			fc.TokenEndpointHandlers.Append(th)
		}
		if ti, ok := h.(fosite.TokenIntrospector); ok {
			fc.TokenIntrospectionHandlers.Append(ti)
		}
		if rh, ok := h.(fosite.RevocationHandler); ok {
			fc.RevocationHandlers.Append(rh)
		}
	}
	s.provider = fosite.NewOAuth2Provider(s.clients, fc)
	return s, nil
}

// Handler serves every endpoint of the authorization server.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.HandlerFunc) {
		if s.cfg.Instrument != nil {
			mux.Handle(pattern, s.cfg.Instrument(pattern, h))
			return
		}
		mux.Handle(pattern, h)
	}
	handle("GET "+PathMetadata, s.serveMetadata)
	handle("GET "+PathOpenIDMetadata, s.serveMetadata)
	handle("POST "+PathRegister, s.serveRegister)
	handle("GET "+PathRegister+"/{client_id}", s.serveClientConfiguration)
	handle("DELETE "+PathRegister+"/{client_id}", s.serveClientConfiguration)
	handle("GET "+PathAuthorize, s.serveAuthorize)
	handle("POST "+PathAuthorize, s.serveAuthorize)
	handle("GET "+PathIDPCallback, s.serveIDPCallback)
	handle("POST "+PathToken, s.serveToken)
	handle("POST "+PathIntrospect, s.serveIntrospect)
	handle("POST "+PathRevoke, s.serveRevoke)
	return limitBody(mux)
}

// limitBody bounds every request body: OAuth requests are small.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxRequestBodyBytes)
		next.ServeHTTP(w, r)
	})
}

func (s *Server) url(path string) string {
	return strings.TrimSuffix(s.cfg.Issuer, "/") + path
}

// Metadata is the RFC 8414 authorization server metadata.
func (s *Server) Metadata() map[string]any {
	m := map[string]any{
		"issuer":                                         s.cfg.Issuer,
		"authorization_endpoint":                         s.url(PathAuthorize),
		"token_endpoint":                                 s.url(PathToken),
		"registration_endpoint":                          s.url(PathRegister),
		"introspection_endpoint":                         s.url(PathIntrospect),
		"revocation_endpoint":                            s.url(PathRevoke),
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token", "client_credentials", GrantTypeExchange},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{AuthMethodSecretBasic, AuthMethodSecretPost, AuthMethodNone},
		"introspection_endpoint_auth_methods_supported":  []string{AuthMethodSecretBasic, AuthMethodSecretPost},
		"revocation_endpoint_auth_methods_supported":     []string{AuthMethodSecretBasic, AuthMethodSecretPost, AuthMethodNone},
		"scopes_supported":                               orEmpty(s.scopes()),
		"resource_indicators_supported":                  true,
		"authorization_response_iss_parameter_supported": true,
	}
	if s.cfg.Assertions != nil {
		// Enterprise-managed authorization: the grant type, and the ID-JAG
		// profile where draft-ietf-oauth-identity-assertion-authz-grant
		// §7.2 (and the MCP extension's "Discovery") has clients look.
		m["grant_types_supported"] = []string{"authorization_code", "refresh_token", "client_credentials", GrantTypeExchange, GrantTypeJWTBearer}
		m["authorization_grant_profiles_supported"] = []string{GrantProfileIDJAG}
	}
	if s.clients.metadata != nil {
		// The draft, "Authorization Server Metadata"; a document's client
		// authenticates with none or private_key_jwt ("Client
		// Authentication"), whose algorithms RFC 8414 §2 requires listed.
		m["client_id_metadata_document_supported"] = true
		m["token_endpoint_auth_methods_supported"] = []string{AuthMethodSecretBasic, AuthMethodSecretPost, AuthMethodNone, cimd.AuthMethodPrivateKeyJWT}
		m["token_endpoint_auth_signing_alg_values_supported"] = cimd.SigningAlgs
		m["revocation_endpoint_auth_methods_supported"] = []string{AuthMethodSecretBasic, AuthMethodSecretPost, AuthMethodNone, cimd.AuthMethodPrivateKeyJWT}
	}
	return m
}

func (s *Server) serveMetadata(w http.ResponseWriter, _ *http.Request) {
	// scopes_supported follows the active policy: a cache must ask again.
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, s.Metadata())
}

// scopes are the scopes clients may ask for now (Config.Scopes, else
// Config.ActiveScopes); nil when neither is configured.
func (s *Server) scopes() []string {
	switch {
	case s.cfg.Scopes != nil:
		return s.cfg.Scopes
	case s.cfg.ActiveScopes != nil:
		return orEmpty(s.cfg.ActiveScopes())
	}
	return nil
}

func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// resourcesFor validates the RFC 8707 resource parameters of a request: each
// must be a resource this AS serves. None given means the default resource.
func (s *Server) resourcesFor(form url.Values) ([]string, error) {
	asked := form["resource"]
	if len(asked) == 0 {
		return []string{s.cfg.Resources[0]}, nil
	}
	var out []string
	for _, r := range asked {
		if !slices.Contains(s.cfg.Resources, r) {
			return nil, errInvalidTarget.WithHintf("The resource %q is not served by this authorization server.", r)
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// resourceAudience lets a grant carry as audience the protected resources
// this AS serves (RFC 8707) besides the client's own registered audience.
func resourceAudience(resources []string) fosite.AudienceMatchingStrategy {
	return func(haystack []string, needle []string) error {
		for _, n := range needle {
			if !slices.Contains(resources, n) && !slices.Contains(haystack, n) {
				return fosite.ErrInvalidRequest.WithHintf("Requested audience %q has not been whitelisted by the OAuth 2.0 Client.", n)
			}
		}
		return nil
	}
}
