package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/internal/certreload/certtest"
)

// TestOpsPrecedence: a flag set on the command line beats the PBAC_*
// environment, which beats the file, which beats the flag's default.
func TestOpsPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pbac.yaml")
	if err := os.WriteFile(file, []byte("listen: 127.0.0.1:1001\nlog_level: warn\ndrain_delay: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dsnFile := filepath.Join(dir, "store-dsn")
	if err := os.WriteFile(dsnFile, []byte("postgres://pbac:s3cret@db:5432/pbac\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		file       string
		env        map[string]string
		flags      map[string]string
		listen     string
		logLevel   string
		store      string
		drainDelay time.Duration
	}{
		{name: "defaults", listen: "127.0.0.1:8080", logLevel: "info"},
		{name: "file", file: file, listen: "127.0.0.1:1001", logLevel: "warn", drainDelay: 3 * time.Second},
		{name: "env over file", file: file, env: map[string]string{"PBAC_LISTEN": "127.0.0.1:1002", "PBAC_DRAIN_DELAY": "1s"},
			listen: "127.0.0.1:1002", logLevel: "warn", drainDelay: time.Second},
		{name: "flag over env", file: file, env: map[string]string{"PBAC_LISTEN": "127.0.0.1:1002", "PBAC_LOG_LEVEL": "error"},
			flags: map[string]string{"listen": "127.0.0.1:1003", "log-level": "debug"}, listen: "127.0.0.1:1003", logLevel: "debug", drainDelay: 3 * time.Second},
		{name: "empty env ignored", file: file, env: map[string]string{"PBAC_LISTEN": ""}, listen: "127.0.0.1:1001", logLevel: "warn", drainDelay: 3 * time.Second},
		{name: "store from file", env: map[string]string{"PBAC_STORE_FILE": dsnFile}, listen: "127.0.0.1:8080", logLevel: "info",
			store: "postgres://pbac:s3cret@db:5432/pbac"},
		{name: "store flag over store file", env: map[string]string{"PBAC_STORE_FILE": dsnFile}, flags: map[string]string{"store": "postgres://other/db"},
			listen: "127.0.0.1:8080", logLevel: "info", store: "postgres://other/db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, s, err := resolveUpOps(t, tc.file, tc.env, tc.flags)
			if err != nil {
				t.Fatal(err)
			}
			if s.listen != tc.listen || s.logLevel != tc.logLevel || s.store != tc.store || s.drainDelay != tc.drainDelay {
				t.Errorf("got listen=%s log=%s store=%s drain=%s, want %s %s %s %s",
					s.listen, s.logLevel, s.store, s.drainDelay, tc.listen, tc.logLevel, tc.store, tc.drainDelay)
			}
		})
	}
}

func TestConfigCheckOperating(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certtest.New(t, "gw").Write(t, cf, kf)
	otherKey := filepath.Join(dir, "other.key")
	if err := os.WriteFile(otherKey, certtest.New(t, "other").KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "listen: 127.0.0.1:8443\npublic_url: https://gw.example\nstore: postgres://pbac:hunter2@db:5432/pbac\n"+
		"tls: {cert_file: "+cf+", key_file: "+kf+"}\nlog_format: json\n")
	out, _, err := run(t, "", "config", "check", good)
	if err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, want := range []string{"valid", "https://127.0.0.1:8443", "json", "postgres://pbac:xxxxx@db:5432/pbac"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("the store password is printed:\n%s", out)
	}
	bad := []struct{ name, body, want string }{
		{"missing cert", "tls: {cert_file: " + filepath.Join(dir, "nope.crt") + ", key_file: " + kf + "}\n", "no such file"},
		{"mismatched pair", "tls: {cert_file: " + cf + ", key_file: " + otherKey + "}\n", "private key does not match"},
		{"half a pair", "admin_tls: {cert_file: " + cf + "}\n", "both cert_file and key_file"},
		{"http public URL with TLS", "public_url: http://gw.example\ntls: {cert_file: " + cf + ", key_file: " + kf + "}\n", "over https"},
		{"bad listen", "listen: 8080\n", "listen"},
		{"bad store", "store: mysql://pbac:hunter2@db/pbac\n", "postgres://"},
		{"bad log format", "log_format: xml\n", "log_format"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, "", "config", "check", write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error repeats the password: %v", err)
			}
		})
	}
}

