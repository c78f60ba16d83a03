package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/telemetry"
	"github.com/pbac-gateway/pbac/wasm"
)

// opsSettings are the operating settings a serving command (pbac up, pbac
// asrv) takes from its flags, the PBAC_* environment and the configuration
// file — in that order of precedence, then the flags' defaults.
type opsSettings struct {
	listen, adminListen, dataDir string
	store                        string // the URL itself, store_file read
	publicURL                    string
	logLevel, logFormat          string
	tls, adminTLS                *config.TLSFiles
	drainDelay                   time.Duration
	auditLinger                  time.Duration
	limits                       policyLimits
	file                         *config.File // file + environment
}

// addOpsFlags adds the TLS, log format and drain flags; admin says whether
// the command has an admin listener.
func addOpsFlags(cmd *cobra.Command, hasAdmin bool) {
	f := cmd.Flags()
	f.String("tls-cert", "", "certificate file (PEM) for the listener; with --tls-key turns TLS on (reloaded when the files change)")
	f.String("tls-key", "", "private key file (PEM) for --tls-cert")
	if hasAdmin {
		f.String("admin-tls-cert", "", "certificate file (PEM) for the admin listener")
		f.String("admin-tls-key", "", "private key file (PEM) for --admin-tls-cert")
	}
	f.String("log-format", "text", "log format: text or json (one JSON object a line)")
	f.Duration("drain-delay", 0, "on SIGTERM, answer /readyz with 503 this long before the listeners stop (let the load balancer notice)")
	f.Duration("audit-linger", audit.DefaultLinger, "how long the audit writer waits after a record for more to write with it, at most 1s; 0s writes each record as soon as nothing else is queued (a crash then loses fewer records; every call costs a write)")
	f.Duration("policy-decision-timeout", plugins.DefaultDecisionTimeout, "bound of one policy decision, the wait for a policy instance included; a decision not made in time is a deny (the gateway's 403, the authorization server's temporarily_unavailable)")
	f.Duration("policy-eval-timeout", wasm.NewConfig().EvalTimeout(), "CPU time one policy evaluation may use, at most --policy-decision-timeout; a policy that runs longer is stopped (one held up on a busy host stops at ten times it)")
}

// resolveOps reads the configuration file (configPath; none when empty)
// with the environment lookup finds, then lets every flag set on the command
// line win. The store URL is read from store_file when that names it.
func resolveOps(flags *pflag.FlagSet, configPath string, lookup func(string) (string, bool)) (opsSettings, error) {
	fc, err := config.LoadEnv(configPath, lookup)
	if err != nil {
		return opsSettings{}, err
	}
	store, err := fc.StoreURL()
	if err != nil {
		return opsSettings{}, err
	}
	// pick is a key's value (config.Keys): its flag when given on the
	// command line, else the file's (the environment applied), else the
	// flag's default.
	pick := func(name string) string {
		k, ok := config.Lookup(name)
		if !ok {
			panic("config: no key " + name)
		}
		fromFile := k.FromFile(fc)
		if name == "store" {
			fromFile = store // store_file read
		}
		return pickFlag(flags, k.Flag, fromFile)
	}
	s := opsSettings{
		listen:      pick("listen"),
		adminListen: pick("admin_listen"),
		dataDir:     pick("data_dir"),
		store:       pick("store"),
		publicURL:   pick("public_url"),
		logLevel:    pick("log_level"),
		logFormat:   pick("log_format"),
		file:        fc,
	}
	s.tls = pickTLS(pick("tls.cert_file"), pick("tls.key_file"))
	s.adminTLS = pickTLS(pick("admin_tls.cert_file"), pick("admin_tls.key_file"))
	s.auditLinger = audit.DefaultLinger
	if d := pick("audit_linger"); d != "" {
		if s.auditLinger, err = config.ParseAuditLinger(d); err != nil {
			return opsSettings{}, err
		}
	}
	if d := pick("drain_delay"); d != "" {
		if s.drainDelay, err = time.ParseDuration(d); err != nil || s.drainDelay < 0 {
			return opsSettings{}, fmt.Errorf("drain delay %q is not a duration (e.g. 5s)", d)
		}
	}
	for _, t := range []struct {
		key  string
		into *time.Duration
	}{{"policy.decision_timeout", &s.limits.decisionTimeout}, {"policy.eval_timeout", &s.limits.evalTimeout}} {
		if v := pick(t.key); v != "" {
			if *t.into, err = time.ParseDuration(v); err != nil || *t.into <= 0 {
				k, _ := config.Lookup(t.key)
				return opsSettings{}, fmt.Errorf("--%s %q: want a positive duration (e.g. 1s)", k.Flag, v)
			}
		}
	}
	return s, s.check()
}

// pickFlag is the flag's value when it was given on the command line, else
// fromFile, else the flag's default (fromFile alone when the command has
// no such flag).
func pickFlag(flags *pflag.FlagSet, flag, fromFile string) string {
	fl := flags.Lookup(flag)
	switch {
	case flag == "" || fl == nil:
		return fromFile
	case fl.Changed || fromFile == "":
		return fl.Value.String()
	default:
		return fromFile
	}
}

func pickTLS(cert, key string) *config.TLSFiles {
	if cert == "" && key == "" {
		return nil
	}
	return &config.TLSFiles{CertFile: cert, KeyFile: key}
}

// check validates what the flags may have changed since the file was
// validated: addresses, TLS pairs, the store URL, the public URL's scheme.
func (s opsSettings) check() error {
	var errs []error
	for _, l := range []struct{ name, addr string }{{"listen", s.listen}, {"admin listen", s.adminListen}} {
		if l.addr != "" {
			if err := config.CheckListenAddr(l.addr); err != nil {
				errs = append(errs, fmt.Errorf("%s address %q: %w", l.name, l.addr, err))
			}
		}
	}
	for _, t := range []struct {
		name  string
		files *config.TLSFiles
	}{{"tls", s.tls}, {"admin tls", s.adminTLS}} {
		if t.files.Enabled() {
			if err := t.files.Check(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", t.name, err))
			}
		}
	}
	if err := config.CheckStoreURL(s.store); err != nil {
		errs = append(errs, fmt.Errorf("token store (--store, PBAC_STORE, store:): %w", err))
	}
	if s.tls.Enabled() && s.publicURL != "" && !strings.HasPrefix(s.publicURL, "https://") {
		errs = append(errs, fmt.Errorf("public URL %q: the listener serves TLS, so clients reach it over https", s.publicURL))
	}
	if s.logFormat != "json" && s.logFormat != "text" {
		errs = append(errs, fmt.Errorf("log format %q: want json or text", s.logFormat))
	}
	if err := s.limits.check(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// logger builds the slog logger the settings ask for, on stderr.
func (s opsSettings) logger() *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s.logLevel))); err != nil {
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l}
	if s.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// telemetryConfig is the configuration's telemetry block as the stack
// takes it (nil: none; the OTEL_* environment may still turn tracing on).
func telemetryConfig(t *config.Telemetry) telemetry.Config {
	if t == nil {
		return telemetry.Config{}
	}
	return telemetry.Config{Endpoint: t.Endpoint, Protocol: t.Protocol, Headers: t.ResolvedHeaders(),
		SampleRatio: t.SampleRatio, ServiceName: t.ServiceName, Baggage: t.Baggage}
}
