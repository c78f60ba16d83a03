package asrv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

var updateStatementVectors = flag.Bool("update-statement-vectors", false,
	"regenerate asrv/testdata/statements (keys are created only when missing)")

const (
	stmtESIssuer   = "https://issuer.example"
	stmtEdIssuer   = "urn:test:ed-issuer"
	stmtEdKID      = "ed-1"
	stmtVectorsDir = "testdata/statements"
	// stmtAudience is the authorization server the test verifier is for.
	stmtAudience = "https://as.example"
	// stmtRevokedID is a statement id (jti) and stmtRevokedKID a key id
	// (of edOther, under stmtEdIssuer) the test verifier has revoked.
	stmtRevokedID  = "revoked-statement-1"
	stmtRevokedKID = "ed-revoked"
)

// stmtNow is the fixed "now" of the statement tests and vectors.
var stmtNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// statementKeys are the fixed test keys committed in testdata (test keys
// only, never trusted anywhere else).
type statementKeys struct {
	es256, es256Other *ecdsa.PrivateKey
	ed, edOther       ed25519.PrivateKey
	rsa               *rsa.PrivateKey
}

var stmtKeyFiles = []string{"es256.pem", "es256-other.pem", "ed25519.pem", "ed25519-other.pem", "rsa.pem"}

func loadStatementKeys(t testing.TB) statementKeys {
	t.Helper()
	var ks []any
	for _, name := range stmtKeyFiles {
		data, err := os.ReadFile(filepath.Join(stmtVectorsDir, "keys", name))
		if err != nil {
			t.Fatalf("test key: %v (regenerate with -update-statement-vectors)", err)
		}
		block, _ := pem.Decode(data)
		if block == nil {
			t.Fatalf("test key %s: no PEM block", name)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatalf("test key %s: %v", name, err)
		}
		ks = append(ks, k)
	}
	return statementKeys{
		es256: ks[0].(*ecdsa.PrivateKey), es256Other: ks[1].(*ecdsa.PrivateKey),
		ed: ks[2].(ed25519.PrivateKey), edOther: ks[3].(ed25519.PrivateKey),
		rsa: ks[4].(*rsa.PrivateKey),
	}
}

