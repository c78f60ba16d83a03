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
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/bench"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/ebpf"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/internal/stack"
	"github.com/pbac-gateway/pbac/plugins/opahttp"
	"github.com/pbac-gateway/pbac/rego"
)

// benchOptions are pbac bench's flags.
type benchOptions struct {
	rate                        float64
	duration, warmup            time.Duration
	concurrency, argsSize       int
	tool, args                  string
	modes                       []string
	json, saturate, allowRemote bool
	probe                       bool
	targetDirect, targetGateway string
	token, output, opaPath      string
	logLevel                    string
	// attackers > 0 measures each gateway mode again while that many
	// connections call attackTool with pathological arguments of
	// attackSize bytes.
	attackers, attackSize int
	attackTool            string
	// attackCanonical: the attackers send only the costliest argument the
	// gateway admits (a canonical path of attackSize bytes in 63
	// segments), which reaches the policy on every call.
	attackCanonical bool
	attackSegments  int
	// Go profiles of this process over the whole run, as go test writes
	// them (go tool pprof reads them).
	cpuProfile, mutexProfile, blockProfile string
}

// Limits of the flags.
const (
	benchMaxDuration = 10 * time.Minute
	benchMaxWarmup   = time.Minute
	benchMaxArgs     = 1 << 20
	benchDefaultTool = "jira.search_issues"
	benchDefaultArgs = `{"query":"SEC"}`
	// benchAgent is the provider claim of the agent the benchmark
	// registers: the CI bot, which may read and write Jira.
	benchAgent = "ci-bot"
	// benchAttackTool is the default tool of the attackers: its path
	// argument is what the policy's path handling walks.
	benchAttackTool = "drive.read_file"
	// attackCanonicalSegments is the segment count of --attack-canonical's
	// path: the most the gateway's default limit admits (it counts the
	// slashes plus one, so 63 segments of a leading-slash path).
	attackCanonicalSegments = 63
)

func newBenchCommand() *cobra.Command {
	o := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure what the gateway adds to a tools/call, next to a bare proxy and an OPA sidecar",
		Long: `Measures, in one run and against the same backend, the latency of an MCP
tools/call (a JSON-RPC POST with arguments, on keep-alive connections, one MCP
session each) in four modes:

  direct       the backend itself
  proxy        a bare net/http/httputil reverse proxy: the floor of any extra hop
  gateway      the gateway: token introspection, the Wasm policy on tools/call
               with its arguments, audit, proxy
  opa-sidecar  the same gateway deciding through an out-of-process OPA server
               over HTTP (opa run --server, built once from the OPA module),
               for introspection's decision and the call's

The load is open loop: calls are scheduled at --rate whatever the answers do,
and each call's latency is measured from when it was meant to be sent, so a
stall is charged to every call it delayed (corrected for coordinated
omission); percentiles come from HDR histograms. Modes run one after another,
each with its own warm-up. --saturate instead runs a closed loop (each
connection calls again as soon as it has an answer) and reports the
throughput at saturation and the CPU time per 1,000 calls.

By default it starts everything itself on 127.0.0.1 in this process: the demo
backend of --tool, the proxy, the gateway with its authorization server on a
temporary data dir, and a CI bot agent registered with a signed statement.
--target-direct and --target-gateway (with --token) point it at running ones
instead. Targets must be loopback addresses unless --allow-remote.

With --attackers N, each gateway mode (gateway, opa-sidecar) is measured
twice in the same run: first as above (the baseline), then while N hostile
connections call --attack-tool in a closed loop, each with one of several
pathological arguments of --attack-size bytes ("/a"×n + "/%", backslashes,
"." and ".." segments, encoded and empty separators) in the string argument
the policy protects for that tool; the gateway's argument limits refuse
those before policy. --attack-canonical sends instead the costliest
argument it admits, a canonical path of --attack-size bytes (at most 1024
by default) in 63 segments, which the policy's path rules read on every
call; with --attack-segments 1 and a short --attack-size the same closed
loop sends benign calls, the control that tells the cost of an argument
from the cost of the attackers' call rate. Both times it also measures the
authorization server's token endpoint (client credentials) at --rate, since
the AS decides with the same engine. The report shows each row's p50/p99
beside its baseline and what the attackers got (their outcomes and
latency).

Exits non-zero when a mode could not be set up or more than 1% of its calls
failed.`,
		Example: `  pbac bench
  pbac bench --rate 500 --duration 10s --modes direct,gateway --json
  pbac bench --saturate --duration 10s
  pbac bench --modes gateway --rate 50 --duration 10s --warmup 2s --attackers 6
  pbac bench --modes gateway --rate 50 --duration 10s --attackers 6 --attack-canonical --attack-size 1024
  pbac bench -o bench/results.json
  pbac bench --target-direct http://127.0.0.1:9001/mcp \
    --target-gateway http://127.0.0.1:8080/mcp/jira --token "$TOKEN" --modes direct,proxy,gateway`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			stop, err := startProfiles(o)
			if err != nil {
				return err
			}
			err = runBench(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o, newLogger(o.logLevel))
			return errors.Join(err, stop())
		},
	}
	f := cmd.Flags()
	f.Float64Var(&o.rate, "rate", 1000, "calls per second in each mode (open loop), 1..100000")
	f.DurationVar(&o.duration, "duration", 20*time.Second, "measured time per mode, at most 10m")
	f.DurationVar(&o.warmup, "warmup", 3*time.Second, "warm-up per mode before measuring, at most 1m")
	f.IntVar(&o.concurrency, "concurrency", 8, "connections (each its own MCP session), 1..1024")
	f.StringVar(&o.tool, "tool", benchDefaultTool, "tool to call, as <backend>.<tool>")
	f.StringVar(&o.args, "args", "", `tool arguments, a JSON object (default `+benchDefaultArgs+` for `+benchDefaultTool+`, else {})`)
	f.IntVar(&o.argsSize, "args-size", 0, "pad the first string argument with spaces until the arguments are this many bytes")
	f.StringSliceVar(&o.modes, "modes", bench.Modes(), "modes to run, comma-separated: "+strings.Join(bench.Modes(), ", "))
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	f.BoolVar(&o.saturate, "saturate", false, "closed loop: throughput at saturation and CPU per 1k calls")
	f.StringVar(&o.targetDirect, "target-direct", "", "a running backend's MCP endpoint to call directly (default: start the demo backend)")
	f.StringVar(&o.targetGateway, "target-gateway", "", "a running gateway's /mcp/<backend> endpoint for that backend (needs --token)")
	f.StringVar(&o.token, "token", "", "bearer token for --target-gateway")
	f.BoolVar(&o.allowRemote, "allow-remote", false, "allow targets that are not loopback addresses")
	f.StringVarP(&o.output, "output", "o", "", "also write the JSON report to this file")
	f.StringVar(&o.opaPath, "opa", "", "opa binary for opa-sidecar (default: build it once into the user cache dir)")
	f.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (load generator, backend, gateway, AS) over the whole run to this file")
	f.StringVar(&o.mutexProfile, "mutexprofile", "", "write a mutex contention profile (every contended lock) over the whole run to this file")
	f.StringVar(&o.blockProfile, "blockprofile", "", "write a goroutine blocking profile (every blocking event) over the whole run to this file")
	f.IntVar(&o.attackers, "attackers", 0, "measure each gateway mode again while this many connections call --attack-tool with pathological arguments in a closed loop (and the token endpoint, both ways); 0..64")
	f.StringVar(&o.attackTool, "attack-tool", benchAttackTool, "the attackers' tool, as <backend>.<tool>; its pathological string argument is the one the policy protects for its backend (else path)")
	f.IntVar(&o.attackSize, "attack-size", 2048, "bytes of each pathological argument string, 16..1048576")
	f.IntVar(&o.attackSegments, "attack-segments", attackCanonicalSegments, "segments of --attack-canonical's path (1 with a short --attack-size: benign calls at the same rate, the control)")
	f.BoolVar(&o.attackCanonical, "attack-canonical", false, "the attackers send the costliest argument the gateway admits (a canonical path of --attack-size bytes in 63 segments, which reaches the policy) instead of the spellings refused before it")
	f.BoolVar(&o.probe, "probe", false, "attach the eBPF probe (pbac probe) to the gateway it starts and report the probe's figures beside the bench's")
	cmd.AddCommand(newBenchExternalCommand())
	return cmd
}

