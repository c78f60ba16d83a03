package main

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
)

const testAudience = "https://as.example"

// dataDirVerifier is the verifier of an AS at testAudience trusting dir's key.
func dataDirVerifier(t *testing.T, key *asrv.IssuerKey) *asrv.StatementVerifier {
	t.Helper()
	v, err := asrv.NewStatementVerifier(key.Trusted())
	if err != nil {
		t.Fatal(err)
	}
	return v.WithAudience(testAudience)
}

func TestStatementSignVerifiesWithDataDirKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	stdout, stderr, err := run(t, "", "statement", "sign", "--data-dir", dir, "--audience", testAudience,
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
	v := dataDirVerifier(t, key)
	got, err := v.Verify(jws, time.Now())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	want := asrv.AgentClaims{Verified: true, Issuer: asrv.LocalIssuer, IssuerName: asrv.LocalIssuerName, SoftwareID: "sw-1",
		AgentProvider: "ci-bot", AgentModel: "gpt-x", SingleUseAccessTokens: true, StatementID: got.StatementID, KeyID: key.KeyID()}
	if got != want || got.StatementID == "" {
		t.Fatalf("claims %+v, want %+v", got, want)
	}
	if _, err := v.Verify(jws, time.Now().Add(time.Hour+time.Minute)); !errors.Is(err, asrv.ErrInvalidStatement) {
		t.Fatalf("--ttl 1h statement valid after an hour: %v", err)
	}
	if _, err := v.WithAudience("https://other-as.example").Verify(jws, time.Now()); !errors.Is(err, asrv.ErrInvalidStatement) {
		t.Fatalf("valid at an AS it was not signed for: %v", err)
	}

	// A second run reuses the same key; without --ttl the statement lives
	// a day.
	stdout, _, err = run(t, "", "statement", "sign", "--data-dir", dir, "--audience", testAudience, "--provider", "claude-code")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(strings.TrimSpace(stdout), time.Now()); err != nil {
		t.Fatalf("second statement: %v", err)
	}
	if _, err := v.Verify(strings.TrimSpace(stdout), time.Now().Add(25*time.Hour)); err == nil {
		t.Fatal("a statement signed without --ttl is valid after a day")
	}

	// inspect shows the ids to revoke.
	stdout, _, err = run(t, jws, "statement", "inspect", "-")
	if err != nil {
		t.Fatal(err)
	}
	var shown struct {
		Header struct{ Kid string }
		Claims struct {
			Jti string
			Aud []string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &shown); err != nil || shown.Header.Kid != key.KeyID() ||
		shown.Claims.Jti != got.StatementID || len(shown.Claims.Aud) != 1 || shown.Claims.Aud[0] != testAudience {
		t.Fatalf("inspect: %v\n%s", err, stdout)
	}
}

func TestStatementSignWithKeyFileAndEnv(t *testing.T) {
	keyPath := filepath.Join(t.TempDir(), "keys", "issuer.key")
	stdout, _, err := run(t, "", "statement", "sign", "--key", keyPath, "--audience", testAudience, "--provider", "security-scanner", "--ttl", "720h")
	if err != nil {
		t.Fatal(err)
	}
	key, err := asrv.LoadOrCreateIssuerKeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dataDirVerifier(t, key).Verify(strings.TrimSpace(stdout), time.Now().Add(700*time.Hour)); err != nil {
		t.Fatalf("--ttl 720h statement: %v", err)
	}

	envDir := t.TempDir()
	t.Setenv("PBAC_DATA_DIR", envDir)
	t.Setenv("PBAC_PUBLIC_URL", testAudience+"/")
	stdout, _, err = run(t, "", "statement", "sign", "--provider", "claude-code")
	if err != nil {
		t.Fatal(err)
	}
	envKey, err := asrv.LoadOrCreateIssuerKey(envDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dataDirVerifier(t, envKey).Verify(strings.TrimSpace(stdout), time.Now()); err != nil {
		t.Fatalf("PBAC_DATA_DIR key, PBAC_PUBLIC_URL audience: %v", err)
	}
}

func TestStatementSignRejectsBadUsage(t *testing.T) {
	dir := t.TempDir()
	aud := []string{"--audience", testAudience}
	for name, args := range map[string][]string{
		"missing provider":         append([]string{"statement", "sign", "--data-dir", dir}, aud...),
		"missing audience":         {"statement", "sign", "--data-dir", dir, "--provider", "p"},
		"never expires (--ttl 0)":  append([]string{"statement", "sign", "--data-dir", dir, "--provider", "p", "--ttl", "0"}, aud...),
		"longer than the maximum":  append([]string{"statement", "sign", "--data-dir", dir, "--provider", "p", "--ttl", "721h"}, aud...),
		"negative ttl":             append([]string{"statement", "sign", "--data-dir", dir, "--provider", "p", "--ttl", "-1h"}, aud...),
		"key and data dir":         append([]string{"statement", "sign", "--data-dir", dir, "--key", filepath.Join(dir, "k"), "--provider", "p"}, aud...),
		"control chars":            append([]string{"statement", "sign", "--data-dir", dir, "--provider", "p\x1b"}, aud...),
		"unexpected positional":    append([]string{"statement", "sign", "--data-dir", dir, "--provider", "p", "extra"}, aud...),
		"inspect something random": {"statement", "inspect", "not.a.jws"},
	} {
		t.Setenv("PBAC_PUBLIC_URL", "")
		stdout, _, err := run(t, "", args...)
		if err == nil {
			t.Errorf("%s: succeeded", name)
		}
		if stdout != "" {
			t.Errorf("%s: printed %q", name, stdout)
		}
	}
}
