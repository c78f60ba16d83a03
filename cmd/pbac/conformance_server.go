package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/conformance/authsuite"
	"github.com/pbac-gateway/pbac/internal/stack"
)

type conformanceServerFlags struct {
	cfg      authsuite.Config
	stepArgs string
	grace    string
	dataDir  string
	jsonOut  bool
}

// newConformanceServerCommand is `pbac conformance server`: the MCP
// authorization and OAuth suite against any deployment.
func newConformanceServerCommand() *cobra.Command {
	var f conformanceServerFlags
	cmd := &cobra.Command{
		Use:   "server --url URL",
		Short: "Check an MCP server and its authorization server against the MCP authorization spec and the OAuth RFCs",
		Long: `Runs the MCP-authorization and OAuth conformance suite against a deployment, over
HTTP, as a client sees it: the 401 challenge and RFC 9728 metadata, RFC 8414
metadata, dynamic client registration (RFC 7591) and its errors, PKCE S256
(plain and missing refused), resource binding (RFC 8707), insufficient_scope
step-up, Origin checks, introspection (RFC 7662), revocation (RFC 7009), token
exchange (RFC 8693), and the RFC 9700 attacks (code injection, PKCE downgrade,
open redirect, mix-up, refresh token replay, a token replayed at another
audience). Each check prints its spec reference and pass, fail or skip.

The suite registers its own clients where the AS allows registration. Flows
that need a grant need a client policy gives tokens (--client-id, and
--client-secret for a confidential one, whose redirect URIs include
--redirect-uri) and a user to sign in as (--user, --password): the suite
fills in the AS's sign-in form by HTTP. What was not given is skipped with
the reason.

--ours points it at a PBAC Gateway demo tenant (pbac up): the demo user alice,
the claude-code demo agent from <data-dir>/demo-agents.json, and the demo
policy's scopes fill in whatever was not given, and checks only our own
deployment can answer (no token passthrough, with --echo-url naming a backend
that echoes the headers it gets) run.

Exits 1 when a check fails.`,
		Example: `  pbac conformance server --url https://mcp.example.com/mcp
  pbac conformance server --url http://127.0.0.1:8080/mcp/jira --ours --data-dir ~/.local/share/pbac
  pbac conformance server --url https://gw/mcp --client-id ID --user u --password p --json`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConformanceServer(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cfg.URL, "url", "", "the protected MCP endpoint (required)")
	fl.StringVar(&f.cfg.OtherURL, "other-url", "", "a second protected resource of the same AS (token replay at another audience)")
	fl.StringVar(&f.cfg.User, "user", "", "user to sign in as on the AS's page")
	fl.StringVar(&f.cfg.Password, "password", "", "that user's password")
	fl.StringVar(&f.cfg.ClientID, "client-id", "", "a pre-registered client policy gives tokens")
	fl.StringVar(&f.cfg.ClientSecret, "client-secret", "", "its secret (confidential clients)")
	fl.StringVar(&f.cfg.RedirectURI, "redirect-uri", "", "a redirect URI of that client (default http://127.0.0.1/callback)")
	fl.StringVar(&f.cfg.Scope, "scope", "", "scope to ask for in the code flow")
	fl.StringVar(&f.cfg.StepUpTool, "step-up-tool", "", "a tool the --scope token may not call (403 insufficient_scope)")
	fl.StringVar(&f.stepArgs, "step-up-args", "", "its arguments (JSON object)")
	fl.StringVar(&f.cfg.ExchangeAudience, "exchange-audience", "", "a client id a token may be exchanged for (RFC 8693)")
	fl.StringVar(&f.cfg.IntrospectorID, "introspection-client-id", "", "a resource server the AS lets introspect (RFC 7662); default: the client the suite registers")
	fl.StringVar(&f.cfg.IntrospectorSecret, "introspection-client-secret", "", "its secret")
	fl.StringVar(&f.cfg.EchoURL, "echo-url", "", "ours only: an MCP endpoint whose backend echoes the headers it gets")
	fl.StringVar(&f.grace, "refresh-reuse-grace", "", "the AS's refresh token rotation grace period: a replay within it must get a new pair, after it be refused (default 0; with --ours, asrv.refresh_reuse_grace's default "+config.DefaultRefreshReuseGrace.String()+")")
	fl.BoolVar(&f.cfg.Ours, "ours", false, "the target is a PBAC Gateway demo tenant: demo defaults and the ours-only checks")
	fl.StringVar(&f.dataDir, "data-dir", "", "with --ours: the tenant's data dir, for demo-agents.json (default $PBAC_DATA_DIR or ~/.local/share/pbac)")
	fl.BoolVar(&f.jsonOut, "json", false, "print the report as JSON")
	_ = cmd.MarkFlagRequired("url")
	return cmd
}

func runConformanceServer(cmd *cobra.Command, f conformanceServerFlags) error {
	cfg := f.cfg
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	if f.stepArgs != "" {
		if err := json.Unmarshal([]byte(f.stepArgs), &cfg.StepUpArgs); err != nil {
			return fmt.Errorf("--step-up-args: %w", err)
		}
	}
	if f.grace != "" {
		d, err := time.ParseDuration(f.grace)
		if err != nil || d < 0 {
			return fmt.Errorf("--refresh-reuse-grace %q: want a duration (e.g. 10s, or 0)", f.grace)
		}
		cfg.RefreshReuseGrace = d
	} else if cfg.Ours {
		cfg.RefreshReuseGrace = config.DefaultRefreshReuseGrace
	}
	if cfg.Ours {
		if err := oursDefaults(&cfg, f.dataDir); err != nil {
			return err
		}
	}
	cfg.Logger = newLogger("warn")
	rep, err := authsuite.Run(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f.jsonOut {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := printServerReport(out, rep); err != nil {
		return err
	}
	if !rep.OK() {
		return exitError{code: 1}
	}
	return nil
}

// oursDefaults fills what was not given for a `pbac up` demo tenant: alice,
// the claude-code demo agent, a narrow scope and a write tool beyond it, a
// sibling backend for the audience checks, the planner for token exchange.
func oursDefaults(cfg *authsuite.Config, dataDir string) error {
	if dataDir == "" {
		dataDir = os.Getenv("PBAC_DATA_DIR")
	}
	if dataDir == "" {
		dataDir = asrv.DefaultDataDir()
	}
	if cfg.User == "" {
		cfg.User, cfg.Password = "alice", "demo"
	}
	if cfg.ClientID == "" {
		agents, err := stack.ReadDemoAgents(dataDir)
		if err != nil {
			return fmt.Errorf("--ours without --client-id reads the demo agents: %w", err)
		}
		if a, ok := stack.FindDemoAgent(agents, "claude-code"); ok {
			cfg.ClientID = a.ClientID
		}
		if a, ok := stack.FindDemoAgent(agents, "autonomous-planner"); ok && cfg.ExchangeAudience == "" {
			cfg.ExchangeAudience = a.ClientID
		}
	}
	base, backend, ok := strings.Cut(cfg.URL, "/mcp/")
	if ok && backend == "jira" {
		if cfg.OtherURL == "" {
			cfg.OtherURL = base + "/mcp/slack"
		}
		if cfg.Scope == "" && cfg.StepUpTool == "" {
			cfg.Scope, cfg.StepUpTool = "jira:read", "create_issue"
			cfg.StepUpArgs = map[string]any{"project": "PLAT", "summary": "conformance"}
		}
	}
	return nil
}

func printServerReport(out io.Writer, rep authsuite.Report) error {
	fmt.Fprintf(out, "MCP authorization conformance: %s\n\n", rep.Target)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "result\tcheck\tspec\tdetail")
	for _, r := range rep.Results {
		msg := r.Message
		if len(msg) > 160 {
			msg = msg[:160] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strings.ToUpper(string(r.Status)), r.ID, r.Ref, msg)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%d passed, %d failed, %d skipped\n", rep.Passed, rep.Failed, rep.Skipped)
	return nil
}
