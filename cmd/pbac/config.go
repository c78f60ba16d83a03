package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/cimd"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/wasm"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with the configuration file"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a configuration without starting anything",
		Long: `Reads the configuration file (if given), applies the PBAC_* environment
overrides as pbac up would, validates the result — listen addresses, TLS
certificate and key files (readable, the key the certificate's), the store
URL's syntax, public URL scheme against TLS, backends — and prints what
pbac up --config FILE would run. Nothing is started or connected to.

Precedence: command-line flags, then PBAC_* environment variables, then the
file, then the flags' defaults.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			flags := newUpCommand().Flags()
			ops, err := resolveOps(flags, path, os.LookupEnv)
			if err != nil {
				return err
			}
			bundles, err := bundleSettings(flags, ops.file)
			if err != nil {
				return err
			}
			name := path
			if name == "" {
				name = "environment"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid, %d backend(s)\n", name, len(ops.file.Backends))
			printOps(cmd.OutOrStdout(), ops)
			printIdentity(cmd.OutOrStdout(), ops)
			if err := printClients(cmd.OutOrStdout(), ops); err != nil {
				return err
			}
			printPolicy(cmd.OutOrStdout(), ops, bundles)
			printSettings(cmd.OutOrStdout(), flags, ops.file, os.LookupEnv)
			return nil
		},
	})
	return cmd
}

// printOps says what pbac up would run with these settings; the store URL
// is shown without its password.
func printOps(w io.Writer, s opsSettings) {
	scheme := func(on bool) string {
		if on {
			return "https"
		}
		return "http"
	}
	gw := scheme(s.tls.Enabled()) + "://" + s.listen
	fmt.Fprintf(w, "  gateway listener      %s\n", gw)
	if s.tls.Enabled() {
		fmt.Fprintf(w, "    tls                 %s, %s (reloaded on change)\n", s.tls.CertFile, s.tls.KeyFile)
	}
	fmt.Fprintf(w, "  admin listener        %s://%s\n", scheme(s.adminTLS.Enabled()), s.adminListen)
	if s.adminTLS.Enabled() {
		fmt.Fprintf(w, "    tls                 %s, %s (reloaded on change)\n", s.adminTLS.CertFile, s.adminTLS.KeyFile)
	}
	if len(s.file.AdminHosts) > 0 {
		fmt.Fprintf(w, "    admin hosts         %s (besides its address)\n", strings.Join(s.file.AdminHosts, ", "))
	}
	pub := s.publicURL
	if pub == "" {
		pub = gw + " (default)"
	}
	fmt.Fprintf(w, "  public URL            %s\n", pub)
	dataDir := s.dataDir
	if dataDir == "" {
		dataDir = "(default: $PBAC_DATA_DIR or ~/.local/share/pbac)"
	}
	fmt.Fprintf(w, "  data dir              %s\n", dataDir)
	switch {
	case s.file.AuthorizationServer != nil && s.file.AuthorizationServer.TokenSecretFile != "":
		fmt.Fprintf(w, "  authorization server  remote, %s; tokens read on its store %s\n", s.file.AuthorizationServer.Issuer, redactURL(s.store))
	case s.file.AuthorizationServer != nil:
		fmt.Fprintf(w, "  authorization server  remote, %s (RFC 7662)\n", s.file.AuthorizationServer.Issuer)
	case s.store == "" || s.store == "badger":
		fmt.Fprintf(w, "  token store           badger under the data dir\n")
	default:
		fmt.Fprintf(w, "  token store           %s\n", redactURL(s.store))
	}
	if as := s.file.ASrv; as != nil {
		var ids []string
		for _, c := range as.IntrospectionClients {
			ids = append(ids, c.ClientID)
		}
		if len(ids) > 0 {
			fmt.Fprintf(w, "  introspection clients %s\n", strings.Join(ids, ", "))
		}
		if st := as.Statements; st != nil && len(st.RevokedIDs)+len(st.RevokedKeys) > 0 {
			fmt.Fprintf(w, "  revoked statements    %d statement(s), %d key(s)\n", len(st.RevokedIDs), len(st.RevokedKeys))
		}
	}
	l := s.file.LimitsOrDefault()
	fmt.Fprintf(w, "  limits per agent      %d sessions; %d of each stdio backend's %d processes\n", l.SessionsPerAgent, l.StdioSessionsPerAgent, l.StdioSessions)
	fmt.Fprintf(w, "  logs                  %s, level %s\n", s.logFormat, s.logLevel)
	fmt.Fprintf(w, "  drain delay           %s\n", s.drainDelay)
	if s.auditLinger > 0 {
		fmt.Fprintf(w, "  audit writes          within %s of a record, in batches\n", s.auditLinger)
	} else {
		fmt.Fprintf(w, "  audit writes          each record as soon as nothing else is queued\n")
	}
	fmt.Fprintf(w, "  policy decisions      at most %s each, the wait for an instance included; an evaluation at most %s\n",
		orDefaultDuration(s.limits.decisionTimeout, plugins.DefaultDecisionTimeout), orDefaultDuration(s.limits.evalTimeout, wasm.NewConfig().EvalTimeout()))
	for _, b := range s.file.Backends {
		target := b.URL
		if target == "" {
			target = fmt.Sprintf("stdio %q", b.Command)
			if b.Shared {
				target += " (shared: one process for every session)"
			}
		}
		fmt.Fprintf(w, "  backend %-13s %s\n", b.Name, target)
	}
}

// printIdentity says where people would sign in, with the redirect URI
// to register at the OpenID provider, and warns when nobody could.
func printIdentity(w io.Writer, s opsSettings) {
	if s.file.AuthorizationServer != nil {
		fmt.Fprintf(w, "  people                sign in at the authorization server %s\n", s.file.AuthorizationServer.Issuer)
		return
	}
	id := s.file.IdentityOrNone()
	issuer := s.publicURL
	if issuer == "" {
		scheme := "http"
		if s.tls.Enabled() {
			scheme = "https"
		}
		issuer = scheme + "://" + s.listen
	}
	demoUsers := id.UsersFile == "" && (upConfig{file: s.file}).startDemo()
	if id.UsersFile != "" {
		fmt.Fprintf(w, "  people                users file %s (re-read when it changes)\n", id.UsersFile)
	}
	if o := id.OIDC; o != nil {
		oc := o.WithDefaults()
		fmt.Fprintf(w, "  people                single sign-on at %s (client %s; scopes %s; groups from %s, subject from %s)\n",
			oc.Issuer, oc.ClientID, strings.Join(oc.Scopes, " "), oc.GroupsClaim, oc.SubjectClaim)
		fmt.Fprintf(w, "    redirect URI        %s  (register it at the provider)\n", identity.CallbackURL(issuer))
		adminScheme := "http"
		if s.adminTLS.Enabled() {
			adminScheme = "https"
		}
		fmt.Fprintf(w, "    dashboard's         %s  (register it too for operators' single sign-on; pbac up only)\n", identity.CallbackURL(adminScheme+"://"+s.adminListen))
	}
	switch {
	case demoUsers:
		fmt.Fprintf(w, "  people                the demo users alice, bob and carol, password demo (demo tenant of pbac up only; pbac asrv has none)\n")
	case !id.Configured():
		fmt.Fprintf(w, "  people                none — warning: no identity source, so nobody can sign in and only machine clients get tokens;\n")
		fmt.Fprintf(w, "                        configure identity.oidc (single sign-on) or identity.users_file (pbac user add)\n")
	}
	if demoUsers || id.Configured() {
		if age, err := s.file.ASrv.SignInMaxAge(); err == nil {
			fmt.Fprintf(w, "    sign-in lasts       %s at most, refreshes included (asrv.max_sign_in_age)\n", shortDuration(age))
		}
	}
}

// printClients says how clients no operator registered are known: Client
// ID Metadata Documents (fetched or not, how many pinned — each pinned
// document is validated here, as at start). A pinned document that is not
// valid is an error.
func printClients(w io.Writer, s opsSettings) error {
	if s.file.AuthorizationServer != nil {
		return nil // the remote authorization server's business
	}
	if err := printStatementIssuers(w, s.file.Clients); err != nil {
		return err
	}
	m, err := s.file.Clients.MetadataDocumentSettings()
	if err != nil {
		return err
	}
	if !m.Enabled {
		fmt.Fprintf(w, "  metadata documents    off: a client id that is a URL is an unknown client\n")
		return nil
	}
	pinned := 0
	if m.PinnedDir != "" {
		docs, err := cimd.LoadPinnedDir(m.PinnedDir)
		if err != nil {
			return fmt.Errorf("clients.metadata_documents.pinned_dir: %w", err)
		}
		r, err := cimd.New(cimd.Config{Pinned: docs})
		if err != nil {
			return fmt.Errorf("clients.metadata_documents.pinned_dir: %w", err)
		}
		_ = r.Close()
		pinned = len(docs)
	}
	from := ""
	if m.PinnedDir != "" {
		from = " from " + m.PinnedDir
	}
	if m.Fetch {
		fmt.Fprintf(w, "  metadata documents    fetched over HTTPS (at most %d bytes, %s); %d pinned%s\n", m.MaxBytes, shortDuration(m.Timeout), pinned, from)
		if len(m.AllowNetworks) > 0 {
			fmt.Fprintf(w, "    allowed networks    %v (special-purpose addresses otherwise refused)\n", m.AllowNetworks)
		}
		if m.CAFile != "" {
			fmt.Fprintf(w, "    trust store         %s only\n", m.CAFile)
		}
	} else {
		fmt.Fprintf(w, "  metadata documents    fetching off (air-gapped); %d pinned%s; any other URL client id is refused\n", pinned, from)
	}
	return nil
}

// printStatementIssuers lists whose software statements verify: this
// server's own key and the configured issuers, whose key files are read
// and checked as at start.
func printStatementIssuers(w io.Writer, c *config.Clients) error {
	fmt.Fprintf(w, "  statement issuers     %s (this server's key, pbac statement sign)\n", asrv.LocalIssuerName)
	if c == nil {
		return nil
	}
	for _, si := range c.StatementIssuers {
		keys, err := asrv.ReadTrustedIssuer(si.Name, si.Issuer, si.KeyID, si.KeysFile, si.JWKSFile)
		if err != nil {
			return fmt.Errorf("clients.statement_issuers %s: %w", si.Name, err)
		}
		fmt.Fprintf(w, "                        %s: iss %s, %d key(s) (vouches only for what policy data's agents.statement_issuers lists)\n",
			si.Name, si.Issuer, len(keys))
	}
	return nil
}

// shortDuration is d without its trailing zero units: 24h, 1h30m.
func shortDuration(d time.Duration) string {
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	if strings.HasSuffix(out, "h0m") {
		out = strings.TrimSuffix(out, "0m")
	}
	return out
}

func orDefaultDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// printPolicy says where policy versions would come from.
func printPolicy(w io.Writer, s opsSettings, b *bundleFlags) {
	fmt.Fprintf(w, "  policy                the shipped policy; bundles dropped in <data dir>/policies; admin API\n")
	if b.server != "" {
		fmt.Fprintf(w, "    bundle server       %s, every %s\n", b.server, b.interval)
	}
	if len(b.verificationKeys) > 0 {
		fmt.Fprintf(w, "    signatures          required, keys %q\n", b.verificationKeys)
	}
	if b.sync && config.IsPostgresStore(s.store) {
		fmt.Fprintf(w, "    replicas            one version on every replica of the PostgreSQL store (heartbeat %s)\n", b.syncInterval)
	}
}

// printSettings lists every setting of the configuration table
// (config.Keys) with its value and where it comes from: the command line,
// the PBAC_* environment, the file, or the flag's default.
func printSettings(w io.Writer, flags *pflag.FlagSet, fc *config.File, lookup func(string) (string, bool)) {
	fmt.Fprintf(w, "  settings (flag > environment > file > default):\n")
	for _, k := range config.Keys() {
		value, source := k.FromFile(fc), "file"
		if v, ok := lookup(k.Env); k.Env != "" && ok && v != "" {
			source = k.Env
		}
		if fl := flags.Lookup(k.Flag); k.Flag != "" && fl != nil && fl.Changed {
			value, source = fl.Value.String(), "--"+k.Flag
		}
		if value == "" {
			value, source = k.Default, "default"
		}
		if value == "" {
			continue
		}
		if k.Secret {
			value = redactURL(value)
		}
		fmt.Fprintf(w, "    %-33s %s (%s)\n", k.Name, value, source)
	}
}

// redactURL shows a store URL without its password (and any password
// query parameter).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
