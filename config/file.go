// Package config loads the configuration of pbac up and pbac asrv: the
// YAML file, the PBAC_* environment that overrides it, and the flags that
// override both. Keys() is the one table of the settings that have an
// environment variable or a flag: the environment overrides, pbac config
// check's listing and the documentation are produced from it. The package
// resolves settings to plain values; the caller builds the gateway, the
// authorization server and the stdio bridges from them.
package config

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pbac-gateway/pbac/identity"
)

// File is the gateway's configuration file (YAML). Every field is
// optional; an empty file runs the demo.
//
//	listen: 127.0.0.1:8080          # gateway + authorization server
//	admin_listen: 127.0.0.1:8081    # admin API
//	data_dir: /var/lib/pbac
//	store: postgres://pbac@db.internal:5432/pbac?sslmode=verify-full  # token store shared by replicas (default: Badger under data_dir; password from PGPASSWORD or ~/.pgpass)
//	public_url: https://gw.example  # as clients reach it (default http(s)://<listen>)
//	store_file: /run/secrets/pbac-store  # the store URL read from a file (instead of store)
//	tls: {cert_file: /etc/pbac/tls.crt, key_file: /etc/pbac/tls.key}      # gateway listener; reloaded on change
//	admin_tls: {cert_file: /etc/pbac/admin.crt, key_file: /etc/pbac/admin.key}
//	log_level: info                 # debug, info, warn, error
//	log_format: json                # json or text (default text)
//	drain_delay: 5s                 # on SIGTERM, /readyz answers 503 this long before the listeners close
//	audit_linger: 20ms              # the audit writer waits this long for more records to write at once (0s: none)
//	denials: http_403               # a policy denial no scope fixes: tool_error (default) or http_403
//	argument_limits: {max_bytes: 262144, max_path_segments: 64}  # a call's arguments, checked before policy (ArgumentLimits)
//	admin_hosts: [gw-1.internal]    # names the admin listener answers to, besides its address (and loopback names)
//	limits:
//	  sessions_per_agent: 100       # MCP sessions one agent (client + person) holds; beyond, its least recently used ends
//	  stdio_sessions: 16            # processes of one stdio backend at once
//	  stdio_sessions_per_agent: 4   # processes one agent holds on one stdio backend
//	demo: false                     # start the demo backends (default: only when no backends are listed)
//	demo_agents: false              # register the demo agents with secrets in the data dir (default: as demo)
//	identity:                       # who people sign in as (outside the demo: nobody without it)
//	  oidc: {issuer: https://login.example.com, client_id: pbac, client_secret_file: /etc/pbac/secrets/oidc-client-secret}
//	  users_file: /etc/pbac/users.yaml
//	telemetry: {endpoint: http://otel-collector:4318, protocol: http/protobuf, sample_ratio: 1}  # OTLP traces (OTEL_* env wins; off without an endpoint)
//	clients:                        # clients no operator registered (Clients)
//	  metadata_documents: {fetch: false, pinned_dir: /etc/pbac/clients}
//	  statement_issuers: [{name: acme, issuer: https://acme.example, jwks_file: /etc/pbac/acme.jwks.json}]
//	backends:
//	  - name: jira
//	    url: https://jira-mcp.internal/mcp
//	    timeout: 30s
//	    headers: {X-Api-Key: "${JIRA_KEY}"}             # ${VAR} from the environment
//	    headers_from_files: {Authorization: /run/secrets/jira-auth}
//	  - name: files
//	    command: [npx, -y, "@modelcontextprotocol/server-filesystem", /srv/docs]
//	    env: [NODE_OPTIONS=--max-old-space-size=256]
//	    idle_timeout: 10m            # a session's process ends unused this long (default 30m; 0s: never)
//	    max_processes: 8             # at once (default limits.stdio_sessions); max_processes_per_agent too
//	    shared: true                 # one process for every session: for a server that keeps no state between requests
type File struct {
	// AuthorizationServer, when set, is a remote AS the gateway trusts
	// instead of running one in process.
	AuthorizationServer *RemoteAS `yaml:"authorization_server"`
	Listen              string    `yaml:"listen"`
	AdminListen         string    `yaml:"admin_listen"`
	DataDir             string    `yaml:"data_dir"`
	Store               string    `yaml:"store"`
	PublicURL           string    `yaml:"public_url"`
	Demo                *bool     `yaml:"demo"`
	// DemoAgents registers the demo agents (default: as Demo).
	DemoAgents *bool     `yaml:"demo_agents"`
	Backends   []Backend `yaml:"backends"`
	// StoreFile holds the store URL (it may carry a password).
	StoreFile string `yaml:"store_file"`
	// TLS and AdminTLS turn TLS on for the gateway and admin listeners.
	TLS        *TLSFiles `yaml:"tls"`
	AdminTLS   *TLSFiles `yaml:"admin_tls"`
	LogLevel   string    `yaml:"log_level"`
	LogFormat  string    `yaml:"log_format"`
	DrainDelay string    `yaml:"drain_delay"`
	// AuditLinger is how long the audit writer waits after a record for
	// more to write with it (0s: none).
	AuditLinger string `yaml:"audit_linger"`
	// Denials is how a tools/call policy denies, when no scope would fix
	// it, is answered: "tool_error" (default) or "http_403".
	Denials string `yaml:"denials"`
	// ApprovalsURL is the approval page's base as approvers reach it (the
	// approval's id is appended; default: the admin listener's dashboard).
	ApprovalsURL string `yaml:"approvals_url"`
	// ApprovalsWait is how long a client's retry waits for a pending
	// approval before it is told to ask again (a duration; default 10s).
	ApprovalsWait string `yaml:"approvals_wait"`
	// ApprovalsStateKeyFile holds the key that signs requestStates
	// (default approval-state.key in the data dir); replicas share one.
	ApprovalsStateKeyFile string `yaml:"approvals_state_key_file"`
	// SessionIdle ends an MCP session unused this long (a duration;
	// default 30m): the client's next request on it is answered 404.
	SessionIdle string `yaml:"session_idle"`
	// ScopesSupported are the scopes the protected resource metadata
	// advertises (default: every scope of the active policy). The
	// authorization server still grants any the policy allows: a call
	// that needs another is a step-up.
	ScopesSupported []string `yaml:"scopes_supported"`
	// Policy is how this replica gets its policy versions.
	Policy *Policy `yaml:"policy"`
	// ASrv configures the authorization server this process runs.
	ASrv *ASrv `yaml:"asrv"`
	// ArgumentLimits bound a call's arguments before policy; a key left
	// out keeps the gateway's default (gateway.DefaultArgumentLimits).
	ArgumentLimits *ArgumentLimits `yaml:"argument_limits"`
	// AdminHosts are host names the admin listener answers to besides its
	// own address (a DNS-rebinding defence: any other Host is refused).
	AdminHosts []string `yaml:"admin_hosts"`
	// AdminPprof serves Go's runtime profiles on the admin API, behind the
	// admin token (/admin/debug/pprof/…); off unless set.
	AdminPprof bool `yaml:"admin_pprof"`
	// Limits bound what one agent may hold.
	Limits *Limits `yaml:"limits"`
	// Identity is where the people agents act for sign in: the
	// organisation's OpenID Connect provider (oidc), a users file, or
	// both. Without it only the demo tenant has people (its demo users);
	// elsewhere only machine clients get tokens.
	Identity *identity.Config `yaml:"identity"`
	// Clients is how the authorization server knows clients no operator
	// registered: Client ID Metadata Documents, trusted statement issuers.
	Clients *Clients `yaml:"clients"`
	// IconSources are the sources (https URL prefixes ending in /, or
	// "data:") of the icons listed tools, prompts and resources may keep;
	// every other icon is removed. Default: none kept.
	IconSources []string `yaml:"icon_sources"`
	// Telemetry is where traces are exported (OpenTelemetry over OTLP);
	// the OTEL_* environment wins over it. Without an endpoint in either,
	// nothing is exported.
	Telemetry *Telemetry `yaml:"telemetry"`

	envErrs []error // environment values that do not parse
}

