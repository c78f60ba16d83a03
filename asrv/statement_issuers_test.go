package asrv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// issuerFiles are a third-party issuer's keys as an operator configures
// them: an ES256 and an EdDSA key, as a JWK set (kids acme-es, acme-ed)
// and as PEM.
type issuerFiles struct {
	es    *ecdsa.PrivateKey
	ed    ed25519.PrivateKey
	jwks  []byte
	pemES []byte
	pemED []byte
}

func newIssuerFiles(t *testing.T) issuerFiles {
	t.Helper()
	es, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &es.PublicKey, KeyID: "acme-es", Algorithm: "ES256", Use: "sig"},
		{Key: ed.Public(), KeyID: "acme-ed", Algorithm: "EdDSA"},
	}}
	jwks, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(k any) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	return issuerFiles{es: es, ed: ed, jwks: jwks, pemES: pemOf(&es.PublicKey), pemED: pemOf(ed.Public())}
}

// TestConfiguredStatementIssuers: a statement by a configured third-party
// issuer (ES256 or EdDSA, keys from a JWK set or PEM) verifies, and its
// claims name the issuer as configured (IssuerName), which is what policy
// weighs; this server's own key is "local". A key nobody configured, a
// statement naming another issuer's iss, and a revoked key id are
// refused as untrusted (unapproved_software_statement at registration).
func TestConfiguredStatementIssuers(t *testing.T) {
	const acme = "https://acme.example"
	f := newIssuerFiles(t)
	fromJWKS, err := TrustedIssuersFromJWKS("acme", acme, "", f.jwks)
	if err != nil {
		t.Fatal(err)
	}
	fromPEM, err := TrustedIssuersFromPEM("beta", "urn:beta", "", append(append([]byte{}, f.pemES...), f.pemED...))
	if err != nil {
		t.Fatal(err)
	}
	local, err := LoadOrCreateIssuerKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewStatementVerifier(append(append([]TrustedIssuer{local.Trusted()}, fromJWKS...), fromPEM...)...)
	if err != nil {
		t.Fatal(err)
	}
	v = v.WithAudience(stmtAudience).WithRevoked(StatementRevocations{KeyIDs: []string{"acme-revoked"}})
	thumb := func(k any) string {
		tp, err := (&jose.JSONWebKey{Key: k}).Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		return stmtB64(tp)
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	revokedSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: stranger.Public(), KeyID: "acme-revoked"}}})
	withRevoked, err := TrustedIssuersFromJWKS("acme", acme, "", revokedSet)
	if err != nil {
		t.Fatal(err)
	}
	vr, err := NewStatementVerifier(append(fromJWKS, withRevoked...)...)
	if err != nil {
		t.Fatal(err)
	}
	vr = vr.WithAudience(stmtAudience).WithRevoked(StatementRevocations{KeyIDs: []string{"acme-revoked"}})
	localJWS, err := local.Sign(StatementClaims{AgentProvider: "claude-code", Audience: []string{stmtAudience}, TTL: DefaultStatementMaxLifetime}, stmtNow)
	if err != nil {
		t.Fatal(err)
	}
	now := stmtNow

	for _, tc := range []struct {
		name     string
		v        *StatementVerifier
		jws      string
		wantName string
		wantErr  error
	}{
		{"ES256 of the JWK set", v, stmtSign(t, jose.ES256, f.es, "acme-es", stmtClaims(acme)), "acme", nil},
		{"EdDSA of the JWK set", v, stmtSign(t, jose.EdDSA, f.ed, "acme-ed", stmtClaims(acme)), "acme", nil},
		{"ES256 of a PEM file, kid its thumbprint", v, stmtSign(t, jose.ES256, f.es, thumb(&f.es.PublicKey), stmtClaims("urn:beta")), "beta", nil},
		{"EdDSA of a PEM file, kid its thumbprint", v, stmtSign(t, jose.EdDSA, f.ed, thumb(f.ed.Public()), stmtClaims("urn:beta")), "beta", nil},
		{"this server's own key is local", v, localJWS, LocalIssuerName, nil},
		{"a key nobody configured", v, stmtSign(t, jose.EdDSA, stranger, "acme-ed", stmtClaims(acme)), "", ErrUntrustedStatement},
		{"an unconfigured issuer", v, stmtSign(t, jose.ES256, f.es, "acme-es", stmtClaims("https://evil.example")), "", ErrUntrustedStatement},
		{"the kid of the other key", v, stmtSign(t, jose.ES256, f.es, "acme-ed", stmtClaims(acme)), "", ErrUntrustedStatement},
		{"a PEM key without its thumbprint", v, stmtSign(t, jose.ES256, f.es, "", stmtClaims("urn:beta")), "", ErrUntrustedStatement},
		{"a revoked key id", vr, stmtSign(t, jose.EdDSA, stranger, "acme-revoked", stmtClaims(acme)), "", ErrUntrustedStatement},
		{"the set's other key, not revoked", vr, stmtSign(t, jose.ES256, f.es, "acme-es", stmtClaims(acme)), "acme", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.v.Verify(tc.jws, now)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || got.Verified {
					t.Fatalf("Verify = %+v, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !got.Verified || got.IssuerName != tc.wantName || got.AgentProvider != "claude-code" {
				t.Fatalf("Verify = %+v, %v; want verified by %s", got, err, tc.wantName)
			}
		})
	}
}

