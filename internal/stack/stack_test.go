package stack_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store/badger"
	"github.com/pbac-gateway/pbac/audit/index"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/internal/stack"
)

// TestStdioBackendProcess is not a test: re-executed by the tests below as
// a stdio backend, this test binary serves the demo Jira over stdin/stdout.
func TestStdioBackendProcess(t *testing.T) {
	if os.Getenv("PBAC_STACK_STDIO_BACKEND") != "1" {
		t.Skip("the stdio backend of the stack tests")
	}
	s, err := demo.NewServer("jira")
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Run(context.Background(), &mcp.StdioTransport{})
	os.Exit(0)
}

// stdioJira is a configured stdio backend named jira: this test binary
// re-executed as the demo Jira.
func stdioJira() config.Backend {
	return config.Backend{Name: "jira", Command: []string{os.Args[0], "-test.run=^TestStdioBackendProcess$"},
		Env: []string{"PBAC_STACK_STDIO_BACKEND=1"}}
}

// baseConfig is a system on 127.0.0.1 with the shipped policy (compiled
// once per test binary) in dir.
func baseConfig(t *testing.T, dir string) stack.Config {
	t.Helper()
	b, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	// Deadlines are not the subject here: generous ones keep the bundle's
	// vectors (checked on activation) from timing out on a loaded machine
	// (-race, packages tested in parallel).
	limits := stack.PolicyLimits{EvalTimeout: 5 * time.Second, DecisionTimeout: 10 * time.Second}
	return stack.Config{Logger: slog.New(slog.DiscardHandler), DataDir: dir, Listen: "127.0.0.1:0",
		Policy: stack.Policy{Bundle: b, Limits: limits}, Gateway: &stack.Gateway{}}
}

// callJira registers a CI bot (a signed statement, client credentials),
// and makes one allowed tools/call on jira through the gateway.
func callJira(t *testing.T, st *stack.Stack) {
	t.Helper()
	ctx := t.Context()
	as := st.AuthServer()
	jws, err := as.Statement(st.StatementKey(), asrv.StatementClaims{SoftwareID: "stack-test", AgentProvider: "ci-bot", AgentModel: "test"})
	if err != nil {
		t.Fatal(err)
	}
	req := &asrv.RegistrationRequest{ClientName: "stack-test", SoftwareStatement: jws,
		GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: asrv.AuthMethodSecretBasic}
	client, secret, _, err := as.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	resource := st.URL() + "/mcp/jira"
	tok, err := oauthtest.ClientCredentials(ctx, st.URL(), client.ID, secret, resource, "jira:read")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &oauthtest.BearerTransport{Token: tok.AccessToken}}
	sess, err := mcp.NewClient(&mcp.Implementation{Name: "stack-test", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: resource, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "search_issues", Arguments: map[string]any{"query": "SEC"}})
	if err != nil || res.IsError {
		t.Fatalf("search_issues through the gateway: %v %+v", err, res)
	}
	_ = sess.Close()
	hc.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
}

// fasthttpCleaner ignores fasthttp's cleaners: a stopped server's
// idle-worker cleaner and an idle client's connection cleaner (the
// gateway's forwarders) each end on their own once their sleep (10 s, 4 s)
// is over, and hold nothing of ours (Shutdown has closed the connections).
var fasthttpCleaner = goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2")

var fasthttpConnsCleaner = goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner")

