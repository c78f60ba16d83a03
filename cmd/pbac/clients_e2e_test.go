package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/rego"
)

// TestUpClientsConfig: the configuration file's clients: section reaches
// the real `pbac up`. Air-gapped (fetch: false), a pinned document's
// client signs alice in but is refused as not attested until the policy
// data (PUT /admin/policy/data) maps its URL to claude-code; then it gets
// a token and a tool call. An unpinned URL client id gets the page saying
// nothing is pinned. A DCR client with a statement of the configured
// issuer acme registers verified, and gets a tool call once the data lets
// acme vouch for claude-code; a key nobody configured is refused.
func TestUpClientsConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const docID = "https://agent.invalid/oauth/client.json"
	const redirect = "http://127.0.0.1:47312/callback"
	dir := t.TempDir()
	pinned := filepath.Join(dir, "pinned")
	if err := os.Mkdir(pinned, 0o700); err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(map[string]any{"client_id": docID, "client_name": "Pinned Agent",
		"redirect_uris": []string{"http://127.0.0.1/callback"}, "token_endpoint_auth_method": "none"})
	if err := os.WriteFile(filepath.Join(pinned, "pinned-agent.json"), doc, 0o600); err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "acme-1"}}})
	jwks := filepath.Join(dir, "acme.jwks.json")
	if err := os.WriteFile(jwks, set, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "pbac.yaml")
	cfg := "clients:\n  metadata_documents: {fetch: false, pinned_dir: " + pinned + "}\n" +
		"  statement_issuers: [{name: acme, issuer: 'https://acme.example', jwks_file: " + jwks + "}]\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	base, out := startUp(t, dataDir, "--config", cfgFile)
	ctx := t.Context()
	resource := base + "/mcp/jira"

	var meta map[string]any
	status, body := rawHTTP(t, http.DefaultClient, http.MethodGet, base+"/.well-known/oauth-authorization-server", "", nil)
	if status != http.StatusOK || json.Unmarshal([]byte(body), &meta) != nil || meta["client_id_metadata_document_supported"] != true ||
		!slices.Contains(meta["token_endpoint_auth_methods_supported"].([]any), any("none")) {
		t.Fatalf("metadata: %d %s", status, body)
	}

	if _, err := oauthtest.CodeFlow(ctx, base, docID, redirect, "alice", "demo", resource, "jira:read"); err == nil || !strings.Contains(err.Error(), "not attested") {
		t.Fatalf("a pinned document nobody maps: %v, want not attested", err)
	}
	q := url.Values{"response_type": {"code"}, "client_id": {"https://agent.invalid/other.json"}, "redirect_uri": {redirect},
		"state": {"state-123456789"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(base + "/oauth2/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(page), "none is pinned for this client_id") {
		t.Fatalf("an unpinned URL: %d\n%s", resp.StatusCode, page)
	}

	// The operator's data: the pinned document is claude-code, and acme
	// may vouch for claude-code.
	raw, err := fs.ReadFile(rego.Sources(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	agents := data["agents"].(map[string]any)
	agents["cimd_providers"] = map[string]any{docID: "claude-code"}
	agents["statement_issuers"] = map[string]any{"local": []string{"*"}, "acme": []string{"claude-code"}}
	raw, _ = json.Marshal(data)
	m := adminLine.FindStringSubmatch(out.String())
	token, err := os.ReadFile(filepath.Join(dataDir, adminTokenFile))
	if m == nil || err != nil {
		t.Fatalf("no admin API (%v):\n%s", err, out)
	}
	status, body = rawHTTP(t, http.DefaultClient, http.MethodPut, m[1]+"/admin/policy/data", string(raw),
		map[string]string{"Authorization": "Bearer " + strings.TrimSpace(string(token)), "Content-Type": "application/json"})
	if status != http.StatusOK {
		t.Fatalf("PUT /admin/policy/data: %d %s", status, body)
	}

	tok, err := oauthtest.CodeFlow(ctx, base, docID, redirect, "alice", "demo", resource, "jira:read")
	if err != nil {
		t.Fatalf("the pinned document, mapped: %v", err)
	}
	if ok, why := callTool(t, base, tok.AccessToken, "jira", "search_issues", map[string]any{"query": "SEC"}); !ok {
		t.Fatalf("the pinned document's tool call: %s", why)
	}

	statement := func(key ed25519.PrivateKey) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "acme-1"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		payload, _ := json.Marshal(map[string]any{"iss": "https://acme.example", "aud": base, "jti": rand.Text(),
			"agent_provider": "claude-code", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
		obj, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		jws, _ := obj.CompactSerialize()
		return jws
	}
	register := func(jws string) (map[string]any, error) {
		return oauthtest.Register(ctx, base, map[string]any{"client_name": "acme agent", "software_statement": jws,
			"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none"})
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	if got, err := register(statement(stranger)); err == nil || got["error"] != "unapproved_software_statement" {
		t.Fatalf("a key nobody configured: %v %v", got, err)
	}
	reg, err := register(statement(priv))
	if err != nil {
		t.Fatal(err)
	}
	tok, err = oauthtest.CodeFlow(ctx, base, reg["client_id"].(string), redirect, "alice", "demo", resource, "jira:read")
	if err != nil {
		t.Fatalf("the acme client: %v", err)
	}
	if ok, why := callTool(t, base, tok.AccessToken, "jira", "search_issues", map[string]any{"query": "SEC"}); !ok {
		t.Fatalf("the acme client's tool call: %s", why)
	}
}
