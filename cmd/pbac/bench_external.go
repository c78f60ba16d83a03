package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/pbac-gateway/pbac/bench"
	"github.com/pbac-gateway/pbac/internal/stack"
	"github.com/pbac-gateway/pbac/internal/sysmon"
)

// externalOptions are pbac bench external's flags.
type externalOptions struct {
	rates                []float64
	duration, warmup     time.Duration
	rounds, connections  int
	tool, args, backend  string
	nginx, caddy, pbac   string
	markdownFile, output string
	json, pin            bool
	goSysmon             string // the gateway's PBAC_GO_SYSMON
}

// Limits of pbac bench external's flags.
const (
	externalMaxRounds      = 50
	externalMaxConnections = 512
	// externalStartLimit bounds how long a process may take to come up.
	externalStartLimit = 90 * time.Second
	// externalStopLimit bounds how long a process may take to stop after
	// SIGINT before it is killed.
	externalStopLimit = 20 * time.Second
)

func newBenchExternalCommand() *cobra.Command {
	o := externalOptions{}
	cmd := &cobra.Command{
		Use:   "external",
		Short: "Measure the gateway from outside: backend, nginx, Caddy and pbac up as separate processes",
		Long: `Measures what a client sees, with every part in a process of its own on
127.0.0.1: one demo backend (pbac demo backend), nginx (Debian's, as a
keep-alive reverse proxy to that backend: the floor of an extra hop by a
proxy no one here wrote), Caddy (Debian's, the same hop by a well-known
proxy written in Go, as the gateway is: what Go's runtime and net/http
cost alone) and the gateway (pbac up with a generated
configuration whose only backend is that one, its demo agents on; the CI bot
gets a client credentials token, so every call is introspected and decided).

This process is the load generator: open loop at a constant rate, latency
measured from each call's intended send time (corrected for coordinated
omission), MCP tools/call with request ids distinct across all connections,
on --connections keep-alive connections per target, each its own MCP
session. For each rate, --rounds rounds run the targets one after another
(direct, nginx, caddy, gateway), each for --warmup then --duration.

Reported per target and rate: p50 and p99 (median over rounds and range),
what nginx, Caddy and the gateway add over the direct call of the same
round, the errors, and each process's CPU time per call (user + system
from /proc/<pid>/stat, nginx's workers included). When nginx or Caddy is
not installed its target is left out, and the report says so.

--markdown-file rewrites the section between the markers
"` + bench.ExternalSectionStart + `" and
"` + bench.ExternalSectionEnd + `" (appending it the first time); a run with
--backend light has its own section, between "<!-- pbac bench external
--backend light: start -->" and its end marker, and a run with --pin one
more ("... --pin: start -->").

--pin holds this process (the load generator) and the backend to the first
CPU it may use, and nginx, Caddy and the gateway to the others (Linux, 2
CPUs at least): the proxy under test then has its CPUs to itself, as on a host of
its own, instead of sharing cores and caches with what drives it (where the
CPUs are hyperthreads of one core, they still share that core).`,
		Example: `  pbac bench external
  pbac bench external --rates 200,1000 --duration 10s --rounds 5 --markdown-file bench/RESULTS.md
  pbac bench external --rates 100 --duration 1s --rounds 2 --warmup 0 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return runBenchExternal(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o, commandLine())
		},
	}
	f := cmd.Flags()
	f.Float64SliceVar(&o.rates, "rates", []float64{200, 1000}, "calls per second, comma-separated; each rate runs every round")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per target, rate and round, at most 10m")
	f.DurationVar(&o.warmup, "warmup", time.Second, "warm-up before each measured run, at most 1m")
	f.IntVar(&o.rounds, "rounds", 5, "rounds per rate, 1..50")
	f.IntVar(&o.connections, "connections", 64, "keep-alive connections per target (each its own MCP session), 1..512")
	f.StringVar(&o.tool, "tool", benchDefaultTool, "tool to call, as <backend>.<tool> of a demo backend")
	f.StringVar(&o.backend, "backend", bench.BackendDemo, `the backend process: "demo" (pbac demo backend: the go-sdk server the demo runs, which validates every call's arguments against the tool's JSON Schema) or "light" (the light bench backend, pbac bench light-backend: jira.search_issues only, no validation, JSON answers), so that the gateway's own cost shows`)
	f.StringVar(&o.args, "args", "", `tool arguments, a JSON object (default `+benchDefaultArgs+` for `+benchDefaultTool+`, else {})`)
	f.StringVar(&o.nginx, "nginx", "nginx", "the nginx binary (a name is looked up in PATH, then /usr/sbin); the nginx target is skipped when there is none")
	f.StringVar(&o.caddy, "caddy", "caddy", "the Caddy binary (a name is looked up in PATH, then /usr/sbin); the caddy target is skipped when there is none")
	f.StringVar(&o.pbac, "pbac", "", "the pbac binary that runs the backend and the gateway (default: this one)")
	f.StringVar(&o.markdownFile, "markdown-file", "", "rewrite the external section of this Markdown file (bench/RESULTS.md) with the report")
	f.StringVarP(&o.output, "output", "o", "", "also write the JSON report to this file")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	f.StringVar(&o.goSysmon, "go-sysmon", string(sysmon.Default), "the gateway's PBAC_GO_SYSMON: default (the Go runtime's own monitor thread) or backoff (pbac up runs itself again with GODEBUG schedtrace set; README, Performance)")
	f.BoolVar(&o.pin, "pin", false, "hold the load generator and the backend to one CPU and nginx, Caddy and the gateway to the others (Linux, 2 CPUs at least)")
	return cmd
}

// commandLine is the command as typed, for the Markdown section.
func commandLine() string {
	return strings.Join(append([]string{"pbac"}, os.Args[1:]...), " ")
}

func (o *externalOptions) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(o.rates) == 0 {
		bad("--rates: name at least one rate")
	}
	if _, err := sysmon.ParseMode(o.goSysmon); err != nil {
		bad("--go-sysmon %w", err)
	}
	seen := map[float64]bool{}
	for _, r := range o.rates {
		if r < 1 || r > bench.MaxRate || r != r {
			bad("--rates %g: each must be 1..%d calls/s", r, bench.MaxRate)
		}
		if seen[r] {
			bad("--rates: %g is named twice", r)
		}
		seen[r] = true
		if r*o.duration.Seconds() > bench.MaxRequestsPerRun {
			bad("--rates %g × --duration is more than %d calls per run", r, bench.MaxRequestsPerRun)
		}
	}
	if o.duration <= 0 || o.duration > benchMaxDuration {
		bad("--duration %s: must be more than 0 and at most %s", o.duration, benchMaxDuration)
	}
	if o.warmup < 0 || o.warmup > benchMaxWarmup {
		bad("--warmup %s: must be 0..%s", o.warmup, benchMaxWarmup)
	}
	if o.rounds < 1 || o.rounds > externalMaxRounds {
		bad("--rounds %d: must be 1..%d", o.rounds, externalMaxRounds)
	}
	if o.connections < 1 || o.connections > externalMaxConnections {
		bad("--connections %d: must be 1..%d", o.connections, externalMaxConnections)
	}
	if b, t, ok := strings.Cut(o.tool, "."); !ok || b == "" || t == "" {
		bad("--tool %q: must be <backend>.<tool>, e.g. %s", o.tool, benchDefaultTool)
	}
	if o.args != "" {
		var obj map[string]json.RawMessage
		if !json.Valid([]byte(o.args)) {
			bad("--args: not valid JSON: %s", o.args)
		} else if json.Unmarshal([]byte(o.args), &obj) != nil || obj == nil {
			bad("--args: must be a JSON object (the tool's arguments): %s", o.args)
		}
	}
	switch o.backend {
	case bench.BackendDemo:
	case bench.BackendLight:
		if o.tool != benchDefaultTool {
			bad("--backend light serves only %s, not --tool %s", benchDefaultTool, o.tool)
		}
	default:
		bad("--backend %q: must be %q or %q", o.backend, bench.BackendDemo, bench.BackendLight)
	}
	return errors.Join(errs...)
}