// TestDeployExampleParses: deploy/pbac.yaml uses only known keys (its files
// exist only on a real host, so it is decoded, not fully validated).
func TestDeployExampleParses(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/pbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var fc config.File
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil {
		t.Fatalf("deploy/pbac.yaml: %v", err)
	}
	if !fc.TLS.Enabled() || !strings.HasPrefix(fc.PublicURL, "https://") || fc.LogFormat != "json" {
		t.Errorf("deploy/pbac.yaml: want TLS, an https public URL and JSON logs: %+v", fc)
	}
}

// TestBundleSettingsPrecedence: the policy distribution flags follow the
// same order — flag, PBAC_* environment, the file's policy: section, the
// flag's default — and bad values in the file or environment are refused.
func TestBundleSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "ops.pub.pem")
	if err := os.WriteFile(key, []byte("not checked here"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "pbac.yaml")
	body := "policy:\n  bundle_server: https://gw-1.internal:8081\n  bundle_poll_interval: 10s\n  sync: false\n  verification_keys: [ops=" + key + "]\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		file     string
		env      map[string]string
		flags    map[string]string
		server   string
		interval time.Duration
		sync     bool
		keys     int
	}{
		{name: "defaults", interval: 30 * time.Second, sync: true},
		{name: "file", file: file, server: "https://gw-1.internal:8081", interval: 10 * time.Second, keys: 1},
		{name: "env over file", file: file, env: map[string]string{"PBAC_BUNDLE_SERVER": "https://gw-2.internal:8081", "PBAC_POLICY_SYNC": "true"},
			server: "https://gw-2.internal:8081", interval: 10 * time.Second, sync: true, keys: 1},
		{name: "flag over env", file: file, env: map[string]string{"PBAC_BUNDLE_POLL_INTERVAL": "20s"},
			flags:  map[string]string{"bundle-poll-interval": "5s", "bundle-server": "https://gw-3.internal:8081"},
			server: "https://gw-3.internal:8081", interval: 5 * time.Second, keys: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			flags, ops, err := resolveUpOps(t, tc.file, tc.env, tc.flags)
			if err != nil {
				t.Fatal(err)
			}
			b, err := bundleSettings(flags, ops.file)
			if err != nil {
				t.Fatal(err)
			}
			if b.server != tc.server || b.interval != tc.interval || b.sync != tc.sync || len(b.verificationKeys) != tc.keys {
				t.Errorf("got server %q interval %s sync %v keys %v; want %q %s %v %d", b.server, b.interval, b.sync, b.verificationKeys,
					tc.server, tc.interval, tc.sync, tc.keys)
			}
		})
	}
	for _, bad := range []struct {
		body string
		env  map[string]string
		want string
	}{
		{body: "policy:\n  bundle_server: gw-1:8081\n", want: "policy.bundle_server"},
		{body: "policy:\n  bundle_poll_interval: soon\n", want: "policy.bundle_poll_interval"},
		{body: "policy:\n  sync_interval: -1s\n", want: "policy.sync_interval"},
		{body: "policy:\n  verification_keys: [" + filepath.Join(dir, "absent.pem") + "]\n", want: "policy.verification_keys"},
		{body: "policy:\n  bundle_token_file: " + filepath.Join(dir, "absent") + "\n", want: "policy.bundle_token_file"},
		{body: "policy:\n  bundel_server: x\n", want: "bundel_server"},
		{env: map[string]string{"PBAC_POLICY_SYNC": "sometimes"}, want: "PBAC_POLICY_SYNC"},
	} {
		path := ""
		if bad.body != "" {
			path = filepath.Join(t.TempDir(), "bad.yaml")
			_ = os.WriteFile(path, []byte(bad.body), 0o600)
		}
		lookup := func(k string) (string, bool) { v, ok := bad.env[k]; return v, ok }
		if _, err := resolveOps(newUpCommand().Flags(), path, lookup); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q %v: err = %v, want one naming %s", bad.body, bad.env, err, bad.want)
		}
	}
}

