package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "jira-auth")
	if err := os.WriteFile(secret, []byte("Bearer s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PBAC_TEST_KEY", "k-123")
	write := func(body string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, body string
		wantErr    string
	}{
		{"empty file is the demo", "", ""},
		{"url and stdio backends", `
listen: 127.0.0.1:9000
backends:
  - name: jira
    url: http://127.0.0.1:7000/mcp
    timeout: 5s
    headers: {X-Api-Key: "${PBAC_TEST_KEY}"}
    headers_from_files: {Authorization: ` + secret + `}
  - name: files
    command: [server-filesystem, /srv]
    env: [A=b]
`, ""},
		{"misspelt key", "listne: x\n", "field listne not found"},
		{"bad name", "backends: [{name: Jira!, url: http://x/mcp}]", "name must be"},
		{"duplicate name", "backends: [{name: a, url: http://x/mcp}, {name: a, url: http://y/mcp}]", "used twice"},
		{"url and command", "backends: [{name: a, url: http://x/mcp, command: [x]}]", "not both"},
		{"neither", "backends: [{name: a}]", "url or command is required"},
		{"relative url", "backends: [{name: a, url: /mcp}]", "absolute"},
		{"bad timeout", "backends: [{name: a, url: http://x/mcp, timeout: soon}]", "not a positive duration"},
		{"unset env in a header", `backends: [{name: a, url: http://x/mcp, headers: {K: "${PBAC_TEST_UNSET_VAR}"}}]`, "not set"},
		{"missing secret file", "backends: [{name: a, url: http://x/mcp, headers_from_files: {K: /nonexistent/f}}]", "no such file"},
		{"bad env entry", "backends: [{name: a, command: [x], env: [NOEQUALS]}]", "KEY=VALUE"},
		{"stdio limits", "backends: [{name: a, command: [x], idle_timeout: 10m, max_processes: 8, max_processes_per_agent: 2}]", ""},
		{"stdio never idle", "backends: [{name: a, command: [x], idle_timeout: 0s}]", ""},
		{"stdio limits on a URL backend", "backends: [{name: a, url: http://x/mcp, max_processes: 8}]", "for a command (stdio) backend"},
		{"bad idle timeout", "backends: [{name: a, command: [x], idle_timeout: -1m}]", "idle_timeout"},
		{"negative max processes", "backends: [{name: a, command: [x], max_processes: -1}]", "must not be negative"},
		{"more per agent than in all", "backends: [{name: a, command: [x], max_processes: 2, max_processes_per_agent: 3}]", "more than max_processes"},
		{"shared stdio", "backends: [{name: a, command: [x], shared: true, max_processes_per_agent: 3}]", ""},
		{"shared for a URL", "backends: [{name: a, url: \"http://127.0.0.1:1/mcp\", shared: true}]", "for a command (stdio) backend"},
		{"shared with a process cap", "backends: [{name: a, command: [x], shared: true, max_processes: 2}]", "max_processes does not apply"},
		{"icon sources", "icon_sources: ['https://static.example.com/icons/', 'data:']\n", ""},
		{"icon source over http", "icon_sources: ['http://static.example.com/icons/']\n", "icon_sources"},
		{"icon source without its slash", "icon_sources: ['https://static.example.com']\n", "icon_sources"},
		{"telemetry", "telemetry: {endpoint: 'http://collector:4318', protocol: grpc, sample_ratio: 0.5, service_name: gw}\n", ""},
		{"telemetry: not a URL", "telemetry: {endpoint: 'collector:4318'}\n", "absolute http(s) URL"},
		{"telemetry: http/json", "telemetry: {endpoint: 'http://collector:4318', protocol: http/json}\n", "want http/protobuf or grpc"},
		{"telemetry: ratio", "telemetry: {endpoint: 'http://collector:4318', sample_ratio: 2}\n", "between 0 and 1"},
		{"telemetry: unset header variable", "telemetry: {endpoint: 'http://collector:4318', headers: {K: '${PBAC_TEST_UNSET_VAR}'}}\n", "not set"},
		{"argument limits", "argument_limits: {max_bytes: 1024, max_path_segments: 8}\n", ""},
		{"negative argument limit", "argument_limits: {max_depth: -1}\n", "argument_limits.max_depth"},
		{"misspelt argument limit", "argument_limits: {max_segments: 8}\n", "field max_segments not found"},
		{"identity: oidc and a users file", "identity:\n  oidc: {issuer: https://login.example.com, client_id: pbac, client_secret_file: " + secret +
			", scopes: [openid, profile, email, groups], groups_claim: groups, subject_claim: email}\n  users_file: " + secret + "\n", ""},
		{"identity: a public oidc client", "identity: {oidc: {issuer: 'http://127.0.0.1:5556/dex', client_id: pbac}}\n", ""},
		{"identity: oidc issuer over http", "identity: {oidc: {issuer: 'http://login.example.com', client_id: pbac}}\n", "must be an https URL"},
		{"identity: oidc without a client id", "identity: {oidc: {issuer: 'https://login.example.com'}}\n", "client_id is required"},
		{"identity: scopes without openid", "identity: {oidc: {issuer: 'https://login.example.com', client_id: pbac, scopes: [profile]}}\n", "must include openid"},
		{"identity: missing client secret file", "identity: {oidc: {issuer: 'https://login.example.com', client_id: pbac, client_secret_file: /nonexistent/s}}\n",
			"identity.oidc.client_secret_file"},
		{"identity: missing users file", "identity: {users_file: /nonexistent/users.yaml}\n", "identity.users_file"},
		{"identity: misspelt key", "identity: {oidc: {issuer: 'https://login.example.com', client_id: pbac, group_claim: g}}\n", "field group_claim not found"},
		{"identity beside a remote AS", "identity: {users_file: " + secret + "}\nauthorization_server: {issuer: 'https://as.example', client_id: gw, client_secret_file: " + secret + "}\n",
			"belongs in that server's configuration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(write(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "argument limits" {
				// The keys left out stay zero: the gateway's defaults
				// (gateway's TestArgumentLimits).
				got, want := *cfg.ArgumentLimits, ArgumentLimits{MaxBytes: 1024, MaxPathSegments: 8}
				if got != want {
					t.Fatalf("argument limits %+v, want %+v", got, want)
				}
			}
			if tc.name == "url and stdio backends" {
				b, err := cfg.Backends[0].Resolve()
				if err != nil {
					t.Fatal(err)
				}
				if b.Headers["X-Api-Key"] != "k-123" || b.Headers["Authorization"] != "Bearer s3cret" || b.Timeout.Seconds() != 5 {
					t.Fatalf("resolved backend %+v", b)
				}
			}
		})
	}
}

