package stack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/cimd"
	"github.com/pbac-gateway/pbac/asrv/signin"
	"github.com/pbac-gateway/pbac/asrv/store/badger"
	"github.com/pbac-gateway/pbac/asrv/store/postgres"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/gateway"
)

// authRuntime is the authorization server with what it owns.
type authRuntime struct {
	server *asrv.Server
	issuer *asrv.IssuerKey
	// signIn is the sign-in guard the AS uses; the dashboard shares it.
	signIn *signin.Guard
	// served: its OAuth endpoints are served (not a replica's
	// introspection on the shared store).
	served bool
	// people are where people sign in (the dashboard's operators too).
	people people
}

// openAuthorization builds what validates tokens: the authorization
// server in process (the default), or the introspection of a remote one —
// on its shared store (RemoteAS.TokenSecretFile) or over RFC 7662.
func (s *Stack) openAuthorization(ctx context.Context) error {
	remote := s.cfg.RemoteAS
	switch {
	case remote != nil && remote.TokenSecretFile != "":
		// A replica of a remote AS's shared store: tokens are read there.
		secret, err := asrv.ReadTokenSecret(remote.TokenSecretFile)
		if err != nil {
			return fmt.Errorf("authorization_server.token_secret_file: %w", err)
		}
		if !config.IsPostgresStore(s.cfg.Store) {
			return errors.New("authorization_server.token_secret_file needs the AS's PostgreSQL store (store: postgres://…)")
		}
		s.issuer = remote.Issuer
		// Its OAuth endpoints are not served: the configuration's asrv:
		// block is the remote AS's business.
		// Its identity section is the AS's, so that the people of its
		// tokens are known here as there (a users file looked up per use).
		if err := s.openAS(ctx, remote.Issuer, secret, nil, nil, false); err != nil {
			return err
		}
		s.log.Info("introspecting on the authorization server's shared store", "issuer", remote.Issuer, "store", s.storeName)
	case remote != nil:
		intro, err := remoteIntrospector(remote)
		if err != nil {
			return err
		}
		s.issuer, s.remote = remote.Issuer, intro
		s.ready = &readiness{policy: s.policyActive}
		return nil
	default:
		s.issuer = s.base
		s.asMetrics = asrv.NewMetrics()
		s.collectors = append(s.collectors, s.asMetrics.Collectors()...)
		guard := signin.New(signin.Config{Logger: s.log.With("component", "sign-in"), Audit: signin.AuditorFunc(s.auditSignIn)})
		if err := s.openAS(ctx, s.base, nil, guard, s.cfg.AuthServer.Settings, s.cfg.Demo.Backends); err != nil {
			return err
		}
		s.as.served = true
	}
	s.ready = &readiness{policy: s.policyActive, store: s.store.Ping}
	return nil
}

// policyActive tells whether a policy version is active (an outside
// decider always is).
func (s *Stack) policyActive() bool {
	if s.policy == nil {
		return true
	}
	_, ok := s.policy.registry.Active()
	return ok
}

