package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMetadataDocumentSettings: clients.metadata_documents is on and
// fetching by default; the file and the PBAC_METADATA_DOCUMENTS_*
// environment (which wins) turn it off, make it air-gapped, allow
// networks and name files; a bad block, duration, size or a missing file
// is refused at load with the key named.
func TestMetadataDocumentSettings(t *testing.T) {
	dir := t.TempDir()
	pinned := filepath.Join(dir, "pinned")
	if err := os.Mkdir(pinned, 0o700); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(body string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	defaults := MetadataDocumentSettings{Enabled: true, Fetch: true, Timeout: 5 * time.Second, MaxBytes: 5 << 10}
	for _, tc := range []struct {
		name, body string
		env        map[string]string
		want       MetadataDocumentSettings
		wantErr    string
	}{
		{name: "absent: on, fetching", want: defaults},
		{name: "off", body: "clients: {metadata_documents: {enabled: false}}\n",
			want: MetadataDocumentSettings{Fetch: true, Timeout: 5 * time.Second, MaxBytes: 5 << 10}},
		{name: "air-gapped from the file", body: "clients:\n  metadata_documents:\n    fetch: false\n    pinned_dir: " + pinned + "\n    ca_file: " + ca + "\n    allow_networks: [127.0.0.1/32, 10.1.2.3/16]\n    timeout: 2s\n    max_bytes: 8192\n",
			want: MetadataDocumentSettings{Enabled: true, PinnedDir: pinned, CAFile: ca, Timeout: 2 * time.Second, MaxBytes: 8192,
				AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.1.0.0/16")}}},
		{name: "the environment over the file", body: "clients: {metadata_documents: {fetch: true}}\n",
			env:  map[string]string{"PBAC_METADATA_DOCUMENTS_FETCH": "false", "PBAC_METADATA_DOCUMENTS_PINNED_DIR": pinned, "PBAC_METADATA_DOCUMENTS_ALLOW_NETWORKS": "::1/128"},
			want: MetadataDocumentSettings{Enabled: true, PinnedDir: pinned, Timeout: 5 * time.Second, MaxBytes: 5 << 10, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("::1/128")}}},
		{name: "not a boolean", env: map[string]string{"PBAC_METADATA_DOCUMENTS": "sometimes"}, wantErr: `PBAC_METADATA_DOCUMENTS="sometimes": want true or false`},
		{name: "not a CIDR block", body: "clients: {metadata_documents: {allow_networks: [localhost]}}\n", wantErr: `allow_networks "localhost": want a CIDR block`},
		{name: "a bad timeout", body: "clients: {metadata_documents: {timeout: 0s}}\n", wantErr: `clients.metadata_documents.timeout "0s"`},
		{name: "too large", body: "clients: {metadata_documents: {max_bytes: 100000000}}\n", wantErr: `clients.metadata_documents.max_bytes 100000000`},
		{name: "no such pinned dir", body: "clients: {metadata_documents: {pinned_dir: " + filepath.Join(dir, "none") + "}}\n", wantErr: "clients.metadata_documents.pinned_dir"},
		{name: "a pinned dir that is a file", body: "clients: {metadata_documents: {pinned_dir: " + ca + "}}\n", wantErr: "not a directory"},
		{name: "no such CA file", env: map[string]string{"PBAC_METADATA_DOCUMENTS_CA_FILE": filepath.Join(dir, "none.pem")}, wantErr: "clients.metadata_documents.ca_file"},
		{name: "a misspelt key", body: "clients: {metadata_documents: {fetching: false}}\n", wantErr: "fetching"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadEnv(write(tc.body), func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := cfg.Clients.MetadataDocumentSettings()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.AllowNetworks, tc.want.AllowNetworks) {
				t.Fatalf("allow networks %v, want %v", got.AllowNetworks, tc.want.AllowNetworks)
			}
			got.AllowNetworks, tc.want.AllowNetworks = nil, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("settings %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestStatementIssuersConfig: each of clients.statement_issuers has a
// unique name other than "local" (this server's own key), an issuer, and
// exactly one key file that exists; every problem is reported at load.
func TestStatementIssuersConfig(t *testing.T) {
	dir := t.TempDir()
	jwks := filepath.Join(dir, "acme.jwks.json")
	if err := os.WriteFile(jwks, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(body string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	acme := "{name: acme, issuer: 'https://acme.example', jwks_file: " + jwks + "}"
	for _, tc := range []struct {
		name, body string
		wantErr    []string
	}{
		{"one issuer", "clients: {statement_issuers: [" + acme + "]}\n", nil},
		{"two of one name", "clients: {statement_issuers: [" + acme + ", " + acme + "]}\n",
			[]string{`clients.statement_issuers[1] (acme): the name "acme" is used twice`}},
		{"local is reserved", "clients: {statement_issuers: [{name: local, issuer: 'https://acme.example', jwks_file: " + jwks + "}]}\n",
			[]string{`the name "local" is reserved for this authorization server's own key`}},
		{"no name, no issuer, no keys", "clients: {statement_issuers: [{key_id: k}]}\n",
			[]string{"clients.statement_issuers[0]: name is required", "issuer (the statements' iss) is required", "give keys_file (PEM public keys) or jwks_file"}},
		{"both key files", "clients: {statement_issuers: [{name: acme, issuer: x, jwks_file: " + jwks + ", keys_file: " + jwks + "}]}\n",
			[]string{"give keys_file or jwks_file, not both"}},
		{"a missing key file", "clients: {statement_issuers: [{name: acme, issuer: x, keys_file: " + filepath.Join(dir, "none.pem") + "}]}\n",
			[]string{"clients.statement_issuers[0] (acme): keys_file:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(write(tc.body))
			if len(tc.wantErr) == 0 {
				if err != nil || len(cfg.Clients.StatementIssuers) != 1 {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want one containing %q", err, w)
				}
			}
		})
	}
}
