package config

import (
	"slices"
	"strings"
	"testing"
)

// TestKeysAreTheOneTable: every environment override comes from the table
// (the 25 of before the table, none lost), names and variables are unique,
// and each variable sets the file key it names (the value read back
// through the table).
func TestKeysAreTheOneTable(t *testing.T) {
	want := []string{"PBAC_LISTEN", "PBAC_ADMIN_LISTEN", "PBAC_DATA_DIR", "PBAC_STORE", "PBAC_STORE_FILE", "PBAC_PUBLIC_URL",
		"PBAC_TLS_CERT", "PBAC_TLS_KEY", "PBAC_ADMIN_TLS_CERT", "PBAC_ADMIN_TLS_KEY", "PBAC_LOG_LEVEL", "PBAC_LOG_FORMAT",
		"PBAC_DRAIN_DELAY", "PBAC_BUNDLE_SERVER", "PBAC_BUNDLE_POLL_INTERVAL", "PBAC_BUNDLE_TOKEN_FILE",
		"PBAC_BUNDLE_VERIFICATION_KEYS", "PBAC_POLICY_SYNC", "PBAC_POLICY_SYNC_INTERVAL", "PBAC_ADMIN_HOSTS",
		"PBAC_SESSIONS_PER_AGENT", "PBAC_STDIO_SESSIONS", "PBAC_STDIO_SESSIONS_PER_AGENT", "PBAC_POLICY_DECISION_TIMEOUT",
		"PBAC_POLICY_EVAL_TIMEOUT"}
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
		value := map[string]string{"policy.sync": "false", "limits.sessions_per_agent": "7", "limits.stdio_sessions": "7",
			"limits.stdio_sessions_per_agent": "7", "policy.verification_keys": "a=/k1,b=/k2", "admin_hosts": "a.internal,b.internal"}[k.Name]
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