// Telemetry is the telemetry block: an OTLP endpoint for traces.
type Telemetry struct {
	// Endpoint is the OTLP base URL (http://collector:4318 over HTTP,
	// http://collector:4317 over gRPC); OTEL_EXPORTER_OTLP_ENDPOINT wins.
	Endpoint string `yaml:"endpoint"`
	// Protocol is http/protobuf (default) or grpc.
	Protocol string `yaml:"protocol"`
	// Headers go with every export; ${VAR} is taken from the environment.
	Headers map[string]string `yaml:"headers"`
	// SampleRatio is the share of new traces recorded (0 < r ≤ 1, default
	// every one); a caller's sampling decision is followed.
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName is service.name (default pbac-gateway; OTEL_SERVICE_NAME
	// wins).
	ServiceName string `yaml:"service_name"`
	// Baggage passes callers' W3C baggage on to backends (default: it is
	// dropped; policy never sees it).
	Baggage bool `yaml:"baggage"`
}

// Check reports what is wrong with the block.
func (t *Telemetry) Check() error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.Endpoint != "" {
		if u, err := url.Parse(t.Endpoint); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			errs = append(errs, fmt.Errorf("telemetry: endpoint %q must be an absolute http(s) URL", t.Endpoint))
		}
	}
	switch t.Protocol {
	case "", "http/protobuf", "grpc":
	default:
		errs = append(errs, fmt.Errorf("telemetry: protocol %q: want http/protobuf or grpc", t.Protocol))
	}
	if !(t.SampleRatio >= 0 && t.SampleRatio <= 1) {
		errs = append(errs, fmt.Errorf("telemetry: sample_ratio %v must be between 0 and 1", t.SampleRatio))
	}
	errs = append(errs, unsetHeaderRefs("telemetry", t.Headers)...)
	return errors.Join(errs...)
}

