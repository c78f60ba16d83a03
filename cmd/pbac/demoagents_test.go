package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/stack"
)

// TestDemoAgentsFollowTheDemo: pbac up registers the demo agents (with
// their secrets in the data dir) in the demo, and only there unless
// demo_agents asks for them: a configuration of one's own gateway
// registers no client at all.
func TestDemoAgentsFollowTheDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the system once per case")
	}
	for _, tc := range []struct {
		name, body string
		env        map[string]string
		want       int // demo agents registered
	}{
		{"the demo (no configuration)", "", nil, 4},
		{"demo off", "demo: false\n", nil, 0},
		{"a backend of one's own", "backends:\n  - {name: notes, url: http://127.0.0.1:1/mcp}\n", nil, 0},
		{"demo off, demo_agents on", "demo: false\ndemo_agents: true\n", nil, 4},
		{"the demo, PBAC_DEMO_AGENTS=false", "", map[string]string{"PBAC_DEMO_AGENTS": "false"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "pbac.yaml")
			if err := os.WriteFile(conf, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := newUpCommand()
			if err := cmd.ParseFlags([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}); err != nil {
				t.Fatal(err)
			}
			ops, err := resolveOps(cmd.Flags(), conf, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if err != nil {
				t.Fatal(err)
			}
			bundles, err := bundleSettings(cmd.Flags(), ops.file)
			if err != nil {
				t.Fatal(err)
			}
			up := upConfig{listen: ops.listen, adminListen: ops.adminListen, dataDir: ops.dataDir, file: ops.file, ops: ops, bundles: bundles}
			sc, err := up.stackConfig(slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			st, err := stack.New(t.Context(), sc)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_ = st.Close(ctx)
			})
			clients, err := st.Store().Clients(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			_, fileErr := os.Stat(filepath.Join(ops.dataDir, stack.DemoAgentsFile))
			if got := len(st.DemoAgents()); got != tc.want || len(clients) != tc.want || (tc.want == 0) != os.IsNotExist(fileErr) {
				t.Fatalf("%d demo agents, %d clients in the store, %s: %v; want %d", got, len(clients), stack.DemoAgentsFile, fileErr, tc.want)
			}
		})
	}
}