func (o *benchOptions) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !o.saturate && (o.rate < 1 || o.rate > bench.MaxRate || o.rate != o.rate) {
		bad("--rate %g: must be 1..%d calls/s", o.rate, bench.MaxRate)
	}
	if o.duration <= 0 || o.duration > benchMaxDuration {
		bad("--duration %s: must be more than 0 and at most %s", o.duration, benchMaxDuration)
	}
	if o.warmup < 0 || o.warmup > benchMaxWarmup {
		bad("--warmup %s: must be 0..%s", o.warmup, benchMaxWarmup)
	}
	if !o.saturate && o.rate*o.duration.Seconds() > bench.MaxRequestsPerRun {
		bad("--rate × --duration is %.0f calls per mode, more than %d", o.rate*o.duration.Seconds(), bench.MaxRequestsPerRun)
	}
	if o.concurrency < 1 || o.concurrency > bench.MaxConcurrency {
		bad("--concurrency %d: must be 1..%d", o.concurrency, bench.MaxConcurrency)
	}
	if o.argsSize < 0 || o.argsSize > benchMaxArgs {
		bad("--args-size %d: must be 0..%d bytes", o.argsSize, benchMaxArgs)
	}
	if b, t, ok := strings.Cut(o.tool, "."); !ok || b == "" || t == "" {
		bad("--tool %q: must be <backend>.<tool>, e.g. %s", o.tool, benchDefaultTool)
	}
	if o.args != "" && !json.Valid([]byte(o.args)) {
		bad("--args: not valid JSON: %s", o.args)
	}
	if len(o.modes) == 0 {
		bad("--modes: name at least one of %s", strings.Join(bench.Modes(), ", "))
	}
	seen := map[string]bool{}
	for _, m := range o.modes {
		if !slices.Contains(bench.Modes(), m) {
			bad("--modes: unknown mode %q (known: %s)", m, strings.Join(bench.Modes(), ", "))
		}
		if seen[m] {
			bad("--modes: %s is named twice", m)
		}
		seen[m] = true
	}
	for flag, u := range map[string]string{"--target-direct": o.targetDirect, "--target-gateway": o.targetGateway} {
		if u == "" {
			continue
		}
		if err := checkTarget(u, o.allowRemote); err != nil {
			bad("%s: %w", flag, err)
		}
	}
	if o.targetGateway != "" && o.token == "" {
		bad("--target-gateway needs --token, a bearer token that gateway accepts for %s", o.tool)
	}
	if o.token != "" && o.targetGateway == "" {
		bad("--token is only for --target-gateway")
	}
	if o.targetGateway != "" && o.targetDirect == "" && (seen[bench.ModeDirect] || seen[bench.ModeProxy] || seen[bench.ModeOPASidecar]) {
		bad("--target-gateway needs --target-direct, the backend behind it, so that every mode calls the same backend (or run --modes gateway)")
	}
	if o.attackers < 0 || o.attackers > bench.MaxAttackers {
		bad("--attackers %d: must be 0..%d", o.attackers, bench.MaxAttackers)
	}
	if o.attackers > 0 {
		if b, t, ok := strings.Cut(o.attackTool, "."); !ok || b == "" || t == "" {
			bad("--attack-tool %q: must be <backend>.<tool>, e.g. %s", o.attackTool, benchAttackTool)
		}
		if o.attackSize < 16 || o.attackSize > bench.MaxAttackBytes {
			bad("--attack-size %d: must be 16..%d bytes", o.attackSize, bench.MaxAttackBytes)
		}
		if o.saturate {
			bad("--attackers measures the open loop; drop --saturate")
		}
		if o.targetGateway != "" {
			bad("--attackers needs the gateway pbac bench starts (its agent's credentials reach both tools and the token endpoint); drop --target-gateway")
		}
		if !seen[bench.ModeGateway] && !seen[bench.ModeOPASidecar] {
			bad("--attackers attacks a gateway: add gateway or opa-sidecar to --modes")
		}
	}
	// Keep the flags' order out of the report: modes always run in the
	// canonical order.
	o.modes = slices.DeleteFunc(slices.Clone(bench.Modes()), func(m string) bool { return !seen[m] })
	return errors.Join(errs...)
}