// ResolvedHeaders are the headers with ${VAR} expanded.
func (t *Telemetry) ResolvedHeaders() map[string]string {
	if t == nil || len(t.Headers) == 0 {
		return nil
	}
	out := make(map[string]string, len(t.Headers))
	for h, v := range t.Headers {
		out[h] = expandEnv(v)
	}
	return out
}

// Policy is the policy distribution of one replica (the flags of the
// same names without the prefix: --bundle-server, --policy-sync, …):
//
//	policy:
//	  bundle_server: https://gw-1.internal:8081     # poll its /bundles/pbac
//	  bundle_poll_interval: 30s
//	  bundle_token_file: /run/secrets/bundle-token
//	  verification_keys: [ops-2026=/etc/pbac/ops.pub.pem]   # then every bundle must be signed
//	  sync: true               # with a PostgreSQL store: one version on every replica (default)
//	  sync_interval: 2s
//	  decision_timeout: 1s     # one decision, the wait for a policy instance included; then a deny
//	  eval_timeout: 100ms      # one evaluation's CPU time; at most decision_timeout
type Policy struct {
	BundleServer       string   `yaml:"bundle_server"`
	BundlePollInterval string   `yaml:"bundle_poll_interval"`
	BundleTokenFile    string   `yaml:"bundle_token_file"`
	VerificationKeys   []string `yaml:"verification_keys"`
	Sync               *bool    `yaml:"sync"`
	SyncInterval       string   `yaml:"sync_interval"`
	DecisionTimeout    string   `yaml:"decision_timeout"`
	EvalTimeout        string   `yaml:"eval_timeout"`
}

func (p *Policy) validate() []error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.BundleServer != "" {
		if u, err := url.Parse(p.BundleServer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			errs = append(errs, fmt.Errorf("policy.bundle_server %q must be an absolute http(s) URL", p.BundleServer))
		}
	}
	for _, d := range []struct{ key, v string }{{"policy.bundle_poll_interval", p.BundlePollInterval}, {"policy.sync_interval", p.SyncInterval},
		{"policy.decision_timeout", p.DecisionTimeout}, {"policy.eval_timeout", p.EvalTimeout}} {
		if d.v == "" {
			continue
		}
		if _, err := positiveDuration(d.key, d.v, "30s"); err != nil {
			errs = append(errs, err)
		}
	}
	files := []struct{ key, path string }{{"policy.bundle_token_file", p.BundleTokenFile}}
	for _, k := range p.VerificationKeys {
		_, path, ok := strings.Cut(k, "=")
		if !ok {
			path = k
		}
		files = append(files, struct{ key, path string }{"policy.verification_keys", path})
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	return errs
}

// Limits bounds what one agent (a client and the person it acts for)
// may hold, so that no agent exhausts the gateway for the others. Zero
// fields take the defaults.
type Limits struct {
	// SessionsPerAgent: MCP sessions (per backend and aggregated together);
	// a new one beyond it ends the agent's least recently used one.
	SessionsPerAgent int `yaml:"sessions_per_agent"`
	// StdioSessions: processes of one stdio backend alive at once.
	StdioSessions int `yaml:"stdio_sessions"`
	// StdioSessionsPerAgent: processes one agent holds on one stdio backend.
	StdioSessionsPerAgent int `yaml:"stdio_sessions_per_agent"`
}

// Defaults of the limits: the gateway's and the stdio bridge's own
// (gateway.DefaultSessionsPerAgent, stdio.DefaultSessions,
// stdio.DefaultSessionsPerAgent; TestConfigDefaultsAreThePackagesOwn).
const (
	DefaultSessionsPerAgent      = 100
	DefaultStdioSessions         = 16
	DefaultStdioSessionsPerAgent = 4
)