func generateStatementKeys(t *testing.T) {
	t.Helper()
	dir := filepath.Join(stmtVectorsDir, "keys")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range stmtKeyFiles {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		var k any
		var err error
		switch {
		case strings.HasPrefix(name, "es256"):
			k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		case strings.HasPrefix(name, "ed25519"):
			_, k, err = ed25519.GenerateKey(rand.Reader)
		default:
			k, err = rsa.GenerateKey(rand.Reader, 2048)
		}
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stmtTestVerifier trusts the ES256 issuer (no key id) and the EdDSA
// issuer's two keys, one of them revoked; it is for stmtAudience, with
// the default maximum lifetime, and has revoked stmtRevokedID. The
// committed vectors record the same (their "verifier").
func stmtTestVerifier(t testing.TB, ks statementKeys) *StatementVerifier {
	t.Helper()
	v, err := NewStatementVerifier(
		TrustedIssuer{Issuer: stmtESIssuer, Key: &ks.es256.PublicKey},
		TrustedIssuer{Issuer: stmtEdIssuer, KeyID: stmtEdKID, Key: ks.ed.Public()},
		TrustedIssuer{Issuer: stmtEdIssuer, KeyID: stmtRevokedKID, Key: ks.edOther.Public()},
	)
	if err != nil {
		t.Fatal(err)
	}
	return v.WithAudience(stmtAudience).WithRevoked(StatementRevocations{StatementIDs: []string{stmtRevokedID}, KeyIDs: []string{stmtRevokedKID}})
}

func stmtB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func stmtJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stmtSignRaw signs payload bytes as a compact JWS.
func stmtSignRaw(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, payload []byte) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if kid != "" {
		opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func stmtSign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	return stmtSignRaw(t, alg, key, kid, stmtJSON(t, claims))
}

func stmtClaims(iss string, mods ...func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss":                      iss,
		"software_id":              "4f9c2b1e-claude-code",
		"agent_provider":           "claude-code",
		"agent_model":              "claude-opus-4",
		"single_use_access_tokens": true,
		"iat":                      stmtNow.Add(-time.Hour).Unix(),
		"exp":                      stmtNow.Add(time.Hour).Unix(),
		"aud":                      stmtAudience,
		"jti":                      "statement-1",
	}
	for _, m := range mods {
		m(c)
	}
	return c
}

func claimSet(k string, v any) func(map[string]any) { return func(c map[string]any) { c[k] = v } }
func claimDel(k string) func(map[string]any)        { return func(c map[string]any) { delete(c, k) } }

// statementCase is one rule: a token builder and the expected error class
// (nil = accepted).
type statementCase struct {
	name string
	jws  func(t testing.TB, ks statementKeys) string
	want error
}

func statementCases() []statementCase {
	es := func(mods ...func(map[string]any)) func(testing.TB, statementKeys) string {
		return func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.ES256, ks.es256, "", stmtClaims(stmtESIssuer, mods...))
		}
	}
	return []statementCase{
		{"valid ES256", es(), nil},
		{"valid EdDSA with kid", func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.EdDSA, ks.ed, stmtEdKID, stmtClaims(stmtEdIssuer))
		}, nil},
		{"valid minimal claims", es(claimDel("software_id"), claimDel("agent_model"), claimDel("single_use_access_tokens")), nil},
		{"valid fractional dates", es(claimSet("iat", 1767222000.5), claimSet("exp", 1767229200.25)), nil},
		{"valid unknown claims ignored", es(claimSet("extra", map[string]any{"a": 1})), nil},
		{"valid audience among several", es(claimSet("aud", []string{"https://other-as.example", stmtAudience})), nil},
		{"valid for the longest lifetime", es(claimSet("iat", stmtNow.Add(-time.Hour).Unix()),
			claimSet("exp", stmtNow.Add(-time.Hour+DefaultStatementMaxLifetime).Unix())), nil},
		{"missing aud", es(claimDel("aud")), ErrInvalidStatement},
		{"aud of another authorization server", es(claimSet("aud", "https://other-as.example")), ErrInvalidStatement},
		{"aud empty array", es(claimSet("aud", []string{})), ErrInvalidStatement},
		{"aud wrong type", es(claimSet("aud", 7)), ErrInvalidStatement},
		{"aud array with a non-string", es(claimSet("aud", []any{stmtAudience, 7})), ErrInvalidStatement},
		{"missing exp (a statement must expire)", es(claimDel("exp")), ErrInvalidStatement},
		{"lifetime longer than the maximum", es(claimSet("iat", stmtNow.Add(-time.Hour).Unix()),
			claimSet("exp", stmtNow.Add(-time.Hour+DefaultStatementMaxLifetime+time.Second).Unix())), ErrInvalidStatement},
		{"missing jti", es(claimDel("jti")), ErrInvalidStatement},
		{"empty jti", es(claimSet("jti", "")), ErrInvalidStatement},
		{"revoked statement", es(claimSet("jti", stmtRevokedID)), ErrUntrustedStatement},
		{"revoked issuer key", func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.EdDSA, ks.edOther, stmtRevokedKID, stmtClaims(stmtEdIssuer))
		}, ErrUntrustedStatement},
		{"alg none refused", func(t testing.TB, ks statementKeys) string {
			return stmtB64([]byte(`{"alg":"none"}`)) + "." + stmtB64(stmtJSON(t, stmtClaims(stmtESIssuer))) + "."
		}, ErrInvalidStatement},
		{"HS256 with the public key as secret refused", func(t testing.TB, ks statementKeys) string {
			secret := ks.ed.Public().(ed25519.PublicKey)
			secret = append(secret, secret...) // HS256 needs 32+ bytes; this is the trusted key's bytes
			return stmtSign(t, jose.HS256, []byte(secret), stmtEdKID, stmtClaims(stmtEdIssuer))
		}, ErrInvalidStatement},
		{"HS256 with the ECDSA public key bytes as secret refused", func(t testing.TB, ks statementKeys) string {
			der, err := x509.MarshalPKIXPublicKey(&ks.es256.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			return stmtSign(t, jose.HS256, der, "", stmtClaims(stmtESIssuer))
		}, ErrInvalidStatement},
		{"RS256 refused", func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.RS256, ks.rsa, "", stmtClaims(stmtESIssuer))
		}, ErrInvalidStatement},
		{"ES384 refused", func(t testing.TB, ks statementKeys) string {
			h := stmtB64([]byte(`{"alg":"ES384"}`))
			return h + "." + stmtB64(stmtJSON(t, stmtClaims(stmtESIssuer))) + "." + stmtB64(make([]byte, 96))
		}, ErrInvalidStatement},
		{"unknown issuer", func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.ES256, ks.es256, "", stmtClaims("https://evil.example"))
		}, ErrUntrustedStatement},
		{"right issuer wrong key ES256", func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.ES256, ks.es256Other, "", stmtClaims(stmtESIssuer))
		}, ErrUntrustedStatement},
		{"right issuer wrong key EdDSA", func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.EdDSA, ks.edOther, stmtEdKID, stmtClaims(stmtEdIssuer))
		}, ErrUntrustedStatement},
		{"issuer key id missing", func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.EdDSA, ks.ed, "", stmtClaims(stmtEdIssuer))
		}, ErrUntrustedStatement},
		{"issuer key id unknown", func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.EdDSA, ks.ed, "ed-2", stmtClaims(stmtEdIssuer))
		}, ErrUntrustedStatement},
		{"algorithm does not match the issuer key", func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.EdDSA, ks.ed, "", stmtClaims(stmtESIssuer))
		}, ErrUntrustedStatement},
		{"tampered payload", func(t testing.TB, ks statementKeys) string {
			parts := strings.Split(stmtSign(t, jose.ES256, ks.es256, "", stmtClaims(stmtESIssuer)), ".")
			parts[1] = stmtB64(stmtJSON(t, stmtClaims(stmtESIssuer, claimSet("agent_provider", "claude-code-trusted"))))
			return strings.Join(parts, ".")
		}, ErrUntrustedStatement},
		{"tampered header kid", func(t testing.TB, ks statementKeys) string {
			parts := strings.Split(stmtSign(t, jose.EdDSA, ks.ed, "ed-0", stmtClaims(stmtEdIssuer)), ".")
			parts[0] = stmtB64([]byte(`{"alg":"EdDSA","kid":"` + stmtEdKID + `"}`))
			return strings.Join(parts, ".")
		}, ErrUntrustedStatement},
		{"expired", es(claimSet("exp", stmtNow.Unix())), ErrInvalidStatement},
		{"nbf in the future", es(claimSet("nbf", stmtNow.Add(2*time.Minute).Unix())), ErrInvalidStatement},
		{"nbf within skew", es(claimSet("nbf", stmtNow.Add(30*time.Second).Unix())), nil},
		{"iat in the future", es(claimSet("iat", stmtNow.Add(2*time.Minute).Unix())), ErrInvalidStatement},
		{"iat within skew", es(claimSet("iat", stmtNow.Add(30*time.Second).Unix())), nil},
		{"missing iat", es(claimDel("iat")), ErrInvalidStatement},
		{"missing agent_provider", es(claimDel("agent_provider")), ErrInvalidStatement},
		{"empty agent_provider", es(claimSet("agent_provider", "")), ErrInvalidStatement},
		{"agent_provider with control characters", es(claimSet("agent_provider", "ci-bot\n")), ErrInvalidStatement},
		{"agent_provider too long", es(claimSet("agent_provider", strings.Repeat("a", 257))), ErrInvalidStatement},
		{"wrong type agent_provider", es(claimSet("agent_provider", 42)), ErrInvalidStatement},
		{"wrong type agent_model", es(claimSet("agent_model", []string{"x"})), ErrInvalidStatement},
		{"wrong type software_id", es(claimSet("software_id", nil)), ErrInvalidStatement},
		{"wrong type single_use_access_tokens", es(claimSet("single_use_access_tokens", "true")), ErrInvalidStatement},
		{"wrong type exp", es(claimSet("exp", "2030-01-01")), ErrInvalidStatement},
		{"wrong type iat", es(claimSet("iat", true)), ErrInvalidStatement},
		{"negative exp", es(claimSet("exp", -1)), ErrInvalidStatement},
		{"exp out of range", es(claimSet("exp", 1e300)), ErrInvalidStatement},
		{"wrong type iss", func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.ES256, ks.es256, "", stmtClaims(stmtESIssuer, claimSet("iss", []string{stmtESIssuer})))
		}, ErrInvalidStatement},
		{"missing iss", es(claimDel("iss")), ErrInvalidStatement},
		{"duplicate claims", func(t testing.TB, ks statementKeys) string {
			p := `{"iss":"` + stmtESIssuer + `","agent_provider":"ci-bot","agent_provider":"claude-code-trusted","iat":1}`
			return stmtSignRaw(t, jose.ES256, ks.es256, "", []byte(p))
		}, ErrInvalidStatement},
		{"payload not an object", func(t testing.TB, ks statementKeys) string {
			return stmtSignRaw(t, jose.ES256, ks.es256, "", []byte(`["iss"]`))
		}, ErrInvalidStatement},
		{"crit header refused", func(t testing.TB, ks statementKeys) string {
			opts := (&jose.SignerOptions{}).WithCritical("x").WithHeader("x", 1)
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ks.es256}, opts)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := s.Sign(stmtJSON(t, stmtClaims(stmtESIssuer)))
			if err != nil {
				t.Fatal(err)
			}
			out, err := obj.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			return out
		}, ErrInvalidStatement},
		{"oversize", es(claimSet("padding", strings.Repeat("x", MaxStatementSize))), ErrInvalidStatement},
		{"empty", func(testing.TB, statementKeys) string { return "" }, ErrInvalidStatement},
		{"not a JWS", func(testing.TB, statementKeys) string { return "not-a-jws" }, ErrInvalidStatement},
		{"four segments", func(t testing.TB, ks statementKeys) string {
			return stmtSign(t, jose.ES256, ks.es256, "", stmtClaims(stmtESIssuer)) + ".x"
		}, ErrInvalidStatement},
		{"two signatures (JSON serialization) refused", func(t testing.TB, ks statementKeys) string {
			s, err := jose.NewMultiSigner([]jose.SigningKey{
				{Algorithm: jose.ES256, Key: ks.es256},
				{Algorithm: jose.EdDSA, Key: ks.ed},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := s.Sign(stmtJSON(t, stmtClaims(stmtESIssuer)))
			if err != nil {
				t.Fatal(err)
			}
			return obj.FullSerialize()
		}, ErrInvalidStatement},
		{"flattened JSON serialization refused", func(t testing.TB, ks statementKeys) string {
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ks.es256}, nil)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := s.Sign(stmtJSON(t, stmtClaims(stmtESIssuer)))
			if err != nil {
				t.Fatal(err)
			}
			return obj.FullSerialize()
		}, ErrInvalidStatement},
	}
}

