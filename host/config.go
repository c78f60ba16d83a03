package host

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FileConfig is the gateway's configuration file (YAML). Every field is
// optional; an empty file runs the demo.
//
//	listen: 127.0.0.1:8080          # gateway + authorization server
//	admin_listen: 127.0.0.1:8081    # admin API
//	data_dir: /var/lib/pbac
//	store: postgres://pbac@db.internal:5432/pbac?sslmode=verify-full  # token store shared by replicas (default: Badger under data_dir; password from PGPASSWORD or ~/.pgpass)
//	public_url: https://gw.example  # as clients reach it (default http://<listen>)
//	demo: false                     # start the demo backends (default: only when no backends are listed)
//	backends:
//	  - name: jira
//	    url: https://jira-mcp.internal/mcp
//	    timeout: 30s
//	    headers: {X-Api-Key: "${JIRA_KEY}"}             # ${VAR} from the environment
//	    headers_from_files: {Authorization: /run/secrets/jira-auth}
//	  - name: files
//	    command: [npx, -y, "@modelcontextprotocol/server-filesystem", /srv/docs]
//	    env: [NODE_OPTIONS=--max-old-space-size=256]
type FileConfig struct {
	// AuthorizationServer, when set, is a remote AS the gateway trusts
	// instead of running one in process.
	AuthorizationServer *RemoteASConfig `yaml:"authorization_server"`
	Listen              string          `yaml:"listen"`
	AdminListen         string          `yaml:"admin_listen"`
	DataDir             string          `yaml:"data_dir"`
	Store               string          `yaml:"store"`
	PublicURL           string          `yaml:"public_url"`
	Demo                *bool           `yaml:"demo"`
	Backends            []BackendConfig `yaml:"backends"`
}

// RemoteASConfig names a remote authorization server: its issuer (for the
// protected resource metadata), its RFC 7662 endpoint, and the gateway's own
// client credentials there.
//
//	authorization_server:
//	  issuer: https://as.example
//	  introspection_endpoint: https://as.example/oauth2/introspect  # default: <issuer>/oauth2/introspect
//	  client_id: gateway
//	  client_secret_file: /run/secrets/gateway-secret
type RemoteASConfig struct {
	Issuer                string `yaml:"issuer"`
	IntrospectionEndpoint string `yaml:"introspection_endpoint"`
	ClientID              string `yaml:"client_id"`
	ClientSecretFile      string `yaml:"client_secret_file"`
}

// Introspector builds the RFC 7662 client, reading the secret file.
func (r *RemoteASConfig) Introspector() (*RemoteIntrospector, error) {
	secret, err := os.ReadFile(r.ClientSecretFile)
	if err != nil {
		return nil, fmt.Errorf("authorization_server: client secret: %w", err)
	}
	endpoint := r.IntrospectionEndpoint
	if endpoint == "" {
		endpoint = strings.TrimSuffix(r.Issuer, "/") + "/oauth2/introspect"
	}
	return &RemoteIntrospector{Endpoint: endpoint, ClientID: r.ClientID, ClientSecret: strings.TrimSpace(string(secret))}, nil
}

// BackendConfig is one backend of the configuration file: a Streamable
// HTTP URL, or a stdio command the gateway starts.
type BackendConfig struct {
	Name             string            `yaml:"name"`
	URL              string            `yaml:"url"`
	Command          []string          `yaml:"command"`
	Env              []string          `yaml:"env"`
	Dir              string            `yaml:"dir"`
	Timeout          string            `yaml:"timeout"`
	Headers          map[string]string `yaml:"headers"`
	HeadersFromFiles map[string]string `yaml:"headers_from_files"`
}

var (
	backendName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	envRef      = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
)

// LoadConfig reads and validates a configuration file. Errors name the
// file, and the line where the YAML parser can tell.
func LoadConfig(path string) (*FileConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var cfg FileConfig
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true) // a misspelt key is an error, not silently ignored
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &cfg, nil
}

// Validate checks the configuration and reports every problem at once.
func (c *FileConfig) Validate() error {
	var errs []error
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			errs = append(errs, fmt.Errorf("public_url %q must be an absolute http(s) URL", c.PublicURL))
		}
	}
	if c.Store != "" {
		if u, err := url.Parse(c.Store); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			// Not echoed: it may carry a password.
			errs = append(errs, errors.New("store must be a postgres:// URL (or absent for Badger under data_dir)"))
		}
		if c.AuthorizationServer != nil {
			errs = append(errs, errors.New("store is the in-process authorization server's; with authorization_server there is none"))
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
		if as.ClientID == "" {
			errs = append(errs, errors.New("authorization_server.client_id is required (the gateway's own client)"))
		}
		if _, err := os.Stat(as.ClientSecretFile); err != nil {
			errs = append(errs, fmt.Errorf("authorization_server.client_secret_file: %w", err))
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
		for h, v := range b.Headers {
			for _, m := range envRef.FindAllStringSubmatch(v, -1) {
				if _, ok := os.LookupEnv(m[1]); !ok {
					errs = append(errs, fmt.Errorf("%s: header %s uses ${%s}, which is not set", where, h, m[1]))
				}
			}
		}
		for h, path := range b.HeadersFromFiles {
			if _, err := os.Stat(path); err != nil {
				errs = append(errs, fmt.Errorf("%s: header %s: %w", where, h, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Backend resolves a URL backend's configuration: timeout parsed, header
// values with ${VAR} expanded and secret files read.
func (b BackendConfig) Backend() (Backend, error) {
	out := Backend{Name: b.Name, URL: b.URL, Headers: map[string]string{}}
	if b.Timeout != "" {
		d, err := time.ParseDuration(b.Timeout)
		if err != nil {
			return Backend{}, err
		}
		out.Timeout = d
	}
	for h, v := range b.Headers {
		out.Headers[h] = envRef.ReplaceAllStringFunc(v, func(ref string) string {
			return os.Getenv(envRef.FindStringSubmatch(ref)[1])
		})
	}
	for h, path := range b.HeadersFromFiles {
		raw, err := os.ReadFile(path)
		if err != nil {
			return Backend{}, fmt.Errorf("backend %s: header %s: %w", b.Name, h, err)
		}
		out.Headers[h] = strings.TrimSpace(string(raw))
	}
	return out, nil
}
