package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/oauthtest"
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
			st, ops := startUpStack(t, tc.body, tc.env)
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

// demoAgent is the demo agent name pbac up registered in dataDir.
func demoAgent(t *testing.T, dataDir, name string) stack.DemoAgent {
	t.Helper()
	agents, err := stack.ReadDemoAgents(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := stack.FindDemoAgent(agents, name)
	if !ok {
		t.Fatalf("pbac up registered no %s in %s", name, dataDir)
	}
	return a
}

// startUpStack builds the system pbac up runs for the configuration body
// and environment, as its RunE does, on free ports.
func startUpStack(t *testing.T, body string, env map[string]string) (*stack.Stack, opsSettings) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "pbac.yaml")
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newUpCommand()
	if err := cmd.ParseFlags([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}); err != nil {
		t.Fatal(err)
	}
	ops, err := resolveOps(cmd.Flags(), conf, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
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
	return st, ops
}

var claudeLine = regexp.MustCompile(`claude mcp add --transport http --client-id (\S+) --callback-port (\d+) (\S+) (\S+)`)

// TestUpClaudeLineSignsIn: the claude mcp add lines pbac up prints for the
// demo agent are what Claude Code needs to sign in: with --callback-port P
// it sends http://localhost:P/callback, and the demo agent's registration
// accepts that for a token on the printed URL, as alice.
func TestUpClaudeLineSignsIn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the system")
	}
	st, _ := startUpStack(t, "", nil)
	var out bytes.Buffer
	printUp(&out, st.URL(), st.Issuer(), st.AdminURL(), st.DataDir(), st.SignIn(), st.Backends(), st.DemoAgents())
	lines := claudeLine.FindAllStringSubmatch(out.String(), -1)
	if len(lines) != 2 {
		t.Fatalf("want the two claude lines (all backends, one backend):\n%s", out.String())
	}
	for _, m := range lines {
		clientID, port, mcpURL := m[1], m[2], m[4]
		redirect := "http://localhost:" + port + "/callback"
		tok, err := oauthtest.CodeFlow(t.Context(), st.URL(), clientID, redirect, "alice", "demo", mcpURL)
		if err != nil || tok.AccessToken == "" {
			t.Errorf("%s: Claude Code's sign-in with %s: %v", m[0], redirect, err)
		}
	}
}