func TestStatementVerify(t *testing.T) {
	ks := loadStatementKeys(t)
	v := stmtTestVerifier(t, ks)
	for _, tc := range statementCases() {
		t.Run(tc.name, func(t *testing.T) {
			jws := tc.jws(t, ks)
			got, err := v.Verify(jws, stmtNow)
			t.Logf("err: %v", err)
			checkStatementResult(t, jws, got, err, tc.want)
		})
	}
}

func checkStatementResult(t *testing.T, jws string, got AgentClaims, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("rejected: %v", err)
		}
		if !got.Verified || got.AgentProvider == "" || (got.Issuer != stmtESIssuer && got.Issuer != stmtEdIssuer) {
			t.Fatalf("bad claims %+v", got)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if got != (AgentClaims{}) {
		t.Fatalf("claims returned with an error: %+v", got)
	}
	if len(jws) >= 8 && strings.Contains(err.Error(), jws) {
		t.Fatal("error message echoes the token")
	}
	for _, seg := range strings.Split(jws, ".") {
		if len(seg) >= 16 && strings.Contains(err.Error(), seg) {
			t.Fatal("error message echoes part of the token")
		}
	}
}

func TestStatementClaimsReturned(t *testing.T) {
	ks := loadStatementKeys(t)
	v := stmtTestVerifier(t, ks)
	jws := stmtSign(t, jose.ES256, ks.es256, "", stmtClaims(stmtESIssuer))
	got, err := v.Verify(jws, stmtNow)
	if err != nil {
		t.Fatal(err)
	}
	want := AgentClaims{Verified: true, Issuer: stmtESIssuer, SoftwareID: "4f9c2b1e-claude-code",
		AgentProvider: "claude-code", AgentModel: "claude-opus-4", SingleUseAccessTokens: true, StatementID: "statement-1"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestStatementVerifierWithoutIssuersTrustsNothing(t *testing.T) {
	ks := loadStatementKeys(t)
	jws := stmtSign(t, jose.ES256, ks.es256, "", stmtClaims(stmtESIssuer))
	empty, err := NewStatementVerifier()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []*StatementVerifier{empty.WithAudience(stmtAudience), nil} {
		if _, err := v.Verify(jws, stmtNow); !errors.Is(err, ErrUntrustedStatement) {
			t.Fatalf("err = %v, want untrusted", err)
		}
	}
}

func TestStatementVerifierRejectsBadIssuers(t *testing.T) {
	ks := loadStatementKeys(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub := ks.ed.Public().(ed25519.PublicKey)
	for _, tc := range []struct {
		name    string
		issuers []TrustedIssuer
	}{
		{"RSA key", []TrustedIssuer{{Issuer: "a", Key: &ks.rsa.PublicKey}}},
		{"P-384 key", []TrustedIssuer{{Issuer: "a", Key: &p384.PublicKey}}},
		{"private key instead of public", []TrustedIssuer{{Issuer: "a", Key: ks.ed}}},
		{"nil key", []TrustedIssuer{{Issuer: "a", Key: nil}}},
		{"nil ECDSA key", []TrustedIssuer{{Issuer: "a", Key: (*ecdsa.PublicKey)(nil)}}},
		{"short Ed25519 key", []TrustedIssuer{{Issuer: "a", Key: edPub[:31]}}},
		{"HMAC secret", []TrustedIssuer{{Issuer: "a", Key: []byte("0123456789abcdef0123456789abcdef")}}},
		{"empty issuer", []TrustedIssuer{{Issuer: "", Key: edPub}}},
		{"issuer twice without key ids", []TrustedIssuer{{Issuer: "a", Key: edPub}, {Issuer: "a", Key: &ks.es256.PublicKey}}},
		{"issuer twice same key id", []TrustedIssuer{{Issuer: "a", KeyID: "1", Key: edPub}, {Issuer: "a", KeyID: "1", Key: &ks.es256.PublicKey}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewStatementVerifier(tc.issuers...); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestStatementKeyRotationByKeyID(t *testing.T) {
	ks := loadStatementKeys(t)
	v, err := NewStatementVerifier(
		TrustedIssuer{Issuer: stmtEdIssuer, KeyID: "old", Key: ks.edOther.Public()},
		TrustedIssuer{Issuer: stmtEdIssuer, KeyID: "new", Key: ks.ed.Public()},
	)
	if err != nil {
		t.Fatal(err)
	}
	v = v.WithAudience(stmtAudience)
	for kid, key := range map[string]ed25519.PrivateKey{"old": ks.edOther, "new": ks.ed} {
		if _, err := v.Verify(stmtSign(t, jose.EdDSA, key, kid, stmtClaims(stmtEdIssuer)), stmtNow); err != nil {
			t.Fatalf("kid %s: %v", kid, err)
		}
	}
	if _, err := v.Verify(stmtSign(t, jose.EdDSA, ks.ed, "old", stmtClaims(stmtEdIssuer)), stmtNow); !errors.Is(err, ErrUntrustedStatement) {
		t.Fatalf("new key under old kid: err = %v", err)
	}
}

// statementVector is one committed test vector.
type statementVector struct {
	Name string `json:"name"`
	JWS  string `json:"jws"`
	Now  int64  `json:"now"`
	// Want is "ok", "invalid" or "untrusted".
	Want string `json:"want"`
}

// statementTrust is a trusted issuer key of the vectors' verifier.
type statementTrust struct {
	Issuer  string `json:"issuer"`
	KeyID   string `json:"kid,omitempty"`
	KeyFile string `json:"key_file"`
}

// statementVectors is the committed file: the verifier every vector is
// checked by (keys in keys/) and the vectors.
type statementVectors struct {
	Verifier struct {
		Trusted            []statementTrust `json:"trusted"`
		Audience           string           `json:"audience"`
		MaxLifetimeSeconds int64            `json:"max_lifetime_seconds"`
		RevokedIDs         []string         `json:"revoked_statement_ids"`
		RevokedKeyIDs      []string         `json:"revoked_key_ids"`
	} `json:"verifier"`
	Vectors []statementVector `json:"vectors"`
}

// stmtVectorNames are the statementCases exported as committed vectors.
var stmtVectorNames = []string{
	"valid ES256", "valid EdDSA with kid", "alg none refused",
	"HS256 with the public key as secret refused", "RS256 refused", "unknown issuer",
	"right issuer wrong key EdDSA", "tampered payload", "expired", "nbf in the future",
	"iat in the future", "missing agent_provider", "wrong type single_use_access_tokens",
	"duplicate claims", "two signatures (JSON serialization) refused",
	"valid audience among several", "missing aud", "aud of another authorization server",
	"missing exp (a statement must expire)", "lifetime longer than the maximum", "missing jti",
	"revoked statement", "revoked issuer key",
}

func stmtWantClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrUntrustedStatement):
		return "untrusted"
	default:
		return "invalid"
	}
}

// TestStatementVectors checks the committed vectors; with
// -update-statement-vectors it regenerates them (and any missing key).
func TestStatementVectors(t *testing.T) {
	path := filepath.Join(stmtVectorsDir, "vectors.json")
	if *updateStatementVectors {
		generateStatementKeys(t)
		ks := loadStatementKeys(t)
		byName := map[string]statementCase{}
		for _, c := range statementCases() {
			byName[c.name] = c
		}
		var file statementVectors
		vf := &file.Verifier
		vf.Trusted = []statementTrust{{stmtESIssuer, "", "keys/es256.pem"}, {stmtEdIssuer, stmtEdKID, "keys/ed25519.pem"},
			{stmtEdIssuer, stmtRevokedKID, "keys/ed25519-other.pem"}}
		vf.Audience, vf.MaxLifetimeSeconds = stmtAudience, int64(DefaultStatementMaxLifetime/time.Second)
		vf.RevokedIDs, vf.RevokedKeyIDs = []string{stmtRevokedID}, []string{stmtRevokedKID}
		for _, n := range stmtVectorNames {
			c, ok := byName[n]
			if !ok {
				t.Fatalf("no case %q", n)
			}
			file.Vectors = append(file.Vectors, statementVector{Name: n, JWS: c.jws(t, ks), Now: stmtNow.Unix(), Want: stmtWantClass(c.want)})
		}
		data, err := json.MarshalIndent(file, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file statementVectors
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	vs := file.Vectors
	if len(vs) < 20 {
		t.Fatalf("only %d vectors", len(vs))
	}
	// The file's verifier is the test verifier.
	vf := file.Verifier
	if vf.Audience != stmtAudience || vf.MaxLifetimeSeconds != int64(DefaultStatementMaxLifetime/time.Second) ||
		!slices.Equal(vf.RevokedIDs, []string{stmtRevokedID}) || !slices.Equal(vf.RevokedKeyIDs, []string{stmtRevokedKID}) || len(vf.Trusted) != 3 {
		t.Fatalf("the vectors' verifier %+v is not the test verifier", vf)
	}
	v := stmtTestVerifier(t, loadStatementKeys(t))
	for _, vec := range vs {
		t.Run(vec.Name, func(t *testing.T) {
			_, err := v.Verify(vec.JWS, time.Unix(vec.Now, 0))
			if got := stmtWantClass(err); got != vec.Want {
				t.Fatalf("got %s (%v), want %s", got, err, vec.Want)
			}
		})
	}
}

func FuzzVerifyStatement(f *testing.F) {
	ks := loadStatementKeys(f)
	v := stmtTestVerifier(f, ks)
	for _, c := range statementCases() {
		if c.name == "oversize" {
			continue
		}
		f.Add(c.jws(f, ks))
	}
	f.Add("e30.e30.")
	f.Add("eyJhbGciOiJFZERTQSJ9..")
	trusted := map[string]bool{stmtESIssuer: true, stmtEdIssuer: true}
	f.Fuzz(func(t *testing.T, jws string) {
		got, err := v.Verify(jws, stmtNow)
		if err != nil {
			inv, untr := errors.Is(err, ErrInvalidStatement), errors.Is(err, ErrUntrustedStatement)
			if inv == untr {
				t.Fatalf("error wraps neither or both sentinels: %v", err)
			}
			if got != (AgentClaims{}) {
				t.Fatalf("claims with error: %+v", got)
			}
			if len(jws) >= 16 && strings.Contains(err.Error(), jws) {
				t.Fatal("error echoes the token")
			}
			return
		}
		if !got.Verified || got.AgentProvider == "" || !trusted[got.Issuer] {
			t.Fatalf("accepted with bad claims %+v", got)
		}
		if len(jws) > MaxStatementSize {
			t.Fatal("accepted an oversize statement")
		}
		// Accepted statements really are signed by the issuer's key.
		obj, err := jose.ParseSignedCompact(jws, statementAlgs)
		if err != nil {
			t.Fatalf("accepted but does not parse: %v", err)
		}
		var key crypto.PublicKey = &ks.es256.PublicKey
		if got.Issuer == stmtEdIssuer {
			key = ks.ed.Public()
		}
		if _, err := obj.Verify(key); err != nil {
			t.Fatalf("accepted but signature invalid: %v", err)
		}
	})
}
