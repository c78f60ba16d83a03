package asrv

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIssuerKeyCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	k, err := LoadOrCreateIssuerKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, IssuerKeyFile)
	if k.Path() != path {
		t.Fatalf("path %s, want %s", k.Path(), path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
		}
		if di.Mode().Perm() != 0o700 {
			t.Fatalf("data dir mode %04o, want 0700", di.Mode().Perm())
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatal("key file is not a PEM PRIVATE KEY")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		t.Fatalf("not PKCS#8: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("data dir holds %d entries, want only the key (temp file left behind?)", len(entries))
	}
	if len(k.KeyID()) != 43 {
		t.Fatalf("kid %q is not a base64url SHA-256 thumbprint", k.KeyID())
	}
	tr := k.Trusted()
	if tr.Issuer != LocalIssuer || tr.KeyID != k.KeyID() {
		t.Fatalf("trusted %+v", tr)
	}
}

func TestIssuerKeyReloadSameKey(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateIssuerKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateIssuerKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.KeyID() != b.KeyID() || !a.PublicKey().Equal(b.PublicKey()) {
		t.Fatal("reload produced a different key")
	}
}

func TestIssuerKeyConcurrentCreateAgrees(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	kids := make([]string, 8)
	errs := make([]error, 8)
	for i := range kids {
		wg.Go(func() {
			k, err := LoadOrCreateIssuerKey(dir)
			errs[i] = err
			if err == nil {
				kids[i] = k.KeyID()
			}
		})
	}
	wg.Wait()
	for i := range kids {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if kids[i] != kids[0] {
			t.Fatal("concurrent creators ended up with different keys")
		}
	}
}

func TestIssuerKeyRefusesGroupOrOtherReadable(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX modes")
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		dir := t.TempDir()
		if _, err := LoadOrCreateIssuerKey(dir); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, IssuerKeyFile)
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadOrCreateIssuerKey(dir)
		if err == nil || !strings.Contains(err.Error(), "permissions") {
			t.Fatalf("mode %04o: err = %v, want a permissions error", mode, err)
		}
		if _, err := LoadOrCreateIssuerKeyFile(path); err == nil {
			t.Fatalf("mode %04o accepted by LoadOrCreateIssuerKeyFile", mode)
		}
	}
}

func TestIssuerKeyRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ks := loadStatementKeys(t)
	der, err := x509.MarshalPKCS8PrivateKey(ks.es256)
	if err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"not PEM":         write("garbage.key", "hello"),
		"wrong PEM type":  write("cert.key", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}))),
		"not Ed25519":     write("ec.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))),
		"a directory":     dir,
		"missing parent":  filepath.Join(dir, "nope", "x.key"),
		"invalid PKCS#8 ": write("bad.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2}}))),
	} {
		if _, err := LoadOrCreateIssuerKeyFile(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := LoadOrCreateIssuerKey(""); err == nil {
		t.Error("empty data dir accepted")
	}
}

func TestIssuerSignVerifyRoundTrip(t *testing.T) {
	k, err := LoadOrCreateIssuerKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewStatementVerifier(k.Trusted())
	if err != nil {
		t.Fatal(err)
	}
	v = v.WithAudience("https://as.example")
	now := time.Now()
	claims := StatementClaims{
		SoftwareID: "sw-1", AgentProvider: "ci-bot", AgentModel: "gpt-x",
		SingleUseAccessTokens: true, TTL: time.Hour, Audience: []string{"https://as.example"},
	}
	jws, err := k.Sign(claims, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(jws, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.StatementID == "" || got.KeyID != k.KeyID() {
		t.Fatalf("the statement's id %q and key id %q are not recorded (key %q)", got.StatementID, got.KeyID, k.KeyID())
	}
	want := AgentClaims{Verified: true, Issuer: LocalIssuer, IssuerName: LocalIssuerName, SoftwareID: "sw-1",
		AgentProvider: "ci-bot", AgentModel: "gpt-x", SingleUseAccessTokens: true, StatementID: got.StatementID, KeyID: k.KeyID()}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := v.Verify(jws, now.Add(time.Hour+time.Second)); !errors.Is(err, ErrInvalidStatement) {
		t.Fatalf("after TTL: err = %v, want expired", err)
	}
	// Every statement has its own id.
	again, _ := k.Sign(claims, now)
	if c, err := v.Verify(again, now); err != nil || c.StatementID == got.StatementID {
		t.Fatalf("two statements share the id %q (%v)", c.StatementID, err)
	}
	// Another authorization server does not take it.
	if _, err := v.WithAudience("https://elsewhere.example").Verify(jws, now); !errors.Is(err, ErrInvalidStatement) {
		t.Fatalf("at another AS: err = %v, want invalid (aud)", err)
	}
	// Revoking the statement, or the key, refuses it.
	for name, r := range map[string]StatementRevocations{
		"statement": {StatementIDs: []string{got.StatementID}},
		"key":       {KeyIDs: []string{k.KeyID()}},
	} {
		rv := v.WithRevoked(r)
		if _, err := rv.Verify(jws, now); !errors.Is(err, ErrUntrustedStatement) {
			t.Fatalf("revoked %s: err = %v, want untrusted", name, err)
		}
		if !rv.Revoked(got) || v.Revoked(got) {
			t.Fatalf("revoked %s: Revoked = %v; unrevoked: %v", name, rv.Revoked(got), v.Revoked(got))
		}
	}

	// Another data dir's key is not trusted.
	other, err := LoadOrCreateIssuerKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	jws, err = other.Sign(claims, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(jws, now); !errors.Is(err, ErrUntrustedStatement) {
		t.Fatalf("other key: err = %v, want untrusted", err)
	}
}

func TestIssuerSignRejectsBadClaims(t *testing.T) {
	k, err := LoadOrCreateIssuerKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	aud := []string{"https://as.example"}
	for name, c := range map[string]StatementClaims{
		"no provider":            {TTL: time.Hour, Audience: aud},
		"no TTL: never expires":  {AgentProvider: "p", Audience: aud},
		"negative TTL":           {AgentProvider: "p", TTL: -time.Second, Audience: aud},
		"sub-second TTL":         {AgentProvider: "p", TTL: time.Millisecond, Audience: aud},
		"TTL beyond the maximum": {AgentProvider: "p", TTL: DefaultStatementMaxLifetime + time.Second, Audience: aud},
		"no audience":            {AgentProvider: "p", TTL: time.Hour},
		"empty audience":         {AgentProvider: "p", TTL: time.Hour, Audience: []string{""}},
		"control in model":       {AgentProvider: "p", AgentModel: "a\x00b", TTL: time.Hour, Audience: aud},
		"provider too long":      {AgentProvider: strings.Repeat("p", 300), TTL: time.Hour, Audience: aud},
		"software id \\n":        {AgentProvider: "p", SoftwareID: "x\n", TTL: time.Hour, Audience: aud},
	} {
		if _, err := k.Sign(c, time.Now()); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}

func TestIssuerDefaultDataDir(t *testing.T) {
	t.Setenv("PBAC_DATA_DIR", "/srv/pbac")
	t.Setenv("XDG_DATA_HOME", "/xdg")
	if got := DefaultDataDir(); got != "/srv/pbac" {
		t.Fatalf("PBAC_DATA_DIR: got %s", got)
	}
	t.Setenv("PBAC_DATA_DIR", "")
	if got := DefaultDataDir(); got != filepath.Join("/xdg", "pbac") {
		t.Fatalf("XDG_DATA_HOME: got %s", got)
	}
	t.Setenv("XDG_DATA_HOME", "relative/ignored")
	t.Setenv("HOME", "/home/u")
	if runtime.GOOS != "windows" {
		if got := DefaultDataDir(); got != filepath.Join("/home/u", ".local", "share", "pbac") {
			t.Fatalf("home default: got %s", got)
		}
	}
}
