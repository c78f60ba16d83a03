package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// TestApprovalTypeScriptSDK: a client no one here wrote, the TypeScript
// SDK's (conformance/clients, pinned; revision 2025-11-25), meets the CI
// bot's held deploy on the real `pbac up`. It declared URL elicitation,
// so the SDK raises its own UrlElicitationRequiredError from the gateway's
// -32042, with the approval page; bob approves through the admin API; the
// same call again deploys.
func TestApprovalTypeScriptSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary and the TypeScript SDK")
	}
	dir, ok := nodeClientsDir()
	if !ok {
		t.Skip("conformance/clients/node_modules is absent: (cd conformance/clients && npm ci) installs the TypeScript SDK")
	}
	data := filepath.Join(t.TempDir(), "data")
	_, gw, adm := startUpArgs(t, nil, "--data-dir", data)
	bot := demoAgent(t, data, "ci-bot")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tok, err := oauthtest.ClientCredentials(ctx, gw, bot.ClientID, bot.ClientSecret, gw+"/mcp", "jenkins:read", "jenkins:deploy")
	if err != nil {
		t.Fatal(err)
	}
	node := exec.CommandContext(ctx, "node", filepath.Join(dir, "ts-sdk-approval.mjs"), gw+"/mcp", tok.AccessToken,
		"jenkins.trigger_deploy", `{"job":"deploy-prod","environment":"production"}`)
	node.Dir, node.Stderr = dir, os.Stderr
	stdin, _ := node.StdinPipe()
	stdout, _ := node.StdoutPipe()
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = node.Process.Kill(); _ = node.Wait() }()
	lines := bufio.NewScanner(stdout)
	next := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("the TypeScript client stopped: %v", lines.Err())
		}
		var m map[string]any
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("the TypeScript client printed %q: %v", lines.Text(), err)
		}
		t.Logf("TypeScript SDK: %s", lines.Text())
		return m
	}
	if c := next(); c["step"] != "connected" {
		t.Fatalf("first line %v", c)
	}
	first := next()
	page, _ := first["url"].(string)
	if first["held"] != true || first["code"] != float64(-32042) || first["mode"] != "url" ||
		!regexp.MustCompile(`/ui/approvals/apr_[a-z2-7]{26}$`).MatchString(page) || first["elicitationId"] != path.Base(page) {
		t.Fatalf("the SDK made of the held call: %v", first)
	}
	// bob approves through the admin API.
	admTok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, adm+"/admin/approvals/"+url.PathEscape(path.Base(page))+"/approve",
		strings.NewReader(`{"approver":"bob","comment":"from the TypeScript SDK test"}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admTok)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bob approving: %d %s", resp.StatusCode, body)
	}
	if _, err := io.WriteString(stdin, "approved\n"); err != nil {
		t.Fatal(err)
	}
	retry := next()
	if retry["isError"] != false || !strings.Contains(retry["text"].(string), "deploy-prod") {
		t.Fatalf("the retry after bob's approval: %v", retry)
	}
}