// externalEnv is what an external run started: a temporary directory and
// the processes, each stopped and joined by Close.
type externalEnv struct {
	dir   string
	procs map[string]*child // by bench.Proc*
	// nginxVersion is `nginx -v`'s answer; "" when nginx does not run.
	nginxVersion string
	// caddyVersion is `caddy version`'s; "" when Caddy does not run.
	caddyVersion string
	notes        []string
	targets      map[string]*bench.MCPTarget
	// backendPort is the backend's TCP port, whose connections from the
	// proxies and the gateway each run counts.
	backendPort int
	// pin, when --pin, says which CPUs each process runs on.
	pin *pinning
}

// Close stops every process (gateway first, backend last) and removes the
// directory.
func (e *externalEnv) Close() {
	for _, p := range []string{bench.ProcGateway, bench.ProcCaddy, bench.ProcNginx, bench.ProcBackend} {
		if c := e.procs[p]; c != nil {
			c.stop()
		}
	}
	_ = os.RemoveAll(e.dir)
}

func runBenchExternal(ctx context.Context, stdout, stderr io.Writer, o externalOptions, command string) error {
	backendName, toolName, _ := strings.Cut(o.tool, ".")
	rawArgs := o.args
	if rawArgs == "" {
		rawArgs = "{}"
		if o.tool == benchDefaultTool {
			rawArgs = benchDefaultArgs
		}
	}
	args, err := bench.PadArguments(json.RawMessage(rawArgs), 0)
	if err != nil {
		return fmt.Errorf("--args: %w", err)
	}
	data, err := shippedData()
	if err != nil {
		return err
	}
	scope, err := toolScope(data, o.tool)
	if err != nil {
		return fmt.Errorf("--tool: %w", err)
	}
	bin := o.pbac
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("find this pbac binary (pass --pbac): %w", err)
		}
	}
	var pin *pinning
	if o.pin {
		if pin, err = planPinning(); err != nil {
			return err
		}
		if err := pin.pinLoadGenerator(); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench external: pinned: %s\n", pin.describe())
	}
	dir, err := os.MkdirTemp("", "pbac-bench-external-")
	if err != nil {
		return err
	}
	env := &externalEnv{dir: dir, procs: map[string]*child{}, targets: map[string]*bench.MCPTarget{}, pin: pin}
	defer env.Close()
	ids := &atomic.Int64{}
	mcp := func(u string) *bench.MCPTarget {
		return &bench.MCPTarget{URL: u, Tool: toolName, Arguments: args, IDs: ids}
	}

	// The backend.
	argv, announced := []string{"demo", "backend", backendName}, backendName
	if o.backend == bench.BackendLight {
		argv, announced = []string{"bench", "light-backend"}, "light"
	}
	fmt.Fprintf(stderr, "bench external: starting the %s backend %s (%s %s)\n", o.backend, backendName, bin, strings.Join(argv, " "))
	backend, lines, err := startChild(dir, bench.ProcBackend, bin, env.pin.start(bench.ProcBackend), nil, append(argv, "--listen", "127.0.0.1:0")...)
	if err != nil {
		return err
	}
	env.procs[bench.ProcBackend] = backend
	line, err := backend.waitLine(lines, regexp.MustCompile(`^`+regexp.QuoteMeta(announced)+`\t(http://\S+)$`), externalStartLimit)
	if err != nil {
		return err
	}
	backendURL := line[1]
	if u, err := url.Parse(backendURL); err == nil {
		env.backendPort, _ = strconv.Atoi(u.Port())
	}
	env.targets[bench.TargetDirect] = mcp(backendURL)

	// nginx in front of it.
	if path, ok := findProxy(o.nginx); !ok {
		note := fmt.Sprintf("nginx target skipped: no nginx binary (%q not found; on Debian: apt-get install nginx-light)", o.nginx)
		fmt.Fprintln(stderr, "bench external: "+note)
		env.notes = append(env.notes, note)
	} else {
		fmt.Fprintf(stderr, "bench external: starting nginx (%s) in front of the backend\n", path)
		u, err := env.startNginx(ctx, path, backendURL)
		if err != nil {
			return err
		}
		env.targets[bench.TargetNginx] = mcp(u)
	}

	// Caddy in front of it.
	if path, ok := findProxy(o.caddy); !ok {
		note := fmt.Sprintf("caddy target skipped: no Caddy binary (%q not found; on Debian: apt-get install caddy)", o.caddy)
		fmt.Fprintln(stderr, "bench external: "+note)
		env.notes = append(env.notes, note)
	} else {
		fmt.Fprintf(stderr, "bench external: starting Caddy (%s) in front of the backend\n", path)
		u, err := env.startCaddy(ctx, path, backendURL)
		if err != nil {
			return err
		}
		env.targets[bench.TargetCaddy] = mcp(u)
	}

	// The gateway, with the backend as its only backend.
	fmt.Fprintln(stderr, "bench external: starting the gateway (pbac up, the backend as its only backend, demo agents on)")
	gwURL, token, err := env.startGateway(ctx, bin, backendName, backendURL, scope, o.connections, o.goSysmon)
	if err != nil {
		return err
	}
	t := mcp(gwURL)
	t.Token = token
	env.targets[bench.TargetGateway] = t

	rep := &bench.ExternalReport{Scenario: bench.ExternalScenario{
		Tool: o.tool, Backend: o.backend, ArgsBytes: len(args), Rates: o.rates, DurationS: o.duration.Seconds(), WarmupS: o.warmup.Seconds(),
		Rounds: o.rounds, Connections: o.connections, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Nginx: env.nginxVersion, Caddy: env.caddyVersion, Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), LoadStart: loadAverage(),
		Pinned: pin.describe(), GoSysmon: gatewayMonitor(env.procs[bench.ProcGateway], o.goSysmon, os.Environ()),
	}, Notes: env.notes}
	if err := env.measure(ctx, stderr, o, rep); err != nil {
		return err
	}
	rep.Scenario.LoadEnd = loadAverage()
	rep.Compute()
	return writeExternalReport(stdout, stderr, o, rep, command)
}

