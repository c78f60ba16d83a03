package rego

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// testKeyPair returns a PEM private key and its PEM public key.
func testKeyPair(t *testing.T, kind string) (priv, pub []byte) {
	t.Helper()
	var (
		key    any
		public any
	)
	switch kind {
	case "ec":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key, public = k, &k.PublicKey
	case "ed25519":
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key, public = k, p
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		key, public = k, &k.PublicKey
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pder, err := x509.MarshalPKIXPublicKey(public)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder})
}

func fakeBundle() *Bundle {
	b := &Bundle{
		Wasm:    []byte("\x00asm\x01\x00\x00\x00fake"),
		Data:    []byte(`{"agents": {"tiers": ["a", "b"]}}`),
		Vectors: []byte(`[]`),
		Modules: map[string][]byte{"pbac/policy.rego": []byte("package pbac\n")},
	}
	b.Revision = revision(b.Wasm, b.Data)
	return b
}

func signed(t *testing.T, b *Bundle, priv []byte, keyID string) []byte {
	t.Helper()
	s, err := NewSigner(priv, keyID)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := b.WriteSignedTarGz(&buf, s); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSignedBundleRoundTrip(t *testing.T) {
	for _, kind := range []string{"ec", "ed25519", "rsa"} {
		t.Run(kind, func(t *testing.T) {
			priv, pub := testKeyPair(t, kind)
			raw := signed(t, fakeBundle(), priv, "ops-2026")
			v, err := NewVerifier(VerificationKey{ID: "ops-2026", PEM: pub})
			if err != nil {
				t.Fatal(err)
			}
			b, err := ReadVerifiedTarGz(bytes.NewReader(raw), v)
			if err != nil {
				t.Fatal(err)
			}
			want := fakeBundle()
			if b.Revision != want.Revision || !bytes.Equal(b.Data, want.Data) || b.SignedBy != "ops-2026" {
				t.Fatalf("got revision %s signed by %q", b.Revision, b.SignedBy)
			}
			if !bytes.Equal(b.Raw, raw) {
				t.Fatal("Raw is not the bytes read")
			}
			// Unverified reads ignore the signature.
			if _, err := ReadTarGz(bytes.NewReader(raw)); err != nil {
				t.Fatal(err)
			}
			if tgz, err := b.TarGz(); err != nil || !bytes.Equal(tgz, raw) {
				t.Fatal("TarGz does not hand the signed bytes on")
			}
		})
	}
}

// rewrite rebuilds a tar.gz with edit applied to each entry (nil drops it)
// and extra entries appended.
func rewrite(t *testing.T, raw []byte, edit func(name string, body []byte) []byte, extra map[string][]byte) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	put := func(name string, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if body = edit(hdr.Name, body); body != nil {
			put(hdr.Name, body)
		}
	}
	for n, b := range extra {
		put(n, b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestVerifyRefusesUnsignedTamperedWrongKey(t *testing.T) {
	priv, pub := testKeyPair(t, "ec")
	otherPriv, _ := testKeyPair(t, "ec")
	v, err := NewVerifier(VerificationKey{PEM: pub})
	if err != nil {
		t.Fatal(err)
	}
	good := signed(t, fakeBundle(), priv, "")
	keep := func(_ string, b []byte) []byte { return b }

	var unsigned bytes.Buffer
	if err := fakeBundle().WriteTarGz(&unsigned); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		raw  []byte
		want error
		msg  string
	}{
		"unsigned": {unsigned.Bytes(), ErrUnsigned, "not signed"},
		"data changed after signing": {rewrite(t, good, func(n string, b []byte) []byte {
			if n == "/data.json" {
				return []byte(`{"agents": {"tiers": ["a", "b", "evil"]}}`)
			}
			return b
		}, nil), ErrBadSignature, "digest mismatch"},
		"wasm changed after signing": {rewrite(t, good, func(n string, b []byte) []byte {
			if n == "/policy.wasm" {
				return append(bytes.Clone(b), 0)
			}
			return b
		}, nil), ErrBadSignature, "digest mismatch"},
		"file added after signing": {rewrite(t, good, keep, map[string][]byte{"/extra/data.json": []byte(`{}`)}),
			ErrBadSignature, "not included"},
		"file removed after signing": {rewrite(t, good, func(n string, b []byte) []byte {
			if n == "/pbac/vectors.json" {
				return nil
			}
			return b
		}, nil), ErrBadSignature, "missing"},
		"wrong key":      {signed(t, fakeBundle(), otherPriv, ""), ErrBadSignature, "verify"},
		"unknown key id": {signed(t, fakeBundle(), priv, "someone-else"), ErrBadSignature, "not found"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ReadVerifiedTarGz(bytes.NewReader(c.raw), v)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
	// Whitespace in JSON files does not break a signature (OPA hashes them
	// structurally).
	reformatted := rewrite(t, good, func(n string, b []byte) []byte {
		if n == "/data.json" {
			return []byte("{\n  \"agents\": {\"tiers\": [\"a\", \"b\"]}\n}\n")
		}
		return b
	}, nil)
	if _, err := ReadVerifiedTarGz(bytes.NewReader(reformatted), v); err != nil {
		t.Fatalf("reformatted data.json: %v", err)
	}
	if _, err := ReadVerifiedTarGz(bytes.NewReader(good), v); err != nil {
		t.Fatal(err)
	}
}

func TestSigningKeyKinds(t *testing.T) {
	priv, pub := testKeyPair(t, "ec")
	if _, err := NewSigner(pub, ""); err == nil {
		t.Error("a public key signs")
	}
	if _, err := NewVerifier(VerificationKey{PEM: priv}); err == nil {
		t.Error("a private key verifies")
	}
	if _, err := NewVerifier(); err == nil {
		t.Error("no keys accepted")
	}
	if _, err := NewSigner([]byte("not pem"), ""); err == nil {
		t.Error("garbage accepted")
	}
}

// TestOPAReadsSignedBundles: OPA's own bundle reader, with signatures
// required, accepts what WriteSignedTarGz writes.
func TestOPAReadsSignedBundles(t *testing.T) {
	priv, pub := testKeyPair(t, "ec")
	raw := signed(t, fakeBundle(), priv, "ops")
	vc := bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{"ops": {Key: string(pub), Algorithm: "ES256"}}, "", "", nil)
	if _, err := bundle.NewReader(bytes.NewReader(raw)).WithBundleVerificationConfig(vc).Read(); err != nil {
		t.Fatalf("OPA refuses the signed bundle: %v", err)
	}
	var unsigned bytes.Buffer
	if err := fakeBundle().WriteTarGz(&unsigned); err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.NewReader(&unsigned).WithBundleVerificationConfig(vc).Read(); err == nil {
		t.Fatal("OPA accepts an unsigned bundle")
	}
}
