package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/conformance/authsuite"
)

// startUpWith runs the real `pbac up` with extra arguments and returns its
// base URL.
func startUpWith(t *testing.T, dataDir string, extra ...string) string {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build pbac: %v", err)
	}
	args := append([]string{"up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	ready := make(chan string, 1)
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(stdout)
		base := ""
		for sc.Scan() {
			if m := upReady.FindStringSubmatch(sc.Text()); m != nil {
				base = m[1]
			}
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				once.Do(func() { ready <- base })
			}
		}
	}()
	select {
	case base := <-ready:
		return base
	case <-time.After(90 * time.Second):
		t.Fatal("pbac up did not come up")
		return ""
	}
}

// TestConformanceServerAgainstUp runs the whole MCP authorization suite
// against the real `pbac up` binary, with an echo backend behind it for the
// no-passthrough check, through the `conformance server` command. Every
// check must pass, or be skipped for a reason listed here.
func TestConformanceServerAgainstUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	echo := httptest.NewServer(authsuite.EchoBackend())
	defer echo.Close()
	dataDir := t.TempDir()
	conf := filepath.Join(t.TempDir(), "pbac.yaml")
	if err := os.WriteFile(conf, []byte("demo: true\nbackends:\n  - name: echo\n    url: "+echo.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := startUpWith(t, dataDir, "--config", conf)

	cmd := newConformanceServerCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"--url", base + "/mcp/jira", "--ours", "--data-dir", dataDir, "--echo-url", base + "/mcp/echo", "--json"})
	err := cmd.Execute()
	var rep authsuite.Report
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("the report is not JSON (%v): %s", jerr, out.String())
	}
	// No check may be skipped against our own deployment: --ours supplies
	// everything every check needs.
	justified := map[string]string{}
	for _, r := range rep.Results {
		switch {
		case r.Status == authsuite.Fail:
			t.Errorf("FAIL %s (%s): %s", r.ID, r.Ref, r.Message)
		case r.Status == authsuite.Skip && justified[r.ID] == "":
			t.Errorf("SKIP %s: %s (not expected against our own deployment)", r.ID, r.Message)
		default:
			t.Logf("%s %s: %s", strings.ToUpper(string(r.Status)), r.ID, r.Message)
		}
	}
	if err != nil && rep.Failed == 0 {
		t.Fatalf("the command failed: %v\n%s", err, out.String())
	}
	t.Logf("%d passed, %d failed, %d skipped", rep.Passed, rep.Failed, rep.Skipped)
	if len(rep.Results) < 40 {
		t.Errorf("only %d checks ran", len(rep.Results))
	}
}