// measure opens each target's connections (checking one call), then runs
// the rounds.
func (e *externalEnv) measure(ctx context.Context, stderr io.Writer, o externalOptions, rep *bench.ExternalReport) error {
	pools := map[string]*bench.Pool{}
	defer func() {
		for _, p := range pools {
			_ = p.Close()
		}
	}()
	var targets []string
	for _, name := range bench.Targets() {
		t, ok := e.targets[name]
		if !ok {
			continue
		}
		pool, err := openChecked(ctx, t, o.connections)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		pools[name] = pool
		targets = append(targets, name)
	}
	for _, rate := range o.rates {
		for round := 1; round <= o.rounds; round++ {
			for _, name := range targets {
				run, err := e.runOne(ctx, o, pools[name], name, rate, round)
				if err != nil {
					return fmt.Errorf("%s at %g calls/s, round %d: %w", name, rate, round, err)
				}
				conns := ""
				if run.BackendConns != nil {
					conns = fmt.Sprintf("  connections to the backend: %d", *run.BackendConns)
				}
				fmt.Fprintf(stderr, "bench external: %4g calls/s round %d/%d %-7s p50 %7.0f µs  p99 %7.0f µs  errors %d  CPU µs/call %v%s\n",
					rate, round, o.rounds, name, run.P50, run.P99, run.Errors, run.CPU, conns)
				rep.Runs = append(rep.Runs, run)
			}
		}
	}
	return nil
}

