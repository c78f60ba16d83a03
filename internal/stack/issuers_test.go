package stack_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/internal/stack"
)

const acmeIssuer = "https://acme.example"

// acmeKeys are a third-party statement issuer's keys: ES256 (kid acme-es),
// EdDSA (acme-ed) and one the configuration revokes (acme-old), published
// as a JWK set file.
type acmeKeys struct {
	es       *ecdsa.PrivateKey
	ed, old  ed25519.PrivateKey
	jwksFile string
}

func newAcmeKeys(t *testing.T) acmeKeys {
	t.Helper()
	es, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	_, old, _ := ed25519.GenerateKey(rand.Reader)
	raw, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &es.PublicKey, KeyID: "acme-es", Algorithm: "ES256", Use: "sig"},
		{Key: ed.Public(), KeyID: "acme-ed"},
		{Key: old.Public(), KeyID: "acme-old"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "acme.jwks.json")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return acmeKeys{es: es, ed: ed, old: old, jwksFile: file}
}

// acmeStatement is a statement by iss for provider, for the authorization
// server at aud, signed with key (kid).
func acmeStatement(t *testing.T, alg jose.SignatureAlgorithm, key any, kid, iss, aud, provider string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	payload, _ := json.Marshal(map[string]any{"iss": iss, "aud": aud, "jti": rand.Text(), "agent_provider": provider,
		"agent_model": "test", "software_id": "acme-agent", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

// TestTrustedStatementIssuers: clients.statement_issuers reaches the
// authorization server. A client registering (DCR, over HTTP) with a
// statement by the configured issuer acme for claude-code is verified,
// known to policy as vouched for by "acme"; it gets the developer tier —
// a token and a tool call — only once policy data lists acme for
// claude-code (agents.statement_issuers), and is refused as not attested
// before. ES256 and EdDSA keys of the JWK set file both verify; a key
// nobody configured, another iss, and a revoked key id
// (asrv.statements.revoked_keys) are refused with
// unapproved_software_statement. A metadata document carrying an acme
// statement is verified the same way, without any agents.cimd_providers.
func TestTrustedStatementIssuers(t *testing.T) {
	keys := newAcmeKeys(t)
	var docStatement string
	docID, ca := cimdHost(t, func() map[string]any { return map[string]any{"software_statement": docStatement} })
	cfg := baseConfig(t, t.TempDir())
	cfg.Ephemeral = true
	cfg.Demo.Backends = true
	cfg.AuthServer.Settings = &config.ASrv{Statements: &config.Statements{RevokedKeys: []string{"acme-old"}}}
	cfg.AuthServer.Clients = &config.Clients{
		MetadataDocuments: &config.MetadataDocuments{AllowNetworks: []string{"127.0.0.1/32"}, CAFile: ca},
		StatementIssuers:  []config.StatementIssuer{{Name: "acme", Issuer: acmeIssuer, JWKSFile: keys.jwksFile}},
	}
	st, err := stack.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(t.Context()); settle() })
	ctx := t.Context()
	aud := st.Issuer()
	resource := st.URL() + "/mcp/jira"

	register := func(t *testing.T, jws string) (string, map[string]any, error) {
		t.Helper()
		out, err := oauthtest.Register(ctx, st.URL(), map[string]any{"client_name": "acme agent", "software_statement": jws,
			"redirect_uris": []string{cimdRedirect}, "token_endpoint_auth_method": "none"})
		id, _ := out["client_id"].(string)
		return id, out, err
	}

	// Registration: which statements verify, and as whose.
	for _, tc := range []struct {
		name    string
		jws     string
		wantErr string
	}{
		{"ES256 by acme", acmeStatement(t, jose.ES256, keys.es, "acme-es", acmeIssuer, aud, "claude-code"), ""},
		{"EdDSA by acme", acmeStatement(t, jose.EdDSA, keys.ed, "acme-ed", acmeIssuer, aud, "claude-code"), ""},
		{"a key nobody configured", acmeStatement(t, jose.EdDSA, newAcmeKeys(t).ed, "acme-ed", acmeIssuer, aud, "claude-code"), "unapproved_software_statement"},
		{"acme's key for another iss", acmeStatement(t, jose.ES256, keys.es, "acme-es", "https://other.example", aud, "claude-code"), "unapproved_software_statement"},
		{"a revoked key id", acmeStatement(t, jose.EdDSA, keys.old, "acme-old", acmeIssuer, aud, "claude-code"), "unapproved_software_statement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, out, err := register(t, tc.jws)
			if tc.wantErr != "" {
				if err == nil || out["error"] != tc.wantErr {
					t.Fatalf("registered: %v %v, want %s", out, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := st.Store().Client(ctx, id)
			if err != nil || !c.Agent.Verified || c.Agent.IssuerName != "acme" || c.Agent.AgentProvider != "claude-code" {
				t.Fatalf("stored client %+v %v, want verified by acme", c, err)
			}
		})
	}

	// The tier: policy data decides what acme may vouch for.
	id, _, err := register(t, acmeStatement(t, jose.EdDSA, keys.ed, "acme-ed", acmeIssuer, aud, "claude-code"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oauthtest.CodeFlow(ctx, st.URL(), id, cimdRedirect, "alice", "demo", resource, "jira:read"); err == nil ||
		!strings.Contains(err.Error(), "access_denied") || !strings.Contains(err.Error(), "not attested") {
		t.Fatalf("acme not in agents.statement_issuers: %v, want access_denied … not attested", err)
	}
	setAgentsData(t, st, "statement_issuers", map[string]any{"local": []string{"*"}, "acme": []string{"ci-bot"}})
	if _, err := oauthtest.CodeFlow(ctx, st.URL(), id, cimdRedirect, "alice", "demo", resource, "jira:read"); err == nil ||
		!strings.Contains(err.Error(), "not attested") {
		t.Fatalf("acme listed for ci-bot only: %v, want not attested", err)
	}
	setAgentsData(t, st, "statement_issuers", map[string]any{"local": []string{"*"}, "acme": []string{"claude-code"}})
	tok, err := oauthtest.CodeFlow(ctx, st.URL(), id, cimdRedirect, "alice", "demo", resource, "jira:read")
	if err != nil {
		t.Fatalf("acme listed for claude-code: %v", err)
	}
	in, err := st.AuthServer().Introspect(ctx, tok.AccessToken, resource)
	if err != nil || !in.Active || in.Tier != "developer" || in.Attestation == nil || in.Attestation.Kind != "software_statement" ||
		in.Attestation.By != "acme" || in.Attestation.Provider != "claude-code" {
		t.Fatalf("the token: %+v %v", in, err)
	}
	callJiraAs(t, st, tok.AccessToken)

	// A metadata document with an acme statement: verified by acme, no
	// agents.cimd_providers needed.
	docStatement = acmeStatement(t, jose.ES256, keys.es, "acme-es", acmeIssuer, aud, "claude-code")
	tok, err = oauthtest.CodeFlow(ctx, st.URL(), docID, cimdRedirect, "alice", "demo", resource, "jira:read")
	if err != nil {
		t.Fatalf("a document with an acme statement: %v", err)
	}
	in, err = st.AuthServer().Introspect(ctx, tok.AccessToken, resource)
	if err != nil || !in.Active || in.ClientID != docID || in.Tier != "developer" || !in.Agent.Verified || in.Agent.IssuerName != "acme" ||
		in.Attestation == nil || in.Attestation.Kind != "software_statement" || in.Attestation.By != "acme" {
		t.Fatalf("the document client's token: %+v %v", in, err)
	}
}

// TestStatementIssuerNames: a configured issuer named "local" (this
// server's own key's name) or two issuers of one name are refused by the
// stack as by the configuration.
func TestStatementIssuerNames(t *testing.T) {
	keys := newAcmeKeys(t)
	for _, tc := range []struct {
		name    string
		issuers []config.StatementIssuer
		wantErr string
	}{
		{"local is reserved", []config.StatementIssuer{{Name: "local", Issuer: acmeIssuer, JWKSFile: keys.jwksFile}}, `"local" is reserved`},
		{"a key file that is not one", []config.StatementIssuer{{Name: "acme", Issuer: acmeIssuer, KeysFile: keys.jwksFile}}, "no PEM public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, t.TempDir())
			cfg.Ephemeral = true
			cfg.AuthServer.Clients = &config.Clients{StatementIssuers: tc.issuers}
			st, err := stack.New(t.Context(), cfg)
			if err == nil {
				_ = st.Close(t.Context())
				t.Fatal("the stack started")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
