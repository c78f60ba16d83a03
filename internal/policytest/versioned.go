package policytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/pbac-gateway/pbac/rego"
)

//go:embed testdata/versioned.rego
var versionedSrc []byte

// versioned is the versioned test policy, compiled once per test binary.
var versioned = sync.OnceValues(func() (*rego.Bundle, error) {
	return rego.Build(context.Background(), fstest.MapFS{
		"versioned.rego": {Data: versionedSrc},
		"data.json":      {Data: []byte(`{"marker": 0, "allowed": ["alice"]}`)},
	})
})

// Versioned returns a minimal policy that honours the contract, with data
// {"marker": marker, "allowed": allowed}: every entrypoint allows the users
// in allowed and reports the marker, so a test can tell which version
// decided. Bundles with other markers share one module.
func Versioned(t testing.TB, marker int, allowed ...string) *rego.Bundle {
	t.Helper()
	base, err := versioned()
	if err != nil {
		t.Fatal(err)
	}
	if allowed == nil {
		allowed = []string{}
	}
	data, _ := json.Marshal(map[string]any{"marker": marker, "allowed": allowed})
	b := &rego.Bundle{Wasm: base.Wasm, Data: data}
	b.Revision = rego.Revision(b.Wasm, b.Data)
	return b
}

// SigningKeys returns a fresh ECDSA P-256 private key (PKCS#8) and its
// public key (PKIX), PEM encoded: a bundle signing key pair.
func SigningKeys(t testing.TB) (priv, pub []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pder, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder})
}