// runOne warms up and measures one target at one rate, reading every
// process's CPU time around the measured run.
func (e *externalEnv) runOne(ctx context.Context, o externalOptions, pool *bench.Pool, name string, rate float64, round int) (bench.ExternalRun, error) {
	if o.warmup > 0 {
		if _, err := pool.RunOpen(ctx, bench.OpenLoop{Rate: rate, Duration: o.warmup}); err != nil {
			return bench.ExternalRun{}, err
		}
	}
	before := e.cpu()
	res, err := pool.RunOpen(ctx, bench.OpenLoop{Rate: rate, Duration: o.duration})
	if err != nil {
		return bench.ExternalRun{}, err
	}
	cpu := map[string]time.Duration{bench.ProcLoad: res.CPU}
	for p, d := range e.cpu() {
		if b, ok := before[p]; ok {
			cpu[p] = d - b
		}
	}
	run := bench.NewExternalRun(name, round, res, cpu)
	// The target's own process: what it holds to the backend after the
	// calls are answered.
	if c := e.procs[targetProc(name)]; c != nil {
		if n, ok := bench.EstablishedTo(c.cmd.Process.Pid, e.backendPort); ok {
			run.BackendConns = &n
		}
	}
	return run, nil
}

// targetProc is the process a target goes through on its way to the
// backend ("" for direct).
func targetProc(target string) string {
	switch target {
	case bench.TargetNginx:
		return bench.ProcNginx
	case bench.TargetCaddy:
		return bench.ProcCaddy
	case bench.TargetGateway:
		return bench.ProcGateway
	}
	return ""
}