// settle closes the test's own idle client connections, so that only the
// system's goroutines are left to count.
func settle() {
	http.DefaultClient.CloseIdleConnections()
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// TestCloseJoinsEveryGoroutine: after Close the process runs the
// goroutines it ran before New — every listener, server, policy source,
// backend, audit writer and store loop the stack started has ended — and
// the audit trail holds the call (it was flushed before Close returned).
// A first system comes and goes before the count is taken, so goroutines
// the process starts once (fasthttp's clock) are not counted.
func TestCloseJoinsEveryGoroutine(t *testing.T) {
	tests := []struct {
		name   string
		config func(*stack.Config)
	}{
		{"the demo tenant: demo backends and agents, admin listener, dashboard, watched policy dir, a bundle server polled", func(c *stack.Config) {
			c.Demo = stack.Demo{Backends: true, Agents: true}
			c.Admin = &stack.Admin{Listen: "127.0.0.1:0"}
			c.Policy.WatchDir = true
			// Nobody listens there: the poll loop runs, failing.
			c.Policy.BundleServer, c.Policy.PollInterval = "http://127.0.0.1:1", time.Second
		}},
		{"a stdio backend", func(c *stack.Config) {
			c.Backends = []config.Backend{stdioJira()}
		}},
		{"the authorization server alone", func(c *stack.Config) {
			c.Gateway = nil
		}},
		{"ephemeral: store and audit index in memory", func(c *stack.Config) {
			c.Ephemeral = true
			c.Demo.Backends = true
		}},
	}
	run := func(t *testing.T, configure func(*stack.Config)) {
		t.Helper()
		dir := t.TempDir()
		cfg := baseConfig(t, dir)
		configure(&cfg)
		st, err := stack.New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if st.Gateway() != nil {
			callJira(t, st)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := st.Close(ctx); err != nil {
			t.Fatalf("close: %v", err)
		}
		settle()
		if st.Gateway() != nil && !cfg.Ephemeral {
			raw, err := os.ReadFile(filepath.Join(dir, "audit", "audit.jsonl"))
			if err != nil || !strings.Contains(string(raw), `"jira.search_issues"`) {
				t.Errorf("the audit file after Close lacks the call (%v): %s", err, raw)
			}
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run(t, tc.config)
			baseline := goleak.IgnoreCurrent()
			run(t, tc.config)
			goleak.VerifyNone(t, baseline, fasthttpCleaner, fasthttpConnsCleaner)
		})
	}
}

// TestNewFailingHalfwayClosesWhatItOpened: when New fails after parts are
// built, it closes them before returning: no goroutine of theirs is left,
// the token store and the audit index are free to open again (Badger locks
// its directory), and the listener's port is free.
func TestNewFailingHalfwayClosesWhatItOpened(t *testing.T) {
	tests := []struct {
		name string
		// prepare breaks the configuration (or the data dir) so New fails
		// at the step named.
		prepare func(t *testing.T, c *stack.Config)
		want    string
		// opened: the store and the audit index were opened before the
		// failure.
		opened bool
	}{
		{"the admin token is readable by others (the last step)", func(t *testing.T, c *stack.Config) {
			c.Admin = &stack.Admin{Listen: "127.0.0.1:0"}
			c.Demo = stack.Demo{Backends: true, Agents: true}
			c.Policy.WatchDir = true
			if err := os.WriteFile(filepath.Join(c.DataDir, stack.AdminTokenFile), []byte("admin-token-0123456789abcdef\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "chmod 600", true},
		{"two backends of one name (the gateway)", func(t *testing.T, c *stack.Config) {
			c.Backends = []config.Backend{stdioJira(), {Name: "jira", URL: "http://127.0.0.1:1/mcp"}}
		}, "configured twice", true},
		{"a bundle server that is not http (the policy sources)", func(t *testing.T, c *stack.Config) {
			c.Policy.WatchDir = true
			c.Policy.BundleServer = "ftp://bundles.example"
		}, "not http", false},
	}
	// A first system comes and goes, so one-off goroutines are not counted.
	warm, err := stack.New(t.Context(), baseConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := warm.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	settle()
	baseline := goleak.IgnoreCurrent()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := baseConfig(t, dir)
			free, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Listen = free.Addr().String()
			_ = free.Close()
			tc.prepare(t, &cfg)
			st, err := stack.New(t.Context(), cfg)
			if err == nil {
				_ = st.Close(t.Context())
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error saying %q", err, tc.want)
			}
			goleak.VerifyNone(t, baseline, fasthttpCleaner, fasthttpConnsCleaner)
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				t.Fatalf("the listener's port is still taken: %v", err)
			}
			_ = ln.Close()
			if !tc.opened {
				return
			}
			store, err := badger.Open(t.Context(), filepath.Join(dir, "store"))
			if err != nil {
				t.Fatalf("the token store is still open: %v", err)
			}
			_ = store.Close()
			idx, err := index.Open(t.Context(), filepath.Join(dir, "audit", "index"), time.Hour)
			if err != nil {
				t.Fatalf("the audit index is still open: %v", err)
			}
			_ = idx.Close()
		})
	}
}
