package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/logtest"
	"github.com/pbac-gateway/pbac/rego"
)

// killableUp is one `pbac up` on a data dir, to be killed with SIGKILL.
type killableUp struct {
	cmd    *exec.Cmd
	base   string
	admin  replicaAdmin
	output string
	logs   *logtest.Buffer // its standard error
}

// startKillableUp runs `pbac up` on dataDir and waits until it is up.
func startKillableUp(t *testing.T, dataDir string, extra ...string) *killableUp {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build pbac: %v", err)
	}
	cmd := exec.Command(bin, append([]string{"up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "warn"}, extra...)...)
	stdout, _ := cmd.StdoutPipe()
	logs := &logtest.Buffer{}
	cmd.Stderr = io.MultiWriter(os.Stderr, logs)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		var out strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				ready <- out.String()
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var out string
	select {
	case out = <-ready:
	case <-time.After(90 * time.Second):
		t.Fatal("pbac up did not come up")
	}
	p := &killableUp{cmd: cmd, output: out, logs: logs}
	if m := upReady.FindStringSubmatch(out); m != nil {
		p.base = m[1]
	}
	m := adminReady.FindStringSubmatch(out)
	if m == nil || p.base == "" {
		t.Fatalf("no gateway or admin API address in the output:\n%s", out)
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, adminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	p.admin = replicaAdmin{base: m[1], token: strings.TrimSpace(string(tok))}
	return p
}

// kill ends the process with SIGKILL: no shutdown path runs.
func (p *killableUp) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

// ciBotToken gets the CI bot a token for Jira.
func (p *killableUp) ciBotToken(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`ci-bot\s+ci-bot\s+client_id=(\S+) client_secret=(\S+)`).FindStringSubmatch(p.output)
	if m == nil {
		t.Fatalf("no ci-bot credentials in the output:\n%s", p.output)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"jira:read jira:write"}, "resource": {p.base + "/mcp"}}
	tok, _ := (&proc{base: p.base}).postForm(t, asrv.PathToken, m[1], m[2], form)["access_token"].(string)
	if tok == "" {
		t.Fatal("no token for the ci bot")
	}
	return tok
}

// ciBotWrites says whether the CI bot's Jira comment with tok is allowed
// (false: denied by policy for jira:write).
func (p *killableUp) ciBotWrites(t *testing.T, tok string) bool {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add_comment","arguments":{"key":"SEC-12","body":"durable"}}}`
	req, _ := http.NewRequest(http.MethodPost, p.base+"/mcp/jira", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var answer struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	_ = json.Unmarshal(raw, &answer)
	d, denied := contract.DenialOf(answer.Result)
	switch {
	case resp.StatusCode != http.StatusOK:
		t.Fatalf("ci bot's jira comment: %d %s", resp.StatusCode, raw)
	case denied && strings.Contains(strings.Join(d.Reasons, " "), "jira:write"):
		return false
	case denied || answer.Error != nil:
		t.Fatalf("ci bot's jira comment refused for another reason: %s", raw)
	}
	return true
}

// versions reads /admin/policy/versions.
func (p *killableUp) versions(t *testing.T) (active map[string]any, events []map[string]any) {
	t.Helper()
	code, raw := p.admin.do(t, http.MethodGet, "/admin/policy/versions", nil)
	if code != http.StatusOK {
		t.Fatalf("versions: %d %s", code, raw)
	}
	var out struct {
		Active map[string]any   `json:"active"`
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out.Active, out.Events
}

// TestPolicyChangesSurviveKill drives the real `pbac up`: a data change, an
// uploaded bundle and a rollback, each followed by SIGKILL as soon as the
// admin API answered 200 and a start on the same data dir, are what decides
// after the restart; /admin/policy/versions shows each change with its
// source and author.
func TestPolicyChangesSurviveKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dataDir := t.TempDir()
	p := startKillableUp(t, dataDir)
	tok := p.ciBotToken(t)
	if !p.ciBotWrites(t, tok) {
		t.Fatal("the shipped policy denies the ci bot's jira comment")
	}
	shipped, err := rego.BuildShipped(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	demoted := withoutGrant(t, shipped.Data, "ci_agent", "jira", "write")

	// A bundle: the shipped policy with data of its own (the grant back).
	var d map[string]any
	if err := json.Unmarshal(shipped.Data, &d); err != nil {
		t.Fatal(err)
	}
	d["durable_test"] = time.Now().UnixNano()
	bundle := &rego.Bundle{Wasm: shipped.Wasm, Modules: shipped.Modules}
	bundle.Data, _ = json.Marshal(d)
	var tgz bytes.Buffer
	if err := bundle.WriteTarGz(&tgz); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name, method, path string
		body               []byte
		writes             bool
		kind, source       string
	}{
		{"data change", http.MethodPut, "/admin/policy/data", demoted, false, "data_updated", "admin data update"},
		{"uploaded bundle", http.MethodPost, "/admin/policy/bundles", tgz.Bytes(), true, "activated", "admin upload"},
		{"rollback", http.MethodPost, "/admin/policy/rollback", nil, false, "rolled_back", "rollback:admin data update"},
	}
	for _, s := range steps {
		code, raw := p.admin.do(t, s.method, s.path, s.body)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", s.name, code, raw)
		}
		p.kill(t) // at once: the 200 must mean the change is on disk
		var changed struct {
			Version string `json:"version"`
		}
		_ = json.Unmarshal(raw, &changed)

		p = startKillableUp(t, dataDir)
		if got := p.ciBotWrites(t, p.ciBotToken(t)); got != s.writes {
			t.Fatalf("after the %s, SIGKILL and a restart: ci bot's jira comment allowed = %v, want %v", s.name, got, s.writes)
		}
		active, events := p.versions(t)
		if active["version"] != changed.Version || active["author"] != "admin token" || active["source"] != s.source {
			t.Fatalf("after the %s and a restart the active version is %v (author %v, source %v), want %s by the admin token from %q",
				s.name, active["version"], active["author"], active["source"], short(changed.Version), s.source)
		}
		if !slices.ContainsFunc(events, func(e map[string]any) bool {
			return e["kind"] == s.kind && e["version"] == changed.Version && e["author"] == "admin token" && e["source"] == s.source && e["at"] != nil
		}) {
			t.Fatalf("after the %s and a restart the versions list lacks it: %v", s.name, events)
		}
	}
	// The history kept every change, the first (shipped) included.
	_, events := p.versions(t)
	var kinds []string
	for _, e := range events {
		if e["kind"] != "restored" {
			kinds = append(kinds, e["kind"].(string))
		}
	}
	if want := []string{"activated", "data_updated", "activated", "rolled_back"}; !slices.Equal(kinds, want) {
		t.Fatalf("versions after three restarts: %v, want %v", kinds, want)
	}
}

// TestPolicyChangeSurvivesKillOnPostgres: with the token store on
// PostgreSQL the policy versions are kept there: a data change, SIGKILL
// right after the 200, and a start with an empty data dir on the same
// database decides with the change, and lists it with its author.
func TestPolicyChangeSurvivesKillOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dsn := pgE2EDSN(t, "pw-durable-policy")
	p := startKillableUp(t, t.TempDir(), "--store", dsn)
	if !p.ciBotWrites(t, p.ciBotToken(t)) {
		t.Fatal("the shipped policy denies the ci bot's jira comment")
	}
	shipped, err := rego.BuildShipped(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	code, raw := p.admin.do(t, http.MethodPut, "/admin/policy/data", withoutGrant(t, shipped.Data, "ci_agent", "jira", "write"))
	if code != http.StatusOK {
		t.Fatalf("data change: %d %s", code, raw)
	}
	p.kill(t)
	var changed struct {
		Version string `json:"version"`
	}
	_ = json.Unmarshal(raw, &changed)

	p = startKillableUp(t, t.TempDir(), "--store", dsn)
	if p.ciBotWrites(t, p.ciBotToken(t)) {
		t.Fatal("after the data change, SIGKILL and a start on the same database: the ci bot's jira comment is allowed, want denied")
	}
	active, events := p.versions(t)
	if active["version"] != changed.Version || active["author"] != "admin token" || active["source"] != "admin data update" {
		t.Fatalf("active after the restart: %v", active)
	}
	if !slices.ContainsFunc(events, func(e map[string]any) bool {
		return e["kind"] == "data_updated" && e["version"] == changed.Version && e["author"] == "admin token"
	}) {
		t.Fatalf("the versions list lacks the data change: %v", events)
	}
}

// TestStoredSignedBundleIsVerifiedAtStart: with signatures required, a
// signed upload kept across SIGKILL starts again while its key is
// configured; started with another key it is not activated — the shipped
// policy decides — and the log says why.
func TestStoredSignedBundleIsVerifiedAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	keys, dataDir := t.TempDir(), t.TempDir()
	priv, pub := writeKeyPair(t, keys, "ops")
	_, otherPub := writeKeyPair(t, keys, "other")
	shipped, err := rego.BuildShipped(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	demoted := &rego.Bundle{Wasm: shipped.Wasm, Modules: shipped.Modules, Data: withoutGrant(t, shipped.Data, "ci_agent", "jira", "write")}
	demoted.Revision = rego.Revision(demoted.Wasm, demoted.Data)
	var signed bytes.Buffer
	if err := writeSigned(&signed, demoted, priv, ""); err != nil {
		t.Fatal(err)
	}

	p := startKillableUp(t, dataDir, "--bundle-verification-key", pub)
	code, raw := p.admin.do(t, http.MethodPost, "/admin/policy/bundles", signed.Bytes())
	if code != http.StatusOK {
		t.Fatalf("signed upload: %d %s", code, raw)
	}
	p.kill(t)

	p = startKillableUp(t, dataDir, "--bundle-verification-key", pub)
	if p.ciBotWrites(t, p.ciBotToken(t)) {
		t.Fatal("the signed upload is not active after SIGKILL and a restart with its key")
	}
	if active, _ := p.versions(t); active["signed_by"] != rego.DefaultKeyID || active["source"] != "admin upload" {
		t.Fatalf("active after the restart with its key: %v", active)
	}
	p.kill(t)

	p = startKillableUp(t, dataDir, "--bundle-verification-key", otherPub)
	if !p.ciBotWrites(t, p.ciBotToken(t)) {
		t.Fatal("a stored bundle signed by a key no longer configured decides after a restart")
	}
	if active, _ := p.versions(t); active["source"] != "shipped" {
		t.Fatalf("active after the restart with another key: %v, want the shipped policy", active)
	}
	if logs := p.logs.String(); !strings.Contains(logs, "stored policy version not activated") || !strings.Contains(logs, short(demoted.Revision)) {
		t.Fatalf("the log does not say the stored version was refused:\n%s", logs)
	}
}
