package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/asrv"
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
	cmd.AddCommand(newStatementSignCommand(), newStatementInspectCommand())
	return cmd
}

func newStatementSignCommand() *cobra.Command {
	var (
		provider, model, softwareID string
		singleUse                   bool
		ttl                         time.Duration
		keyFile, dataDir            string
		audience                    []string
	)
	cmd := &cobra.Command{
		Use:   "sign --provider P --audience AS-ISSUER [--model M] [--single-use] [--software-id ID] [--ttl 24h]",
		Short: "Sign a software statement with the local issuer key",
		Long: `Sign a software statement (an EdDSA JWS, iss ` + asrv.LocalIssuer + `) with the
local issuer key, creating the key on first use, and print it on stdout.

The key is <data dir>/` + asrv.IssuerKeyFile + ` (PKCS#8 PEM, mode 0600) unless
--key names another file. The data dir is --data-dir, else $PBAC_DATA_DIR, else
$XDG_DATA_HOME/pbac or ~/.local/share/pbac. A gateway trusts the statements of
its own data dir's key.

A statement is for the authorization servers --audience names (their issuer
URLs; default $PBAC_PUBLIC_URL), expires (--ttl, at most 30 days), and has an
id (jti, printed with pbac statement inspect) by which it can be revoked
(asrv.statements.revoked_ids in the configuration file), as can the key
(asrv.statements.revoked_keys, its key id).`,
		Example: `  pbac statement sign --provider claude-code --model claude-opus-4 --audience http://127.0.0.1:8080
  pbac statement sign --provider ci-bot --single-use --ttl 1h --audience https://as.example`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if provider == "" {
				return errors.New("--provider is required")
			}
			if len(audience) == 0 {
				if pub := os.Getenv("PBAC_PUBLIC_URL"); pub != "" {
					audience = []string{strings.TrimSuffix(pub, "/")}
				} else {
					return errors.New("--audience is required: the issuer URL of the authorization server the statement is for (or set PBAC_PUBLIC_URL)")
				}
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
				Audience:              audience,
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
	f.DurationVar(&ttl, "ttl", 24*time.Hour, "statement lifetime (1s to 720h)")
	f.StringSliceVar(&audience, "audience", nil, "issuer URL of an authorization server the statement is for (repeatable; default $PBAC_PUBLIC_URL)")
	f.StringVar(&keyFile, "key", "", "issuer key file (default <data dir>/"+asrv.IssuerKeyFile+")")
	f.StringVar(&dataDir, "data-dir", "", "data directory (default $PBAC_DATA_DIR, else $XDG_DATA_HOME/pbac or ~/.local/share/pbac)")
	_ = cmd.MarkFlagRequired("provider")
	cmd.MarkFlagsMutuallyExclusive("key", "data-dir")
	return cmd
}

func newStatementInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect JWS",
		Short: "Show a software statement's header and claims, unverified",
		Long: `Decodes a software statement (a compact JWS; - reads it from stdin) and prints its
key id (kid), its id (jti) and its other claims as JSON, without verifying the
signature: to find what to revoke (asrv.statements.revoked_ids, revoked_keys).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			jws := args[0]
			if jws == "-" {
				raw, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), asrv.MaxStatementSize+1))
				if err != nil {
					return err
				}
				jws = strings.TrimSpace(string(raw))
			}
			parts := strings.Split(jws, ".")
			if len(parts) != 3 || len(jws) > asrv.MaxStatementSize {
				return errors.New("not a compact JWS (three dot-separated parts)")
			}
			out := map[string]json.RawMessage{}
			for i, name := range []string{"header", "claims"} {
				raw, err := base64.RawURLEncoding.DecodeString(parts[i])
				if err != nil || !json.Valid(raw) {
					return fmt.Errorf("the %s is not base64url JSON", name)
				}
				out[name] = raw
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
}