// TestTrustedIssuerFiles: what an operator's key file may hold.
func TestTrustedIssuerFiles(t *testing.T) {
	f := newIssuerFiles(t)
	rsaPEM := func() []byte {
		ks := loadStatementKeys(t)
		der, _ := x509.MarshalPKIXPublicKey(&ks.rsa.PublicKey)
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	privSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.ed, KeyID: "k"}}})
	noKids, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.ed.Public()}, {Key: &f.es.PublicKey}}})
	encSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.ed.Public(), Use: "enc"}}})
	for _, tc := range []struct {
		name    string
		jwks    bool
		keyID   string
		raw     []byte
		kids    []string
		wantErr string
	}{
		{"a JWK set: every key by its kid", true, "", f.jwks, []string{"acme-es", "acme-ed"}, ""},
		{"a JWK set: key_id picks one", true, "acme-ed", f.jwks, []string{"acme-ed"}, ""},
		{"a JWK set: key_id of no key", true, "acme-2027", f.jwks, nil, `no key with kid "acme-2027"`},
		{"a JWK set of a private key", true, "", privSet, nil, "a private key"},
		{"a JWK set of keys without kids", true, "", noKids, nil, "no kid"},
		{"an encryption key", true, "", encSet, nil, "not a signing key"},
		{"not JSON", true, "", []byte("{"), nil, "not a JSON Web Key Set"},
		{"one PEM key: any kid", false, "", f.pemES, []string{""}, ""},
		{"one PEM key with key_id", false, "acme-1", f.pemED, []string{"acme-1"}, ""},
		{"two PEM keys with key_id", false, "acme-1", append(append([]byte{}, f.pemES...), f.pemED...), nil, "names one key"},
		{"an RSA key", false, "", rsaPEM, nil, "unsupported key type"},
		{"a private key block", false, "", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), nil, "public keys only"},
		{"no PEM at all", false, "", []byte("hello"), nil, "no PEM public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parse := TrustedIssuersFromPEM
			if tc.jwks {
				parse = TrustedIssuersFromJWKS
			}
			got, err := parse("acme", "https://acme.example", tc.keyID, tc.raw)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kids []string
			for _, ti := range got {
				if ti.Name != "acme" || ti.Issuer != "https://acme.example" {
					t.Fatalf("entry %+v", ti)
				}
				kids = append(kids, ti.KeyID)
			}
			if strings.Join(kids, ",") != strings.Join(tc.kids, ",") {
				t.Fatalf("key ids %q, want %q", kids, tc.kids)
			}
		})
	}
	if _, err := NewStatementVerifier(TrustedIssuer{Name: LocalIssuerName, Issuer: "https://acme.example", Key: f.ed.Public()}); err == nil {
		t.Fatal("a third-party issuer named local was accepted")
	}
}

// TestUntrustedAfterIssuerRemoved: a client verified by an issuer stays
// verified while the issuer is trusted (even by another of its keys), and
// is treated as unverified once its key is revoked or an operator removes
// the issuer from clients.statement_issuers.
func TestUntrustedAfterIssuerRemoved(t *testing.T) {
	const acme = "https://acme.example"
	f := newIssuerFiles(t)
	fromJWKS, err := TrustedIssuersFromJWKS("acme", acme, "", f.jwks)
	if err != nil {
		t.Fatal(err)
	}
	local, err := LoadOrCreateIssuerKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	with, err := NewStatementVerifier(append([]TrustedIssuer{local.Trusted()}, fromJWKS...)...)
	if err != nil {
		t.Fatal(err)
	}
	with = with.WithAudience(stmtAudience)
	claims, err := with.Verify(stmtSign(t, jose.ES256, f.es, "acme-es", stmtClaims(acme)), stmtNow)
	if err != nil || !claims.Verified {
		t.Fatalf("Verify = %+v, %v", claims, err)
	}
	without, err := NewStatementVerifier(local.Trusted())
	if err != nil {
		t.Fatal(err)
	}
	if fromJWKS[1].KeyID != "acme-ed" {
		t.Fatalf("the JWK set's second key is %q, want acme-ed", fromJWKS[1].KeyID)
	}
	rotated, err := NewStatementVerifier(local.Trusted(), fromJWKS[1]) // acme's EdDSA key only
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		v      *StatementVerifier
		claims AgentClaims
		want   bool
	}{
		{"the issuer still trusted", with, claims, false},
		{"the issuer trusted by another of its keys", rotated, claims, false},
		{"the issuer removed from the configuration", without, claims, true},
		{"its key revoked", with.WithRevoked(StatementRevocations{KeyIDs: []string{"acme-es"}}), claims, true},
		{"an unverified client", without, AgentClaims{Issuer: acme}, false},
		{"no verifier at all", nil, claims, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.v.Untrusted(tc.claims); got != tc.want {
				t.Fatalf("Untrusted = %v, want %v", got, tc.want)
			}
		})
	}
}