// LimitsOrDefault returns the limits, with defaults for what is not set.
func (c *File) LimitsOrDefault() Limits {
	var l Limits
	if c != nil && c.Limits != nil {
		l = *c.Limits
	}
	if l.SessionsPerAgent <= 0 {
		l.SessionsPerAgent = DefaultSessionsPerAgent
	}
	if l.StdioSessions <= 0 {
		l.StdioSessions = DefaultStdioSessions
	}
	if l.StdioSessionsPerAgent <= 0 {
		l.StdioSessionsPerAgent = DefaultStdioSessionsPerAgent
	}
	return l
}

func (l *Limits) validate() []error {
	if l == nil {
		return nil
	}
	var errs []error
	for _, v := range []struct {
		key string
		n   int
	}{{"limits.sessions_per_agent", l.SessionsPerAgent}, {"limits.stdio_sessions", l.StdioSessions}, {"limits.stdio_sessions_per_agent", l.StdioSessionsPerAgent}} {
		if v.n < 0 {
			errs = append(errs, fmt.Errorf("%s %d: want a positive number (0 or absent: the default)", v.key, v.n))
		}
	}
	return errs
}

// RemoteAS names a remote authorization server: its issuer (for the
// protected resource metadata), its RFC 7662 endpoint, and the gateway's own
// client credentials there.
//
//	authorization_server:
//	  issuer: https://as.example
//	  introspection_endpoint: https://as.example/oauth2/introspect  # default: <issuer>/oauth2/introspect
//	  client_id: gateway
//	  client_secret_file: /run/secrets/gateway-secret
//
// Or, when the gateway shares the AS's PostgreSQL store (store: or
// store_file:), it reads tokens there itself — no HTTP hop per call — with
// the AS's token secret (the token-secret file of the AS's data dir):
//
//	authorization_server:
//	  issuer: https://as.example
//	  token_secret_file: /run/secrets/token-secret
//	store_file: /run/secrets/store-url
type RemoteAS struct {
	Issuer                string `yaml:"issuer"`
	IntrospectionEndpoint string `yaml:"introspection_endpoint"`
	ClientID              string `yaml:"client_id"`
	ClientSecretFile      string `yaml:"client_secret_file"`
	TokenSecretFile       string `yaml:"token_secret_file"`
}

// Introspection is what the gateway's RFC 7662 client needs of a remote
// authorization server.
type Introspection struct {
	Endpoint, ClientID, ClientSecret string
}

// Introspection resolves the RFC 7662 endpoint and the gateway's
// credentials there, reading the secret file.
func (r *RemoteAS) Introspection() (Introspection, error) {
	secret, err := os.ReadFile(r.ClientSecretFile)
	if err != nil {
		return Introspection{}, fmt.Errorf("authorization_server: client secret: %w", err)
	}
	endpoint := r.IntrospectionEndpoint
	if endpoint == "" {
		endpoint = strings.TrimSuffix(r.Issuer, "/") + "/oauth2/introspect"
	}
	return Introspection{Endpoint: endpoint, ClientID: r.ClientID, ClientSecret: strings.TrimSpace(string(secret))}, nil
}

// Backend is one backend of the configuration file: a Streamable
// HTTP URL, or a stdio command the gateway starts.
type Backend struct {
	Name             string            `yaml:"name"`
	URL              string            `yaml:"url"`
	Command          []string          `yaml:"command"`
	Env              []string          `yaml:"env"`
	Dir              string            `yaml:"dir"`
	Timeout          string            `yaml:"timeout"`
	Headers          map[string]string `yaml:"headers"`
	HeadersFromFiles map[string]string `yaml:"headers_from_files"`
	// IdleTimeout ends a stdio backend's session (and its process) unused
	// this long (a duration; default 30m; "0s": never).
	IdleTimeout string `yaml:"idle_timeout"`
	// MaxProcesses and MaxProcessesPerAgent bound a stdio backend's
	// processes, in all and per agent (default limits.stdio_sessions and
	// limits.stdio_sessions_per_agent).
	MaxProcesses         int `yaml:"max_processes"`
	MaxProcessesPerAgent int `yaml:"max_processes_per_agent"`
	// Shared runs one process of a stdio backend for every session (its
	// server keeps no state between requests): max_processes does not
	// apply, max_processes_per_agent bounds each agent's sessions.
	Shared bool `yaml:"shared"`
}

