package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// walkthroughDir holds the walkthrough's third-party MCP server
// (@modelcontextprotocol/server-filesystem, pinned by its package-lock.json;
// .ci/run installs it with npm ci).
const walkthroughDir = "testdata/walkthrough"

// readmeBlocks returns the ```sh blocks of the README section headed
// heading, in order.
func readmeBlocks(t *testing.T, heading string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", heading)
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var blocks []string
	for _, part := range strings.Split(section, "```sh\n")[1:] {
		block, _, ok := strings.Cut(part, "```")
		if !ok {
			t.Fatalf("an unclosed code block in %q", heading)
		}
		blocks = append(blocks, block)
	}
	return blocks
}

// TestREADMEWalkthrough runs the README's "Review a third-party server's
// tools" as written — its second and third shell blocks, verbatim but for
// the data dir and the two addresses — against the real binary serving
// the real @modelcontextprotocol/server-filesystem over stdio, configured
// as its first block says: the review list shows the server's tools,
// cataloguing two of them pins their definitions, and the CI bot reads
// the file, is refused the write (its tier) and an uncatalogued tool.
func TestREADMEWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	server, err := filepath.Abs(filepath.Join(walkthroughDir, "node_modules", ".bin", "mcp-server-filesystem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(server); err != nil {
		if os.Getenv("PBAC_WALKTHROUGH") != "" {
			t.Fatalf("PBAC_WALKTHROUGH is set and the server is not installed (cd cmd/pbac/%s && npm ci): %v", walkthroughDir, err)
		}
		t.Skipf("cd cmd/pbac/%s && npm ci first (or set PBAC_WALKTHROUGH=1 to fail here): %v", walkthroughDir, err)
	}
	for _, tool := range []string{"bash", "curl", "jq", "node"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is needed: %v", tool, err)
		}
	}
	blocks := readmeBlocks(t, "## Review a third-party server's tools")
	if len(blocks) != 3 {
		t.Fatalf("the walkthrough has %d shell blocks, want 3", len(blocks))
	}
	if !strings.Contains(blocks[0], "@modelcontextprotocol/server-filesystem@2026.8.31") {
		t.Fatalf("the README installs another server version than %s pins:\n%s", walkthroughDir, blocks[0])
	}
	began := time.Now()
	w := t.TempDir()
	if err := os.MkdirAll(filepath.Join(w, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(w, "files", "notes.txt")
	if err := os.WriteFile(notes, []byte("hello from the walkthrough\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(w, "pbac.yaml")
	body := "data_dir: " + filepath.Join(w, "data") + "\ndemo: false\ndemo_agents: true\nbackends:\n  - name: files\n    command: [" +
		server + ", " + filepath.Join(w, "files") + "]\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, gw, adm := startUpArgs(t, nil, "--config", cfg)
	script := strings.NewReplacer("/tmp/pbac-review", w, "http://127.0.0.1:8080", gw, "http://127.0.0.1:8081", adm).
		Replace(blocks[1] + blocks[2])
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	sh := exec.CommandContext(ctx, "bash", "-c", script)
	var got bytes.Buffer
	sh.Stdout, sh.Stderr = &got, &got
	if err := sh.Run(); err != nil {
		t.Fatalf("the walkthrough's commands failed: %v\n%s", err, got.String())
	}
	t.Logf("the walkthrough took %s from pbac up's start:\n%s", time.Since(began).Round(100*time.Millisecond), got.String())
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`\{"tools":\{"files":\d+\}\}`),
		regexp.MustCompile(`files\.read_text_file  Read the complete contents`),
		regexp.MustCompile(`\{"tool":"files\.read_text_file","status":"pinned","scope":"drive:read"\}`),
		regexp.MustCompile(`\{"tool":"files\.write_file","status":"pinned","scope":"drive:write"\}`),
		regexp.MustCompile(`(?m)^"name":"read_text_file"$`),
		regexp.MustCompile(`"text":"hello from the walkthrough\\n"`),
		regexp.MustCompile(`"reasons":\["ci_agent tier does not grant drive:write"`),
		regexp.MustCompile(`"reasons":\["tool files\.move_file is not in the catalogue"\]`),
		regexp.MustCompile(`allow  admin/catalogue-tool  files\.write_file  tool files\.write_file catalogued by admin token as drive:write`),
		regexp.MustCompile(`deny  tools/call  files\.write_file  ci_agent tier does not grant drive:write`),
	} {
		if !want.MatchString(got.String()) {
			t.Errorf("the walkthrough's output lacks %s", want)
		}
	}
	if strings.Contains(got.String(), `"name":"write_file"`) {
		t.Error("the CI bot was shown write_file")
	}
	if b, err := os.ReadFile(notes); err != nil || string(b) != "hello from the walkthrough\n" {
		t.Errorf("the file was changed: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(w, "files", "moved.txt")); err == nil {
		t.Error("the uncatalogued move_file ran")
	}
}