// openAS opens the token store, the data dir's token secret (unless
// secret is given) and statement issuer key, and the authorization server
// on them, with the people of openPeople (the demo users only when
// demoTenant). It is the one place the AS is built.
func (s *Stack) openAS(ctx context.Context, issuer string, secret []byte, guard *signin.Guard, settings *config.ASrv, demoTenant bool) error {
	if secret == nil {
		var err error
		if secret, err = asrv.LoadOrCreateTokenSecret(s.cfg.DataDir); err != nil {
			return err
		}
	}
	ppl, err := openPeople(s.cfg.AuthServer, issuer, demoTenant, s.log)
	if err != nil {
		return err
	}
	introspectors, err := asIntrospectors(settings)
	if err != nil {
		return err
	}
	limits, err := asRegistrationLimits(settings)
	if err != nil {
		return err
	}
	maxSignInAge, err := settings.SignInMaxAge()
	if err != nil {
		return err
	}
	accessTTL := s.cfg.AuthServer.AccessTokenTTL
	if accessTTL == 0 {
		if accessTTL, err = settings.AccessTokenLifetime(); err != nil {
			return err
		}
	}
	reuseGrace, err := settings.RefreshReuseGracePeriod()
	if err != nil {
		return err
	}
	key, err := asrv.LoadOrCreateIssuerKey(s.cfg.DataDir)
	if err != nil {
		return err
	}
	issuers, err := statementIssuers(s.cfg.AuthServer.Clients)
	if err != nil {
		return err
	}
	verifier, err := asrv.NewStatementVerifier(append([]asrv.TrustedIssuer{key.Trusted()}, issuers...)...)
	if err != nil {
		return fmt.Errorf("clients.statement_issuers: %w", err)
	}
	if verifier, err = asStatementVerifier(settings, verifier); err != nil {
		return err
	}
	store, storeName, err := openStore(ctx, s.cfg.Store, s.cfg.DataDir, s.cfg.Ephemeral, s.log)
	if err != nil {
		return err
	}
	s.store, s.storeName = store, storeName
	s.onClose(phaseStore, "token store", func(context.Context) error { return store.Close() })
	var documents *cimd.Resolver
	if guard != nil { // the AS's own endpoints are served here
		if documents, err = openMetadataDocuments(s.cfg.AuthServer.Clients, demoTenant, s.log); err != nil {
			return err
		}
	}
	if documents != nil {
		// Registered after the store, so closed before it: its fetches end
		// once the listeners have drained.
		s.onClose(phaseStore, "client metadata documents", func(context.Context) error { return documents.Close() })
	}
	srv, err := asrv.New(asrv.Config{
		Issuer: issuer, Resources: s.resources(), Scopes: s.cfg.AuthServer.Scopes, ActiveScopes: s.scopes, UserAttestable: s.userAttestable, Secret: secret,
		Store: store, Policy: s.tel.Decider(s.decider), Statements: verifier, Instrument: s.tel.Instrument, Logger: s.log, Events: s.auditAS,
		Introspectors: introspectors, SignIn: guard, Registration: limits,
		AccessTokenTTL: accessTTL, MaxSignInAge: maxSignInAge, RefreshReuseGrace: reuseGrace,
		Users: ppl.users, SSO: ppl.redirectSource(), Assertions: ppl.assertionIssuer(), ClientMetadata: documents,
	})
	if err != nil {
		return err
	}
	s.as = &authRuntime{server: srv, issuer: key, signIn: guard, people: ppl}
	if mode := ppl.mode(); mode != "" {
		s.log.Info("people sign in with "+mode, "issuer", issuer)
	} else if guard != nil {
		s.log.Warn("no identity source: nobody can sign in, only machine clients get tokens; configure identity.oidc or identity.users_file")
	}
	if ppl.sso != nil && guard != nil {
		s.log.Info("single sign-on: register this redirect URI at the provider", "redirect_uri", ppl.sso.RedirectURL())
	}
	return nil
}

// statementIssuers are the trusted statement issuers the configuration
// names besides this server's own key (c may be nil: none), their key
// files read.
func statementIssuers(c *config.Clients) ([]asrv.TrustedIssuer, error) {
	if c == nil {
		return nil, nil
	}
	var out []asrv.TrustedIssuer
	for _, si := range c.StatementIssuers {
		if si.Name == asrv.LocalIssuerName {
			return nil, fmt.Errorf("clients.statement_issuers: the name %q is reserved for this authorization server's own key", si.Name)
		}
		got, err := asrv.ReadTrustedIssuer(si.Name, si.Issuer, si.KeyID, si.KeysFile, si.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("clients.statement_issuers %s: %w", si.Name, err)
		}
		out = append(out, got...)
	}
	return out, nil
}

