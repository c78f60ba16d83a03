package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/bench"
)

// TestBenchExternal runs pbac bench external for real but tiny: the backend,
// nginx, Caddy and pbac up as separate processes, two rounds of a second at
// 100 calls/s; once with neither proxy and once without Caddy, which leave
// their targets out and say so;
// and once on the light bench backend with --pin (where this process may
// use 2 CPUs). It checks that every target answered and figures came out,
// never how fast: timings on a shared machine are not a test's business.
func TestBenchExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary, nginx, Caddy and pbac up")
	}
	_, haveNginx := findProxy("nginx")
	_, haveCaddy := findProxy("caddy")
	tests := []struct {
		name         string
		nginx, caddy string
		backend      string
		targets      []string
		notes        []string
		pin          bool
	}{
		{"backend, nginx, caddy and gateway", "nginx", "caddy", bench.BackendDemo, bench.Targets(), nil, false},
		{"no nginx, no caddy: their targets are left out and the report says why", "/nonexistent/nginx", "/nonexistent/caddy", bench.BackendDemo,
			[]string{bench.TargetDirect, bench.TargetGateway}, []string{"nginx target skipped: no nginx binary", "caddy target skipped: no Caddy binary"}, false},
		{"nginx but no caddy: the caddy target alone is left out", "nginx", "/nonexistent/caddy", bench.BackendLight,
			[]string{bench.TargetDirect, bench.TargetNginx, bench.TargetGateway}, []string{"caddy target skipped: no Caddy binary"}, false},
		{"the light bench backend, nginx, caddy and gateway, pinned", "nginx", "caddy", bench.BackendLight, bench.Targets(), nil, pinnable()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.nginx == "nginx" && !haveNginx {
				t.Skip("nginx is not installed (Debian: apt-get install nginx-light): pbac bench external's nginx target needs it")
			}
			if tt.caddy == "caddy" && !haveCaddy {
				t.Skip("Caddy is not installed (Debian: apt-get install caddy): pbac bench external's caddy target needs it")
			}
			rep, doc := runBenchExternalTiny(t, tt.nginx, tt.caddy, tt.backend, tt.pin)
			if (rep.Scenario.Pinned != "") != tt.pin || (tt.pin && !strings.Contains(doc, "; pinned: "+rep.Scenario.Pinned)) {
				t.Errorf("pinned %q (--pin %v), in the Markdown: %v", rep.Scenario.Pinned, tt.pin, strings.Contains(doc, "pinned: "))
			}
			if rep.Scenario.Backend != tt.backend {
				t.Errorf("the report's backend %q, want %q", rep.Scenario.Backend, tt.backend)
			}
			// Read from the gateway's process: the runtime's own unless asked.
			if rep.Scenario.GoSysmon != "default" || !strings.Contains(doc, "the gateway's Go monitor thread (PBAC_GO_SYSMON): default") {
				t.Errorf("the gateway's monitor %q, want default, in the Markdown too", rep.Scenario.GoSysmon)
			}
			for _, target := range bench.Targets() {
				ss := rep.Summaries(target)
				if !slices.Contains(tt.targets, target) {
					if len(ss) != 0 {
						t.Errorf("%s ran: %+v", target, ss)
					}
					continue
				}
				if len(ss) != 1 {
					t.Fatalf("%s: %d summaries, want one (100 calls/s)", target, len(ss))
				}
				s := ss[0]
				if s.Rounds != 2 || s.Requests == 0 || s.P50 == nil || s.P50.Median <= 0 || s.P99 == nil {
					t.Errorf("%s: rounds %d, requests %d, p50 %+v: want 2 rounds of answered calls with figures", target, s.Rounds, s.Requests, s.P50)
				}
				if target != bench.TargetDirect && (s.AddedP50 == nil || s.AddedP99 == nil) {
					t.Errorf("%s: no added latency over direct", target)
				}
				if (s.BackendConns != nil) != (target != bench.TargetDirect && runtime.GOOS == "linux") {
					t.Errorf("%s: connections to the backend %+v", target, s.BackendConns)
				}
				for _, p := range []string{bench.ProcBackend, bench.ProcGateway, bench.ProcLoad} {
					if _, ok := s.CPU[p]; !ok {
						t.Errorf("%s: no CPU figure for the %s process", target, p)
					}
				}
				for _, proxy := range bench.Proxies() {
					if _, ok := s.CPU[targetProc(proxy)]; ok != slices.Contains(tt.targets, proxy) {
						t.Errorf("%s: a CPU figure for %s is there: %v, want %v", target, proxy, ok, !ok)
					}
				}
				if !strings.Contains(doc, "| "+target+" | 100 |") {
					t.Errorf("--markdown-file has no row for %s:\n%s", target, doc)
				}
			}
			if (rep.Scenario.Nginx != "") != slices.Contains(tt.targets, bench.TargetNginx) {
				t.Errorf("the report's nginx version %q", rep.Scenario.Nginx)
			}
			if (rep.Scenario.Caddy != "") != slices.Contains(tt.targets, bench.TargetCaddy) {
				t.Errorf("the report's Caddy version %q", rep.Scenario.Caddy)
			}
			if want := "(" + strings.Join(tt.targets, ", ") + ")"; !strings.Contains(doc, want) {
				t.Errorf("the Markdown does not list the targets that ran, %s:\n%s", want, doc)
			}
			for _, note := range tt.notes {
				if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, note) }) || !strings.Contains(doc, note) {
					t.Errorf("no note %q in the report (%q) or the Markdown:\n%s", note, rep.Notes, doc)
				}
			}
			if tt.backend == bench.BackendLight && !strings.Contains(doc, "the light bench backend") {
				t.Errorf("the Markdown does not name the light bench backend:\n%s", doc)
			}
			start, end := bench.ExternalSectionMarkers(tt.backend, tt.pin)
			for _, want := range []string{"what was here stays", start, end} {
				if !strings.Contains(doc, want) {
					t.Errorf("--markdown-file has no %q:\n%s", want, doc)
				}
			}
		})
	}
}