// benchStopLimit bounds how long the bench waits for a mode's system to
// shut down.
const benchStopLimit = 30 * time.Second

// stopWithin runs stop and waits for it at most limit. A stop that does
// not return in time (a gateway whose decisions hang) is left behind, to
// end with the process, so the report still comes out.
func stopWithin(stop func(), limit time.Duration) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		stop()
	}()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// startProfiles starts the profiles --cpuprofile, --mutexprofile and
// --blockprofile ask for; stop writes them. The files are created first, so
// a path that cannot be written fails before the run does.
func startProfiles(o benchOptions) (stop func() error, err error) {
	var stops []func() error
	stop = func() error {
		var errs []error
		for i := len(stops) - 1; i >= 0; i-- {
			errs = append(errs, stops[i]())
		}
		stops = nil
		return errors.Join(errs...)
	}
	create := func(flag, path string) (*os.File, error) {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		return f, nil
	}
	if o.cpuProfile != "" {
		f, err := create("--cpuprofile", o.cpuProfile)
		if err != nil {
			return nil, errors.Join(err, stop())
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return nil, errors.Join(fmt.Errorf("--cpuprofile: %w", err), stop())
		}
		stops = append(stops, func() error {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				return fmt.Errorf("--cpuprofile: %w", err)
			}
			return nil
		})
	}
	lookup := func(flag, path, name string, set func(int)) error {
		f, err := create(flag, path)
		if err != nil {
			return err
		}
		set(1)
		stops = append(stops, func() error {
			set(0)
			err := pprof.Lookup(name).WriteTo(f, 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", flag, err)
			}
			return nil
		})
		return nil
	}
	if o.mutexProfile != "" {
		if err := lookup("--mutexprofile", o.mutexProfile, "mutex", func(n int) { runtime.SetMutexProfileFraction(n) }); err != nil {
			return nil, errors.Join(err, stop())
		}
	}
	if o.blockProfile != "" {
		if err := lookup("--blockprofile", o.blockProfile, "block", runtime.SetBlockProfileRate); err != nil {
			return nil, errors.Join(err, stop())
		}
	}
	return stop, nil
}

// checkTarget accepts an absolute http(s) URL on a loopback address, or
// any host when remote targets are allowed.
func checkTarget(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if allowRemote {
		return nil
	}
	h := u.Hostname()
	if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address (127.0.0.1, ::1 or localhost); pass --allow-remote to benchmark it", h)
}

// benchEnv is what every mode shares: the backend, the arguments, a
// temporary directory; each mode's own system (proxy, gateway) is started
// just before it runs and stopped after, so no mode runs beside another's
// idle state.
type benchEnv struct {
	o       benchOptions
	log     *slog.Logger
	stderr  io.Writer
	dir     string
	backend gateway.Backend
	tool    string // the tool's name at the backend
	args    json.RawMessage
	// attackBackend serves --attack-tool (the same as backend when both
	// tools are its), and attackShapes are the attackers' arguments; both
	// only with --attackers.
	attackBackend gateway.Backend
	attackShapes  []bench.AttackShape
	closers       []func()
}

// modeSystem is one mode's target, running.
type modeSystem struct {
	target bench.Target
	// extraCPU reports CPU time spent outside this process (opa's).
	extraCPU func() time.Duration
	// stages reports the gateway's own stage timing, for one we started.
	stages func() []bench.Stage
	// probe is the eBPF probe on a gateway we started (--probe).
	probe *ebpf.Probe
	// attack opens an attacker's connection (one pathological argument
	// each, in turn) and asToken a connection to the token endpoint; both
	// only with --attackers.
	attack, asToken bench.Target
	stop            func()
}