// openMetadataDocuments builds the resolver of Client ID Metadata
// Documents the configuration asks for (c may be nil: on, fetching, the
// defaults); nil when they are off. Pinned documents are read and
// validated here, so a bad one fails at start. The demo tenant, unless a
// pinned_dir is configured, pins Claude Code's document
// (demo.PinnedMetadataDocuments), so Claude Code added without a client
// id works with no network.
func openMetadataDocuments(c *config.Clients, demoTenant bool, log *slog.Logger) (*cimd.Resolver, error) {
	m, err := c.MetadataDocumentSettings()
	if err != nil || !m.Enabled {
		return nil, err
	}
	cfg := cimd.Config{Fetch: m.Fetch, AllowNetworks: m.AllowNetworks, Timeout: m.Timeout, MaxBytes: m.MaxBytes,
		Logger: log.With("component", "client-metadata")}
	if m.CAFile != "" {
		if cfg.RootCAs, err = cimd.LoadTrustStore(m.CAFile); err != nil {
			return nil, fmt.Errorf("clients.metadata_documents.ca_file: %w", err)
		}
	}
	switch {
	case m.PinnedDir != "":
		if cfg.Pinned, err = cimd.LoadPinnedDir(m.PinnedDir); err != nil {
			return nil, fmt.Errorf("clients.metadata_documents.pinned_dir: %w", err)
		}
	case demoTenant:
		cfg.Pinned = demo.PinnedMetadataDocuments()
	}
	r, err := cimd.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("clients.metadata_documents: %w", err)
	}
	fetch := "fetched over HTTPS"
	if !m.Fetch {
		fetch = "not fetched (pinned only)"
	}
	log.Info("client metadata documents: "+fetch, "pinned", len(cfg.Pinned), "allow_networks", m.AllowNetworks)
	return r, nil
}

// introspector is what the gateway validates tokens with.
func (s *Stack) introspector() gateway.Introspector {
	if s.as != nil {
		return s.as.server
	}
	return s.remote
}

// openStore opens the token store spec names: "" (or "badger") for Badger
// under dataDir/store (in memory when ephemeral), a postgres:// or
// postgresql:// URL for PostgreSQL. It returns the store and a name for it
// fit for logs (no password).
func openStore(ctx context.Context, spec, dataDir string, ephemeral bool, log *slog.Logger) (asrv.Store, string, error) {
	switch {
	case (spec == "" || spec == "badger") && ephemeral:
		st, err := badger.Open(ctx, "", badger.WithLogger(log))
		if err != nil {
			return nil, "", err
		}
		return st, "badger:memory", nil
	case spec == "" || spec == "badger":
		dir := filepath.Join(dataDir, "store")
		st, err := badger.Open(ctx, dir, badger.WithLogger(log))
		if err != nil {
			return nil, "", err
		}
		return st, "badger:" + dir, nil
	case config.IsPostgresStore(spec):
		st, err := postgres.Open(ctx, spec, postgres.WithLogger(log))
		if err != nil {
			return nil, "", err
		}
		log.Info("token store: postgres", "store", st.String())
		return st, st.String(), nil
	default:
		// Not echoed: a mistyped DSN may still carry a password.
		return nil, "", errors.New("--store: want postgres://… (or postgresql://…), or nothing for Badger under the data dir")
	}
}

// The configuration resolves to plain values (package config); these build
// the parts' own types from them.

// asIntrospectors are the configuration's introspection clients, as the
// authorization server takes them (c may be nil: none).
func asIntrospectors(c *config.ASrv) ([]asrv.Introspector, error) {
	in, err := c.Introspectors()
	if err != nil {
		return nil, err
	}
	var out []asrv.Introspector
	for _, ic := range in {
		out = append(out, asrv.Introspector{ClientID: ic.ClientID, Secret: ic.Secret})
	}
	return out, nil
}

// asRegistrationLimits are the configuration's registration limits (c may
// be nil: the defaults).
func asRegistrationLimits(c *config.ASrv) (asrv.RegistrationLimits, error) {
	l, err := c.RegistrationLimits()
	if err != nil {
		return asrv.RegistrationLimits{}, err
	}
	return asrv.RegistrationLimits{PerAddressBurst: l.PerAddress, PerAddressInterval: l.PerAddressInterval,
		MaxClients: l.MaxClients, MaxPending: l.MaxUnverified, MaxPendingPerAddress: l.MaxUnverifiedPerAddress, PendingTTL: l.UnverifiedTTL}, nil
}

