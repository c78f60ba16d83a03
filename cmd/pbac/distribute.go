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
	"github.com/spf13/pflag"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/bundlesource"
	"github.com/pbac-gateway/pbac/plugins/pgsync"
	"github.com/pbac-gateway/pbac/rego"
)

// bundleFlags are pbac up's policy distribution flags.
type bundleFlags struct {
	server           string
	interval         time.Duration
	verificationKeys []string
	token, tokenFile string
	// sync: share the policy head through a PostgreSQL store.
	sync         bool
	syncInterval time.Duration
}

func addBundleFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.String("bundle-server", "", "poll this OPA-compatible bundle server for the policy (another replica's admin listener, e.g. https://gw-a:8081, or any server with /bundles/pbac)")
	fl.Duration("bundle-poll-interval", bundlesource.DefaultInterval, "how often to poll --bundle-server (each wait shortened by up to 20% jitter)")
	fl.StringArray("bundle-verification-key", nil, "public key (PEM) bundles must be signed with, as FILE or KEYID=FILE (key id default); repeatable. Then every bundle — bundle server, admin upload, policy directory — must be signed")
	fl.String("bundle-token", "", "read-only bearer token for /bundles/pbac: sent to --bundle-server, and accepted by this admin listener besides the admin token (16+ characters)")
	fl.String("bundle-token-file", "", "read --bundle-token from this file")
	fl.Bool("policy-sync", true, "with a PostgreSQL store, keep one policy version on every replica sharing it: a change on one (upload, data, rollback, dropped bundle) is pushed to all, and the admin API answers once every live replica runs it")
	fl.Duration("policy-sync-interval", 2*time.Second, "policy sync heartbeat and fallback poll; a replica silent for three intervals is no longer waited for")
}

// bundleSettings reads the distribution flags, taking the configuration's
// policy: section (file, then PBAC_* environment) for every flag not given.
func bundleSettings(flags *pflag.FlagSet, fc *config.File) (*bundleFlags, error) {
	f := &bundleFlags{}
	var errs []error
	get := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	f.server, err = flags.GetString("bundle-server")
	get(err)
	f.interval, err = flags.GetDuration("bundle-poll-interval")
	get(err)
	f.verificationKeys, err = flags.GetStringArray("bundle-verification-key")
	get(err)
	f.token, err = flags.GetString("bundle-token")
	get(err)
	f.tokenFile, err = flags.GetString("bundle-token-file")
	get(err)
	f.sync, err = flags.GetBool("policy-sync")
	get(err)
	f.syncInterval, err = flags.GetDuration("policy-sync-interval")
	get(err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if fc == nil || fc.Policy == nil {
		return f, nil
	}
	p := fc.Policy
	unset := func(names ...string) bool {
		for _, n := range names {
			if fl := flags.Lookup(n); fl == nil || fl.Changed {
				return false
			}
		}
		return true
	}
	duration := func(v string, into *time.Duration) {
		if d, err := time.ParseDuration(v); err == nil { // validated with the file
			*into = d
		}
	}
	if p.BundleServer != "" && unset("bundle-server") {
		f.server = p.BundleServer
	}
	if p.BundlePollInterval != "" && unset("bundle-poll-interval") {
		duration(p.BundlePollInterval, &f.interval)
	}
	if p.BundleTokenFile != "" && unset("bundle-token", "bundle-token-file") {
		f.tokenFile = p.BundleTokenFile
	}
	if len(p.VerificationKeys) > 0 && unset("bundle-verification-key") {
		f.verificationKeys = p.VerificationKeys
	}
	if p.Sync != nil && unset("policy-sync") {
		f.sync = *p.Sync
	}
	if p.SyncInterval != "" && unset("policy-sync-interval") {
		duration(p.SyncInterval, &f.syncInterval)
	}
	return f, nil
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
		URL:      bundlesource.BundleURL(f.server, admin.BundleName),
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

// startPolicySync joins the replicas' shared policy head when the token
// store is PostgreSQL (and --policy-sync is on); it returns nil otherwise.
// Stop it with the returned function, which leaves the replica set.
func startPolicySync(ctx context.Context, f *bundleFlags, storeSpec string, reg *plugins.Registry, log *slog.Logger) (*pgsync.Sync, func(), error) {
	if f == nil || !f.sync || !config.IsPostgresStore(storeSpec) {
		return nil, func() {}, nil
	}
	s, err := pgsync.Open(ctx, pgsync.Config{DSN: storeSpec, Registry: reg, Interval: f.syncInterval, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("policy sync: %w", err)
	}
	info, _ := reg.Active()
	log.Info("policy sync: sharing the policy version with the replicas on the store", "replica", s.Replica(), "version", info.Version)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { _ = s.Run(rctx); close(done) }()
	return s, func() {
		cancel()
		<-done
		lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer lcancel()
		if err := s.Close(lctx); err != nil {
			log.Warn("policy sync: leave", "err", err)
		}
	}, nil
}

// propagateVia adapts a sync for the admin API.
func propagateVia(s *pgsync.Sync) func(context.Context) (any, bool, error) {
	return func(ctx context.Context) (any, bool, error) {
		c, err := s.Propagate(ctx)
		return c, c.Complete, err
	}
}
