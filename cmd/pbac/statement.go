package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/spf13/cobra"
)

func newStatementCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "statement",
		Short: "Issue software statements that give agents a verified identity",
		Long: `Software statements (RFC 7591) are signed JWTs an agent presents at dynamic
client registration. Their agent_provider, agent_model and
single_use_access_tokens claims are the only source of an agent's identity for
policy; metadata a client sends without a verified statement is ignored.`,
	}
	cmd.AddCommand(newStatementSignCommand())
	return cmd
}

func newStatementSignCommand() *cobra.Command {
	var (
		provider, model, softwareID string
		singleUse                   bool
		ttl                         time.Duration
		keyFile, dataDir            string
	)
	cmd := &cobra.Command{
		Use:   "sign --provider P [--model M] [--single-use] [--software-id ID] [--ttl 24h]",
		Short: "Sign a software statement with the local issuer key",
		Long: `Sign a software statement (an EdDSA JWS, iss ` + asrv.LocalIssuer + `) with the
local issuer key, creating the key on first use, and print it on stdout.

The key is <data dir>/` + asrv.IssuerKeyFile + ` (PKCS#8 PEM, mode 0600) unless
--key names another file. The data dir is --data-dir, else $PBAC_DATA_DIR, else
$XDG_DATA_HOME/pbac or ~/.local/share/pbac. A gateway trusts the statements of
its own data dir's key.`,
		Example: `  pbac statement sign --provider claude-code --model claude-opus-4
  pbac statement sign --provider ci-bot --single-use --ttl 1h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if provider == "" {
				return errors.New("--provider is required")
			}
			var (
				key *asrv.IssuerKey
				err error
			)
			if keyFile != "" {
				if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
					return err
				}
				key, err = asrv.LoadOrCreateIssuerKeyFile(keyFile)
			} else {
				if dataDir == "" {
					dataDir = asrv.DefaultDataDir()
				}
				key, err = asrv.LoadOrCreateIssuerKey(dataDir)
			}
			if err != nil {
				return err
			}
			jws, err := key.Sign(asrv.StatementClaims{
				SoftwareID:            softwareID,
				AgentProvider:         provider,
				AgentModel:            model,
				SingleUseAccessTokens: singleUse,
				TTL:                   ttl,
			}, time.Now())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), jws)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&provider, "provider", "", "agent_provider claim, e.g. claude-code or ci-bot (required)")
	f.StringVar(&model, "model", "", "agent_model claim")
	f.BoolVar(&singleUse, "single-use", false, "set single_use_access_tokens: the agent's access tokens work once")
	f.StringVar(&softwareID, "software-id", "", "software_id claim")
	f.DurationVar(&ttl, "ttl", 24*time.Hour, "statement lifetime (0 = no expiry)")
	f.StringVar(&keyFile, "key", "", "issuer key file (default <data dir>/"+asrv.IssuerKeyFile+")")
	f.StringVar(&dataDir, "data-dir", "", "data directory (default $PBAC_DATA_DIR, else $XDG_DATA_HOME/pbac or ~/.local/share/pbac)")
	_ = cmd.MarkFlagRequired("provider")
	cmd.MarkFlagsMutuallyExclusive("key", "data-dir")
	return cmd
}