// runBenchExternalTiny runs pbac bench external (with --pin when pin) with
// --nginx nginx, --caddy caddy and --backend backend at 100 calls/s, two rounds of a second, into a
// Markdown file that had other text; it returns the JSON report and the
// file.
func runBenchExternalTiny(t *testing.T, nginx, caddy, backend string, pin bool) (*bench.ExternalReport, string) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build pbac: %v", err)
	}
	dir := t.TempDir()
	md, out := filepath.Join(dir, "RESULTS.md"), filepath.Join(dir, "external.json")
	if err := os.WriteFile(md, []byte("# Benchmark results\n\nwhat was here stays\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "external", "--rates", "100", "--duration", "1s", "--rounds", "2",
		"--warmup", "0", "--connections", "4", "--nginx", nginx, "--caddy", caddy, "--backend", backend, "-o", out, "--markdown-file", md)
	if pin {
		cmd.Args = append(cmd.Args, "--pin")
	}
	cmd.WaitDelay = 30 * time.Second
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pbac bench external: %v\n%s", err, b)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.ExternalReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("the JSON report: %v\n%s", err, raw)
	}
	doc, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	return &rep, string(doc)
}

// pinnable reports whether --pin can run here: this process may use 2
// CPUs at least.
func pinnable() bool {
	_, err := planPinning()
	return err == nil
}

func TestBenchExternalRefusesBadFlags(t *testing.T) {
	good := func() externalOptions {
		return externalOptions{rates: []float64{200, 1000}, duration: 10 * time.Second, warmup: time.Second,
			rounds: 5, connections: 64, tool: benchDefaultTool, backend: bench.BackendDemo}
	}
	tests := []struct {
		name   string
		change func(*externalOptions)
		want   string // "" accepted
	}{
		{"the defaults are accepted", func(*externalOptions) {}, ""},
		{"no rate", func(o *externalOptions) { o.rates = nil }, "--rates: name at least one rate"},
		{"a rate of 0", func(o *externalOptions) { o.rates = []float64{0} }, "--rates 0: each must be 1.."},
		{"a rate named twice", func(o *externalOptions) { o.rates = []float64{200, 200} }, "--rates: 200 is named twice"},
		{"no rounds", func(o *externalOptions) { o.rounds = 0 }, "--rounds 0: must be 1..50"},
		{"too many connections", func(o *externalOptions) { o.connections = 513 }, "--connections 513: must be 1..512"},
		{"no duration", func(o *externalOptions) { o.duration = 0 }, "--duration 0s"},
		{"a tool without its backend", func(o *externalOptions) { o.tool = "search_issues" }, "--tool \"search_issues\": must be <backend>.<tool>"},
		{"arguments that are not JSON", func(o *externalOptions) { o.args = "{" }, "--args: not valid JSON"},
		{"arguments that are not an object", func(o *externalOptions) { o.args = "[1]" }, "--args: must be a JSON object"},
		{"arguments that are null", func(o *externalOptions) { o.args = "null" }, "--args: must be a JSON object"},
		{"the light backend", func(o *externalOptions) { o.backend = bench.BackendLight }, ""},
		{"the light backend with a tool it does not serve", func(o *externalOptions) {
			o.backend, o.tool = bench.BackendLight, "jira.create_issue"
		}, "--backend light serves only jira.search_issues"},
		{"a backend there is not", func(o *externalOptions) { o.backend = "heavy" }, `--backend "heavy": must be "demo" or "light"`},
		{"the monitor backing off", func(o *externalOptions) { o.goSysmon = "backoff" }, ""},
		{"a monitor there is not", func(o *externalOptions) { o.goSysmon = "off" }, `--go-sysmon PBAC_GO_SYSMON="off": want "backoff" or "default"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.change(&o)
			err := o.validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// TestGatewayMonitor: the report says how the gateway's monitor thread
// waited, a GODEBUG of the bench's own that sets schedtrace included.
func TestGatewayMonitor(t *testing.T) {
	for _, tc := range []struct {
		want    string
		environ []string
		mode    string
	}{
		{"default", []string{"HOME=/h"}, "default"},
		{"backoff", []string{"HOME=/h"}, "backoff"},
		{"default", []string{"GODEBUG=schedtrace=1000"}, "operator"},
		{"backoff", []string{"GODEBUG=schedtrace=1000"}, "operator"},
	} {
		if got := gatewayMonitor(nil, tc.want, tc.environ); got != tc.mode {
			t.Errorf("gatewayMonitor(%q, %q) = %q, want %q", tc.want, tc.environ, got, tc.mode)
		}
	}
}