// cpu reads each running process's CPU time (its children's included).
func (e *externalEnv) cpu() map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, c := range e.procs {
		if d, ok := bench.ProcessTreeCPU(c.cmd.Process.Pid); ok {
			out[name] = d
		}
	}
	return out
}

func writeExternalReport(stdout, stderr io.Writer, o externalOptions, rep *bench.ExternalReport, command string) error {
	js, err := rep.JSON()
	if err != nil {
		return err
	}
	if o.output != "" {
		if err := os.WriteFile(o.output, js, 0o644); err != nil {
			return fmt.Errorf("write the report: %w", err)
		}
		fmt.Fprintf(stderr, "bench external: report written to %s\n", o.output)
	}
	if o.markdownFile != "" {
		if err := spliceMarkdown(o.markdownFile, rep, command); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench external: section written to %s\n", o.markdownFile)
	}
	if o.json {
		_, err = stdout.Write(js)
	} else {
		fmt.Fprintln(stdout)
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		return err
	}
	if rep.Failed() {
		return errors.New("bench external: a run had more than 1% errors or no figures")
	}
	return nil
}

// externalHeading is the heading the section gets when a file has none.
const (
	externalHeading      = "## pbac bench external: backend, nginx, Caddy and gateway as separate processes"
	externalLightHeading = "### pbac bench external --backend light"
)

// spliceMarkdown rewrites the external section of the Markdown file at
// path (creating the file when it does not exist).
func spliceMarkdown(path string, rep *bench.ExternalReport, command string) error {
	doc, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read --markdown-file: %w", err)
	}
	var section bytes.Buffer
	if err := rep.WriteMarkdown(&section, command); err != nil {
		return err
	}
	start, end := bench.ExternalSectionMarkers(rep.Scenario.Backend, rep.Scenario.Pinned != "")
	heading := externalHeading
	if rep.Scenario.Backend == bench.BackendLight {
		heading = externalLightHeading
	}
	if rep.Scenario.Pinned != "" {
		heading += " --pin"
	}
	out, err := bench.SpliceSection(doc, start, end, heading, section.Bytes())
	if err != nil {
		return fmt.Errorf("--markdown-file %s: %w", path, err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return fmt.Errorf("write --markdown-file: %w", err)
	}
	return nil
}

