package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/identity"
)

// TestKeysAreTheOneTable: every environment override comes from the table
// (the 25 of before the table, none lost, identity's 7, session_idle's and
// scopes_supported's,
// asrv.max_sign_in_age's, demo_agents' and clients.metadata_documents' 5), names and
// variables are unique,
// and each variable sets the file key it names (the value read back
// through the table).
func TestKeysAreTheOneTable(t *testing.T) {
	want := []string{"PBAC_LISTEN", "PBAC_ADMIN_LISTEN", "PBAC_DATA_DIR", "PBAC_STORE", "PBAC_STORE_FILE", "PBAC_PUBLIC_URL",
		"PBAC_TLS_CERT", "PBAC_TLS_KEY", "PBAC_ADMIN_TLS_CERT", "PBAC_ADMIN_TLS_KEY", "PBAC_LOG_LEVEL", "PBAC_LOG_FORMAT",
		"PBAC_DENIALS", "PBAC_SESSION_IDLE", "PBAC_APPROVALS_URL", "PBAC_APPROVALS_WAIT", "PBAC_APPROVALS_STATE_KEY_FILE", "PBAC_SCOPES_SUPPORTED", "PBAC_DRAIN_DELAY", "PBAC_AUDIT_LINGER", "PBAC_BUNDLE_SERVER", "PBAC_BUNDLE_POLL_INTERVAL", "PBAC_BUNDLE_TOKEN_FILE",
		"PBAC_BUNDLE_VERIFICATION_KEYS", "PBAC_POLICY_SYNC", "PBAC_POLICY_SYNC_INTERVAL", "PBAC_ADMIN_HOSTS", "PBAC_ADMIN_PPROF",
		"PBAC_SESSIONS_PER_AGENT", "PBAC_STDIO_SESSIONS", "PBAC_STDIO_SESSIONS_PER_AGENT", "PBAC_POLICY_DECISION_TIMEOUT",
		"PBAC_POLICY_EVAL_TIMEOUT", "PBAC_USERS_FILE", "PBAC_OIDC_ISSUER", "PBAC_OIDC_CLIENT_ID", "PBAC_OIDC_CLIENT_SECRET_FILE",
		"PBAC_OIDC_SCOPES", "PBAC_OIDC_GROUPS_CLAIM", "PBAC_OIDC_SUBJECT_CLAIM", "PBAC_MAX_SIGN_IN_AGE", "PBAC_ACCESS_TOKEN_TTL", "PBAC_REFRESH_REUSE_GRACE", "PBAC_DEMO_AGENTS",
		"PBAC_METADATA_DOCUMENTS", "PBAC_METADATA_DOCUMENTS_FETCH", "PBAC_METADATA_DOCUMENTS_ALLOW_NETWORKS",
		"PBAC_METADATA_DOCUMENTS_CA_FILE", "PBAC_METADATA_DOCUMENTS_PINNED_DIR"}
	var got []string
	for _, o := range EnvOverrides() {
		got = append(got, o.Env)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("EnvOverrides() = %v\nwant %v", got, want)
	}
	names, envs := map[string]bool{}, map[string]bool{}
	for _, k := range Keys() {
		if names[k.Name] || (k.Env != "" && envs[k.Env]) {
			t.Fatalf("%s (%s) is in the table twice", k.Name, k.Env)
		}
		names[k.Name], envs[k.Env] = true, true
		if k.Doc == "" || (k.Env != "" && !strings.HasPrefix(k.Env, "PBAC_")) {
			t.Errorf("%s: doc %q, env %q", k.Name, k.Doc, k.Env)
		}
		if k.Env == "" {
			continue
		}
		value := map[string]string{"policy.sync": "false", "demo_agents": "true", "admin_pprof": "true", "limits.sessions_per_agent": "7", "limits.stdio_sessions": "7",
			"limits.stdio_sessions_per_agent": "7", "policy.verification_keys": "a=/k1,b=/k2", "admin_hosts": "a.internal,b.internal", "scopes_supported": "drive:read,jira:read",
			"identity.oidc.scopes": "openid,groups", "clients.metadata_documents.enabled": "false",
			"clients.metadata_documents.fetch": "false", "clients.metadata_documents.allow_networks": "127.0.0.1/32,10.0.0.0/8"}[k.Name]
		if value == "" {
			value = "value-of-" + k.Name
		}
		var c File
		c.ApplyEnv(func(e string) (string, bool) { return value, e == k.Env })
		if len(c.envErrs) > 0 {
			t.Fatalf("%s=%s: %v", k.Env, value, c.envErrs)
		}
		if back := k.FromFile(&c); back != value {
			t.Errorf("%s=%s sets %s to %q", k.Env, value, k.Name, back)
		}
		for _, other := range Keys() {
			if other.Name != k.Name && other.FromFile(&c) != "" {
				t.Errorf("%s also set %s", k.Env, other.Name)
			}
		}
	}
	if _, ok := Lookup("listen"); !ok {
		t.Fatal("Lookup(listen) failed")
	}
}

