package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
)

func TestStatementSignVerifiesWithDataDirKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	stdout, stderr, err := run(t, "", "statement", "sign", "--data-dir", dir,
		"--provider", "ci-bot", "--model", "gpt-x", "--single-use", "--software-id", "sw-1", "--ttl", "1h")
	if err != nil {
		t.Fatalf("statement sign: %v\n%s", err, stderr)
	}
	if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "\n") || strings.Count(stdout, ".") != 2 {
		t.Fatalf("stdout is not exactly one JWS line: %q", stdout)
	}
	jws := strings.TrimSuffix(stdout, "\n")

	key, err := asrv.LoadOrCreateIssuerKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := asrv.NewStatementVerifier(key.Trusted())
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(jws, time.Now())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	want := asrv.AgentClaims{Verified: true, Issuer: asrv.LocalIssuer, SoftwareID: "sw-1",
		AgentProvider: "ci-bot", AgentModel: "gpt-x", SingleUseAccessTokens: true}
	if got != want {
		t.Fatalf("claims %+v, want %+v", got, want)
	}
	if _, err := v.Verify(jws, time.Now().Add(time.Hour+time.Minute)); !errors.Is(err, asrv.ErrInvalidStatement) {
		t.Fatalf("--ttl 1h statement valid after an hour: %v", err)
	}

	// A second run reuses the same key.
	stdout, _, err = run(t, "", "statement", "sign", "--data-dir", dir, "--provider", "claude-code")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(strings.TrimSpace(stdout), time.Now()); err != nil {
		t.Fatalf("second statement: %v", err)
	}
}

func TestStatementSignWithKeyFileAndEnv(t *testing.T) {
	keyPath := filepath.Join(t.TempDir(), "keys", "issuer.key")
	stdout, _, err := run(t, "", "statement", "sign", "--key", keyPath, "--provider", "security-scanner", "--ttl", "0")
	if err != nil {
		t.Fatal(err)
	}
	key, err := asrv.LoadOrCreateIssuerKeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := asrv.NewStatementVerifier(key.Trusted())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(strings.TrimSpace(stdout), time.Now().Add(1000*time.Hour)); err != nil {
		t.Fatalf("--ttl 0 statement: %v", err)
	}

	envDir := t.TempDir()
	t.Setenv("PBAC_DATA_DIR", envDir)
	stdout, _, err = run(t, "", "statement", "sign", "--provider", "claude-code")
	if err != nil {
		t.Fatal(err)
	}
	envKey, err := asrv.LoadOrCreateIssuerKey(envDir)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := asrv.NewStatementVerifier(envKey.Trusted())
	if _, err := ev.Verify(strings.TrimSpace(stdout), time.Now()); err != nil {
		t.Fatalf("PBAC_DATA_DIR key: %v", err)
	}
}

func TestStatementSignRejectsBadUsage(t *testing.T) {
	dir := t.TempDir()
	for name, args := range map[string][]string{
		"missing provider":      {"statement", "sign", "--data-dir", dir},
		"negative ttl":          {"statement", "sign", "--data-dir", dir, "--provider", "p", "--ttl", "-1h"},
		"key and data dir":      {"statement", "sign", "--data-dir", dir, "--key", filepath.Join(dir, "k"), "--provider", "p"},
		"control chars":         {"statement", "sign", "--data-dir", dir, "--provider", "p\x1b"},
		"unexpected positional": {"statement", "sign", "--data-dir", dir, "--provider", "p", "extra"},
	} {
		stdout, _, err := run(t, "", args...)
		if err == nil {
			t.Errorf("%s: succeeded", name)
		}
		if stdout != "" {
			t.Errorf("%s: printed %q", name, stdout)
		}
	}
}
