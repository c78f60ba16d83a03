package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/internal/stack"
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
people of the identity section (identity.oidc: single sign-on at the
organisation's OpenID provider; identity.users_file: a users file — without
either, only machine clients get tokens), refresh, client credentials, token exchange, introspection and
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
			logMonitor(log, os.Environ())
			bundles, err := bundleSettings(cmd.Flags(), ops.file)
			if err != nil {
				return err
			}
			pol, err := bundles.policy(ops.limits)
			if err != nil {
				return err
			}
			dataDir := ops.dataDir
			if dataDir == "" {
				dataDir = asrv.DefaultDataDir()
			}
			// No gateway: the authorization server alone, for the
			// resources named (default <issuer>/mcp).
			st, err := stack.New(ctx, stack.Config{
				Logger: log, DataDir: dataDir, Listen: ops.listen, TLS: ops.tls, PublicURL: ops.publicURL,
				Store: ops.store, Policy: pol, AuthServer: stack.AuthServer{Settings: ops.file.ASrv, Resources: resources,
					Identity: ops.file.IdentityOrNone(), Clients: ops.file.Clients},
				Audit:     stack.Audit{Linger: auditLinger(ops.auditLinger)},
				Telemetry: telemetryConfig(ops.file.Telemetry),
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pbac asrv: authorization server at %s (data dir %s, token store %s)\n", st.URL(), dataDir, st.StoreName())
			if people := st.SignIn(); people.Mode != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "  people sign in with %s\n", people.Mode)
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), "  no identity source: nobody signs in, only machine clients get tokens (configure identity.oidc or identity.users_file)")
			}
			// On SIGTERM /readyz turns 503 for the drain delay before the
			// listener stops.
			if err = st.Wait(ctx); err == nil {
				st.Drain(context.Background(), ops.drainDelay)
				log.Info("shutting down")
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
			defer cancel()
			return errors.Join(err, st.Close(cctx))
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9090", "address to listen on")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data dir (default $PBAC_DATA_DIR or ~/.local/share/pbac)")
	cmd.Flags().StringVar(&store, "store", "", storeFlagUsage)
	cmd.Flags().StringVar(&issuer, "issuer", "", "issuer URL (default http(s)://<listen address>; public_url in the config file)")
	cmd.Flags().StringSliceVar(&resources, "resource", nil, "protected resource URL tokens are for (repeatable; default <issuer>/mcp)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (YAML) as pbac up reads it: listen, data_dir, store, public_url (the issuer), tls, log_*, drain_delay, identity, asrv; PBAC_* environment variables override it, flags override both")
	addOpsFlags(cmd, false)
	addBundleFlags(cmd)
	return cmd
}

// storeFlagUsage documents --store (pbac asrv, pbac up).
const storeFlagUsage = "token store: empty for Badger under the data dir, or postgres://user@host:5432/db?sslmode=… for PostgreSQL shared by replicas (password from PGPASSWORD or ~/.pgpass rather than the URL)"
