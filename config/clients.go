package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Clients configures how the authorization server knows the clients that
// are not registered by an operator: Client ID Metadata Documents, and the
// issuers whose software statements it trusts besides its own key.
//
//	clients:
//	  metadata_documents:              # client ids that are https URLs (SEP-991)
//	    enabled: true                  # default true
//	    fetch: true                    # false: air-gapped, pinned documents only
//	    allow_networks: [10.1.0.0/16]  # special-purpose blocks that may be dialled nonetheless
//	    ca_file: /etc/pbac/cimd-ca.pem # the only CAs trusted for fetched documents
//	    pinned_dir: /etc/pbac/clients  # *.json documents, each keyed by its own client_id
//	    timeout: 5s                    # one fetch, body included
//	    max_bytes: 5120                # one document
//	  statement_issuers:               # who may sign software statements, besides this AS ("local")
//	    - name: acme                   # what policy data calls it (agents.statement_issuers)
//	      issuer: https://acme.example # the statements' iss
//	      jwks_file: /etc/pbac/acme.jwks.json   # or keys_file: PEM public keys
//	      key_id: acme-2026            # optional: only this key (its kid)
type Clients struct {
	MetadataDocuments *MetadataDocuments `yaml:"metadata_documents"`
	StatementIssuers  []StatementIssuer  `yaml:"statement_issuers"`
}

// MetadataDocuments is clients.metadata_documents.
type MetadataDocuments struct {
	Enabled       *bool    `yaml:"enabled"`
	Fetch         *bool    `yaml:"fetch"`
	AllowNetworks []string `yaml:"allow_networks"`
	CAFile        string   `yaml:"ca_file"`
	PinnedDir     string   `yaml:"pinned_dir"`
	Timeout       string   `yaml:"timeout"`
	MaxBytes      int64    `yaml:"max_bytes"`
}

// Defaults of clients.metadata_documents (the resolver's own:
// cimd.DefaultMaxBytes and its default timeout).
const (
	DefaultMetadataDocumentTimeout  = 5 * time.Second
	DefaultMetadataDocumentMaxBytes = 5 << 10
	// MaxMetadataDocumentBytes bounds max_bytes: a document is a few
	// hundred bytes; more is an attack on the fetcher.
	MaxMetadataDocumentBytes = 256 << 10
)

// MetadataDocumentSettings are clients.metadata_documents, resolved.
type MetadataDocumentSettings struct {
	// Enabled: URL client ids are resolved (off: they are unknown clients).
	Enabled bool
	// Fetch: documents that are not pinned are fetched.
	Fetch bool
	// AllowNetworks are special-purpose blocks that may be dialled.
	AllowNetworks []netip.Prefix
	// CAFile, when set, holds the only CAs trusted for fetches.
	CAFile string
	// PinnedDir, when set, holds pinned documents.
	PinnedDir string
	Timeout   time.Duration
	MaxBytes  int64
}

// MetadataDocumentSettings resolves clients.metadata_documents (c may be
// nil: enabled, fetching, the defaults).
func (c *Clients) MetadataDocumentSettings() (MetadataDocumentSettings, error) {
	out := MetadataDocumentSettings{Enabled: true, Fetch: true, Timeout: DefaultMetadataDocumentTimeout, MaxBytes: DefaultMetadataDocumentMaxBytes}
	if c == nil || c.MetadataDocuments == nil {
		return out, nil
	}
	m := c.MetadataDocuments
	if m.Enabled != nil {
		out.Enabled = *m.Enabled
	}
	if m.Fetch != nil {
		out.Fetch = *m.Fetch
	}
	for _, n := range m.AllowNetworks {
		p, err := netip.ParsePrefix(strings.TrimSpace(n))
		if err != nil {
			return MetadataDocumentSettings{}, fmt.Errorf("clients.metadata_documents.allow_networks %q: want a CIDR block (e.g. 10.1.0.0/16, 127.0.0.1/32)", n)
		}
		out.AllowNetworks = append(out.AllowNetworks, p.Masked())
	}
	if m.Timeout != "" {
		d, err := positiveDuration("clients.metadata_documents.timeout", m.Timeout, "5s")
		if err != nil {
			return MetadataDocumentSettings{}, err
		}
		out.Timeout = d
	}
	switch {
	case m.MaxBytes < 0 || m.MaxBytes > MaxMetadataDocumentBytes:
		return MetadataDocumentSettings{}, fmt.Errorf("clients.metadata_documents.max_bytes %d: want 1 to %d (0 or absent: %d)", m.MaxBytes, MaxMetadataDocumentBytes, DefaultMetadataDocumentMaxBytes)
	case m.MaxBytes > 0:
		out.MaxBytes = m.MaxBytes
	}
	out.CAFile, out.PinnedDir = m.CAFile, m.PinnedDir
	return out, nil
}