func TestLoadConfigRemoteAS(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "s")
	_ = os.WriteFile(secret, []byte("gw-secret\n"), 0o600)
	p := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(p, []byte("authorization_server:\n  issuer: https://as.example\n  client_id: gw\n  client_secret_file: "+secret+"\n"), 0o600)
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	in, err := cfg.AuthorizationServer.Introspection()
	if err != nil || in.Endpoint != "https://as.example/oauth2/introspect" || in.ClientSecret != "gw-secret" {
		t.Fatalf("%+v %v", in, err)
	}
	_ = os.WriteFile(p, []byte("authorization_server:\n  issuer: as.example\n"), 0o600)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "client_id is required") || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("err = %v", err)
	}
}

// TestLoadConfigSharedStoreReplica: a gateway replica of a remote AS may
// introspect on the AS's PostgreSQL store with the AS's token secret, and
// then needs no client credentials at the AS.
func TestLoadConfigSharedStoreReplica(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "token-secret")
	if err := os.WriteFile(secret, make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "c.yaml")
	body := "store: postgres://pbac@db/pbac\nauthorization_server:\n  issuer: https://as.example\n  token_secret_file: " + secret + "\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p)
	if err != nil || cfg.AuthorizationServer.TokenSecretFile != secret {
		t.Fatalf("shared-store replica: %+v, %v", cfg, err)
	}
	missing := strings.Replace(body, secret, filepath.Join(dir, "absent"), 1)
	_ = os.WriteFile(p, []byte(missing), 0o600)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "token_secret_file") {
		t.Errorf("a missing token secret file: %v", err)
	}
}

