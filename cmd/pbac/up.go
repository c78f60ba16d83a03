package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/audit/index"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/stdio"
)

func newUpCommand() *cobra.Command {
	var listen, adminListen, dataDir, store, logLevel, configPath string
	var probe bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole demo: authorization server, gateway and the demo backends",
		Long: `Starts everything on 127.0.0.1 in one process: the OAuth authorization server,
the MCP gateway in front of the six demo backends (drive, jira, slack, jenkins,
gitlab, database), the shipped policy, and an audit trail. State (tokens,
keys, audit) lives in the data dir, created on first run. Demo agents for the
seed trust-tier matrix are registered once and printed with their
credentials.

Drop a policy bundle (pbac policy build -o ...) into <data-dir>/policies to
make it live; a bad one is rejected and the active policy stays.`,
		Example: `  pbac up
  pbac up --listen 127.0.0.1:9000 --data-dir /tmp/pbac`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ops, err := resolveOps(cmd.Flags(), configPath, os.LookupEnv)
			if err != nil {
				return err
			}
			bundles, err := bundleSettings(cmd.Flags(), ops.file)
			if err != nil {
				return err
			}
			cfg := upConfig{listen: ops.listen, adminListen: ops.adminListen, dataDir: ops.dataDir, store: ops.store,
				probe: probe, file: ops.file, ops: ops, bundles: bundles}
			return runUp(cmd.Context(), cmd.OutOrStdout(), cfg, ops.logger())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "address of the gateway and authorization server")
	cmd.Flags().StringVar(&adminListen, "admin-listen", "127.0.0.1:8081", "address of the admin API (policy, audit, clients)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data dir (default $PBAC_DATA_DIR or ~/.local/share/pbac)")
	cmd.Flags().StringVar(&store, "store", "", storeFlagUsage)
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().BoolVar(&probe, "probe", false, "attach the eBPF latency probe to this gateway (root or CAP_BPF + CAP_PERFMON); without them it logs why and runs as usual")
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (YAML): backends, listeners, TLS, data dir; see pbac config check. PBAC_* environment variables override it, flags override both")
	addOpsFlags(cmd, true)
	addBundleFlags(cmd)
	return cmd
}

type upConfig struct {
	listen, adminListen, dataDir string
	store                        string // token store: "" Badger, postgres://… PostgreSQL
	file                         *config.File
	probe                        bool // attach the eBPF latency probe
	ops                          opsSettings
	bundles                      *bundleFlags // policy distribution
}

// remoteAS is the configured remote authorization server, if any.
func (c upConfig) remoteAS() *config.RemoteAS {
	if c.file == nil {
		return nil
	}
	return c.file.AuthorizationServer
}

// asSettings are the configuration's asrv: block (nil: defaults).
func (c upConfig) asSettings() *config.ASrv {
	if c.file == nil {
		return nil
	}
	return c.file.ASrv
}

// startDemo tells whether the demo backends run: by default only when the
// configuration lists no backends of its own.
func (c upConfig) startDemo() bool {
	if c.file == nil {
		return true
	}
	if c.file.Demo != nil {
		return *c.file.Demo
	}
	return len(c.file.Backends) == 0
}

