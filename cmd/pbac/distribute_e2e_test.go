package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/rego"
)

var adminReady = regexp.MustCompile(`admin API\s+(http://127\.0\.0\.1:\d+)/admin/status`)

// writeKeyPair writes an ECDSA P-256 key pair as PEM files.
func writeKeyPair(t *testing.T, dir, name string) (priv, pub string) {
	t.Helper()
	privPEM, pubPEM := policytest.SigningKeys(t)
	priv, pub = filepath.Join(dir, name+".key.pem"), filepath.Join(dir, name+".pub.pem")
	if err := os.WriteFile(priv, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pubPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// replicaAdmin is one `pbac up`'s admin listener and token.
type replicaAdmin struct {
	base, token string
}

func startReplica(t *testing.T, extra ...string) (gateway string, a replicaAdmin) {
	t.Helper()
	dir := t.TempDir()
	base, out := startUp(t, dir, extra...)
	m := adminReady.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no admin API address in the output:\n%s", out)
	}
	tok, err := os.ReadFile(filepath.Join(dir, adminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return base, replicaAdmin{base: m[1], token: strings.TrimSpace(string(tok))}
}

func (a replicaAdmin) do(t *testing.T, method, path string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, a.base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", adminContentType(path))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func (a replicaAdmin) status(t *testing.T) (version string, st map[string]any) {
	t.Helper()
	code, raw := a.do(t, http.MethodGet, "/admin/status", nil)
	if code != http.StatusOK {
		t.Fatalf("status: %d %s", code, raw)
	}
	var out struct {
		Policy struct {
			Version string `json:"version"`
		} `json:"policy"`
	}
	_ = json.Unmarshal(raw, &out)
	_ = json.Unmarshal(raw, &st)
	return out.Policy.Version, st
}

// TestPolicyDistribution runs two replicas that require signed bundles; B
// polls A's admin listener every second. A signed bundle pushed to A is live
// on B within the interval; unsigned and wrongly signed ones are refused on
// both with the active version kept.
func TestPolicyDistribution(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary twice")
	}
	keys := t.TempDir()
	priv, pub := writeKeyPair(t, keys, "ops")
	otherPriv, _ := writeKeyPair(t, keys, "other")
	const bundleToken = "read-only-bundle-token-0123456789"

	_, a := startReplica(t, "--bundle-verification-key", pub, "--bundle-token", bundleToken)
	_, b := startReplica(t, "--bundle-verification-key", "default="+pub, "--bundle-token", bundleToken,
		"--bundle-server", a.base, "--bundle-poll-interval", "1s")

	shipped, _ := a.status(t)
	if v, _ := b.status(t); v != shipped {
		t.Fatalf("replicas start on different versions: %s, %s", shipped, v)
	}

	// A new version: the shipped policy with one more data key.
	built, err := rego.Build(context.Background(), rego.Sources())
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(built.Data, &data); err != nil {
		t.Fatal(err)
	}
	data["distribution_test"] = time.Now().UnixNano()
	built.Data, _ = json.Marshal(data)
	built.Revision = rego.Revision(built.Wasm, built.Data)
	sign := func(keyPath string) []byte {
		var buf bytes.Buffer
		if err := writeSigned(&buf, built, keyPath, ""); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	var unsigned bytes.Buffer
	if err := built.WriteTarGz(&unsigned); err != nil {
		t.Fatal(err)
	}

	// Refused on either replica: unsigned, signed by a key they do not trust.
	for _, r := range []replicaAdmin{a, b} {
		for name, body := range map[string][]byte{"unsigned": unsigned.Bytes(), "wrong key": sign(otherPriv)} {
			code, raw := r.do(t, http.MethodPost, "/admin/policy/bundles", body)
			if code != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "signature") {
				t.Fatalf("%s bundle: %d %s", name, code, raw)
			}
			if v, _ := r.status(t); v != shipped {
				t.Fatalf("%s bundle changed the version", name)
			}
		}
	}

	// The bundle endpoint needs a token.
	resp, err := http.Get(a.base + "/bundles/pbac")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous bundle download: %d", resp.StatusCode)
	}

	// Push to A; B runs it within one polling interval.
	code, raw := a.do(t, http.MethodPost, "/admin/policy/bundles", sign(priv))
	if code != http.StatusOK {
		t.Fatalf("push: %d %s", code, raw)
	}
	pushed := time.Now()
	for {
		v, _ := b.status(t)
		if v == built.Revision {
			break
		}
		if time.Since(pushed) > 10*time.Second {
			t.Fatal("the pushed version did not reach replica B")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(pushed)
	t.Logf("pushed to A, live on B after %v (poll interval 1s)", took.Round(time.Millisecond))
	if took > 1500*time.Millisecond {
		t.Errorf("B took %v, more than one polling interval", took)
	}

	_, st := b.status(t)
	src, _ := st["bundle_source"].(map[string]any)
	if src["etag"] != `"`+built.Revision+`"` || st["signatures_required"] != true {
		t.Fatalf("B's status: %v", st)
	}
	if policy, _ := st["policy"].(map[string]any); policy["signed_by"] != "default" {
		t.Fatalf("B's policy: %v", policy)
	}
	// The metric reports the version B runs (on its admin listener).
	resp, err = http.Get(b.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `pbac_policy_version_info{version="`+built.Revision+`"} 1`) {
		t.Fatal("pbac_policy_version_info does not show the new version")
	}
}