func (e *benchEnv) onClose(f func()) { e.closers = append(e.closers, f) }

func (e *benchEnv) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

func runBench(ctx context.Context, stdout, stderr io.Writer, o benchOptions, log *slog.Logger) error {
	env, err := newBenchEnv(ctx, stderr, o, log)
	if env != nil {
		defer env.Close()
	}
	if err != nil {
		return err
	}
	scope := "this process's CPU time (user + system): the load generator, the backend, the gateway and the authorization server all run in it"
	if o.targetDirect != "" || o.targetGateway != "" {
		scope = "this process's CPU time (user + system) only: the load generator and whatever of the backend, proxy and gateway it started; a target given by URL is not counted"
	}
	if slices.Contains(o.modes, bench.ModeOPASidecar) {
		scope += "; opa-sidecar adds the opa server process's"
	}
	loop, rate := bench.LoopOpen, o.rate
	if o.saturate {
		loop, rate = bench.LoopClosed, 0
	}
	rep := &bench.Report{Scenario: bench.Scenario{
		Loop: loop, Tool: o.tool, ArgsBytes: len(env.args), Rate: rate,
		DurationS: o.duration.Seconds(), WarmupS: o.warmup.Seconds(), Concurrency: o.concurrency,
		CPUs: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), CPUScope: scope,
	}}
	if o.attackers > 0 {
		rep.Scenario.Attackers, rep.Scenario.AttackTool = o.attackers, o.attackTool
	}
	for _, name := range o.modes {
		sys, err := env.start(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(stderr, "bench: %s cannot run: %v\n", name, err)
			rep.Modes = append(rep.Modes, bench.FailedMode(name, err))
			continue
		}
		ms, err := runMode(ctx, stderr, o, name, sys, env.attackShapes)
		if !stopWithin(sys.stop, benchStopLimit) {
			note := fmt.Sprintf("%s: what the bench started did not shut down within %s (requests or decisions still waiting); the bench went on without it", name, benchStopLimit)
			fmt.Fprintln(stderr, "bench: "+note)
			rep.Notes = append(rep.Notes, note)
		}
		// What the mode left behind is garbage before the next one runs.
		runtime.GC()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(stderr, "bench: %s failed: %v\n", name, err)
			ms = append(ms, bench.FailedMode(name, err))
		}
		rep.Modes = append(rep.Modes, ms...)
	}
	rep.Compute()

	js, err := rep.JSON()
	if err != nil {
		return err
	}
	if o.output != "" {
		if dir := filepath.Dir(o.output); dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("write the report: %w", err)
			}
		}
		if err := os.WriteFile(o.output, js, 0o644); err != nil {
			return fmt.Errorf("write the report: %w", err)
		}
	}
	if o.json {
		_, err = stdout.Write(js)
	} else {
		fmt.Fprintln(stdout)
		if err = rep.WriteTable(stdout); err == nil {
			err = writeProbeFigures(stdout, rep)
		}
	}
	if err != nil {
		return err
	}
	if o.output != "" {
		fmt.Fprintf(stderr, "bench: report written to %s\n", o.output)
	}
	if rep.Failed() {
		var failed []string
		for _, m := range rep.Modes {
			if m.Failed() {
				failed = append(failed, m.Name)
			}
		}
		return fmt.Errorf("bench: %s did not run or had more than 1%% errors", strings.Join(failed, ", "))
	}
	return nil
}

// runMode opens the connections, checks one call, warms up and measures;
// with attackers, it goes on to the attack (runAttack) on the same
// connections.
func runMode(ctx context.Context, stderr io.Writer, o benchOptions, name string, sys *modeSystem, shapes []bench.AttackShape) ([]bench.ModeReport, error) {
	pool, err := openChecked(ctx, sys.target, o.concurrency)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	m, err := measure(ctx, stderr, o, name, pool, sys)
	if err != nil {
		return nil, err
	}
	rows := []bench.ModeReport{m}
	if sys.attack == nil {
		return rows, nil
	}
	more, err := runAttack(ctx, stderr, o, name, sys, pool, shapes)
	return append(rows, more...), err
}

// openChecked opens n connections to target and checks one call.
func openChecked(ctx context.Context, target bench.Target, n int) (*bench.Pool, error) {
	pool, err := bench.OpenPool(ctx, target, n)
	if err != nil {
		return nil, err
	}
	if err := pool.Check(ctx); err != nil {
		_ = pool.Close()
		return nil, fmt.Errorf("the first call failed: %w", err)
	}
	return pool, nil
}

