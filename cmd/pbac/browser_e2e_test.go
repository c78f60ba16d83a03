package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// chromiumPath is Debian's Chromium, which the browser tests drive.
const chromiumPath = "/usr/bin/chromium"

// TestDashboardInBrowser runs the Playwright tests of dashboard/e2e in
// headless Chromium against the real binary: the onboarding to the live 200
// and 403, the narrative demo for each user, a hot swap from the UI. Their
// screenshots go to $PBAC_ARTIFACTS (default dashboard/e2e/artifacts).
//
// It needs node, Debian's chromium and `npm ci` in dashboard/e2e; .ci/run
// installs them and sets PBAC_BROWSER_TESTS=1, which turns a missing tool
// into a failure instead of a skip.
func TestDashboardInBrowser(t *testing.T) {
	b := needBrowser(t)
	_, out := startUp(t, t.TempDir())
	m := dashboardLine.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no dashboard in the output:\n%s", out)
	}
	b.run(t, m[1]+"/ui/", nil, ".")
}

// browser is what the Playwright tests of dashboard/e2e run with.
type browser struct {
	node, dir, artifacts string
}

// needBrowser finds node, Chromium and playwright-core, or skips the test
// (fails it under PBAC_BROWSER_TESTS=1).
func needBrowser(t *testing.T) browser {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary and a browser")
	}
	required := os.Getenv("PBAC_BROWSER_TESTS") == "1"
	dir, err := filepath.Abs("../../dashboard/e2e")
	if err != nil {
		t.Fatal(err)
	}
	node, nodeErr := exec.LookPath("node")
	missing := ""
	switch {
	case nodeErr != nil:
		missing = "node"
	case !exists(chromiumPath):
		missing = chromiumPath + " (apt-get install chromium)"
	case !exists(filepath.Join(dir, "node_modules", "playwright-core")):
		missing = "playwright-core (npm ci in dashboard/e2e)"
	}
	if missing != "" {
		if required {
			t.Fatalf("the browser tests need %s", missing)
		}
		t.Skipf("the browser tests need %s; set PBAC_BROWSER_TESTS=1 to make this a failure", missing)
	}
	artifacts := os.Getenv("PBAC_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(dir, "artifacts")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	return browser{node: node, dir: dir, artifacts: artifacts}
}

// run runs the test files (or "." for every one) of dashboard/e2e against
// the dashboard at dashboardURL, with env added to their environment.
func (b browser) run(t *testing.T, dashboardURL string, env []string, files ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.node, append([]string{"--test", "--test-concurrency=1", "--test-reporter=spec"}, files...)...)
	cmd.Dir = b.dir
	cmd.Env = append(os.Environ(), "PBAC_DASHBOARD="+dashboardURL, "PBAC_ARTIFACTS="+b.artifacts, "CHROMIUM="+chromiumPath)
	cmd.Env = append(cmd.Env, env...)
	output, err := cmd.CombinedOutput()
	t.Logf("node --test (screenshots in %s):\n%s", b.artifacts, output)
	if err != nil {
		t.Fatalf("the browser tests failed: %v", err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
