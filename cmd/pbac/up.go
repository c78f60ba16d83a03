package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/connect"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/internal/stack"
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
			log := ops.logger()
			logMonitor(log, os.Environ())
			cfg := upConfig{listen: ops.listen, adminListen: ops.adminListen, dataDir: ops.dataDir, store: ops.store,
				probe: probe, file: ops.file, ops: ops, bundles: bundles}
			return runUp(cmd.Context(), cmd.OutOrStdout(), cfg, log)
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

// demoAgents tells whether the demo agents are registered: as configured
// (demo_agents), else whenever the demo backends run. A gateway of one's
// own backends gets no agents with secrets it did not ask for.
func (c upConfig) demoAgents() bool {
	if c.file != nil && c.file.DemoAgents != nil {
		return *c.file.DemoAgents
	}
	return c.startDemo()
}

// stackConfig is the system pbac up runs, from its resolved settings.
func (c upConfig) stackConfig(log *slog.Logger) (stack.Config, error) {
	pol, err := c.bundles.policy(c.ops.limits)
	if err != nil {
		return stack.Config{}, err
	}
	pol.WatchDir = true
	sc := stack.Config{
		Logger: log, DataDir: c.dataDir, Listen: c.listen, TLS: c.ops.tls,
		Admin: &stack.Admin{Listen: c.adminListen, TLS: c.ops.adminTLS},
		Store: c.store, Policy: pol, AuthServer: stack.AuthServer{Settings: c.asSettings()}, RemoteAS: c.remoteAS(),
		Gateway: &stack.Gateway{}, Limits: c.file.LimitsOrDefault(),
		// The seed matrix's agents are registered when the AS runs in this
		// process and the demo is on (or demo_agents asks for them).
		Demo:  stack.Demo{Backends: c.startDemo(), Agents: c.demoAgents()},
		Audit: stack.Audit{Linger: auditLinger(c.ops.auditLinger)},
	}
	if sc.DataDir == "" {
		sc.DataDir = asrv.DefaultDataDir()
	}
	if c.file != nil {
		sc.PublicURL = c.file.PublicURL
		sc.Backends = c.file.Backends
		sc.Admin.Hosts = c.file.AdminHosts
		sc.Admin.Profiling = c.file.AdminPprof
		sc.Gateway.ArgumentLimits = c.file.ArgumentLimits
		sc.Gateway.Denials = c.file.Denials
		sc.Gateway.Scopes = c.file.ScopesSupported
		if sc.Gateway.SessionIdle, err = c.file.SessionIdleOrDefault(); err != nil {
			return stack.Config{}, err
		}
		if sc.Gateway.Approvals.Wait, err = c.file.ApprovalsWaitOrDefault(); err != nil {
			return stack.Config{}, err
		}
		sc.Gateway.Approvals.PageURL = c.file.ApprovalsURL
		sc.Gateway.Approvals.StateKeyFile = c.file.ApprovalsStateKeyFile
		sc.AuthServer.Identity = c.file.IdentityOrNone()
		sc.AuthServer.Clients = c.file.Clients
		sc.Telemetry = telemetryConfig(c.file.Telemetry)
		sc.Gateway.IconSources = c.file.IconSources
	}
	return sc, nil
}

