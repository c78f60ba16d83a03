package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/internal/stack"
	"github.com/pbac-gateway/pbac/plugins/bundlesource"
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

// policy is the stack's policy source settings: signatures, the bundle
// server, the replicas' sync, and the decision limits (the policy
// directory is the command's choice).
func (f *bundleFlags) policy(limits policyLimits) (stack.Policy, error) {
	p := stack.Policy{Limits: limits.stack()}
	token, err := f.bundleToken()
	if err != nil {
		return stack.Policy{}, err
	}
	v, err := f.verifier()
	if err != nil {
		return stack.Policy{}, err
	}
	p.BundleToken, p.Verifier = token, v
	if f != nil {
		p.BundleServer, p.PollInterval = f.server, f.interval
		p.Sync, p.SyncInterval = f.sync, f.syncInterval
	}
	return p, nil
}
