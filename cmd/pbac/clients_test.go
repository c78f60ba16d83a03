package main

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// TestConfigCheckMetadataDocuments: pbac config check says whether Client
// ID Metadata Documents are fetched, and how many are pinned (each pinned
// document validated as at start: a bad one is an error naming the key),
// and whose statements verify (the issuers' key files read as at start).
func TestConfigCheckMetadataDocuments(t *testing.T) {
	dir := t.TempDir()
	pinned, bad := filepath.Join(dir, "pinned"), filepath.Join(dir, "bad")
	for _, d := range []string{pinned, bad} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	doc := `{"client_id": "https://agent.example/client.json", "client_name": "Agent", "redirect_uris": ["http://127.0.0.1/callback"]}`
	if err := os.WriteFile(filepath.Join(pinned, "agent.json"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	// A document whose client_id is not an https URL.
	if err := os.WriteFile(filepath.Join(bad, "agent.json"), []byte(strings.Replace(doc, "https://", "http://", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "acme-1"}}})
	jwks := filepath.Join(dir, "acme.jwks.json")
	if err := os.WriteFile(jwks, set, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		want       []string
		wantErr    string
	}{
		{"the default: fetched", "", []string{"metadata documents    fetched over HTTPS (at most 5120 bytes, 5s); 0 pinned"}, ""},
		{"air-gapped with one pinned", "clients: {metadata_documents: {fetch: false, pinned_dir: " + pinned + "}}\n",
			[]string{"metadata documents    fetching off (air-gapped); 1 pinned from " + pinned + "; any other URL client id is refused",
				"clients.metadata_documents.fetch  false (file)"}, ""},
		{"allowed networks", "clients: {metadata_documents: {allow_networks: [127.0.0.1/32]}}\n",
			[]string{"fetched over HTTPS", "allowed networks    [127.0.0.1/32]"}, ""},
		{"off", "clients: {metadata_documents: {enabled: false}}\n", []string{"metadata documents    off"}, ""},
		{"a bad pinned document", "clients: {metadata_documents: {pinned_dir: " + bad + "}}\n", nil, "clients.metadata_documents.pinned_dir"},
		{"a trusted statement issuer", "clients: {statement_issuers: [{name: acme, issuer: 'https://acme.example', jwks_file: " + jwks + "}]}\n",
			[]string{"statement issuers     local (this server's key", "acme: iss https://acme.example, 1 key(s)"}, ""},
		{"an issuer's key file that is not a key set", "clients: {statement_issuers: [{name: acme, issuer: 'https://acme.example', jwks_file: " + filepath.Join(pinned, "agent.json") + "}]}\n",
			nil, "clients.statement_issuers acme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			out, _, err := run(t, "", "config", "check", p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q\n%s", err, tc.wantErr, out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
