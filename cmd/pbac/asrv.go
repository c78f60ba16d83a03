package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/host"
)

func newAsrvCommand() *cobra.Command {
	var (
		listen, dataDir, issuer, logLevel string
		resources                         []string
	)
	cmd := &cobra.Command{
		Use:   "asrv",
		Short: "Run the authorization server alone",
		Long: `Runs the OAuth 2.1 authorization server on its own: dynamic client registration
with software statements, authorization code + PKCE with a sign-in page for the
demo users, refresh, client credentials, token exchange, introspection and
revocation, with opaque tokens in Badger under the data dir. Every registration,
token and introspection is decided by the shipped policy.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := newLogger(logLevel)
			if dataDir == "" {
				dataDir = asrv.DefaultDataDir()
			}
			if dataDir == "" {
				return errors.New("no data dir: pass --data-dir or set PBAC_DATA_DIR")
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			base := issuer
			if base == "" {
				base = "http://" + ln.Addr().String()
			}
			if len(resources) == 0 {
				resources = []string{base + "/mcp"}
			}
			pol, err := newPolicyRuntime(ctx, dataDir, log)
			if err != nil {
				ln.Close()
				return err
			}
			defer pol.Close(context.WithoutCancel(ctx))
			as, err := newAuthorizationServer(ctx, dataDir, base, resources, pol, log)
			if err != nil {
				ln.Close()
				return err
			}
			defer as.store.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "pbac asrv: authorization server at %s (data dir %s)\n", base, dataDir)
			return serveHTTP(ctx, ln, as.server.Handler(), log)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9090", "address to listen on")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data dir (default $PBAC_DATA_DIR or ~/.local/share/pbac)")
	cmd.Flags().StringVar(&issuer, "issuer", "", "issuer URL (default http://<listen address>)")
	cmd.Flags().StringSliceVar(&resources, "resource", nil, "protected resource URL tokens are for (repeatable; default <issuer>/mcp)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// authRuntime is the authorization server with what it owns.
type authRuntime struct {
	server *asrv.Server
	store  *asrv.BadgerStore
	issuer *asrv.IssuerKey
}

// newAuthorizationServer opens the data dir's store, token secret and
// statement issuer key, on the given policy.
func newAuthorizationServer(ctx context.Context, dataDir, issuer string, resources []string, pol *policyRuntime, log *slog.Logger) (*authRuntime, error) {
	active, _ := pol.registry.ActiveBundle()
	var scopes []string
	if active != nil {
		scopes = scopesOf(active.Data)
	}
	return newAuthorizationServerWith(ctx, dataDir, issuer, resources, scopes, host.ASDecider(pol.registry), log)
}

// newAuthorizationServerWith is newAuthorizationServer deciding through any
// policy (an OPA server over HTTP, for pbac bench).
func newAuthorizationServerWith(ctx context.Context, dataDir, issuer string, resources, scopes []string, policy asrv.Decider, log *slog.Logger) (*authRuntime, error) {
	secret, err := asrv.LoadOrCreateTokenSecret(dataDir)
	if err != nil {
		return nil, err
	}
	key, err := asrv.LoadOrCreateIssuerKey(dataDir)
	if err != nil {
		return nil, err
	}
	verifier, err := asrv.NewStatementVerifier(key.Trusted())
	if err != nil {
		return nil, err
	}
	store, err := asrv.OpenBadger(ctx, filepath.Join(dataDir, "store"), asrv.WithBadgerLogger(log))
	if err != nil {
		return nil, err
	}
	srv, err := asrv.New(asrv.Config{
		Issuer: issuer, Resources: resources, Scopes: scopes, Secret: secret,
		Store: store, Policy: policy, Users: asrv.DemoUsers{}, Statements: verifier, Logger: log,
	})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	return &authRuntime{server: srv, store: store, issuer: key}, nil
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
