package realclients

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/modelapi"
)

// TestRealClients drives the real Claude Code and OpenCode CLIs through a
// real `pbac up` (built from this tree, or PBAC_E2E_BINARY), each against a
// fresh gateway, and writes one Markdown row per client to
// $PBAC_REALCLIENTS_REPORT (default: the test log). It runs with
// PBAC_REAL_CLIENTS=1 after `cd conformance/realclients && npm ci`.
func TestRealClients(t *testing.T) {
	if os.Getenv("PBAC_REAL_CLIENTS") == "" {
		t.Skip("set PBAC_REAL_CLIENTS=1 to drive the real Claude Code and OpenCode (after cd conformance/realclients && npm ci)")
	}
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	if err := Installed(dir); err != nil {
		t.Skipf("the CLIs are not installed: %v", err)
	}
	for _, tool := range []string{"script", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is needed: %v", tool, err)
		}
	}
	bin := pbacBinary(t)
	drivers := []struct {
		name  string
		drive func(context.Context, Env, Target) (Row, error)
	}{
		{"claude-code", DriveClaudeCode},
		{"opencode", DriveOpenCode},
	}
	var rows []Row
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			target := startGateway(t, bin)
			model, err := modelapi.Start(Calls())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = model.Close(cctx)
			})
			work := t.TempDir()
			browser, err := BrowserHelper(work)
			if err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			env := Env{Dir: dir, Work: work, Browser: browser, Model: model, Timeout: 90 * time.Second, Log: &log}
			row, err := d.drive(ctx, env, target)
			reqs, _ := json.Marshal(model.Requests())
			t.Logf("commands:\n%s\nmodel requests: %s", log.String(), reqs)
			if err != nil {
				t.Fatalf("%s: %v", d.name, err)
			}
			rows = append(rows, row)
			for _, f := range row.Failed() {
				t.Errorf("%s: %s", d.name, f)
			}
			t.Logf("the model saw for the denied call: %q", row.ModelSawDenied)
		})
	}
	report := Markdown(rows)
	if p := os.Getenv("PBAC_REALCLIENTS_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("\n%s", report)
}

// pbacBinary builds cmd/pbac from this tree once (or takes
// PBAC_E2E_BINARY).
func pbacBinary(t *testing.T) string {
	if bin := os.Getenv("PBAC_E2E_BINARY"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "pbac")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/pbac-gateway/pbac/cmd/pbac").CombinedOutput()
	if err != nil {
		t.Fatalf("build pbac: %v\n%s", err, out)
	}
	return bin
}

// startGateway runs `pbac up` on 127.0.0.1 with a fresh data dir behind a
// recording observer whose address is the gateway's public URL and issuer.
func startGateway(t *testing.T, bin string) Target {
	t.Helper()
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + pub.Addr().String()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	dataDir := t.TempDir()
	cmd := exec.Command(bin, "up", "--listen", listen, "--admin-listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "PBAC_PUBLIC_URL="+base)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ready, exited := make(chan struct{}), make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		wg.Wait()
	})
	select {
	case <-ready:
	case <-exited:
		t.Fatal("pbac up exited before it was ready")
	case <-time.After(90 * time.Second):
		t.Fatal("pbac up did not come up")
	}
	up, _ := url.Parse("http://" + listen)
	obs := clientcheck.NewObserver(clientcheck.ObserverConfig{Upstream: up, SignInUser: "alice", SignInPassword: asrv.DemoPassword})
	srv := &http.Server{Handler: obs, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(pub) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close()
		}
		<-served
	})
	raw, err := os.ReadFile(filepath.Join(dataDir, "demo-agents.json"))
	if err != nil {
		t.Fatalf("read the demo agents: %v", err)
	}
	var agents []struct {
		Name     string `json:"name"`
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal(raw, &agents); err != nil {
		t.Fatal(err)
	}
	id := ""
	for _, a := range agents {
		if a.Name == "claude-code" {
			id = a.ClientID
		}
	}
	if id == "" {
		t.Fatalf("no claude-code agent in %s", raw)
	}
	return Target{Base: base, ClientID: id, Observer: obs, AuditFile: filepath.Join(dataDir, "audit", "audit.jsonl")}
}