// findProxy resolves --nginx or --caddy: a path, a name in PATH, or under
// /usr/sbin (not in every user's PATH).
func findProxy(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	if !strings.Contains(name, "/") {
		p := filepath.Join("/usr/sbin", name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// nginxConfig is nginx as a plain keep-alive reverse proxy on listen to
// upstream (host:port): HTTP/1.1 to the backend on pooled connections,
// answers streamed (no buffering, as an MCP proxy must for SSE), the
// backend's own Host (the Go SDK refuses others), no access log; every
// path it writes is under dir.
func nginxConfig(dir, listen, upstream string, root bool) string {
	user := ""
	if root {
		// As root nginx would switch its workers to nobody, who cannot
		// write to dir.
		user = "user root;\n"
	}
	return user + `daemon off;
worker_processes auto;
pid ` + filepath.Join(dir, "nginx.pid") + `;
error_log ` + filepath.Join(dir, "error.log") + ` warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path ` + filepath.Join(dir, "client_body") + `;
    proxy_temp_path ` + filepath.Join(dir, "proxy") + `;
    fastcgi_temp_path ` + filepath.Join(dir, "fastcgi") + `;
    uwsgi_temp_path ` + filepath.Join(dir, "uwsgi") + `;
    scgi_temp_path ` + filepath.Join(dir, "scgi") + `;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    upstream backend {
        server ` + upstream + `;
        keepalive 256;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen ` + listen + `;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host ` + upstream + `;
            proxy_buffering off;
        }
    }
}
`
}

// startNginx runs nginx in front of the backend and returns the proxied
// MCP endpoint.
func (e *externalEnv) startNginx(ctx context.Context, path, backendURL string) (string, error) {
	p, err := e.placeProxy(bench.ProcNginx, backendURL)
	if err != nil {
		return "", err
	}
	conf := filepath.Join(p.dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConfig(p.dir, p.listen, p.backend.Host, os.Geteuid() == 0)), 0o644); err != nil {
		return "", err
	}
	if v, err := exec.CommandContext(ctx, path, "-v").CombinedOutput(); err == nil {
		e.nginxVersion = strings.TrimPrefix(strings.TrimSpace(string(v)), "nginx version: ")
	}
	errorLog := filepath.Join(p.dir, "error.log")
	return e.runProxy(p, bench.ProcNginx, path, nil, errorLog, "-p", p.dir, "-c", conf, "-e", errorLog)
}

// proxyPlace is where a reference proxy runs: in front of backend, on
// listen, with a directory of its own under the run's.
type proxyPlace struct {
	backend     *url.URL
	listen, dir string
}

// placeProxy picks proc's address and makes its directory.
func (e *externalEnv) placeProxy(proc, backendURL string) (proxyPlace, error) {
	bu, err := url.Parse(backendURL)
	if err != nil {
		return proxyPlace{}, fmt.Errorf("the backend's URL: %w", err)
	}
	listen, err := freeLoopbackAddr()
	if err != nil {
		return proxyPlace{}, err
	}
	dir := filepath.Join(e.dir, proc)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return proxyPlace{}, err
	}
	return proxyPlace{backend: bu, listen: listen, dir: dir}, nil
}

// runProxy starts proc (path with args and env), waits until it listens
// (quoting logPath if it does not) and returns the proxied MCP endpoint.
func (e *externalEnv) runProxy(p proxyPlace, proc, path string, env []string, logPath string, args ...string) (string, error) {
	c, _, err := startChild(e.dir, proc, path, e.pin.start(proc), env, args...)
	if err != nil {
		return "", err
	}
	e.procs[proc] = c
	if logPath == "" {
		logPath = c.errPath
	}
	if err := c.waitListening(p.listen, logPath, externalStartLimit); err != nil {
		return "", err
	}
	return "http://" + p.listen + p.backend.Path, nil
}

// caddyConfig is Caddy's JSON configuration as a plain keep-alive reverse
// proxy on listen to upstream (host:port), set up as nginxConfig sets
// nginx up: HTTP/1.1 to the backend on pooled connections, answers
// flushed as they come (flush_interval -1, as an MCP proxy must for SSE),
// the backend's own Host, no access log (Caddy writes none unless asked),
// errors only; no admin endpoint and nothing saved, TLS off.
func caddyConfig(listen, upstream string) ([]byte, error) {
	type obj = map[string]any
	return json.MarshalIndent(obj{
		"admin":   obj{"disabled": true, "config": obj{"persist": false}},
		"logging": obj{"logs": obj{"default": obj{"level": "ERROR"}}},
		"apps": obj{"http": obj{"servers": obj{"bench": obj{
			"listen":          []string{listen},
			"automatic_https": obj{"disable": true},
			"routes": []obj{{"handle": []obj{{
				"handler":        "reverse_proxy",
				"upstreams":      []obj{{"dial": upstream}},
				"flush_interval": -1,
				"headers":        obj{"request": obj{"set": obj{"Host": []string{upstream}}}},
				"transport": obj{"protocol": "http", "keep_alive": obj{
					"max_idle_conns_per_host": 256, "idle_timeout": "300s",
				}},
			}}}},
		}}}},
	}, "", "  ")
}

// startCaddy runs Caddy in front of the backend and returns the proxied
// MCP endpoint. Its home and XDG directories are under the run's
// directory, so it writes nothing elsewhere.
func (e *externalEnv) startCaddy(ctx context.Context, path, backendURL string) (string, error) {
	p, err := e.placeProxy(bench.ProcCaddy, backendURL)
	if err != nil {
		return "", err
	}
	conf, err := caddyConfig(p.listen, p.backend.Host)
	if err != nil {
		return "", err
	}
	confPath := filepath.Join(p.dir, "caddy.json")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		return "", err
	}
	env := []string{"HOME=" + p.dir, "XDG_CONFIG_HOME=" + filepath.Join(p.dir, "config"), "XDG_DATA_HOME=" + filepath.Join(p.dir, "data")}
	if v, err := exec.CommandContext(ctx, path, "version").Output(); err == nil {
		if f := strings.Fields(string(v)); len(f) > 0 {
			e.caddyVersion = strings.TrimPrefix(f[0], "v")
		}
	}
	return e.runProxy(p, bench.ProcCaddy, path, env, "", "run", "--config", confPath)
}

