package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchSmoke runs a short pbac bench through the real assembly — the
// demo backend, the reverse proxy, the gateway with its authorization
// server and a registered CI bot — and reads its JSON.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway and sends a few hundred calls per mode")
	}
	out := filepath.Join(t.TempDir(), "results.json")
	stdout, stderr, err := run(t, "", "bench", "--rate", "200", "--duration", "1s", "--warmup", "200ms",
		"--modes", "gateway,direct,proxy", "--args-size", "300", "--json", "-o", out)
	if err != nil {
		t.Fatalf("pbac bench: %v\n%s\n%s", err, stderr, stdout)
	}
	var rep struct {
		Scenario struct {
			Tool      string `json:"tool"`
			ArgsBytes int    `json:"args_bytes"`
		} `json:"scenario"`
		Modes []struct {
			Name     string  `json:"name"`
			Requests int64   `json:"requests"`
			Errors   int64   `json:"errors"`
			P50      float64 `json:"p50_us"`
			P90      float64 `json:"p90_us"`
			P99      float64 `json:"p99_us"`
			Max      float64 `json:"max_us"`
		} `json:"modes"`
		AddedP50 *float64 `json:"added_p50_us"`
		AddedP99 *float64 `json:"added_p99_us"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json printed no JSON: %v\n%s", err, stdout)
	}
	if rep.Scenario.Tool != benchDefaultTool || rep.Scenario.ArgsBytes != 300 {
		t.Fatalf("scenario %+v", rep.Scenario)
	}
	want := []string{"direct", "proxy", "gateway"}
	if len(rep.Modes) != len(want) {
		t.Fatalf("modes %+v, want %v in that order", rep.Modes, want)
	}
	for i, m := range rep.Modes {
		if m.Name != want[i] || m.Requests != 200 || m.Errors != 0 {
			t.Fatalf("mode %d: %+v; want %s with 200 calls and no errors", i, m, want[i])
		}
		if !(m.P50 > 0 && m.P50 <= m.P90 && m.P90 <= m.P99 && m.P99 <= m.Max) {
			t.Fatalf("%s: percentiles out of order: %+v", m.Name, m)
		}
	}
	if rep.AddedP50 == nil || rep.AddedP99 == nil {
		t.Fatalf("no added latency: %s", stdout)
	}
	if file, err := os.ReadFile(out); err != nil || !bytes.Equal(file, []byte(stdout)) {
		t.Fatalf("-o wrote %q (%v), want what --json printed", file, err)
	}
}

// TestBenchAttackSmoke runs the attack mode briefly: the gateway is
// measured as a baseline and under attack, the token endpoint both ways,
// and the attackers' outcomes are reported. It asserts the shape of the
// report, not the figures (those are what the mode is for).
func TestBenchAttackSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway, two demo backends and attackers")
	}
	stdout, stderr, err := run(t, "", "bench", "--modes", "gateway", "--rate", "20", "--duration", "500ms",
		"--warmup", "100ms", "--attackers", "2", "--attack-size", "512", "--json")
	var rep struct {
		Scenario struct {
			Attackers  int    `json:"attackers"`
			AttackTool string `json:"attack_tool"`
		} `json:"scenario"`
		Modes []struct {
			Name     string `json:"name"`
			Requests int64  `json:"requests"`
			Errors   int64  `json:"errors"`
			Attack   *struct {
				Attackers int              `json:"attackers"`
				Requests  int64            `json:"requests"`
				Outcomes  map[string]int64 `json:"outcomes"`
				ArgBytes  int              `json:"arg_bytes"`
			} `json:"attack"`
		} `json:"modes"`
	}
	if jerr := json.Unmarshal([]byte(stdout), &rep); jerr != nil {
		t.Fatalf("pbac bench --attackers: %v; printed no JSON: %v\n%s\n%s", err, jerr, stdout, stderr)
	}
	if err != nil && !strings.Contains(err.Error(), "more than 1% errors") {
		t.Fatalf("pbac bench --attackers: %v\n%s", err, stderr)
	}
	if rep.Scenario.Attackers != 2 || rep.Scenario.AttackTool != benchAttackTool {
		t.Fatalf("scenario %+v", rep.Scenario)
	}
	want := []string{"gateway", "gateway:token", "gateway+attack", "gateway:token+attack"}
	if len(rep.Modes) != len(want) {
		t.Fatalf("rows %+v, want %v", rep.Modes, want)
	}
	for i, m := range rep.Modes {
		if m.Name != want[i] || m.Requests != 10 {
			t.Fatalf("row %d: %+v, want %s with 10 calls", i, m, want[i])
		}
		if i < 2 && m.Errors != 0 {
			t.Fatalf("baseline row %s failed %d calls", m.Name, m.Errors)
		}
	}
	a := rep.Modes[2].Attack
	if a == nil || a.Attackers != 2 || a.Requests == 0 || a.ArgBytes != 512 || len(a.Outcomes) == 0 {
		t.Fatalf("attack figures %+v", a)
	}
}

func TestBenchRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "0"}, "--rate 0: must be 1..100000"},
		{[]string{"--rate", "200000"}, "--rate 200000"},
		{[]string{"--duration", "11m"}, "--duration 11m0s"},
		{[]string{"--warmup", "-1s"}, "--warmup -1s"},
		{[]string{"--concurrency", "0"}, "--concurrency 0"},
		{[]string{"--args-size", "-5"}, "--args-size -5"},
		{[]string{"--tool", "search_issues"}, "must be <backend>.<tool>"},
		{[]string{"--modes", "direct,sidecar"}, `unknown mode "sidecar"`},
		{[]string{"--modes", "direct,direct"}, "direct is named twice"},
		{[]string{"--args", "{nope"}, "--args: not valid JSON"},
		{[]string{"--target-direct", "http://10.1.2.3:9000/mcp"}, "not a loopback address"},
		{[]string{"--target-direct", "127.0.0.1:9000"}, "not an absolute http(s) URL"},
		{[]string{"--target-gateway", "http://127.0.0.1:8080/mcp/jira"}, "needs --token"},
		{[]string{"--target-gateway", "http://127.0.0.1:8080/mcp/jira", "--token", "t"}, "needs --target-direct"},
		{[]string{"--token", "t"}, "only for --target-gateway"},
		{[]string{"--rate", "100000", "--duration", "5m"}, "more than 10000000"},
		{[]string{"--attackers", "65"}, "--attackers 65: must be 0..64"},
		{[]string{"--attackers", "2", "--attack-tool", "read_file"}, "--attack-tool \"read_file\": must be <backend>.<tool>"},
		{[]string{"--attackers", "2", "--attack-size", "8"}, "--attack-size 8"},
		{[]string{"--attackers", "2", "--saturate"}, "drop --saturate"},
		{[]string{"--attackers", "2", "--modes", "direct,proxy"}, "add gateway or opa-sidecar"},
		{[]string{"--attackers", "2", "--modes", "gateway", "--target-gateway", "http://127.0.0.1:8080/mcp/jira", "--token", "t"}, "drop --target-gateway"},
	} {
		_, _, err := run(t, "", append([]string{"bench"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("pbac bench %v: err = %v, want %q", c.args, err, c.want)
		}
	}
	// Remote targets are refused unless asked for; then only the flags'
	// combination decides.
	_, _, err := run(t, "", "bench", "--allow-remote", "--target-direct", "http://10.1.2.3:9000/mcp", "--rate", "0")
	if err == nil || strings.Contains(err.Error(), "loopback") {
		t.Errorf("--allow-remote: err = %v, want only the rate refused", err)
	}
}