// TestPolicyLimitsPrecedence: the decision and evaluation timeouts come
// from the flags, PBAC_POLICY_*_TIMEOUT or the policy: section, in that
// order, and an evaluation deadline longer than the decision timeout (it
// would never be reached) is refused.
func TestPolicyLimitsPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pbac.yaml")
	if err := os.WriteFile(file, []byte("policy:\n  decision_timeout: 3s\n  eval_timeout: 200ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		file           string
		env, flags     map[string]string
		decision, eval time.Duration
		wantErr        string
	}{
		{name: "defaults", decision: time.Second, eval: 100 * time.Millisecond},
		{name: "file", file: file, decision: 3 * time.Second, eval: 200 * time.Millisecond},
		{name: "env over file", file: file, env: map[string]string{"PBAC_POLICY_DECISION_TIMEOUT": "2s", "PBAC_POLICY_EVAL_TIMEOUT": "150ms"},
			decision: 2 * time.Second, eval: 150 * time.Millisecond},
		{name: "flag over env", file: file, env: map[string]string{"PBAC_POLICY_DECISION_TIMEOUT": "2s"},
			flags: map[string]string{"policy-decision-timeout": "500ms"}, decision: 500 * time.Millisecond, eval: 200 * time.Millisecond},
		{name: "evaluation longer than the decision", flags: map[string]string{"policy-eval-timeout": "2s"}, wantErr: "longer than the decision timeout"},
		{name: "not a duration", env: map[string]string{"PBAC_POLICY_DECISION_TIMEOUT": "soon"}, wantErr: "policy.decision_timeout"},
		{name: "not positive", flags: map[string]string{"policy-eval-timeout": "0s"}, wantErr: "--policy-eval-timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := resolvedOrRefused(t, tc.file, tc.env, tc.flags, tc.wantErr)
			if !ok {
				return
			}
			if s.limits.decisionTimeout != tc.decision || s.limits.evalTimeout != tc.eval {
				t.Errorf("decision %s, evaluation %s; want %s, %s", s.limits.decisionTimeout, s.limits.evalTimeout, tc.decision, tc.eval)
			}
		})
	}
}