// StdioLimits are a stdio backend's idle timeout (0: the default;
// negative: never) and process caps (0: the limits block's), resolved.
func (b Backend) StdioLimits() (idle time.Duration, maxProcs, maxPerAgent int, err error) {
	if b.IdleTimeout != "" {
		if idle, err = time.ParseDuration(b.IdleTimeout); err != nil || idle < 0 {
			return 0, 0, 0, fmt.Errorf("backend %s: idle_timeout %q is not a duration (e.g. 30m; 0s: never)", b.Name, b.IdleTimeout)
		}
		if idle == 0 {
			idle = -1
		}
	}
	return idle, b.MaxProcesses, b.MaxProcessesPerAgent, nil
}

var (
	backendName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	envRef      = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
)

// unsetHeaderRefs are the errors of header values (of where) that name an
// environment variable (${VAR}) that is not set.
func unsetHeaderRefs(where string, headers map[string]string) []error {
	var errs []error
	for h, v := range headers {
		for _, m := range envRef.FindAllStringSubmatch(v, -1) {
			if _, ok := os.LookupEnv(m[1]); !ok {
				errs = append(errs, fmt.Errorf("%s: header %s uses ${%s}, which is not set", where, h, m[1]))
			}
		}
	}
	return errs
}

// expandEnv is a header value with each ${VAR} replaced by the variable.
func expandEnv(v string) string {
	return envRef.ReplaceAllStringFunc(v, func(ref string) string {
		return os.Getenv(envRef.FindStringSubmatch(ref)[1])
	})
}

// Load reads and validates a configuration file. Errors name the
// file, and the line where the YAML parser can tell.
func Load(path string) (*File, error) {
	return LoadEnv(path, func(string) (string, bool) { return "", false })
}

// LoadEnv reads a configuration file (none when path is empty),
// applies the PBAC_* environment overrides lookup finds (see ApplyEnv) and
// validates the result.
func LoadEnv(path string, lookup func(string) (string, bool)) (*File, error) {
	var cfg File
	where := "config"
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true) // a misspelt key is an error, not silently ignored
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		where = "config " + path
	}
	cfg.ApplyEnv(lookup)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return &cfg, nil
}

// EnvOverride is an environment variable that overrides a file key.
type EnvOverride struct{ Env, Key string }

// EnvOverrides lists each environment variable that overrides the file,
// with its key (Keys with an environment variable). Flags override both.
func EnvOverrides() []EnvOverride {
	var out []EnvOverride
	for _, k := range keys {
		if k.Env != "" {
			out = append(out, EnvOverride{Env: k.Env, Key: k.Name})
		}
	}
	return out
}

// ApplyEnv overrides the file's keys with the PBAC_* variables lookup finds
// set and non-empty (EnvOverrides). PBAC_STORE and PBAC_STORE_FILE replace
// both store keys, so a file's store never fights an environment's. A
// value that does not parse is reported by Validate.
func (c *File) ApplyEnv(lookup func(string) (string, bool)) {
	for _, k := range keys {
		if k.Env == "" || k.set == nil {
			continue
		}
		v, ok := lookup(k.Env)
		if !ok || v == "" {
			continue
		}
		if err := k.set(c, v); err != nil {
			c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: %w", k.Env, v, err))
		}
	}
}

func (c *File) policy() *Policy {
	if c.Policy == nil {
		c.Policy = &Policy{}
	}
	return c.Policy
}

func withDefault(t *TLSFiles) *TLSFiles {
	if t == nil {
		return &TLSFiles{}
	}
	return t
}

// TLSFiles is one listener's certificate and key (PEM files).
type TLSFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled tells whether TLS is configured (t may be nil).
func (t *TLSFiles) Enabled() bool { return t != nil && (t.CertFile != "" || t.KeyFile != "") }

// Check loads the pair: both files readable, the key the certificate's.
func (t *TLSFiles) Check() error {
	if t.CertFile == "" || t.KeyFile == "" {
		return errors.New("both cert_file and key_file are required")
	}
	if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
		return fmt.Errorf("%s and %s: %w", t.CertFile, t.KeyFile, err)
	}
	return nil
}

