package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/signin"
	"github.com/pbac-gateway/pbac/asrv/store/badger"
	"github.com/pbac-gateway/pbac/asrv/store/postgres"
	"github.com/pbac-gateway/pbac/config"
)

func newAsrvCommand() *cobra.Command {
	var (
		listen, dataDir, store, issuer, logLevel, configPath string
		resources                                            []string
	)
	cmd := &cobra.Command{
		Use:   "asrv",
		Short: "Run the authorization server alone",
		Long: `Runs the OAuth 2.1 authorization server on its own: dynamic client registration
with software statements, authorization code + PKCE with a sign-in page for the
demo users, refresh, client credentials, token exchange, introspection and
revocation, with opaque tokens in Badger under the data dir, or in PostgreSQL
with --store postgres://… (shared by several replicas). Every registration,
token and introspection is decided by the shipped policy.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			ops, err := resolveOps(cmd.Flags(), configPath, os.LookupEnv)
			if err != nil {
				return err
			}
			log := ops.logger()
			bundles, err := bundleSettings(cmd.Flags(), ops.file)
			if err != nil {
				return err
			}
			dataDir := ops.dataDir
			if dataDir == "" {
				dataDir = asrv.DefaultDataDir()
			}
			if dataDir == "" {
				return errors.New("no data dir: pass --data-dir or set PBAC_DATA_DIR")
			}
			ln, scheme, err := openListener(ops.listen, ops.tls, log)
			if err != nil {
				return err
			}
			base := strings.TrimSuffix(ops.publicURL, "/")
			if base == "" {
				base = scheme + "://" + ln.Addr().String()
			}
			if len(resources) == 0 {
				resources = []string{base + "/mcp"}
			}
			pol, err := newPolicyRuntime(ctx, dataDir, ops.limits, log)
			if err != nil {
				ln.Close()
				return err
			}
			defer pol.Close(context.WithoutCancel(ctx))
			if _, _, err := startDistribution(ctx, bundles, pol.registry, log); err != nil {
				ln.Close()
				return err
			}
			_, leave, err := startPolicySync(ctx, bundles, ops.store, pol.registry, log)
			if err != nil {
				ln.Close()
				return err
			}
			defer leave()
			as, err := newAuthorizationServer(ctx, dataDir, ops.store, base, resources, pol, ops.file.ASrv, log)
			if err != nil {
				ln.Close()
				return err
			}
			defer as.store.Close()
			ready := &readiness{policy: func() bool { _, ok := pol.registry.Active(); return ok }, store: as.store.Ping}
			fmt.Fprintf(cmd.OutOrStdout(), "pbac asrv: authorization server at %s (data dir %s, token store %s)\n", base, dataDir, as.storeName)
			// On SIGTERM /readyz turns 503 for the drain delay before the
			// listener stops.
			stop, cancel := context.WithCancel(context.WithoutCancel(ctx))
			defer cancel()
			go func() {
				<-ctx.Done()
				drainWait(context.Background(), ready, ops.drainDelay, log)
				cancel()
			}()
			return serveHTTP(stop, ln, withProbes(as.server.Handler(), ready.check), log)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9090", "address to listen on")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data dir (default $PBAC_DATA_DIR or ~/.local/share/pbac)")
	cmd.Flags().StringVar(&store, "store", "", storeFlagUsage)
	cmd.Flags().StringVar(&issuer, "issuer", "", "issuer URL (default http(s)://<listen address>; public_url in the config file)")
	cmd.Flags().StringSliceVar(&resources, "resource", nil, "protected resource URL tokens are for (repeatable; default <issuer>/mcp)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (YAML) as pbac up reads it: listen, data_dir, store, public_url (the issuer), tls, log_*, drain_delay; PBAC_* environment variables override it, flags override both")
	addOpsFlags(cmd, false)
	addBundleFlags(cmd)
	return cmd
}

// authRuntime is the authorization server with what it owns.
type authRuntime struct {
	server *asrv.Server
	store  asrv.Store
	// storeName names the token store for people: a Badger directory or a
	// PostgreSQL database, never with a password.
	storeName string
	issuer    *asrv.IssuerKey
	// signIn is the sign-in guard the AS uses (nil: its own default).
	signIn *signin.Guard
}

// storeFlagUsage documents --store (pbac asrv, pbac up).
const storeFlagUsage = "token store: empty for Badger under the data dir, or postgres://user@host:5432/db?sslmode=… for PostgreSQL shared by replicas (password from PGPASSWORD or ~/.pgpass rather than the URL)"

// openStore opens the token store spec names: "" (or "badger") for Badger
// under dataDir/store, a postgres:// or postgresql:// URL for PostgreSQL.
// It returns the store and a name for it fit for logs (no password).
func openStore(ctx context.Context, spec, dataDir string, log *slog.Logger) (asrv.Store, string, error) {
	switch {
	case spec == "" || spec == "badger":
		dir := filepath.Join(dataDir, "store")
		s, err := badger.Open(ctx, dir, badger.WithLogger(log))
		if err != nil {
			return nil, "", err
		}
		return s, "badger:" + dir, nil
	case config.IsPostgresStore(spec):
		s, err := postgres.Open(ctx, spec, postgres.WithLogger(log))
		if err != nil {
			return nil, "", err
		}
		log.Info("token store: postgres", "store", s.String())
		return s, s.String(), nil
	default:
		// Not echoed: a mistyped DSN may still carry a password.
		return nil, "", errors.New("--store: want postgres://… (or postgresql://…), or nothing for Badger under the data dir")
	}
}

// asSetup is what an authorization server of this binary is built from.
type asSetup struct {
	dataDir   string // token secret (unless secret is set), statement issuer key, Badger store
	storeSpec string // see openStore
	issuer    string
	resources []string
	scopes    []string
	policy    asrv.Decider
	// secret is the token secret; nil: the data dir's (created if absent).
	secret []byte
	// settings are the config file's asrv: block (nil: defaults).
	settings *config.ASrv
	// signIn throttles the AS's sign-in page; the dashboard shares it.
	signIn *signin.Guard
	log    *slog.Logger
}

// newAuthorizationServer opens the token store (storeSpec, see openStore),
// the data dir's token secret and statement issuer key, on the given
// policy.
func newAuthorizationServer(ctx context.Context, dataDir, storeSpec, issuer string, resources []string, pol *policyRuntime, settings *config.ASrv, log *slog.Logger) (*authRuntime, error) {
	return openAuthorizationServer(ctx, asSetup{dataDir: dataDir, storeSpec: storeSpec, issuer: issuer, resources: resources,
		scopes: activeScopes(pol.registry), policy: pol.registry, settings: settings,
		signIn: signin.New(signin.Config{Logger: log.With("component", "sign-in")}), log: log})
}

// newSharedStoreIntrospector is the authorization server's introspection
// alone, on the AS's shared PostgreSQL store with the AS's token secret:
// a gateway replica reads tokens there instead of asking the AS over HTTP.
// Its OAuth endpoints are not served.
func newSharedStoreIntrospector(ctx context.Context, dataDir, storeSpec string, remote *config.RemoteAS, resources []string, pol *policyRuntime, log *slog.Logger) (*authRuntime, error) {
	secret, err := asrv.ReadTokenSecret(remote.TokenSecretFile)
	if err != nil {
		return nil, fmt.Errorf("authorization_server.token_secret_file: %w", err)
	}
	if !config.IsPostgresStore(storeSpec) {
		return nil, errors.New("authorization_server.token_secret_file needs the AS's PostgreSQL store (store: postgres://…)")
	}
	return openAuthorizationServer(ctx, asSetup{dataDir: dataDir, storeSpec: storeSpec, issuer: remote.Issuer, resources: resources,
		scopes: activeScopes(pol.registry), policy: pol.registry, secret: secret, log: log})
}

// newAuthorizationServerWith is newAuthorizationServer on the data dir's
// Badger store, deciding through any policy (an OPA server over HTTP, for
// pbac bench).
func newAuthorizationServerWith(ctx context.Context, dataDir, issuer string, resources, scopes []string, policy asrv.Decider, log *slog.Logger) (*authRuntime, error) {
	return openAuthorizationServer(ctx, asSetup{dataDir: dataDir, issuer: issuer, resources: resources, scopes: scopes, policy: policy, log: log})
}

// openAuthorizationServer builds the authorization server of a setup.
func openAuthorizationServer(ctx context.Context, su asSetup) (*authRuntime, error) {
	secret := su.secret
	if secret == nil {
		var err error
		if secret, err = asrv.LoadOrCreateTokenSecret(su.dataDir); err != nil {
			return nil, err
		}
	}
	introspectors, err := asIntrospectors(su.settings)
	if err != nil {
		return nil, err
	}
	limits, err := asRegistrationLimits(su.settings)
	if err != nil {
		return nil, err
	}
	key, err := asrv.LoadOrCreateIssuerKey(su.dataDir)
	if err != nil {
		return nil, err
	}
	verifier, err := asrv.NewStatementVerifier(key.Trusted())
	if err != nil {
		return nil, err
	}
	if verifier, err = asStatementVerifier(su.settings, verifier); err != nil {
		return nil, err
	}
	store, storeName, err := openStore(ctx, su.storeSpec, su.dataDir, su.log)
	if err != nil {
		return nil, err
	}
	srv, err := asrv.New(asrv.Config{
		Issuer: su.issuer, Resources: su.resources, Scopes: su.scopes, Secret: secret,
		Store: store, Policy: su.policy, Users: asrv.DemoUsers{}, Statements: verifier, Logger: su.log,
		Introspectors: introspectors, SignIn: su.signIn, Registration: limits,
	})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	return &authRuntime{server: srv, store: store, storeName: storeName, issuer: key, signIn: su.signIn}, nil
}

// serveHTTP serves until ctx ends, then drains for up to 10 s.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
