package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the pbac command line in-process and returns its output.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

func TestPolicyTestRunsShippedRegoTests(t *testing.T) {
	out, _, err := run(t, "", "policy", "test")
	if err != nil {
		t.Fatalf("policy test: %v\n%s", err, out)
	}
	if !strings.Contains(out, " passed, 0 failed") {
		t.Fatalf("unexpected output:\n%s", out)
	}
}

func TestPolicyBuildIsDeterministicAndEvaluates(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar.gz"), filepath.Join(dir, "b.tar.gz")
	for _, p := range []string{a, b} {
		if _, stderr, err := run(t, "", "policy", "build", "-o", p); err != nil {
			t.Fatalf("policy build: %v\n%s", err, stderr)
		}
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if len(ba) == 0 || !bytes.Equal(ba, bb) {
		t.Fatalf("two builds of the same sources differ (%d and %d bytes)", len(ba), len(bb))
	}

	input := `{"client": {"client_id": "c1", "agent_provider": "ci-bot", "verified": true},
		"token": {"client_id": "c1", "scp": ["slack:write"], "aud": ["gw"], "iat": 100, "exp": 400},
		"request": {"backend": "slack", "method": "tools/call", "tool": "slack.post_message", "arguments": {}},
		"now": 200}`
	out, _, err := run(t, input, "policy", "eval", "pbac/tool_call", "--bundle", a, "--input", "-")
	if err != nil {
		t.Fatalf("policy eval: %v", err)
	}
	var d struct {
		Allow   bool
		Reasons []string
		Tier    string
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("decision is not JSON: %v\n%s", err, out)
	}
	if d.Allow || d.Tier != "ci_agent" || len(d.Reasons) == 0 {
		t.Fatalf("the CI bot may not post to Slack; got %+v", d)
	}
}

func TestPolicyBuildReportsRegoErrorsWithLocation(t *testing.T) {
	dir := t.TempDir()
	src := "package pbac\n\nregister := {\"allow\": false\n"
	if err := os.WriteFile(filepath.Join(dir, "broken.rego"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "", "policy", "build", dir, "-o", filepath.Join(dir, "out.tar.gz"))
	if err == nil || !strings.Contains(err.Error(), "broken.rego:") {
		t.Fatalf("err = %v, want a file:line:col error", err)
	}
	if _, statErr := os.Stat(filepath.Join(dir, "out.tar.gz")); statErr == nil {
		t.Fatal("a failed build wrote a bundle")
	}
}

func TestPolicyEvalRejectsBadInput(t *testing.T) {
	_, _, err := run(t, `{"client":`, "policy", "eval", "pbac/tool_call")
	if err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("err = %v, want an invalid-JSON error", err)
	}
	_, _, err = run(t, `{}`, "policy", "eval", "pbac/nope")
	if err == nil || !strings.Contains(err.Error(), "unknown entrypoint") {
		t.Fatalf("err = %v, want an unknown-entrypoint error", err)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(good, []byte("backends:\n  - name: jira\n    url: http://127.0.0.1:7000/mcp\n"), 0o600)
	_ = os.WriteFile(bad, []byte("backends:\n  - name: jira\n    url: http://127.0.0.1:7000/mcp\n    timout: 5s\n"), 0o600)
	if out, _, err := run(t, "", "config", "check", good); err != nil || !strings.Contains(out, "valid, 1 backend") {
		t.Fatalf("good config: %v %s", err, out)
	}
	if _, _, err := run(t, "", "config", "check", bad); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("bad config: err = %v, want the line of the misspelt key", err)
	}
}