// StoreURL is the token store's URL: store, or store_file's content; ""
// for Badger.
func (c *File) StoreURL() (string, error) {
	if c.StoreFile == "" {
		return c.Store, nil
	}
	raw, err := os.ReadFile(c.StoreFile)
	if err != nil {
		return "", fmt.Errorf("store_file: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// CheckStoreURL checks a token store URL's syntax; the error never repeats
// the URL, which may carry a password.
func CheckStoreURL(s string) error {
	if s == "" || s == "badger" {
		return nil
	}
	if u, err := url.Parse(s); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("must be a postgres:// URL (or absent for Badger under data_dir)")
	}
	return nil
}

// IsPostgresStore tells whether a store setting names PostgreSQL (a
// postgres:// or postgresql:// URL) rather than Badger.
func IsPostgresStore(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// CheckListenAddr checks a host:port listen address.
func CheckListenAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// Validate checks the configuration and reports every problem at once.
func (c *File) Validate() error {
	var errs []error
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			errs = append(errs, fmt.Errorf("public_url %q must be an absolute http(s) URL", c.PublicURL))
		}
	}
	errs = append(errs, c.validateOperation()...)
	errs = append(errs, c.envErrs...)
	errs = append(errs, c.Policy.validate()...)
	errs = append(errs, c.ASrv.validate()...)
	errs = append(errs, c.ArgumentLimits.validate()...)
	errs = append(errs, c.Limits.validate()...)
	errs = append(errs, c.validateIdentity()...)
	errs = append(errs, c.Clients.validate()...)
	for _, h := range c.AdminHosts {
		if h == "" || strings.ContainsAny(h, "/:@ ") {
			errs = append(errs, fmt.Errorf("admin_hosts: %q must be a host name without port or scheme", h))
		}
	}
	if c.Store != "" {
		if err := CheckStoreURL(c.Store); err != nil {
			errs = append(errs, fmt.Errorf("store: %w", err))
		}
		if as := c.AuthorizationServer; as != nil && (!IsPostgresStore(c.Store) || as.TokenSecretFile == "") {
			errs = append(errs, errors.New("with authorization_server, store is for introspecting on the AS's shared PostgreSQL store: give a postgres:// store and authorization_server.token_secret_file, or no store"))
		}
	}
	if as := c.AuthorizationServer; as != nil {
		if u, err := url.Parse(as.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			errs = append(errs, fmt.Errorf("authorization_server.issuer %q must be an absolute http(s) URL", as.Issuer))
		}
		if as.IntrospectionEndpoint != "" {
			if u, err := url.Parse(as.IntrospectionEndpoint); err != nil || u.Host == "" {
				errs = append(errs, fmt.Errorf("authorization_server.introspection_endpoint %q must be an absolute URL", as.IntrospectionEndpoint))
			}
		}
		if as.TokenSecretFile != "" {
			if _, err := os.Stat(as.TokenSecretFile); err != nil {
				errs = append(errs, fmt.Errorf("authorization_server.token_secret_file: %w", err))
			}
			if c.Store == "" && c.StoreFile == "" {
				errs = append(errs, errors.New("authorization_server.token_secret_file is for introspecting on the shared store: give store (or store_file) too"))
			}
		} else {
			if as.ClientID == "" {
				errs = append(errs, errors.New("authorization_server.client_id is required (the gateway's own client)"))
			}
			if _, err := os.Stat(as.ClientSecretFile); err != nil {
				errs = append(errs, fmt.Errorf("authorization_server.client_secret_file: %w", err))
			}
		}
	}
	seen := map[string]bool{}
	for i, b := range c.Backends {
		where := fmt.Sprintf("backends[%d] (%s)", i, b.Name)
		if !backendName.MatchString(b.Name) {
			errs = append(errs, fmt.Errorf("%s: name must be lower-case letters, digits, - or _", where))
		}
		if seen[b.Name] {
			errs = append(errs, fmt.Errorf("%s: the name is used twice", where))
		}
		seen[b.Name] = true
		switch {
		case b.URL != "" && len(b.Command) > 0:
			errs = append(errs, fmt.Errorf("%s: give either url or command, not both", where))
		case b.URL == "" && len(b.Command) == 0:
			errs = append(errs, fmt.Errorf("%s: url or command is required", where))
		case b.URL != "":
			if u, err := url.Parse(b.URL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
				errs = append(errs, fmt.Errorf("%s: url %q must be an absolute http(s) URL", where, b.URL))
			}
		}
		if b.Timeout != "" {
			if d, err := time.ParseDuration(b.Timeout); err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s: timeout %q is not a positive duration (e.g. 30s)", where, b.Timeout))
			}
		}
		for _, e := range b.Env {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				errs = append(errs, fmt.Errorf("%s: env entry %q must be KEY=VALUE", where, e))
			}
		}
		stdioOnly := b.IdleTimeout != "" || b.MaxProcesses != 0 || b.MaxProcessesPerAgent != 0 || b.Shared
		switch {
		case stdioOnly && len(b.Command) == 0:
			errs = append(errs, fmt.Errorf("%s: idle_timeout, max_processes, max_processes_per_agent and shared are for a command (stdio) backend", where))
		case b.Shared && b.MaxProcesses != 0:
			errs = append(errs, fmt.Errorf("%s: a shared stdio backend runs one process: max_processes does not apply", where))
		case b.MaxProcesses < 0 || b.MaxProcessesPerAgent < 0:
			errs = append(errs, fmt.Errorf("%s: max_processes and max_processes_per_agent must not be negative", where))
		case b.MaxProcesses > 0 && b.MaxProcessesPerAgent > b.MaxProcesses:
			errs = append(errs, fmt.Errorf("%s: max_processes_per_agent %d is more than max_processes %d", where, b.MaxProcessesPerAgent, b.MaxProcesses))
		}
		if _, _, _, err := b.StdioLimits(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		errs = append(errs, unsetHeaderRefs(where, b.Headers)...)
		for h, path := range b.HeadersFromFiles {
			if _, err := os.Stat(path); err != nil {
				errs = append(errs, fmt.Errorf("%s: header %s: %w", where, h, err))
			}
		}
	}
	if err := c.Telemetry.Check(); err != nil {
		errs = append(errs, err)
	}
	for _, src := range c.IconSources {
		if strings.HasPrefix(src, "data:") {
			continue
		}
		if u, err := url.Parse(src); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || !strings.HasSuffix(u.Path, "/") {
			errs = append(errs, fmt.Errorf("icon_sources: %q: want data: or an https URL ending in /", src))
		}
	}
	return errors.Join(errs...)
}