// measure warms up and measures on pool; sys's stage timing, extra CPU
// and probe are read when given.
func measure(ctx context.Context, stderr io.Writer, o benchOptions, name string, pool *bench.Pool, sys *modeSystem) (bench.ModeReport, error) {
	if o.saturate {
		fmt.Fprintf(stderr, "bench: %-11s warm-up %s, then a closed loop on %d connections for %s\n", name, o.warmup, o.concurrency, o.duration)
	} else {
		fmt.Fprintf(stderr, "bench: %-11s warm-up %s, then %g calls/s on %d connections for %s\n", name, o.warmup, o.rate, o.concurrency, o.duration)
	}
	run := func(d time.Duration) (*bench.Result, error) {
		if o.saturate {
			return pool.RunClosed(ctx, bench.ClosedLoop{Duration: d})
		}
		return pool.RunOpen(ctx, bench.OpenLoop{Rate: o.rate, Duration: d})
	}
	if o.warmup > 0 {
		if _, err := run(o.warmup); err != nil {
			return bench.ModeReport{}, err
		}
	}
	if sys == nil {
		sys = &modeSystem{}
	}
	if sys.probe != nil {
		sys.probe.Window() // the measured calls only
	}
	var extra0 time.Duration
	if sys.extraCPU != nil {
		extra0 = sys.extraCPU()
	}
	res, err := run(o.duration)
	if err != nil {
		return bench.ModeReport{}, err
	}
	var extra time.Duration
	if sys.extraCPU != nil {
		extra = sys.extraCPU() - extra0
	}
	m := bench.NewModeReport(name, res, extra)
	if sys.stages != nil {
		m.Stages = sys.stages()
	}
	if sys.probe != nil {
		if m.Probe, err = probeFigures(sys.probe); err != nil {
			return bench.ModeReport{}, err
		}
	}
	return m, nil
}

// attackDrain is how long an open-loop run may wait for its last calls
// (bench.OpenLoop's default drain), counted in the attack's time limit.
const attackDrain = 10 * time.Second