// StatementIssuer is one trusted software statement issuer: its name for
// policy, the statements' iss, and its public keys.
type StatementIssuer struct {
	Name     string `yaml:"name"`
	Issuer   string `yaml:"issuer"`
	KeysFile string `yaml:"keys_file"`
	JWKSFile string `yaml:"jwks_file"`
	KeyID    string `yaml:"key_id"`
}

// LocalStatementIssuer is the name reserved for the authorization
// server's own statement key (asrv.LocalIssuerName), which is always
// trusted and cannot be configured.
const LocalStatementIssuer = "local"

func (c *Clients) validate() []error {
	if c == nil {
		return nil
	}
	var errs []error
	m, err := c.MetadataDocumentSettings()
	if err != nil {
		errs = append(errs, err)
	}
	for _, f := range []struct{ key, path string }{{"clients.metadata_documents.ca_file", m.CAFile}, {"clients.metadata_documents.pinned_dir", m.PinnedDir}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	if m.PinnedDir != "" {
		if fi, err := os.Stat(m.PinnedDir); err == nil && !fi.IsDir() {
			errs = append(errs, fmt.Errorf("clients.metadata_documents.pinned_dir %s: not a directory", m.PinnedDir))
		}
	}
	seen := map[string]bool{}
	for i, si := range c.StatementIssuers {
		where := fmt.Sprintf("clients.statement_issuers[%d]", i)
		if si.Name != "" {
			where += " (" + si.Name + ")"
		}
		switch {
		case strings.TrimSpace(si.Name) == "":
			errs = append(errs, fmt.Errorf("%s: name is required (what policy data's agents.statement_issuers calls it)", where))
		case si.Name == LocalStatementIssuer:
			errs = append(errs, fmt.Errorf("%s: the name %q is reserved for this authorization server's own key, which is always trusted", where, LocalStatementIssuer))
		case seen[si.Name]:
			errs = append(errs, fmt.Errorf("%s: the name %q is used twice", where, si.Name))
		}
		seen[si.Name] = true
		if strings.TrimSpace(si.Issuer) == "" {
			errs = append(errs, fmt.Errorf("%s: issuer (the statements' iss) is required", where))
		}
		switch {
		case si.KeysFile == "" && si.JWKSFile == "":
			errs = append(errs, fmt.Errorf("%s: give keys_file (PEM public keys) or jwks_file (a JWK set)", where))
		case si.KeysFile != "" && si.JWKSFile != "":
			errs = append(errs, fmt.Errorf("%s: give keys_file or jwks_file, not both", where))
		}
		for _, f := range []struct{ key, path string }{{"keys_file", si.KeysFile}, {"jwks_file", si.JWKSFile}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", where, f.key, err))
			}
		}
	}
	return errs
}

// metadataDocuments is c's clients.metadata_documents, created when absent.
func (c *File) metadataDocuments() *MetadataDocuments {
	if c.Clients == nil {
		c.Clients = &Clients{}
	}
	if c.Clients.MetadataDocuments == nil {
		c.Clients.MetadataDocuments = &MetadataDocuments{}
	}
	return c.Clients.MetadataDocuments
}
