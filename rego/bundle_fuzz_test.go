package rego_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/rego"
)

// FuzzReadTarGz reads arbitrary bytes as a policy bundle — what an admin
// upload, a bundle server or the replicas' shared head hands over. Reading
// never panics; a bundle it accepts has exactly one Wasm module, object
// data and keeps its bytes; and the signature check accepts only what the
// key signed, byte for byte.
func FuzzReadTarGz(f *testing.F) {
	// A small policy keeps each execution cheap (the shipped bundle's Rego
	// sources are parsed on every signature check).
	var src strings.Builder
	src.WriteString("package pbac\n\nd := {\"allow\": false, \"reasons\": [\"no\"]}\n")
	for _, ep := range contract.Names() {
		fmt.Fprintf(&src, "\n%s := d\n", strings.TrimPrefix(ep, "pbac/"))
	}
	b, err := rego.Build(context.Background(), fstest.MapFS{
		"p.rego":    {Data: []byte(src.String())},
		"data.json": {Data: []byte(`{"marker": 1}`)},
	})
	if err != nil {
		f.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	pder, _ := x509.MarshalPKIXPublicKey(pub)
	signer, err := rego.NewSigner(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "")
	if err != nil {
		f.Fatal(err)
	}
	verifier, err := rego.NewVerifier(rego.VerificationKey{PEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder})})
	if err != nil {
		f.Fatal(err)
	}
	var plain, signed bytes.Buffer
	if err := b.WriteTarGz(&plain); err != nil {
		f.Fatal(err)
	}
	if err := b.WriteSignedTarGz(&signed, signer); err != nil {
		f.Fatal(err)
	}
	f.Add(plain.Bytes())
	f.Add(signed.Bytes())
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := rego.ReadTarGz(bytes.NewReader(raw))
		if err == nil {
			if len(got.Wasm) == 0 || !bytes.Equal(got.Raw, raw) || !isObject(got.Data) {
				t.Fatalf("accepted a bundle with wasm %d bytes, raw kept %v, data %.20q", len(got.Wasm), bytes.Equal(got.Raw, raw), got.Data)
			}
		}
		v, err := rego.ReadVerifiedTarGz(bytes.NewReader(raw), verifier)
		if err == nil && !bytes.Equal(v.Wasm, b.Wasm) {
			t.Fatalf("a bundle whose module the key never signed verified")
		}
	})
}

func isObject(data []byte) bool {
	var m map[string]any
	return json.Unmarshal(data, &m) == nil && m != nil
}