// runAttack measures the token endpoint, then starts the attackers and,
// while they run, measures the mode's tool calls (on pool, the baseline's
// connections) and the token endpoint again. Every connection is opened
// before the attack, so the rows measure calls, not connection set-up.
// The rows are <mode>:token, <mode>+attack (with what the attackers got)
// and <mode>:token+attack.
func runAttack(ctx context.Context, stderr io.Writer, o benchOptions, name string, sys *modeSystem, pool *bench.Pool, shapes []bench.AttackShape) ([]bench.ModeReport, error) {
	tokenRow := name + bench.TokenRow
	tokens, err := openChecked(ctx, sys.asToken, o.concurrency)
	if err != nil {
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	defer tokens.Close()
	m, err := measure(ctx, stderr, o, tokenRow, tokens, nil)
	if err != nil {
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	rows := []bench.ModeReport{m}

	attackers, err := bench.OpenPool(ctx, sys.attack, o.attackers)
	if err != nil {
		return rows, fmt.Errorf("open the attackers' connections: %w", err)
	}
	defer attackers.Close()
	fmt.Fprintf(stderr, "bench: %-11s %d attackers call %s with pathological arguments in a closed loop\n", name, o.attackers, o.attackTool)
	actx, stop := context.WithCancel(ctx)
	type attackDone struct {
		res *bench.AttackResult
		err error
	}
	done := make(chan attackDone, 1)
	// The attack ends when both rows are measured, and at the latest after
	// the time they may take (warm-ups, runs and drains) and a margin.
	limit := 2*(o.warmup+o.duration+attackDrain) + 30*time.Second
	go func() {
		res, err := attackers.RunAttack(actx, limit)
		done <- attackDone{res, err}
	}()
	m, err = measure(ctx, stderr, o, name+bench.UnderAttack, pool, nil)
	var mt bench.ModeReport
	if err == nil {
		mt, err = measure(ctx, stderr, o, tokenRow+bench.UnderAttack, tokens, nil)
	}
	stop()
	a := <-done
	if err != nil {
		return rows, err
	}
	if a.err != nil {
		return rows, fmt.Errorf("attack: %w", a.err)
	}
	m.Attack = bench.NewAttackFigures(o.attackers, o.attackTool, shapes, o.attackSize, a.res)
	return append(rows, m, mt), nil
}

// newBenchEnv resolves the arguments and starts the backend (unless
// --target-direct names one).
func newBenchEnv(ctx context.Context, stderr io.Writer, o benchOptions, log *slog.Logger) (*benchEnv, error) {
	backendName, toolName, _ := strings.Cut(o.tool, ".")
	rawArgs := o.args
	if rawArgs == "" {
		rawArgs = "{}"
		if o.tool == benchDefaultTool {
			rawArgs = benchDefaultArgs
		}
	}
	args, err := bench.PadArguments(json.RawMessage(rawArgs), o.argsSize)
	if err != nil {
		return nil, fmt.Errorf("--args/--args-size: %w", err)
	}
	e := &benchEnv{o: o, log: log, stderr: stderr, tool: toolName, args: args}
	if e.dir, err = os.MkdirTemp("", "pbac-bench-"); err != nil {
		return nil, err
	}
	e.onClose(func() { _ = os.RemoveAll(e.dir) })

	directURL := o.targetDirect
	if directURL == "" {
		if _, err := demo.NewServer(backendName); err != nil {
			return e, fmt.Errorf("--tool %s: %w; or point --target-direct at your backend", o.tool, err)
		}
		run, err := demo.Start(ctx, backendName, "127.0.0.1:0")
		if err != nil {
			return e, fmt.Errorf("start the demo backend: %w", err)
		}
		e.onClose(func() { _ = run.Close(context.WithoutCancel(ctx)) })
		directURL = run.URL
	}
	e.backend = gateway.Backend{Name: backendName, URL: directURL}
	if o.attackers > 0 {
		if err := e.prepareAttack(ctx); err != nil {
			return e, err
		}
	}
	return e, nil
}

// prepareAttack starts the attack tool's demo backend (unless it is the
// backend already running) and builds the attackers' arguments.
func (e *benchEnv) prepareAttack(ctx context.Context) error {
	name, _, _ := strings.Cut(e.o.attackTool, ".")
	data, err := shippedData()
	if err != nil {
		return err
	}
	if _, err := toolScope(data, e.o.attackTool); err != nil {
		return fmt.Errorf("--attack-tool: %w", err)
	}
	if e.o.attackCanonical {
		shape, err := bench.CanonicalAttackShape(attackArgument(data, e.o.attackTool), e.o.attackSize, e.o.attackSegments)
		if err != nil {
			return err
		}
		e.attackShapes = []bench.AttackShape{shape}
	} else if e.attackShapes, err = bench.AttackShapes(attackArgument(data, e.o.attackTool), e.o.attackSize); err != nil {
		return err
	}
	if name == e.backend.Name {
		e.attackBackend = e.backend
		return nil
	}
	if _, err := demo.NewServer(name); err != nil {
		return fmt.Errorf("--attack-tool %s: %w", e.o.attackTool, err)
	}
	run, err := demo.Start(ctx, name, "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("start the demo backend %s: %w", name, err)
	}
	e.onClose(func() { _ = run.Close(context.WithoutCancel(ctx)) })
	e.attackBackend = gateway.Backend{Name: name, URL: run.URL}
	return nil
}

// attackArgument is the string argument the attackers fill: the first
// argument a protected_arguments rule of the policy data names for the
// tool's backend, which the policy's path handling walks; else "path".
func attackArgument(data *contract.Data, tool string) string {
	if args := data.ProtectedArgs(data.Catalogue[tool].Resource); len(args) > 0 {
		return args[0]
	}
	return "path"
}

// gatewaySpec is what a gateway of the benchmark serves: its backends,
// the measured tool, and other tools its agent must reach too.
type gatewaySpec struct {
	backends   []gateway.Backend
	tool       string
	otherTools []string
}

// spec is the gateway the modes start: the tool's backend, and the attack
// tool's when there are attackers.
func (e *benchEnv) spec() gatewaySpec {
	s := gatewaySpec{backends: []gateway.Backend{e.backend}, tool: e.o.tool}
	if e.o.attackers > 0 {
		s.otherTools = []string{e.o.attackTool}
		if e.attackBackend.Name != e.backend.Name {
			s.backends = append(s.backends, e.attackBackend)
		}
	}
	return s
}

// withAttack fills in sys's attack and token endpoint targets for a
// gateway the benchmark started.
func (e *benchEnv) withAttack(sys *modeSystem, gw *benchGateway) *modeSystem {
	if e.o.attackers == 0 {
		return sys
	}
	_, tool, _ := strings.Cut(e.o.attackTool, ".")
	url, token := gw.endpoint(e.o.attackTool)
	var n atomic.Int64
	sys.attack = bench.TargetFunc(func(ctx context.Context) (bench.Conn, error) {
		shape := e.attackShapes[int(n.Add(1)-1)%len(e.attackShapes)]
		t := &bench.MCPTarget{URL: url, Tool: tool, Arguments: shape.Arguments, Token: token}
		return t.Open(ctx)
	})
	sys.asToken = gw.asToken
	return sys
}

func (e *benchEnv) mcp(url string, token func(context.Context) (string, error)) *bench.MCPTarget {
	return &bench.MCPTarget{URL: url, Tool: e.tool, Arguments: e.args, Token: token}
}

// start starts what mode needs and returns its target.
func (e *benchEnv) start(ctx context.Context, mode string) (*modeSystem, error) {
	nothing := func() {}
	switch mode {
	case bench.ModeDirect:
		return &modeSystem{target: e.mcp(e.backend.URL, nil), stop: nothing}, nil
	case bench.ModeProxy:
		u, stop, err := startReverseProxy(e.backend, e.log)
		if err != nil {
			return nil, err
		}
		return &modeSystem{target: e.mcp(u, nil), stop: stop}, nil
	case bench.ModeGateway:
		if e.o.targetGateway != "" {
			tok := e.o.token
			return &modeSystem{target: e.mcp(e.o.targetGateway, func(context.Context) (string, error) { return tok, nil }), stop: nothing}, nil
		}
		fmt.Fprintln(e.stderr, "bench: starting the gateway (shipped policy in Wasm, authorization server, audit)")
		gw, err := startWasmGateway(ctx, filepath.Join(e.dir, "gateway"), e.spec(), e.log)
		if err != nil {
			return nil, err
		}
		sys := &modeSystem{target: e.mcp(gw.url, gw.token), stop: gw.close, stages: gw.stages}
		if e.o.probe {
			sys.probe, sys.stop = e.attachProbe(gw)
		}
		return e.withAttack(sys, gw), nil
	case bench.ModeOPASidecar:
		fmt.Fprintln(e.stderr, "bench: starting the gateway with an OPA sidecar (opa run --server)")
		gw, pid, err := startSidecarGateway(ctx, e.stderr, filepath.Join(e.dir, "sidecar"), e.spec(), e.o, e.log)
		if err != nil {
			return nil, err
		}
		return e.withAttack(&modeSystem{target: e.mcp(gw.url, gw.token), stop: gw.close, stages: gw.stages, extraCPU: func() time.Duration {
			d, _ := bench.ProcessCPU(pid)
			return d
		}}, gw), nil
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}

// startReverseProxy serves a bare httputil.ReverseProxy to the backend at
// <proxy>/mcp/<backend>: the floor of any extra hop.
func startReverseProxy(b gateway.Backend, log *slog.Logger) (string, func(), error) {
	target, err := url.Parse(b.URL)
	if err != nil {
		return "", nil, fmt.Errorf("backend URL: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen for the proxy: %w", err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host, r.Out.URL.Path, r.Out.URL.RawPath = target.Scheme, target.Host, target.Path, ""
			r.Out.Host = target.Host
		},
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Full duplex: the proxy sends the answer's headers as soon as the
	// backend does, and net/http would otherwise end reading the request
	// body then, failing the upstream request's last read and with it the
	// upstream connection.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	return "http://" + ln.Addr().String() + "/mcp/" + b.Name, stop, nil
}

// benchGateway is a gateway the benchmark started, with its own
// authorization server and a registered CI bot.
type benchGateway struct {
	// url and token reach the measured tool.
	url   string
	token func(context.Context) (string, error)
	// endpoints reach each tool the agent has a token for, by tool.
	endpoints map[string]benchEndpoint
	// asToken asks the token endpoint for the measured tool's token.
	asToken *bench.TokenTarget
	gw      *gateway.Gateway
	close   func()
}

// benchEndpoint is a tool's /mcp/<backend> URL and the agent's token for it.
type benchEndpoint struct {
	url   string
	token func(context.Context) (string, error)
}

// endpoint is the URL and token for tool (one the gateway was started
// for).
func (g *benchGateway) endpoint(tool string) (string, func(context.Context) (string, error)) {
	ep := g.endpoints[tool]
	return ep.url, ep.token
}

// stages is the gateway's own timing of its latest calls, by stage.
func (g *benchGateway) stages() []bench.Stage {
	var out []bench.Stage
	for _, st := range g.gw.Latency().Stages {
		if st.Count > 0 && st.Stage != "total" {
			out = append(out, bench.Stage{Name: st.Stage, P50: float64(st.P50us), P99: float64(st.P99us)})
		}
	}
	return out
}

// startWasmGateway is the gateway as pbac up runs it: the shipped policy in
// Wasm for the gateway and the AS.
func startWasmGateway(ctx context.Context, dir string, spec gatewaySpec, log *slog.Logger) (*benchGateway, error) {
	return startBenchGateway(ctx, dir, spec, stack.Policy{}, log)
}

// startSidecarGateway runs `opa run --server` on the shipped policy and a
// gateway whose every decision — the AS's too — is a POST to it. It returns
// the opa process id, whose CPU time counts for the mode.
func startSidecarGateway(ctx context.Context, stderr io.Writer, dir string, spec gatewaySpec, o benchOptions, log *slog.Logger) (*benchGateway, int, error) {
	bin := o.opaPath
	if bin == "" {
		var err error
		onBuild := func(version, path string) {
			fmt.Fprintf(stderr, "bench: building the OPA command line %s once, into %s (a minute or two)\n", version, path)
		}
		if bin, err = opahttp.Binary(ctx, opahttp.BinaryOptions{Logger: log, OnBuild: onBuild}); err != nil {
			return nil, 0, fmt.Errorf("no opa binary (pass --opa): %w", err)
		}
	}
	srv, err := opahttp.StartServer(ctx, opahttp.ServerConfig{Binary: bin, Policy: rego.Sources(), Logger: log})
	if err != nil {
		return nil, 0, err
	}
	dec, err := opahttp.New(srv.URL(), opahttp.WithVersion("opa-sidecar"))
	if err != nil {
		_ = srv.Close()
		return nil, 0, err
	}
	data, err := shippedData()
	if err != nil {
		_ = srv.Close()
		return nil, 0, err
	}
	gw, err := startBenchGateway(ctx, dir, spec, stack.Policy{Decider: dec, Data: data}, log)
	if err != nil {
		_ = srv.Close()
		return nil, 0, err
	}
	stop := gw.close
	gw.close = func() {
		stop()
		dec.Close()
		_ = srv.Close()
	}
	return gw, srv.PID(), nil
}

// startBenchGateway starts a gateway for spec's backends with its own
// authorization server and audit trail under dir, deciding through policy,
// registers a CI bot with a signed statement and gets it a client
// credentials token for each tool's scope.
func startBenchGateway(ctx context.Context, dir string, spec gatewaySpec, policy stack.Policy, log *slog.Logger) (*benchGateway, error) {
	var backends []config.Backend
	for _, b := range spec.backends {
		backends = append(backends, config.Backend{Name: b.Name, URL: b.URL})
	}
	st, err := stack.New(ctx, stack.Config{
		Logger: log, DataDir: dir, Listen: "127.0.0.1:0", Policy: policy, Backends: backends,
		Gateway: &stack.Gateway{
			// --args-size measures arguments up to benchMaxArgs, one padded
			// string: the gateway admits them.
			ArgumentLimits: &config.ArgumentLimits{MaxBytes: benchMaxArgs + 1024, MaxStringBytes: benchMaxArgs},
		},
		Audit: stack.Audit{MaxBackups: 2, Retention: time.Hour},
	})
	if err != nil {
		return nil, fmt.Errorf("start the gateway: %w", err)
	}
	closeStack := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		_ = st.Close(cctx)
	}
	bg, err := registerBenchAgent(ctx, st, spec, policy.Data)
	if err != nil {
		closeStack()
		return nil, err
	}
	bg.close = closeStack
	return bg, nil
}

// registerBenchAgent registers the CI bot with a signed statement on the stack's
// authorization server and gets it a client credentials token for each
// tool's scope.
func registerBenchAgent(ctx context.Context, st *stack.Stack, spec gatewaySpec, data *contract.Data) (*benchGateway, error) {
	if data == nil {
		var err error
		if _, data, err = st.Registry().ActivePolicy(); err != nil {
			return nil, err
		}
	}
	tools := append([]string{spec.tool}, spec.otherTools...)
	scopes := map[string]string{}
	for _, t := range tools {
		sc, err := toolScope(data, t)
		if err != nil {
			return nil, err
		}
		scopes[t] = sc
	}
	base := st.URL()
	resourceOf := func(tool string) string {
		b, _, _ := strings.Cut(tool, ".")
		return base + "/mcp/" + b
	}
	as := st.AuthServer()
	jws, err := as.Statement(st.StatementKey(), asrv.StatementClaims{SoftwareID: "pbac-bench", AgentProvider: benchAgent, AgentModel: "bench"})
	if err != nil {
		return nil, err
	}
	req := &asrv.RegistrationRequest{ClientName: "pbac-bench", SoftwareStatement: jws,
		GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: asrv.AuthMethodSecretBasic}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	client, secret, _, err := as.Register(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("register the benchmark agent: %w", err)
	}
	bg := &benchGateway{endpoints: map[string]benchEndpoint{}, gw: st.Gateway(),
		asToken: &bench.TokenTarget{URL: base + "/oauth2/token", ClientID: client.ID, Secret: secret,
			Scope: scopes[spec.tool], Resource: resourceOf(spec.tool)}}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for _, tool := range tools {
		scope, resource := scopes[tool], resourceOf(tool)
		// The token source renews the token before it expires, so a long
		// run outlives the CI tier's token lifetime.
		cc := clientcredentials.Config{ClientID: client.ID, ClientSecret: secret, TokenURL: base + "/oauth2/token",
			Scopes: []string{scope}, EndpointParams: url.Values{"resource": {resource}}}
		ts := cc.TokenSource(context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, hc))
		tok, err := ts.Token()
		if err != nil {
			return nil, fmt.Errorf("get a client credentials token for %s: %w", scope, err)
		}
		if !slices.Contains(strings.Fields(fmt.Sprint(tok.Extra("scope"))), scope) {
			return nil, fmt.Errorf("policy granted the %s agent %q, not %s: the gateway would deny %s", benchAgent, tok.Extra("scope"), scope, tool)
		}
		bg.endpoints[tool] = benchEndpoint{url: resource, token: func(context.Context) (string, error) {
			t, err := ts.Token()
			if err != nil {
				return "", err
			}
			return t.AccessToken, nil
		}}
	}
	bg.url, bg.token = bg.endpoint(spec.tool)
	return bg, nil
}

// toolScope is the scope a tool needs, "<resource>:<access>", from the
// policy catalogue; a tool the catalogue does not list is denied.
func toolScope(data *contract.Data, tool string) (string, error) {
	sc := data.Catalogue[tool].Scope()
	if sc == "" {
		return "", fmt.Errorf("%s is not in the policy catalogue, so the gateway denies it; pick a catalogued tool", tool)
	}
	return sc, nil
}

// attachProbe attaches the eBPF probe to the gateway the benchmark started
// in this process; when it cannot, the mode runs without it. The returned
// stop stops the gateway and detaches the probe.
func (e *benchEnv) attachProbe(gw *benchGateway) (*ebpf.Probe, func()) {
	var addr net.Addr
	if u, err := url.Parse(gw.url); err == nil {
		addr, _ = net.ResolveTCPAddr("tcp", u.Host)
	}
	p, err := attachSelfProbe(addr, e.log)
	if err != nil {
		fmt.Fprintf(e.stderr, "bench: no probe: %v\n", err)
		return nil, gw.close
	}
	fmt.Fprintf(e.stderr, "bench: the eBPF probe is attached to the gateway (ports %v)\n", p.Ports())
	return p, func() {
		_ = p.Close()
		gw.close()
	}
}

// probeFigures is the probe's summary of the calls since its last window.
func probeFigures(p *ebpf.Probe) (json.RawMessage, error) {
	return json.Marshal(p.Window())
}

// writeProbeFigures prints the probe's figures under the table, beside the
// bench's added latency.
func writeProbeFigures(w io.Writer, rep *bench.Report) error {
	for _, m := range rep.Modes {
		if m.Probe == nil {
			continue
		}
		var s ebpf.Summary
		if err := json.Unmarshal(m.Probe, &s); err != nil {
			return err
		}
		fmt.Fprintln(w)
		if err := s.WriteText(w, m.Name+", as the eBPF probe saw it"); err != nil {
			return err
		}
		if m.AddedP50 != nil && m.AddedP99 != nil {
			fmt.Fprintf(w, "  added latency (p50/p99 µs): the bench's (gateway − direct, at the client) %.0f/%.0f, the probe's (total − backend, in the kernel) %.0f/%.0f\n",
				*m.AddedP50, *m.AddedP99, s.AddedP50, s.AddedP99)
		}
	}
	return nil
}
