package realclients

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRealClients drives the real agent CLIs (Drivers) through a
// real `pbac up` (built from this tree, or PBAC_E2E_BINARY), each against a
// fresh gateway, and writes the Markdown table to $PBAC_REALCLIENTS_REPORT
// (and the test log). It runs with PBAC_REAL_CLIENTS=1 after
// `cd conformance/realclients && npm ci`; PBAC_REAL_CLIENTS=opencode runs
// one client. It fails only on a regression against
// testdata/expected.json (what conformance/CLIENTS.md documents): a step
// that passed there and fails now; a step that passes now though it
// failed there is logged, to update the file (pbac conformance client
// --client all --markdown-file conformance/CLIENTS.md rewrites both).
func TestRealClients(t *testing.T) {
	sw := os.Getenv("PBAC_REAL_CLIENTS")
	if sw == "" {
		t.Skip("set PBAC_REAL_CLIENTS=1 to drive the real agent CLIs (after cd conformance/realclients && npm ci)")
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
	clients := Names()
	if sw != "1" {
		clients = strings.Split(sw, ",")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 14*time.Minute)
	defer cancel()
	var log strings.Builder
	rows, err := Run(ctx, Config{Dir: dir, Binary: pbacBinary(t), Clients: clients, Log: &log})
	t.Logf("log:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	exp, err := ReadExpected(filepath.Join("testdata", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	regressions, news := exp.Compare(rows)
	for _, r := range regressions {
		t.Errorf("regression: %s", r)
	}
	for _, n := range news {
		t.Logf("update testdata/expected.json and conformance/CLIENTS.md: %s", n)
	}
	for _, r := range rows {
		t.Logf("%s: what the model (Inspector: the person) saw for the denied call: %q; refresh: %s; step-up: %s; new session after 404: %s", r.Client, r.ModelSawDenied, r.Refresh, r.StepUp, r.NewSession)
	}
	report := Markdown(rows)
	if p := os.Getenv("PBAC_REALCLIENTS_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("\n%s", report)
}

// pbacBinary builds cmd/pbac from this tree (or takes PBAC_E2E_BINARY).
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