// asStatementVerifier returns v with the configuration's statement
// lifetime and revocations (c may be nil: v as it is).
func asStatementVerifier(c *config.ASrv, v *asrv.StatementVerifier) (*asrv.StatementVerifier, error) {
	p, err := c.StatementPolicy()
	if err != nil {
		return nil, err
	}
	if c == nil || c.Statements == nil {
		return v, nil
	}
	if p.MaxLifetime > 0 {
		v = v.WithMaxLifetime(p.MaxLifetime)
	}
	return v.WithRevoked(asrv.StatementRevocations{StatementIDs: p.RevokedIDs, KeyIDs: p.RevokedKeys}), nil
}

// gatewayArgumentLimits are the configuration's argument limits (zero
// fields: the gateway's defaults).
func gatewayArgumentLimits(a *config.ArgumentLimits) gateway.ArgumentLimits {
	if a == nil {
		return gateway.ArgumentLimits{}
	}
	return gateway.ArgumentLimits{MaxBytes: a.MaxBytes, MaxStringBytes: a.MaxStringBytes, MaxPathBytes: a.MaxPathBytes,
		MaxPathSegments: a.MaxPathSegments, MaxDepth: a.MaxDepth, MaxKeys: a.MaxKeys}
}

// remoteIntrospector is the RFC 7662 client of a remote authorization
// server.
func remoteIntrospector(r *config.RemoteAS) (*gateway.RemoteIntrospector, error) {
	in, err := r.Introspection()
	if err != nil {
		return nil, err
	}
	return &gateway.RemoteIntrospector{Endpoint: in.Endpoint, ClientID: in.ClientID, ClientSecret: in.ClientSecret}, nil
}

// adminClientFuncs are the admin API's client list and revocation, on the
// token store (nil funcs without one).
func (s *Stack) adminClientFuncs(cfg *admin.Config) {
	if s.store == nil {
		return
	}
	st := s.store
	cfg.DeleteClient = func(r *http.Request, id string) error { return st.DeleteClient(r.Context(), id) }
	if s.as != nil {
		cfg.ListClients = listClientsForReview(s.as.server)
		cfg.ReviewClient = reviewClient(s.as.server)
		cfg.RevokePerson = revokePerson(s.as.server)
	}
}

// revokePerson is the admin API's and the dashboard's "revoke everything
// acting for this person", on the AS (in process, or a replica's view of
// the shared store).
func revokePerson(as *asrv.Server) func(r *http.Request, sub string) (admin.PersonRevocation, error) {
	return func(r *http.Request, sub string) (admin.PersonRevocation, error) {
		got, err := as.RevokeSubject(r.Context(), sub)
		if errors.Is(err, asrv.ErrInvalidSubject) {
			return admin.PersonRevocation{}, fmt.Errorf("%w: %w", admin.ErrBadSubject, err)
		}
		return admin.PersonRevocation{AccessTokens: got.AccessTokens, RefreshTokens: got.RefreshTokens, Codes: got.Codes}, err
	}
}

// auditSignIn records a sign-in attempt (the AS's page or the dashboard's)
// in the audit trail. The trail is opened after the AS and before anything
// is served; without a gateway there is none and the guard's log line is
// the record.
func (s *Stack) auditSignIn(_ context.Context, e signin.Event) {
	if s.asMetrics != nil {
		s.asMetrics.SignIn(e)
	}
	if s.trail == nil {
		return
	}
	r := audit.Record{
		Event: audit.EventSignIn, Time: e.Time.UTC(), RequestID: newRequestID(), ClientID: "(sign-in)", Subject: e.Username,
		Method: "sign-in/" + e.Surface, Remote: e.Address, Count: 1,
	}
	switch e.Outcome {
	case signin.Success:
		r.Decision, r.Status = audit.DecisionAllow, http.StatusOK
		r.Reasons = []string{"signed in"}
	case signin.Throttled:
		r.Decision, r.Status = audit.DecisionDeny, http.StatusTooManyRequests
		r.Reasons = []string{fmt.Sprintf("sign-in throttled: too many failed attempts for this user or address; retry after %s", e.RetryAfter.Round(time.Second))}
	default:
		r.Decision, r.Status = audit.DecisionDeny, http.StatusUnauthorized
		r.Reasons = []string{"sign-in failed: wrong user name or password"}
	}
	s.trail.Record(r)
}

// newRequestID is an audit record's id, as the gateway makes them.
func newRequestID() string {
	b := make([]byte, 24)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}
