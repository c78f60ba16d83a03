package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// TestConformanceClientOfficialSuite certifies the Go SDK's
// everything-client with --suite auth: the official suite's client
// scenarios run with the same command, and their checks are merged into
// the report as official rows.
func TestConformanceClientOfficialSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Go SDK's conformance client and runs the official suite")
	}
	if _, err := findOfficialSuite(""); err != nil {
		t.Skip(err)
	}
	bin, err := buildEverythingClient()
	if err != nil {
		t.Fatalf("build the everything-client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := goSDKClient(bin)
	cmd := newConformanceClientCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"--name", spec.name, "--command", spec.command, "--env", spec.env[0],
		"--phase", "flow", "--suite", "auth", "--json", "--timeout", "30s"})
	err = cmd.ExecuteContext(ctx)
	var rep ClientReport
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("the report is not JSON (%v, %v): %s", jerr, err, out.String())
	}
	if rep.OfficialSuite != "auth" || len(rep.Official) == 0 {
		t.Fatalf("no official rows (suite %q)", rep.OfficialSuite)
	}
	scenarios := map[string]int{}
	ownPassed, ownFailed := 0, 0
	for _, r := range rep.Results {
		if r.Pass {
			ownPassed++
		} else {
			ownFailed++
		}
	}
	offPassed, offFailed, offWarned := 0, 0, 0
	for _, r := range rep.Official {
		scenarios[r.Scenario]++
		switch r.Status {
		case "SUCCESS":
			offPassed++
		case "FAILURE":
			offFailed++
			t.Logf("official FAIL %s %s: %s", r.Scenario, r.Name, r.Message)
		default:
			offWarned++
		}
		if !strings.HasPrefix(r.Scenario, "auth/") {
			t.Errorf("scenario %q is not in the auth suite", r.Scenario)
		}
	}
	t.Logf("official: %d scenarios, %d passed, %d failed, %d warnings", len(scenarios), offPassed, offFailed, offWarned)
	if rep.Passed != ownPassed+offPassed || rep.Failed != ownFailed+offFailed || rep.Warnings != offWarned {
		t.Errorf("totals %d/%d/%d do not add up the checks", rep.Passed, rep.Failed, rep.Warnings)
	}
	if rep.Failed > 0 && err == nil {
		t.Error("failed checks but exit status 0")
	}
	// The Go SDK's client passes every check of the scenario it was
	// written for (suite 0.1.16, go-sdk v1.8.0: all 14 auth scenarios,
	// 229 checks).
	if scenarios["auth/metadata-default"] == 0 {
		t.Error("no checks of auth/metadata-default")
	}
	for _, r := range rep.Official {
		if r.Scenario == "auth/metadata-default" && r.Status != "SUCCESS" {
			t.Errorf("auth/metadata-default %s: %s %s", r.Name, r.Status, r.Message)
		}
	}
}

func TestOfficialRowsRendering(t *testing.T) {
	rep := ClientReport{Client: "c", OfficialSuite: "auth", Official: []OfficialResult{
		{Scenario: "auth/metadata-default", ID: "prm", Name: "PRM", Status: "SUCCESS", Message: "ok"},
		{Scenario: "auth/scope-step-up", ID: "esc", Name: "Escalation", Status: "FAILURE", Message: "no\nescalation"},
	}, Passed: 1, Failed: 1}
	var md, txt bytes.Buffer
	writeClientMarkdown(&md, []ClientReport{rep})
	printClientReport(&txt, rep)
	if !strings.Contains(md.String(), "| official:auth/metadata-default | MCP conformance suite | ✅ 1/1 |") ||
		!strings.Contains(md.String(), "| official:auth/scope-step-up | MCP conformance suite | ❌ 0/1: fail Escalation |") {
		t.Fatalf("markdown:\n%s", md.String())
	}
	if !strings.Contains(txt.String(), "FAIL    official:auth/scope-step-up") || !strings.Contains(txt.String(), "no escalation") ||
		!strings.Contains(txt.String(), "1 passed, 1 failed, 0 warnings") {
		t.Fatalf("text:\n%s", txt.String())
	}
}