// TestConfigCheckIdentity: pbac config check says where people sign in —
// the demo users only in the demo tenant, a users file, single sign-on
// with the redirect URI to register at the provider, and how long a
// sign-in lasts — and warns when nobody could.
func TestConfigCheckIdentity(t *testing.T) {
	dir := t.TempDir()
	users, secret := filepath.Join(dir, "users.yaml"), filepath.Join(dir, "oidc-secret")
	for _, f := range []string{users, secret} {
		if err := os.WriteFile(f, []byte("users: []\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, body string
		want, not  []string
	}{
		{"the demo", "", []string{"the demo users alice, bob and carol", "demo tenant of pbac up only", "sign-in lasts       24h at most"}, []string{"warning"}},
		{"demo off, nothing configured", "demo: false\n", []string{"warning: no identity source", "configure identity.oidc", "identity.users_file"}, []string{"alice", "sign-in lasts"}},
		{"backends of its own", "backends: [{name: a, url: 'http://127.0.0.1:7/mcp'}]\n", []string{"warning: no identity source"}, []string{"alice"}},
		{"a users file", "demo: false\nidentity: {users_file: " + users + "}\n", []string{"users file " + users}, []string{"warning", "alice"}},
		{"a users file, sign-ins of 90 minutes", "demo: false\nidentity: {users_file: " + users + "}\nasrv: {max_sign_in_age: 90m}\n",
			[]string{"users file " + users, "sign-in lasts       1h30m at most, refreshes included (asrv.max_sign_in_age)"}, []string{"warning"}},
		{"a users file in the demo", "identity: {users_file: " + users + "}\n", []string{"users file " + users}, []string{"alice"}},
		{"single sign-on", "demo: false\npublic_url: https://gw.example.com\nidentity:\n  oidc: {issuer: https://login.example.com, client_id: pbac, client_secret_file: " + secret + "}\n",
			[]string{"single sign-on at https://login.example.com (client pbac; scopes openid profile email; groups from groups, subject from sub)",
				"redirect URI        https://gw.example.com/oauth2/idp/callback"}, []string{"warning", "alice"}},
		{"single sign-on from the environment", "demo: false\n", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.name == "single sign-on from the environment" {
				t.Setenv("PBAC_OIDC_ISSUER", "https://sso.example.org")
				t.Setenv("PBAC_OIDC_CLIENT_ID", "gw")
				tc.want = []string{"single sign-on at https://sso.example.org (client gw;", "redirect URI        http://127.0.0.1:8080/oauth2/idp/callback",
					"identity.oidc.issuer              https://sso.example.org (PBAC_OIDC_ISSUER)"}
				tc.not = []string{"warning"}
			}
			out, _, err := run(t, "", "config", "check", p)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("output has %q:\n%s", n, out)
				}
			}
		})
	}
}

// TestAuditLingerPrecedence: audit_linger from the file, the environment
// and the flag, in that order; 0s means none; out of range is refused.
func TestAuditLingerPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pbac.yaml")
	if err := os.WriteFile(file, []byte("audit_linger: 50ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		file       string
		env, flags map[string]string
		want       time.Duration // the trail's linger (negative: none)
		wantErr    string
	}{
		{name: "default", want: 20 * time.Millisecond},
		{name: "file", file: file, want: 50 * time.Millisecond},
		{name: "env over file", file: file, env: map[string]string{"PBAC_AUDIT_LINGER": "5ms"}, want: 5 * time.Millisecond},
		{name: "flag over env", file: file, env: map[string]string{"PBAC_AUDIT_LINGER": "5ms"}, flags: map[string]string{"audit-linger": "0s"}, want: -1},
		{name: "longer than a second", env: map[string]string{"PBAC_AUDIT_LINGER": "2s"}, wantErr: "audit_linger"},
		{name: "negative", flags: map[string]string{"audit-linger": "-1ms"}, wantErr: "audit_linger"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := resolvedOrRefused(t, tc.file, tc.env, tc.flags, tc.wantErr)
			if !ok {
				return
			}
			if got := auditLinger(s.auditLinger); got != tc.want {
				t.Errorf("the trail's linger = %s, want %s", got, tc.want)
			}
		})
	}
}

// resolvedOrRefused resolves one case's settings with resolveUpOps. With
// wantErr the case must be refused with an error naming it, and ok is
// false; without, it must resolve.
func resolvedOrRefused(t *testing.T, file string, env, set map[string]string, wantErr string) (s opsSettings, ok bool) {
	t.Helper()
	_, s, err := resolveUpOps(t, file, env, set)
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("err = %v, want one naming %q", err, wantErr)
		}
		return opsSettings{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return s, true
}

// resolveUpOps resolves pbac up's settings from the configuration file at
// file (none when empty), the environment env and the command-line flags
// set, as resolveOps does; it returns the flag set too.
func resolveUpOps(t *testing.T, file string, env, set map[string]string) (*pflag.FlagSet, opsSettings, error) {
	t.Helper()
	flags := newUpCommand().Flags()
	for k, v := range set {
		if err := flags.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	s, err := resolveOps(flags, file, lookup)
	return flags, s, err
}
