package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/bench"
)

// TestBenchExternal runs pbac bench external for real but tiny: the backend,
// nginx and pbac up as separate processes, two rounds of a second at 100
// calls/s. It checks that every target answered and figures came out,
// never how fast: timings on a shared machine are not a test's business.
func TestBenchExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary, nginx and pbac up")
	}
	if _, ok := findNginx("nginx"); !ok {
		t.Skip("nginx is not installed (Debian: apt-get install nginx-light): pbac bench external's nginx target needs it")
	}
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
		"--warmup", "0", "--connections", "4", "-o", out, "--markdown-file", md)
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
	if rep.Scenario.Nginx == "" {
		t.Error("the report names no nginx version")
	}
	for _, target := range bench.Targets() {
		ss := rep.Summaries(target)
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
		for _, p := range bench.Procs() {
			if _, ok := s.CPU[p]; !ok {
				t.Errorf("%s: no CPU figure for the %s process", target, p)
			}
		}
	}
	doc, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"what was here stays", bench.ExternalSectionStart, "| nginx | 100 |", "| gateway | 100 |", bench.ExternalSectionEnd} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("--markdown-file has no %q:\n%s", want, doc)
		}
	}
}
