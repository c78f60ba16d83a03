package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
)

// buildEverythingClient builds the Go SDK's conformance client (the
// version in go.mod) once per test run.
var buildEverythingClient = sync.OnceValues(func() (string, error) {
	dir, err := mkTemp()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "everything-client")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-client").CombinedOutput()
	if err != nil {
		return "", &exec.ExitError{Stderr: out}
	}
	return bin, nil
})

// TestConformanceClientGoSDK certifies the Go SDK's everything-client (a
// client no one here wrote) through `pbac conformance client`: every phase
// against a fresh tenant. Its results are those published in
// conformance/CLIENTS.md; a change either way fails here.
func TestConformanceClientGoSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the Go SDK's conformance client")
	}
	bin, err := buildEverythingClient()
	if err != nil {
		t.Fatalf("build the everything-client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	spec := goSDKClient(bin)
	cmd := newConformanceClientCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"--name", spec.name, "--command", spec.command, "--env", spec.env[0], "--json", "--timeout", "1m"})
	err = cmd.ExecuteContext(ctx)
	var rep ClientReport
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("the report is not JSON (%v, %v): %s", jerr, err, out.String())
	}
	if rep.Failed > 0 && err == nil {
		t.Error("failed checks but exit status 0")
	}
	want := map[string]bool{
		"reads protected resource metadata after the 401":    true,
		"finds the authorization server (RFC 8414 metadata)": true,
		"registers (DCR) or uses a pre-registered client":    true,
		"PKCE with S256": true,
		"sends resource (the MCP server's URL) in authorization and token requests": true,
		"uses the token in the Authorization header":                                true,
		"steps up on 403 insufficient_scope":                                        true,
		"never sends the token elsewhere":                                           true,
		"refreshes an expired token":                                                false,
		"starts a new session after 404 on an expired session":                      false,
	}
	for _, r := range rep.Results {
		t.Logf("%-5v %-8s %s: %s", r.Pass, r.Phase, r.Name, r.Message)
		if w, ok := want[r.Name]; ok && w != r.Pass {
			t.Errorf("%s: pass=%v, want %v (update conformance/CLIENTS.md if the client changed): %s", r.Name, r.Pass, w, r.Message)
		}
	}
	if len(rep.Results) != len(want)+3 {
		t.Errorf("%d results, want %d", len(rep.Results), len(want)+3)
	}
}

// TestConformanceClientNode certifies the npm clients in conformance/clients
// (the TypeScript SDK's client with its OAuth provider, and mcp-remote) the
// way --all does. The table is the product: a third-party client may fail a
// check, so the test requires that the harness runs every phase and
// reports, and that the checks each client demonstrably passes (published
// in conformance/CLIENTS.md) still pass.
func TestConformanceClientNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the npm MCP clients against throwaway tenants")
	}
	dir, ok := nodeClientsDir()
	if !ok {
		t.Skip("conformance/clients/node_modules is absent: (cd conformance/clients && npm ci) installs the TypeScript SDK and mcp-remote")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("the harness's $BROWSER helper (mcp-remote signs in through it) needs curl")
	}
	flow := []string{
		"reads protected resource metadata after the 401",
		"finds the authorization server (RFC 8414 metadata)",
		"registers (DCR) or uses a pre-registered client",
		"PKCE with S256",
		"sends resource (the MCP server's URL) in authorization and token requests",
		"uses the token in the Authorization header",
		"never sends the token elsewhere",
		"refreshes an expired token",
	}
	mustPass := map[string][]string{
		"TypeScript SDK": flow,
		"mcp-remote":     append(slices.Clone(flow), "starts a new session after 404 on an expired session"),
	}
	specs := nodeClients(dir)
	if len(specs) != 2 {
		t.Fatalf("%d node clients, want 2", len(specs))
	}
	for _, spec := range specs {
		t.Run(strings.Fields(spec.name)[0], func(t *testing.T) {
			var want []string
			for prefix, w := range mustPass {
				if strings.HasPrefix(spec.name, prefix) {
					want = w
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			cmd := newConformanceClientCommand()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(io.Discard)
			cmd.SetArgs([]string{"--name", spec.name, "--command", spec.command, "--json", "--timeout", "1m"})
			err := cmd.ExecuteContext(ctx)
			var rep ClientReport
			if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
				t.Fatalf("the harness produced no report (%v, %v): %s", jerr, err, out.String())
			}
			if len(rep.Results) != 13 || rep.Passed+rep.Failed != len(rep.Results) {
				t.Fatalf("%d results (%d passed, %d failed), want 13", len(rep.Results), rep.Passed, rep.Failed)
			}
			if rep.Failed > 0 && err == nil {
				t.Error("failed checks but exit status 0")
			}
			got := map[string]clientcheck.Result{}
			for _, r := range rep.Results {
				t.Logf("%-5v %-8s %s: %s", r.Pass, r.Phase, r.Name, r.Message)
				got[r.Name] = r
			}
			for _, name := range want {
				r, ok := got[name]
				if !ok {
					t.Errorf("no result for %q", name)
				} else if !r.Pass {
					t.Errorf("%s: %s (it passed before; update conformance/CLIENTS.md if the client changed)", name, r.Message)
				}
			}
		})
	}
}

func TestClientReportRendering(t *testing.T) {
	rep := ClientReport{Client: "c", Results: []clientcheck.Result{
		{Name: "PKCE with S256", Ref: "RFC 7636", Phase: "flow", Pass: true, Message: "ok"},
		{Name: "refreshes", Ref: "OAuth 2.1", Phase: "expiry", Message: "no | refresh"},
	}, Passed: 1, Failed: 1}
	var md, txt bytes.Buffer
	writeClientMarkdown(&md, []ClientReport{rep})
	printClientReport(&txt, rep)
	if !strings.Contains(md.String(), "| PKCE with S256 | RFC 7636 | ✅ pass |") || !strings.Contains(md.String(), `❌ no \| refresh`) {
		t.Fatalf("markdown:\n%s", md.String())
	}
	if !strings.Contains(txt.String(), "FAIL    expiry") || !strings.Contains(txt.String(), "1 passed, 1 failed") {
		t.Fatalf("text:\n%s", txt.String())
	}
}

func mkTemp() (string, error) { return os.MkdirTemp("", "pbac-conformance-client-") }
