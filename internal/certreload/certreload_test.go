package certreload_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/certreload"
	"github.com/pbac-gateway/pbac/internal/certreload/certtest"
)

func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first, second := certtest.New(t, "first"), certtest.New(t, "second")
	first.Write(t, cf, kf)
	r, err := certreload.New(cf, kf, certreload.WithInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		c, err := r.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.Subject.CommonName
	}
	if got := cn(); got != "first" {
		t.Fatalf("serving %q, want first", got)
	}
	// Only the certificate replaced: the pair does not match, the old stays.
	if err := os.WriteFile(cf, second.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	bump(t, cf, 1)
	time.Sleep(2 * time.Millisecond)
	if got := cn(); got != "first" {
		t.Fatalf("half-replaced pair: serving %q, want first kept", got)
	}
	if err := os.WriteFile(kf, second.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	bump(t, kf, 2)
	time.Sleep(2 * time.Millisecond)
	if got := cn(); got != "second" {
		t.Fatalf("after replacing the pair: serving %q, want second", got)
	}
}

// bump moves a file's mtime forward, so a change within the file system's
// timestamp granularity is still seen.
func bump(t *testing.T, f string, s int) {
	t.Helper()
	ts := time.Now().Add(time.Duration(s) * time.Second)
	if err := os.Chtimes(f, ts, ts); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsBadPairs(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := certreload.New(cf, kf); err == nil {
		t.Fatal("missing files accepted")
	}
	a, b := certtest.New(t, "a"), certtest.New(t, "b")
	a.Write(t, cf, kf)
	if err := os.WriteFile(kf, b.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := certreload.New(cf, kf); err == nil {
		t.Fatal("mismatched pair accepted")
	}
	if _, err := certreload.New(cf, ""); err == nil {
		t.Fatal("missing key file accepted")
	}
}

func TestConfigFloorIsTLS12(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certtest.New(t, "x").Write(t, cf, kf)
	r, err := certreload.New(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	if v := r.Config().MinVersion; v != tls.VersionTLS12 {
		t.Fatalf("MinVersion = %x", v)
	}
}
