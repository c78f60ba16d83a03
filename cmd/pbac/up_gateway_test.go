package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestUpScopesAndSessionIdle: scopes_supported and session_idle (file or
// environment) reach pbac up's gateway: the protected resource metadata
// advertises those scopes alone, and sessions end after that idle time;
// unset, the metadata advertises the policy's scopes; a session_idle that
// is no positive duration is refused by name.
func TestUpScopesAndSessionIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the system")
	}
	prm := func(t *testing.T, base string) []string {
		t.Helper()
		resp, err := http.Get(base + "/.well-known/oauth-protected-resource/mcp")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m struct {
			Scopes []string `json:"scopes_supported"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m.Scopes
	}
	t.Run("set", func(t *testing.T) {
		st, _ := startUpStack(t, "session_idle: 3s\n", map[string]string{"PBAC_SCOPES_SUPPORTED": "drive:read"})
		if got := prm(t, st.URL()); !slices.Equal(got, []string{"drive:read"}) {
			t.Errorf("scopes_supported = %v, want [drive:read]", got)
		}
	})
	t.Run("unset", func(t *testing.T) {
		st, _ := startUpStack(t, "", nil)
		if got := prm(t, st.URL()); !slices.Contains(got, "drive:read") || !slices.Contains(got, "drive:write") {
			t.Errorf("scopes_supported = %v, want the policy's, drive:read and drive:write among them", got)
		}
	})
	for _, tc := range []struct {
		body string
		env  map[string]string
		want time.Duration
		err  string
	}{
		{body: "session_idle: 3s\n", want: 3 * time.Second},
		{env: map[string]string{"PBAC_SESSION_IDLE": "2s"}, want: 2 * time.Second},
		{body: "", want: 0},
		{body: "session_idle: soon\n", err: `session_idle "soon"`},
	} {
		dir := t.TempDir()
		conf := filepath.Join(dir, "pbac.yaml")
		if err := os.WriteFile(conf, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := newUpCommand()
		if err := cmd.ParseFlags([]string{"--data-dir", filepath.Join(dir, "data")}); err != nil {
			t.Fatal(err)
		}
		ops, err := resolveOps(cmd.Flags(), conf, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one saying %s", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		bundles, err := bundleSettings(cmd.Flags(), ops.file)
		if err != nil {
			t.Fatal(err)
		}
		up := upConfig{listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", dataDir: ops.dataDir, file: ops.file, ops: ops, bundles: bundles}
		sc, err := up.stackConfig(slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if sc.Gateway.SessionIdle != tc.want {
			t.Errorf("%q %v: the gateway's session idle %s, want %s", tc.body, tc.env, sc.Gateway.SessionIdle, tc.want)
		}
	}
}