func TestLoadConfigStore(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	load := func(body string) (*File, error) {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return Load(p)
	}
	cfg, err := load("store: postgres://pbac@db.internal:5432/pbac?sslmode=verify-full\n")
	if err != nil || cfg.Store != "postgres://pbac@db.internal:5432/pbac?sslmode=verify-full" {
		t.Fatalf("postgres store: %+v, %v", cfg, err)
	}
	for _, body := range []string{
		"store: mysql://pbac:pw-LEAK@db/pbac\n",
		"store: host=db password=pw-LEAK\n",
		"store: postgres://pbac:pw-LEAK@db/pbac\nauthorization_server: {issuer: https://as.example, client_id: gw, client_secret_file: /dev/null}\n",
		// Introspecting on the shared store needs the AS's token secret.
		"store: postgres://pbac:pw-LEAK@db/pbac\nauthorization_server: {issuer: https://as.example}\n",
		// ... and a store to introspect on.
		"authorization_server: {issuer: https://as.example, token_secret_file: /dev/null}\n",
	} {
		_, err := load(body)
		if err == nil || !strings.Contains(err.Error(), "store") {
			t.Errorf("%q: err = %v, want one about store", body, err)
		} else if strings.Contains(err.Error(), "pw-LEAK") {
			t.Errorf("%q: the error shows the password: %v", body, err)
		}
	}
}

// TestLoadConfigLimits: the limits and admin host names come from the file
// or the PBAC_* environment, default when absent, and refuse nonsense.
func TestLoadConfigLimits(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	defaults := Limits{SessionsPerAgent: DefaultSessionsPerAgent, StdioSessions: 16, StdioSessionsPerAgent: DefaultStdioSessionsPerAgent}
	for _, tc := range []struct {
		name, body string
		env        map[string]string
		want       Limits
		hosts      []string
		wantErr    string
	}{
		{name: "defaults", want: defaults},
		{name: "from the file", body: "limits: {sessions_per_agent: 10, stdio_sessions: 8, stdio_sessions_per_agent: 2}\nadmin_hosts: [gw-1.internal]\n",
			want: Limits{SessionsPerAgent: 10, StdioSessions: 8, StdioSessionsPerAgent: 2}, hosts: []string{"gw-1.internal"}},
		{name: "one key, the rest default", body: "limits: {stdio_sessions_per_agent: 1}\n",
			want: Limits{SessionsPerAgent: DefaultSessionsPerAgent, StdioSessions: 16, StdioSessionsPerAgent: 1}},
		{name: "environment over the file", body: "limits: {sessions_per_agent: 10}\n",
			env:  map[string]string{"PBAC_SESSIONS_PER_AGENT": "20", "PBAC_STDIO_SESSIONS": "4", "PBAC_ADMIN_HOSTS": "a.internal,b.internal"},
			want: Limits{SessionsPerAgent: 20, StdioSessions: 4, StdioSessionsPerAgent: DefaultStdioSessionsPerAgent}, hosts: []string{"a.internal", "b.internal"}},
		{name: "negative", body: "limits: {sessions_per_agent: -1}\n", wantErr: "limits.sessions_per_agent -1"},
		{name: "not a number in the environment", env: map[string]string{"PBAC_STDIO_SESSIONS_PER_AGENT": "many"}, wantErr: "want a number"},
		{name: "a host with a port", body: "admin_hosts: [gw-1.internal:8081]\n", wantErr: "without port"},
		{name: "a misspelt limit", body: "limits: {sessions_per_agnet: 3}\n", wantErr: "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadEnv(write(tc.body), func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.LimitsOrDefault(); got != tc.want {
				t.Fatalf("limits %+v, want %+v", got, tc.want)
			}
			if strings.Join(cfg.AdminHosts, ",") != strings.Join(tc.hosts, ",") {
				t.Fatalf("admin_hosts %v, want %v", cfg.AdminHosts, tc.hosts)
			}
		})
	}
	var none *File
	if got := none.LimitsOrDefault(); got != defaults {
		t.Fatalf("no file: %+v", got)
	}
}
