package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/ebpf"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// TestProbeFindsTheGatewaysMarkers: every marker the probe attaches to is
// a function of the gateway under the name the probe looks for, in this
// process and in the symbol table of the built pbac binary (which
// `pbac probe --pid` reads). The package once moved (host → gateway) and
// the probe kept looking under the old path, which only --pid noticed.
func TestProbeFindsTheGatewaysMarkers(t *testing.T) {
	addrs := gateway.ProbeMarkers()
	want := map[string]bool{}
	for _, name := range ebpf.MarkerNames() {
		sym := ebpf.MarkerPrefix + name
		want[sym] = true
		addr, ok := addrs[name]
		if !ok {
			t.Errorf("gateway.ProbeMarkers has no %s", name)
			continue
		}
		if got := runtime.FuncForPC(addr).Name(); got != sym {
			t.Errorf("marker %s is %s in this process, the probe looks for %s", name, got, sym)
		}
	}
	if testing.Short() {
		return
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build pbac: %v", err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		delete(want, s.Name)
	}
	for sym := range want {
		t.Errorf("the pbac binary has no symbol %s", sym)
	}
}

// TestProbeAttachesToPbacUp runs the documented `pbac probe --pid` against
// the real `pbac up` while a go-sdk client calls a tool through it: the
// probe attaches by the executable's symbols, with the socket stages on
// the ports the process listens on, and assembles the calls.
func TestProbeAttachesToPbacUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if err := ebpf.Check(); err != nil {
		t.Skip(err.Error())
	}
	data := filepath.Join(t.TempDir(), "data")
	up, gw, _ := startUpArgs(t, nil, "--data-dir", data)
	bot := demoAgent(t, data, "ci-bot")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tok, err := oauthtest.ClientCredentials(ctx, gw, bot.ClientID, bot.ClientSecret, gw+"/mcp", "jira:read")
	if err != nil {
		t.Fatal(err)
	}
	conns := &http.Transport{}
	defer conns.CloseIdleConnections()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "pbac-probe-e2e", Version: "1"}, nil).Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             gw + "/mcp",
		HTTPClient:           &http.Client{Transport: &oauthtest.BearerTransport{Token: tok.AccessToken, Base: conns}},
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	probe := exec.CommandContext(ctx, bin, "probe", "--pid", strconv.Itoa(up.Process.Pid), "--duration", "6s", "--json")
	probe.Stdout, probe.Stderr = &stdout, &stderr
	if err := probe.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- probe.Wait() }()
	// Calls until the probe has finished: it says when it has attached,
	// and the calls before that are not counted. Each call is on a
	// connection of its own, which the client closes after the answer, as
	// curl does: the kernel tends to place the next connection where the
	// last one was, and the probe must not take the last one's end for the
	// next request's arrival (it would then show the pause between calls
	// as the receive stage).
	const pause = 100 * time.Millisecond
	calls := 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("pbac probe --pid: %v\n%s", err, stderr.String())
			}
			running = false
		case <-time.After(pause):
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "jira.search_issues", Arguments: map[string]any{"query": "SEC"}})
			if err != nil || res.IsError {
				t.Fatalf("call %d: %v %+v", calls, err, res)
			}
			conns.CloseIdleConnections()
			calls++
		}
	}
	var sum ebpf.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("the probe's summary: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("%d calls made, the probe assembled %d (sockets %v): overhead p50 %.0f µs, backend p50 %.0f µs; %s",
		calls, sum.Calls, sum.Sockets, sum.Overhead.P50, sum.Backend.P50, bytes.TrimSpace(stderr.Bytes()))
	if !sum.Sockets || sum.Calls < int64(calls/3) || sum.Calls == 0 {
		t.Fatalf("the probe assembled %d calls (sockets %v) of the %d made while it ran:\n%s", sum.Calls, sum.Sockets, calls, stdout.String())
	}
	i := slices.IndexFunc(sum.Stages, func(s ebpf.StageFigures) bool { return s.Name == "receive" })
	if i < 0 {
		t.Fatalf("no receive stage in the probe's summary:\n%s", stdout.String())
	}
	if recv := sum.Stages[i]; recv.P50 >= float64(pause.Microseconds())/2 {
		t.Fatalf("receive (arrival → handler) p50 %.0f µs with %v between calls: the arrival taken is not this request's\n%s",
			recv.P50, pause, stdout.String())
	}
}