// TestIdentityFromTheEnvironment: the PBAC_OIDC_* and PBAC_USERS_FILE
// variables make an identity section of their own or override the file's,
// and an incomplete one is refused as the file's would be.
func TestIdentityFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(users, []byte("users: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	c, err := LoadEnv("", env(map[string]string{"PBAC_OIDC_ISSUER": "https://login.example.com", "PBAC_OIDC_CLIENT_ID": "pbac",
		"PBAC_OIDC_SCOPES": "openid,groups", "PBAC_USERS_FILE": users}))
	if err != nil {
		t.Fatal(err)
	}
	want := identity.OIDCConfig{Issuer: "https://login.example.com", ClientID: "pbac", Scopes: []string{"openid", "groups"}}
	if got := c.Identity.OIDC; got == nil || got.Issuer != want.Issuer || got.ClientID != want.ClientID || !slices.Equal(got.Scopes, want.Scopes) ||
		c.Identity.UsersFile != users {
		t.Fatalf("identity from the environment: %+v", c.Identity)
	}
	if _, err := LoadEnv("", env(map[string]string{"PBAC_OIDC_CLIENT_ID": "pbac"})); err == nil || !strings.Contains(err.Error(), "identity.oidc: issuer: is required") {
		t.Fatalf("a client id without an issuer: %v", err)
	}
	if c, err := LoadEnv("", env(nil)); err != nil || c.Identity != nil {
		t.Fatalf("no identity variables: %+v, %v", c.Identity, err)
	}
}

// TestSessionIdle: session_idle is a positive duration; unset is the
// gateway's default (0); anything else is refused by name.
func TestSessionIdle(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string
		wantErr bool
	}{{"", "0s", false}, {"2s", "2s", false}, {"30m", "30m0s", false}, {"0s", "", true}, {"-1s", "", true}, {"soon", "", true}} {
		c := &File{SessionIdle: tc.in}
		d, err := c.SessionIdleOrDefault()
		if (err != nil) != tc.wantErr || (err == nil && d.String() != tc.want) {
			t.Errorf("session_idle %q = %s, %v; want %s (error %t)", tc.in, d, err, tc.want, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "session_idle") {
			t.Errorf("session_idle %q: the error %q does not name the key", tc.in, err)
		}
		if verr := c.Validate(); (verr != nil) != tc.wantErr {
			t.Errorf("session_idle %q: Validate() = %v", tc.in, verr)
		}
	}
}

func TestApprovalsSettings(t *testing.T) {
	tests := []struct {
		name string
		file File
		wait time.Duration
		bad  string
	}{
		{"unset", File{}, 0, ""},
		{"wait", File{ApprovalsWait: "30s"}, 30 * time.Second, ""},
		{"wait too long", File{ApprovalsWait: "5m"}, 0, "at most 2m"},
		{"wait not a duration", File{ApprovalsWait: "soon"}, 0, "approvals_wait"},
		{"url", File{ApprovalsURL: "https://gw.example/ui/approvals/"}, 0, ""},
		{"url relative", File{ApprovalsURL: "/ui/approvals/"}, 0, "approvals_url"},
		{"url with query", File{ApprovalsURL: "https://gw.example/a?x=1"}, 0, "approvals_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := errors.Join(tt.file.validateOperation()...)
			if tt.bad == "" && errs != nil || tt.bad != "" && (errs == nil || !strings.Contains(errs.Error(), tt.bad)) {
				t.Fatalf("check = %v, want %q", errs, tt.bad)
			}
			if tt.bad == "" {
				if d, _ := tt.file.ApprovalsWaitOrDefault(); d != tt.wait {
					t.Fatalf("wait = %v, want %v", d, tt.wait)
				}
			}
		})
	}
}