// IdentityOrNone is the identity section (c may be nil; the zero Config:
// none configured).
func (c *File) IdentityOrNone() identity.Config {
	if c == nil || c.Identity == nil {
		return identity.Config{}
	}
	return *c.Identity
}

// validateIdentity checks the identity section: its syntax
// (identity.Config.Validate) and that the files it names exist.
func (c *File) validateIdentity() []error {
	id := c.Identity
	if id == nil {
		return nil
	}
	var errs []error
	if err := id.Validate(); err != nil {
		errs = append(errs, err)
	}
	// A replica reading tokens on the AS's shared store decides them with
	// the AS's people (a users file is looked up at each use), so it takes
	// the AS's identity section; one that asks the AS over RFC 7662 has
	// no use for it.
	if as := c.AuthorizationServer; as != nil && as.TokenSecretFile == "" && id.Configured() {
		errs = append(errs, errors.New("identity: people sign in at the authorization server; with authorization_server (RFC 7662) it belongs in that server's configuration"))
	}
	files := []struct{ key, path string }{{"identity.users_file", id.UsersFile}}
	if id.OIDC != nil {
		files = append(files, struct{ key, path string }{"identity.oidc.client_secret_file", id.OIDC.ClientSecretFile})
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	return errs
}

// validateOperation checks the listeners, TLS, store file, logging and
// drain keys.
func (c *File) validateOperation() []error {
	var errs []error
	for _, l := range []struct{ key, addr string }{{"listen", c.Listen}, {"admin_listen", c.AdminListen}} {
		if l.addr != "" {
			if err := CheckListenAddr(l.addr); err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", l.key, l.addr, err))
			}
		}
	}
	for _, t := range []struct {
		key   string
		files *TLSFiles
	}{{"tls", c.TLS}, {"admin_tls", c.AdminTLS}} {
		if t.files.Enabled() {
			if err := t.files.Check(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", t.key, err))
			}
		}
	}
	if c.TLS.Enabled() && c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "https://") {
		errs = append(errs, fmt.Errorf("public_url %q: the gateway listener serves TLS, so clients reach it over https", c.PublicURL))
	}
	if c.StoreFile != "" {
		switch dsn, err := c.StoreURL(); {
		case err != nil:
			errs = append(errs, err)
		case c.Store != "":
			errs = append(errs, errors.New("give store or store_file, not both"))
		default:
			if err := CheckStoreURL(dsn); err != nil {
				errs = append(errs, fmt.Errorf("store_file %s: %w", c.StoreFile, err))
			}
			if as := c.AuthorizationServer; as != nil && (!IsPostgresStore(dsn) || as.TokenSecretFile == "") {
				errs = append(errs, errors.New("with authorization_server, store_file is for introspecting on the AS's shared PostgreSQL store: give authorization_server.token_secret_file too, or no store"))
			}
		}
	}
	if c.LogLevel != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
			errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
		}
	}
	if c.Denials != "" && c.Denials != "http_403" && c.Denials != "tool_error" {
		errs = append(errs, fmt.Errorf("denials %q: want http_403 or tool_error", c.Denials))
	}
	if _, err := c.SessionIdleOrDefault(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.ApprovalsWaitOrDefault(); err != nil {
		errs = append(errs, err)
	}
	if c.ApprovalsURL != "" {
		if u, err := url.Parse(c.ApprovalsURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("approvals_url %q: want an absolute http(s) URL without query or fragment, e.g. https://gw.example/ui/approvals/", c.ApprovalsURL))
		}
	}
	if c.LogFormat != "" && c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("log_format %q: want json or text", c.LogFormat))
	}
	if c.DrainDelay != "" {
		if d, err := time.ParseDuration(c.DrainDelay); err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("drain_delay %q is not a duration (e.g. 5s)", c.DrainDelay))
		}
	}
	if c.AuditLinger != "" {
		if _, err := ParseAuditLinger(c.AuditLinger); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// ResolvedBackend is a URL backend as the gateway takes it.
type ResolvedBackend struct {
	Name, URL string
	Headers   map[string]string
	Timeout   time.Duration // 0: the gateway's default
}

// Resolve resolves a URL backend's configuration: timeout parsed, header
// values with ${VAR} expanded and secret files read.
func (b Backend) Resolve() (ResolvedBackend, error) {
	out := ResolvedBackend{Name: b.Name, URL: b.URL, Headers: map[string]string{}}
	if b.Timeout != "" {
		d, err := time.ParseDuration(b.Timeout)
		if err != nil {
			return ResolvedBackend{}, err
		}
		out.Timeout = d
	}
	for h, v := range b.Headers {
		out.Headers[h] = expandEnv(v)
	}
	for h, path := range b.HeadersFromFiles {
		raw, err := os.ReadFile(path)
		if err != nil {
			return ResolvedBackend{}, fmt.Errorf("backend %s: header %s: %w", b.Name, h, err)
		}
		out.Headers[h] = strings.TrimSpace(string(raw))
	}
	return out, nil
}

// ArgumentLimits is the argument_limits key: the gateway's ArgumentLimits
// in YAML (zero: the gateway's default).
type ArgumentLimits struct {
	MaxBytes        int `yaml:"max_bytes"`
	MaxStringBytes  int `yaml:"max_string_bytes"`
	MaxPathBytes    int `yaml:"max_path_bytes"`
	MaxPathSegments int `yaml:"max_path_segments"`
	MaxDepth        int `yaml:"max_depth"`
	MaxKeys         int `yaml:"max_keys"`
}

func (a *ArgumentLimits) validate() []error {
	if a == nil {
		return nil
	}
	var errs []error
	for _, f := range []struct {
		key string
		v   int
	}{{"max_bytes", a.MaxBytes}, {"max_string_bytes", a.MaxStringBytes}, {"max_path_bytes", a.MaxPathBytes},
		{"max_path_segments", a.MaxPathSegments}, {"max_depth", a.MaxDepth}, {"max_keys", a.MaxKeys}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("argument_limits.%s %d: want a positive number (or leave it out for the default)", f.key, f.v))
		}
	}
	return errs
}