var (
	upGatewayLine = regexp.MustCompile(`^\s+gateway\s+(http://\S+)$`)
	upReadyLine   = regexp.MustCompile(`^Press Ctrl-C to stop\.`)
)

// startGateway runs pbac up with the backend as its only backend and the
// demo agents on, and gets the CI bot a token for scope. It returns the
// backend's endpoint at the gateway and the token source.
func (e *externalEnv) startGateway(ctx context.Context, bin, backendName, backendURL, scope string, connections int, goSysmon string) (string, func(context.Context) (string, error), error) {
	dir := filepath.Join(e.dir, "gateway")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", nil, err
	}
	// Each connection is a session of the one agent: room for all.
	conf := fmt.Sprintf("demo: false\ndemo_agents: true\nlimits: {sessions_per_agent: %d}\nbackends:\n  - name: %s\n    url: %s\n",
		max(gatewaySessionsDefault, 2*connections), backendName, backendURL)
	confPath := filepath.Join(e.dir, "gateway.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return "", nil, err
	}
	c, lines, err := startChild(e.dir, bench.ProcGateway, bin, e.pin.start(bench.ProcGateway), []string{"PBAC_GO_SYSMON=" + goSysmon}, "up", "--config", confPath, "--data-dir", dir,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "warn")
	if err != nil {
		return "", nil, err
	}
	e.procs[bench.ProcGateway] = c
	m, err := c.waitLine(lines, upGatewayLine, externalStartLimit)
	if err != nil {
		return "", nil, err
	}
	base := m[1]
	if _, err := c.waitLine(lines, upReadyLine, externalStartLimit); err != nil {
		return "", nil, err
	}
	agents, err := stack.ReadDemoAgents(dir)
	if err != nil {
		return "", nil, fmt.Errorf("read the demo agents pbac up registered: %w", err)
	}
	bot, ok := stack.FindDemoAgent(agents, benchAgent)
	if !ok {
		return "", nil, fmt.Errorf("pbac up registered no %s agent", benchAgent)
	}
	resource := base + "/mcp/" + backendName
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	cc := clientcredentials.Config{ClientID: bot.ClientID, ClientSecret: bot.ClientSecret, TokenURL: base + "/oauth2/token",
		Scopes: []string{scope}, EndpointParams: url.Values{"resource": {resource}}}
	// The token source renews the token before it expires.
	ts := cc.TokenSource(context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, hc))
	tok, err := ts.Token()
	if err != nil {
		return "", nil, fmt.Errorf("get the %s a client credentials token for %s: %w", benchAgent, scope, err)
	}
	if !slices.Contains(strings.Fields(fmt.Sprint(tok.Extra("scope"))), scope) {
		return "", nil, fmt.Errorf("policy granted the %s %q, not %s: the gateway would deny the calls", benchAgent, tok.Extra("scope"), scope)
	}
	return resource, func(context.Context) (string, error) {
		t, err := ts.Token()
		if err != nil {
			return "", err
		}
		return t.AccessToken, nil
	}, nil
}

// loadAverage is the machine's 1, 5 and 15 minute load averages, "" where
// /proc/loadavg is not there.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// gatewaySessionsDefault is the gateway's default sessions per agent.
const gatewaySessionsDefault = 100