func runUp(ctx context.Context, out io.Writer, cfg upConfig, log *slog.Logger) error {
	sc, err := cfg.stackConfig(log)
	if err != nil {
		return err
	}
	if sc.Admin != nil && sc.Admin.Profiling {
		// What the mutex and block profiles show: a sample of the
		// contended locks (1 in 20) and of the blocking waits over
		// 100 µs, for as long as the process runs.
		runtime.SetMutexProfileFraction(20)
		runtime.SetBlockProfileRate(int((100 * time.Microsecond).Nanoseconds()))
		log.Warn("admin_pprof: Go's runtime profiles are served on the admin API, behind the admin token")
	}
	st, err := stack.New(ctx, sc)
	if err != nil {
		return err
	}
	if cfg.probe {
		defer startSelfProbe(ctx, log, st.Addr())()
	}
	printUp(out, st.URL(), st.Issuer(), st.AdminURL(), st.DataDir(), st.SignIn(), st.Backends(), st.DemoAgents())

	// On SIGTERM: /readyz turns 503 (for the drain delay), then both
	// listeners stop accepting and in-flight calls finish (10 s at most),
	// then the rest closes in order: policy sources, backends, audit,
	// store, policy.
	if err = st.Wait(ctx); err == nil {
		st.Drain(context.Background(), cfg.ops.drainDelay)
		log.Info("shutting down: draining in-flight calls")
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	return errors.Join(err, st.Close(cctx))
}

// closeTimeout bounds a serving command's shutdown after the drain delay:
// the listeners' drain (10 s), then the audit trail's flush and the rest.
const closeTimeout = 40 * time.Second

func printUp(out io.Writer, base, issuer, adminBase, dataDir string, people stack.SignIn, backends []gateway.Backend, agents []stack.DemoAgent) {
	fmt.Fprintf(out, "PBAC Gateway is up — data in %s\n\n", dataDir)
	signIn := "sign in with the admin token"
	if people.Demo {
		signIn = "sign in as a demo user: alice, bob or carol, password demo"
	} else if people.UsersFile || people.SSO != "" {
		signIn = "sign in as a person of the organisation, or with the admin token; operators by group (identity.operator_groups)"
	}
	fmt.Fprintf(out, "  dashboard             %s/ui/  (%s)\n", adminBase, signIn)
	fmt.Fprintf(out, "  approvals             %s/ui/#approvals  (the calls policy holds until a person approves them)\n", adminBase)
	fmt.Fprintf(out, "  gateway               %s\n", base)
	fmt.Fprintf(out, "  authorization server  %s/.well-known/oauth-authorization-server\n", issuer)
	fmt.Fprintf(out, "  metrics               %s/metrics  (admin listener)\n", adminBase)
	fmt.Fprintf(out, "  admin API             %s/admin/status  (Authorization: Bearer $(cat %s))\n", adminBase, filepath.Join(dataDir, adminTokenFile))
	fmt.Fprintf(out, "  policy bundles        drop into %s\n", filepath.Join(dataDir, "policies"))
	if people.SSO != "" {
		fmt.Fprintf(out, "  single sign-on        %s; register the redirect URIs %s (agents) and %s (dashboard)\n",
			people.SSO, people.RedirectURI, people.DashboardRedirectURI)
	}
	fmt.Fprintln(out)
	switch {
	case people.Remote:
		fmt.Fprintf(out, "MCP endpoints (each asks for an OAuth token of the authorization server %s):\n", issuer)
	case people.Demo:
		fmt.Fprintln(out, "MCP endpoints (each asks for an OAuth token; sign in as a demo user: alice, bob or carol, password demo):")
	case people.Mode != "":
		fmt.Fprintf(out, "MCP endpoints (each asks for an OAuth token; people sign in with %s):\n", people.Mode)

	default:
		fmt.Fprintln(out, "MCP endpoints (each asks for an OAuth token; no identity source is configured, so only machine clients get one —")
		fmt.Fprintln(out, "configure identity.oidc or identity.users_file for people to sign in):")
	}
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
	one := ""
	for _, b := range backends {
		if one == "" || b.Name == "jira" {
			one = b.Name
		}
	}
	// A client that registers itself has no verified claims: policy gives
	// it the least tier, which grants nothing. The demo agent was
	// registered with a signed statement and Claude Code's redirect URI
	// (connect.Clients), so its line works as printed.
	claude := func(name, mcpURL string) string {
		return "claude mcp add --transport http " + name + " " + mcpURL
	}
	if a, ok := stack.FindDemoAgent(agents, "claude-code"); ok {
		claude = func(name, mcpURL string) string {
			return connect.ClaudeAddLine(a.ClientID, connect.ClaudeCodeCallbackPort, name, mcpURL)
		}
		fmt.Fprintln(out, "\nConnect Claude Code as the demo agent (it opens the sign-in page):")
	} else {
		fmt.Fprintln(out, "\nConnect Claude Code (it registers itself; an unverified client is granted nothing until its agent is known):")
	}
	fmt.Fprintf(out, "  %s\n", claude(connect.ServerName, base+"/mcp"))
	if one != "" {
		fmt.Fprintf(out, "  %s   (one backend)\n", claude(connect.ServerName+"-"+one, base+"/mcp/"+one))
	}
	if _, ok := stack.FindDemoAgent(agents, "claude-code"); ok {
		fmt.Fprintln(out, "\nOr add it as any MCP server: Claude Code then presents its client ID metadata document, which the")
		fmt.Fprintln(out, "demo pins and policy maps to claude-code (agents.cimd_providers):")
		fmt.Fprintf(out, "  claude mcp add --transport http %s %s\n", connect.ServerName, base+"/mcp")
	}
	fmt.Fprintln(out, "\nPress Ctrl-C to stop.")
}

// adminTokenFile holds the admin API's bearer token in the data dir.
const adminTokenFile = stack.AdminTokenFile

// auditLinger is the trail's linger for audit_linger: 0s there means
// none, which the trail spells negative (its zero is the default).
func auditLinger(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