func runUp(ctx context.Context, out io.Writer, cfg upConfig, log *slog.Logger) error {
	dataDir := cfg.dataDir
	if dataDir == "" {
		dataDir = asrv.DefaultDataDir()
	}
	if dataDir == "" {
		return errors.New("no data dir: pass --data-dir or set PBAC_DATA_DIR")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	ln, scheme, err := openListener(cfg.listen, cfg.ops.tls, log)
	if err != nil {
		return err
	}
	defer ln.Close()
	if cfg.probe {
		defer startSelfProbe(ctx, log, ln.Addr())()
	}
	adminLn, adminScheme, err := openListener(cfg.adminListen, cfg.ops.adminTLS, log)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer adminLn.Close()
	base := scheme + "://" + ln.Addr().String()
	if cfg.file != nil && cfg.file.PublicURL != "" {
		base = strings.TrimSuffix(cfg.file.PublicURL, "/")
	}

	pol, err := newPolicyRuntime(ctx, dataDir, cfg.ops.limits, log)
	if err != nil {
		return err
	}
	defer pol.Close(context.WithoutCancel(ctx))
	bundleStatus, bundleToken, err := startDistribution(ctx, cfg.bundles, pol.registry, log)
	if err != nil {
		return err
	}
	sync, leave, err := startPolicySync(ctx, cfg.bundles, cfg.store, pol.registry, log)
	if err != nil {
		return err
	}
	defer leave()
	policyDir := filepath.Join(dataDir, "policies")
	if err := os.MkdirAll(policyDir, 0o700); err != nil {
		return err
	}
	go func() {
		if err := pol.registry.WatchDir(ctx, policyDir); err != nil {
			log.Error("policy directory watch stopped", "dir", policyDir, "err", err)
		}
	}()

	var backends []*demo.Running
	if cfg.startDemo() {
		if backends, err = demo.StartAll(ctx); err != nil {
			return fmt.Errorf("start the demo backends: %w", err)
		}
		defer func() {
			for _, b := range backends {
				_ = b.Close(context.WithoutCancel(ctx))
			}
		}()
	}
	var hb []gateway.Backend
	for _, b := range backends {
		hb = append(hb, gateway.Backend{Name: b.Name, URL: b.URL})
	}
	if cfg.file != nil {
		configured, stop, err := startConfiguredBackends(ctx, cfg.file, log)
		if err != nil {
			return err
		}
		defer stop()
		hb = append(hb, configured...)
	}
	resources := []string{base + "/mcp"}
	for _, b := range hb {
		resources = append(resources, base+"/mcp/"+b.Name)
	}

	// The authorization server runs in process, unless the configuration
	// names a remote one the gateway trusts.
	ready := &readiness{policy: func() bool { _, ok := pol.registry.Active(); return ok }}
	gwCfg := gateway.Config{PublicURL: base, Backends: hb, Policy: pol.registry, Logger: log, Ready: ready.check,
		SessionsPerAgent: cfg.file.LimitsOrDefault().SessionsPerAgent}
	if cfg.file != nil {
		gwCfg.ArgumentLimits = gatewayArgumentLimits(cfg.file.ArgumentLimits)
	}
	adminCfg := admin.Config{Registry: pol.registry, Logger: log, BundleToken: bundleToken, PolicySource: bundleStatus}
	if sync != nil {
		adminCfg.Propagate = propagateVia(sync)
		adminCfg.PolicySync = func(ctx context.Context) any { return sync.Status(ctx) }
	}
	var as *authRuntime
	if remote := cfg.remoteAS(); remote != nil && remote.TokenSecretFile != "" {
		// A replica of a remote AS's shared store: tokens are read there.
		shared, err := newSharedStoreIntrospector(ctx, dataDir, cfg.store, remote, resources, pol, log)
		if err != nil {
			return err
		}
		defer shared.store.Close()
		ready.store = shared.store.Ping
		log.Info("introspecting on the authorization server's shared store", "issuer", remote.Issuer, "store", shared.storeName)
		gwCfg.Introspector, gwCfg.AuthorizationServers = shared.server, []string{remote.Issuer}
		adminCfg.DeleteClient = func(r *http.Request, id string) error { return shared.store.DeleteClient(r.Context(), id) }
		adminCfg.ListClients = func(r *http.Request) ([]admin.Client, error) { return adminClients(shared.store.Clients(r.Context())) }
	} else if remote != nil {
		intro, err := remoteIntrospector(remote)
		if err != nil {
			return err
		}
		gwCfg.Introspector, gwCfg.AuthorizationServers = intro, []string{remote.Issuer}
	} else {
		if as, err = newAuthorizationServer(ctx, dataDir, cfg.store, base, resources, pol, cfg.asSettings(), log); err != nil {
			return err
		}
		defer as.store.Close()
		ready.store = as.store.Ping
		gwCfg.Introspector, gwCfg.AuthorizationServers, gwCfg.AuthServer = as.server, []string{base}, as.server.Handler()
		adminCfg.DeleteClient = func(r *http.Request, id string) error { return as.store.DeleteClient(r.Context(), id) }
		adminCfg.ListClients = func(r *http.Request) ([]admin.Client, error) { return adminClients(as.store.Clients(r.Context())) }
	}

	auditDir := filepath.Join(dataDir, "audit")
	if err := os.MkdirAll(auditDir, 0o700); err != nil {
		return err
	}
	file, err := audit.NewFileSink(filepath.Join(auditDir, "audit.jsonl"), 100, 10)
	if err != nil {
		return err
	}
	idx, err := index.Open(ctx, filepath.Join(auditDir, "index"), 30*24*time.Hour)
	if err != nil {
		return err
	}
	trail := audit.NewTrail(log, file, idx)
	defer trail.Close(context.WithoutCancel(ctx))

	gwCfg.Scopes, gwCfg.Audit = activeScopes(pol.registry), trail
	gw, err := gateway.New(gwCfg)
	if err != nil {
		return err
	}
	if adminCfg.Token, err = loadOrCreateAdminToken(dataDir); err != nil {
		return err
	}
	adminCfg.Audit, adminCfg.Index = trail, idx
	adminCfg.BackendHealth = func(r *http.Request) map[string]string { return gw.BackendHealth(r.Context()) }
	adminAPI, err := admin.New(adminCfg)
	if err != nil {
		return err
	}
	var agents []demoAgent
	if as != nil {
		if agents, err = seedDemoAgents(ctx, dataDir, as); err != nil {
			return fmt.Errorf("register the demo agents: %w", err)
		}
	}
	// The admin listener answers only to its own address and names, and
	// takes changes only from its own pages (DNS rebinding, CSRF).
	var adminHosts []string
	if cfg.file != nil {
		adminHosts = cfg.file.AdminHosts
	}
	guard, err := admin.NewGuard(adminLn.Addr().String(), adminHosts)
	if err != nil {
		return err
	}
	dash, err := newDashboard(base, gwCfg.AuthorizationServers[0], hb, adminCfg, gw, as, agents, pol, cfg.startDemo() && as != nil,
		guard.Loopback(), log)
	if err != nil {
		return fmt.Errorf("build the dashboard: %w", err)
	}
	printUp(out, base, gwCfg.AuthorizationServers[0], adminScheme+"://"+adminLn.Addr().String(), dataDir, hb, agents)

	// On SIGTERM: /readyz turns 503 (for the drain delay), then both
	// listeners stop accepting and in-flight calls finish (10 s at most),
	// then the deferred closes run: audit, store, policy.
	stopAdmin, cancelAdmin := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelAdmin()
	errc := make(chan error, 2)
	go func() { errc <- gw.App().Listener(ln) }()
	go func() {
		errc <- serveHTTP(stopAdmin, adminLn, withProbes(guard.Handler(adminMux(adminAPI, dash, gw.MetricsHandler())), ready.check), log)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	drainWait(context.Background(), ready, cfg.ops.drainDelay, log)
	log.Info("shutting down: draining in-flight calls")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	cancelAdmin()
	err = gw.Shutdown(sctx)
	for range 2 {
		if e := <-errc; e != nil && !errors.Is(e, http.ErrServerClosed) {
			err = errors.Join(err, e)
		}
	}
	return err
}

func printUp(out io.Writer, base, issuer, adminBase, dataDir string, backends []gateway.Backend, agents []demoAgent) {
	fmt.Fprintf(out, "PBAC Gateway is up — data in %s\n\n", dataDir)
	fmt.Fprintf(out, "  dashboard             %s/ui/  (sign in as alice, bob or carol, password demo)\n", adminBase)
	fmt.Fprintf(out, "  gateway               %s\n", base)
	fmt.Fprintf(out, "  authorization server  %s/.well-known/oauth-authorization-server\n", issuer)
	fmt.Fprintf(out, "  metrics               %s/metrics  (admin listener)\n", adminBase)
	fmt.Fprintf(out, "  admin API             %s/admin/status  (Authorization: Bearer $(cat %s))\n", adminBase, filepath.Join(dataDir, adminTokenFile))
	fmt.Fprintf(out, "  policy bundles        drop into %s\n\n", filepath.Join(dataDir, "policies"))
	fmt.Fprintln(out, "MCP endpoints (each asks for an OAuth token; sign in as alice, bob or carol, password demo):")
	fmt.Fprintf(out, "  %-9s %s/mcp   (every backend's tools, as <backend>.<tool>)\n", "all", base)
	for _, b := range backends {
		fmt.Fprintf(out, "  %-9s %s/mcp/%s\n", b.Name, base, b.Name)
	}
	if len(agents) > 0 {
		fmt.Fprintln(out, "\nDemo agents (the seed trust-tier matrix):")
	}
	for _, a := range agents {
		line := fmt.Sprintf("  %-22s %-20s client_id=%s", a.Name, a.Provider, a.ClientID)
		if a.ClientSecret != "" {
			line += " client_secret=" + a.ClientSecret
		}
		fmt.Fprintln(out, line)
	}
	fmt.Fprintln(out, "\nConnect Claude Code (it registers itself and opens the sign-in page):")
	fmt.Fprintf(out, "  claude mcp add --transport http pbac %s/mcp\n", base)
	for _, a := range agents {
		if a.Name == "claude-code" {
			fmt.Fprintf(out, "  claude mcp add --transport http --client-id %s --callback-port %d pbac %s/mcp   (as the demo agent)\n",
				a.ClientID, demo.ClaudeCodeCallbackPort, base)
		}
	}
	if len(backends) > 0 {
		one := backends[0].Name
		for _, b := range backends {
			if b.Name == "jira" {
				one = b.Name
			}
		}
		fmt.Fprintf(out, "  claude mcp add --transport http pbac-%s %s/mcp/%s   (one backend)\n", one, base, one)
	}
	fmt.Fprintln(out, "\nPress Ctrl-C to stop.")
}

// startConfiguredBackends resolves the configuration file's backends: a
// URL is used as it is; a command is started behind a stdio bridge.
func startConfiguredBackends(ctx context.Context, fc *config.File, log *slog.Logger) ([]gateway.Backend, func(), error) {
	var (
		out     []gateway.Backend
		bridges []*stdio.Bridge
	)
	stop := func() {
		for _, b := range bridges {
			_ = b.Close(context.WithoutCancel(ctx))
		}
	}
	for _, bc := range fc.Backends {
		if len(bc.Command) == 0 {
			b, err := gatewayBackend(bc)
			if err != nil {
				stop()
				return nil, nil, err
			}
			out = append(out, b)
			continue
		}
		limits := fc.LimitsOrDefault()
		bridge, err := stdio.Start(ctx, stdio.Config{
			Name: bc.Name, Command: bc.Command, Env: bc.Env, Dir: bc.Dir,
			MaxSessions: limits.StdioSessions, MaxSessionsPerAgent: limits.StdioSessionsPerAgent,
			Logger: log.With("backend", bc.Name),
		})
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("backend %s: %w", bc.Name, err)
		}
		bridges = append(bridges, bridge)
		b := gateway.Backend{Name: bc.Name, URL: bridge.URL(), OwnerHeader: stdio.OwnerHeader}
		if bc.Timeout != "" {
			if b.Timeout, err = time.ParseDuration(bc.Timeout); err != nil {
				stop()
				return nil, nil, err
			}
		}
		out = append(out, b)
	}
	return out, stop, nil
}

// hasAll tells whether have holds every one of want.
func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// demoAgent is one pre-registered agent of the demo tenant.
type demoAgent struct {
	Name         string `json:"name"`
	Provider     string `json:"provider"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
}

// demoAgentsFile keeps the demo agents' credentials across restarts (mode
// 0600, in the data dir, demo only).
const demoAgentsFile = "demo-agents.json"

// seedDemoAgents registers the four agents of the seed matrix with signed
// statements, once: later runs reuse them while they are still registered.
func seedDemoAgents(ctx context.Context, dataDir string, as *authRuntime) ([]demoAgent, error) {
	path := filepath.Join(dataDir, demoAgentsFile)
	var saved []demoAgent
	if raw, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(raw, &saved)
	}
	specs := []struct {
		name, provider string
		machine        bool
		singleUse      bool
	}{
		{"claude-code", "claude-code", false, false},
		{"ci-bot", "ci-bot", true, false},
		{"security-scanner", "security-scanner", true, true},
		{"autonomous-planner", "claude-code-trusted", false, false},
	}
	var agents []demoAgent
	changed := false
	for _, sp := range specs {
		if a, ok := findAgent(saved, sp.name); ok {
			// Reused while registered — and, for one acting for a user,
			// while it has today's redirect URIs (older data dirs lack
			// Claude Code's localhost callback).
			if c, err := as.store.Client(ctx, a.ClientID); err == nil && (sp.machine || hasAll(c.RedirectURIs, demo.HumanRedirectURIs())) {
				agents = append(agents, a)
				continue
			}
		}
		jws, err := as.server.Statement(as.issuer, asrv.StatementClaims{SoftwareID: "pbac-demo-" + sp.name, AgentProvider: sp.provider,
			AgentModel: "demo", SingleUseAccessTokens: sp.singleUse})
		if err != nil {
			return nil, err
		}
		req := &asrv.RegistrationRequest{ClientName: sp.name, SoftwareStatement: jws}
		if sp.machine {
			req.GrantTypes = []string{"client_credentials"}
			req.TokenEndpointAuthMethod = asrv.AuthMethodSecretBasic
		} else {
			req.GrantTypes = []string{"authorization_code", "refresh_token", asrv.GrantTypeExchange}
			req.RedirectURIs = demo.HumanRedirectURIs()
			req.TokenEndpointAuthMethod = asrv.AuthMethodNone
		}
		if err := req.Validate(); err != nil {
			return nil, err
		}
		c, secret, _, err := as.server.Register(ctx, req)
		if err != nil {
			return nil, err
		}
		agents = append(agents, demoAgent{Name: sp.name, Provider: sp.provider, ClientID: c.ID, ClientSecret: secret})
		changed = true
	}
	if changed {
		raw, _ := json.MarshalIndent(agents, "", "  ")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			return nil, err
		}
	}
	return agents, nil
}

// adminTokenFile holds the admin API's bearer token in the data dir.
const adminTokenFile = "admin-token"

func loadOrCreateAdminToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, adminTokenFile)
	if raw, err := os.ReadFile(path); err == nil {
		if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("%s is readable by others; chmod 600 it", path)
		}
		return strings.TrimSpace(string(raw)), nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create the admin token: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(tok + "\n"); err != nil {
		return "", err
	}
	return tok, f.Sync()
}

func findAgent(list []demoAgent, name string) (demoAgent, bool) {
	for _, a := range list {
		if strings.EqualFold(a.Name, name) {
			return a, true
		}
	}
	return demoAgent{}, false
}