// ApprovalsWaitOrDefault is approvals_wait as a duration; 0 when unset
// (the gateway's default, 10 seconds).
func (c *File) ApprovalsWaitOrDefault() (time.Duration, error) {
	if c == nil || c.ApprovalsWait == "" {
		return 0, nil
	}
	d, err := positiveDuration("approvals_wait", c.ApprovalsWait, "10s")
	if err == nil && d > 2*time.Minute {
		err = fmt.Errorf("approvals_wait %q: at most 2m (a retry holds a connection that long)", c.ApprovalsWait)
	}
	return d, err
}

// SessionIdleOrDefault is session_idle as a duration; 0 when unset (the
// gateway's default, 30 minutes).
func (c *File) SessionIdleOrDefault() (time.Duration, error) {
	if c == nil || c.SessionIdle == "" {
		return 0, nil
	}
	return positiveDuration("session_idle", c.SessionIdle, "30m")
}

// MaxAuditLinger bounds audit_linger: records wait at most this long.
const MaxAuditLinger = time.Second

// ParseAuditLinger reads audit_linger: a duration of 0s to MaxAuditLinger.
func ParseAuditLinger(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > MaxAuditLinger {
		return 0, fmt.Errorf("audit_linger %q: want a duration from 0s to %s (e.g. 20ms)", v, MaxAuditLinger)
	}
	return d, nil
}