// freeLoopbackAddr is a 127.0.0.1 address with a port free a moment ago.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// child is a process the external bench started. Its stdout comes line by
// line to lines (what waitLine reads); its stderr goes to a file in the
// run's directory, whose end is quoted when it fails to start.
type child struct {
	name    string
	cmd     *exec.Cmd
	errPath string
	exited  chan struct{}
	waitErr error
	once    sync.Once
}

// startChild starts bin with args, by start (exec.Cmd.Start, or on pinned
// CPUs); the returned channel carries its stdout lines (those that do not
// fit are dropped: only start-up lines matter).
func startChild(dir, name, bin string, start func(*exec.Cmd) error, env []string, args ...string) (*child, <-chan string, error) {
	errPath := filepath.Join(dir, name+".stderr")
	errFile, err := os.Create(errPath)
	if err != nil {
		return nil, nil, err
	}
	defer errFile.Close()
	lines := make(chan string, 256)
	cmd := exec.Command(bin, args...)
	cmd.Stdout = &lineWriter{lines: lines}
	cmd.Stderr = errFile
	cmd.Env = append(os.Environ(), env...)
	if err := start(cmd); err != nil {
		return nil, nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	c := &child{name: name, cmd: cmd, errPath: errPath, exited: make(chan struct{})}
	// Wait also joins exec's goroutine that copies stdout.
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	return c, lines, nil
}

// stop interrupts the process, kills it when it does not stop in time,
// and waits for it.
func (c *child) stop() {
	c.once.Do(func() {
		select {
		case <-c.exited:
			return
		default:
		}
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		t := time.NewTimer(externalStopLimit)
		defer t.Stop()
		select {
		case <-c.exited:
		case <-t.C:
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	})
}

// failed describes a process that did not come up: why, and the end of
// what it wrote to its error log.
func (c *child) failed(why string, logPath string) error {
	tail, _ := os.ReadFile(logPath)
	if len(tail) > 2000 {
		tail = tail[len(tail)-2000:]
	}
	return fmt.Errorf("%s %s: %s", c.name, why, bytes.TrimSpace(tail))
}

// waitLine waits for a stdout line matching re and returns its submatches.
func (c *child) waitLine(lines <-chan string, re *regexp.Regexp, limit time.Duration) ([]string, error) {
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		select {
		case l := <-lines:
			if m := re.FindStringSubmatch(l); m != nil {
				return m, nil
			}
		case <-c.exited:
			return nil, c.failed(fmt.Sprintf("exited (%v) before printing a line like %s", c.waitErr, re), c.errPath)
		case <-t.C:
			return nil, c.failed(fmt.Sprintf("printed no line like %s within %s", re, limit), c.errPath)
		}
	}
}

// waitListening waits until addr accepts connections.
func (c *child) waitListening(addr, logPath string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		select {
		case <-c.exited:
			return c.failed(fmt.Sprintf("exited (%v) before listening on %s", c.waitErr, addr), logPath)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return c.failed(fmt.Sprintf("did not listen on %s within %s", addr, limit), logPath)
		}
	}
}

// lineWriter hands each complete line written to it to lines, dropping
// lines nobody reads.
type lineWriter struct {
	mu    sync.Mutex
	buf   []byte
	lines chan<- string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		select {
		case w.lines <- string(w.buf[:i]):
		default:
		}
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.buf = w.buf[:0] // a line this long is no start-up line
	}
	return len(p), nil
}

// gatewayMonitor is how the gateway's Go monitor thread waits: as its
// process's environment says (/proc/<pid>/environ, after it ran itself
// again), else as PBAC_GO_SYSMON=want beside this process's environment
// plans it.
func gatewayMonitor(gw *child, want string, environ []string) string {
	if gw != nil && gw.cmd.Process != nil {
		if raw, err := os.ReadFile("/proc/" + strconv.Itoa(gw.cmd.Process.Pid) + "/environ"); err == nil {
			return string(sysmon.InEffect(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")))
		}
	}
	m, err := sysmon.ParseMode(want)
	if err != nil {
		return want
	}
	mode, _, _ := sysmon.Plan(m, environ)
	return string(mode)
}
