package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/conformance/authsuite"
)

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
	// The AS lets one resource server introspect (asrv.introspection_clients).
	conf, rsID, rsSecret := introspectorConfig(t, t.TempDir())
	raw, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	// A short rotation grace period, so the refresh-rotation check sees
	// both sides of it quickly.
	if err := os.WriteFile(conf, append(raw, []byte("  refresh_reuse_grace: 1s\ndemo: true\nbackends:\n  - name: echo\n    url: "+echo.URL+"\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	base, up := startUp(t, dataDir, "--config", conf)
	// Whose grants open a session on the echo backend is the tenant's
	// policy data to say (pbac/method): here, jira's.
	mapBackends(t, up.String(), dataDir, map[string]string{"echo": "jira"})

	cmd := newConformanceServerCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"--url", base + "/mcp/jira", "--ours", "--data-dir", dataDir, "--echo-url", base + "/mcp/echo", "--json",
		"--introspection-client-id", rsID, "--introspection-client-secret", rsSecret, "--refresh-reuse-grace", "1s"})
	err = cmd.Execute()
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
