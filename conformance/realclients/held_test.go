package realclients

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// heldClients are the CLIs the held-call probe drives (the MCP Inspector
// has no model to call again; claude-code-hook is Claude Code with an
// Elicitation hook, DriveClaudeCodeElicitationHook).
var heldClients = []string{"claude-code", "claude-code-hook", "opencode", "codex", "gemini"}

// heldExpected is a client's line in testdata/held.json: whether its held
// call was audited a hold, and whether the call after the approval was
// allowed with it (held, approved, allowed: HeldRow.Passed).
type heldExpected struct {
	Held         bool `json:"held"`
	RetryAllowed bool `json:"retry_allowed"`
}

// TestRealClientsHeld drives the real agent CLIs through a call the
// gateway holds for a DBA's approval (held.go), each against a fresh
// `pbac up`, at most 2 minutes each. It runs with PBAC_REAL_CLIENTS=1
// (PBAC_REAL_CLIENTS=codex: one client) after `cd
// conformance/realclients && npm ci`, and fails only on a regression
// against testdata/held.json (what conformance/CLIENTS.md's "Held calls"
// section records): a client whose held call was held, approved and then
// allowed there and is not now, or was held there and is not now.
// $PBAC_REALCLIENTS_HELD_REPORT receives the Markdown table.
func TestRealClientsHeld(t *testing.T) {
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
	clients := heldClients
	if sw != "1" {
		clients = nil
		for _, c := range strings.Split(sw, ",") {
			if slices.Contains(heldClients, c) {
				clients = append(clients, c)
			}
		}
		if len(clients) == 0 {
			t.Skipf("none of %s drives a model that could call a held tool (%v)", sw, heldClients)
		}
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "held.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]heldExpected
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatalf("testdata/held.json: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Duration(len(clients))*2*time.Minute+time.Minute)
	defer cancel()
	var log strings.Builder
	rows, err := RunHeld(ctx, Config{Dir: dir, Binary: pbacBinary(t), Clients: clients, Log: &log}, 2*time.Minute)
	t.Logf("log:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		t.Logf("%s %s: %+v", r.Client, r.Version, r)
		w, known := want[r.Driver]
		switch {
		case !known:
			t.Logf("%s: not in testdata/held.json; add it (held %v, retry allowed %v)", r.Driver, r.Held, r.Passed())
		case w.RetryAllowed && !r.Passed(), w.Held && !r.Held:
			t.Errorf("regression: %s %s: held %v, approved %v, retry allowed %v %s, though testdata/held.json has %+v; audit: %s; the model saw %q, then %q",
				r.Driver, r.Version, r.Held, r.Approved, r.RetryAllowed, r.Err, w, r.Audit, r.ModelSaw, r.ModelSawRetry)
		case !w.RetryAllowed && r.Passed(), !w.Held && r.Held:
			t.Logf("%s %s does more now (held %v, retry allowed %v): update testdata/held.json and conformance/CLIENTS.md", r.Driver, r.Version, r.Held, r.Passed())
		}
	}
	report := HeldMarkdown(rows)
	if p := os.Getenv("PBAC_REALCLIENTS_HELD_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("\n%s", report)
}
