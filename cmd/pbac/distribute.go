package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/host"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/bundlesource"
	"github.com/pbac-gateway/pbac/rego"
)

// bundleFlags are pbac up's policy distribution flags.
type bundleFlags struct {
	server           string
	interval         time.Duration
	verificationKeys []string
	token, tokenFile string
}

func addBundleFlags(cmd *cobra.Command) *bundleFlags {
	f := &bundleFlags{}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "bundle-server", "", "poll this OPA-compatible bundle server for the policy (another replica's admin listener, e.g. https://gw-a:8081, or any server with /bundles/pbac)")
	fl.DurationVar(&f.interval, "bundle-poll-interval", bundlesource.DefaultInterval, "how often to poll --bundle-server (each wait shortened by up to 20% jitter)")
	fl.StringArrayVar(&f.verificationKeys, "bundle-verification-key", nil, "public key (PEM) bundles must be signed with, as FILE or KEYID=FILE (key id default); repeatable. Then every bundle — bundle server, admin upload, policy directory — must be signed")
	fl.StringVar(&f.token, "bundle-token", "", "read-only bearer token for /bundles/pbac: sent to --bundle-server, and accepted by this admin listener besides the admin token (16+ characters)")
	fl.StringVar(&f.tokenFile, "bundle-token-file", "", "read --bundle-token from this file")
	return f
}

// bundleToken returns the configured bundle token.
func (f *bundleFlags) bundleToken() (string, error) {
	if f == nil {
		return "", nil
	}
	if f.tokenFile == "" {
		return f.token, nil
	}
	if f.token != "" {
		return "", errors.New("give --bundle-token or --bundle-token-file, not both")
	}
	raw, err := os.ReadFile(f.tokenFile)
	if err != nil {
		return "", fmt.Errorf("bundle token: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// verifier loads the verification keys; nil when none are configured.
func (f *bundleFlags) verifier() (*rego.Verifier, error) {
	if f == nil || len(f.verificationKeys) == 0 {
		return nil, nil
	}
	keys := make([]rego.VerificationKey, 0, len(f.verificationKeys))
	for _, spec := range f.verificationKeys {
		id, path, ok := strings.Cut(spec, "=")
		if !ok {
			id, path = rego.DefaultKeyID, spec
		}
		pemBytes, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("bundle verification key: %w", err)
		}
		keys = append(keys, rego.VerificationKey{ID: id, PEM: pemBytes})
	}
	return rego.NewVerifier(keys...)
}

// startDistribution requires signatures on reg when keys are configured
// and starts polling the bundle server, if any. It returns the source's
// status for /admin/status (nil without a server) and the token the admin
// listener also accepts for /bundles/pbac. Call it before any other bundle
// source (the policy directory) starts.
func startDistribution(ctx context.Context, f *bundleFlags, reg *plugins.Registry, log *slog.Logger) (status func() any, token string, err error) {
	token, err = f.bundleToken()
	if err != nil {
		return nil, "", err
	}
	v, err := f.verifier()
	if err != nil {
		return nil, "", err
	}
	if v != nil {
		reg.RequireSignatures(v)
		log.Info("policy bundles must be signed", "key_ids", v.KeyIDs())
	}
	if f == nil || f.server == "" {
		return nil, token, nil
	}
	src, err := bundlesource.New(bundlesource.Config{
		URL:      bundlesource.BundleURL(f.server, host.BundleName),
		Token:    token,
		Interval: f.interval,
		Registry: reg,
		Logger:   log,
	})
	if err != nil {
		return nil, "", err
	}
	if v == nil {
		log.Warn("polling a bundle server without --bundle-verification-key: bundles are not checked for a signature", "server", f.server)
	}
	go func() { _ = src.Run(ctx) }()
	return func() any { return src.Status() }, token, nil
}
