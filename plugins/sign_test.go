package plugins_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
)

// signedTarGz signs b with priv (key id "default") and returns the tar.gz.
func signedTarGz(t testing.TB, b *rego.Bundle, priv []byte) []byte {
	t.Helper()
	s, err := rego.NewSigner(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := b.WriteSignedTarGz(&buf, s); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readBack parses a tar.gz as an upload would.
func readBack(t testing.TB, raw []byte) *rego.Bundle {
	t.Helper()
	b, err := rego.ReadTarGz(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func verifier(t testing.TB, pub []byte) *rego.Verifier {
	t.Helper()
	v, err := rego.NewVerifier(rego.VerificationKey{PEM: pub})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignaturesRequired(t *testing.T) {
	ctx := context.Background()
	priv, pub := policytest.SigningKeys(t)
	otherPriv, _ := policytest.SigningKeys(t)
	r := policytest.Empty(t)
	// The first version is trusted as built (the shipped policy's role).
	if _, err := r.Activate(ctx, policytest.Versioned(t, 1, "alice"), "shipped"); err != nil {
		t.Fatal(err)
	}
	r.RequireSignatures(verifier(t, pub))

	good := policytest.Versioned(t, 2, "alice")
	info, err := r.Activate(ctx, readBack(t, signedTarGz(t, good, priv)), "signed")
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != good.Revision || info.SignedBy != rego.DefaultKeyID {
		t.Fatalf("activated %+v", info)
	}

	var unsigned bytes.Buffer
	if err := policytest.Versioned(t, 3).WriteTarGz(&unsigned); err != nil {
		t.Fatal(err)
	}
	// A file changed after signing: bundle 4's files under bundle 5's
	// signature.
	tampered := swapSignature(t, signedTarGz(t, policytest.Versioned(t, 4), priv), signedTarGz(t, policytest.Versioned(t, 5), priv))
	cases := map[string]*rego.Bundle{
		"in process, never signed": policytest.Versioned(t, 3),
		"unsigned tar.gz":          readBack(t, unsigned.Bytes()),
		"tampered after signing":   readBack(t, tampered),
		"signed by another key":    readBack(t, signedTarGz(t, policytest.Versioned(t, 6), otherPriv)),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := r.Activate(ctx, b, name)
			if !errors.Is(err, plugins.ErrSignature) || !errors.Is(err, plugins.ErrValidation) {
				t.Fatalf("got %v, want a signature refusal", err)
			}
			if cur, _ := r.Active(); cur.Version != good.Revision {
				t.Fatalf("active version changed to %s", cur.Version)
			}
			if _, err := r.SetShadow(ctx, b, name); !errors.Is(err, plugins.ErrSignature) {
				t.Fatalf("shadow: got %v", err)
			}
		})
	}
	if _, err := r.SetData(ctx, []byte(`{"marker": 9, "allowed": []}`), "patch"); !errors.Is(err, plugins.ErrSignature) {
		t.Fatalf("data update: got %v", err)
	}
	if _, m := decide(t, r, "alice"); m != 2 {
		t.Fatalf("deciding with marker %d", m)
	}
	// Rollback returns to the version accepted before.
	if info, err := r.Rollback(ctx); err != nil || info.Version != policytest.Versioned(t, 1, "alice").Revision {
		t.Fatalf("rollback: %+v %v", info, err)
	}
}

// swapSignature returns raw with the .signatures.json of donor.
func swapSignature(t *testing.T, raw, donor []byte) []byte {
	t.Helper()
	var sig []byte
	for name, body := range tarEntries(t, donor) {
		if name == "/.signatures.json" {
			sig = body
		}
	}
	entries := tarEntries(t, raw)
	entries["/.signatures.json"] = sig
	return writeEntries(t, entries)
}

func TestWatchDirRefusesUnsignedBundles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	priv, pub := policytest.SigningKeys(t)
	r := policytest.Empty(t)
	if _, err := r.Activate(ctx, policytest.Versioned(t, 1, "alice"), "shipped"); err != nil {
		t.Fatal(err)
	}
	r.RequireSignatures(verifier(t, pub))
	dir := t.TempDir()
	var unsigned bytes.Buffer
	if err := policytest.Versioned(t, 2).WriteTarGz(&unsigned); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "unsigned.tar.gz"), unsigned.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ActivateFile(ctx, filepath.Join(dir, "unsigned.tar.gz")); !errors.Is(err, plugins.ErrSignature) {
		t.Fatalf("unsigned file: got %v", err)
	}
	go func() { _ = r.WatchDir(ctx, dir) }()
	good := policytest.Versioned(t, 3, "alice")
	tmp := filepath.Join(dir, ".incoming")
	if err := os.WriteFile(tmp, signedTarGz(t, good, priv), 0o600); err != nil {
		t.Fatal(err)
	}
	// shipped, the refused file, then the watcher refusing it at start.
	waitFor(t, "the watcher", func() bool { return len(r.Events()) >= 3 })
	if err := os.Rename(tmp, filepath.Join(dir, "signed.tar.gz")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the signed bundle", func() bool {
		info, _ := r.Active()
		return info.Version == good.Revision
	})
}

func tarEntries(t *testing.T, raw []byte) map[string][]byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name], _ = io.ReadAll(tr)
	}
}

func writeEntries(t *testing.T, entries map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
