package rego

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/util"
)

// Bundle signing follows OPA's format: a /.signatures.json file holding
// {"signatures": ["<JWS>"]} whose payload lists every other file of the
// bundle with its SHA-256 digest (JSON files hashed structurally, so
// whitespace and key order do not matter), plus the key id. OPA's own
// bundle package produces and checks the JWS.

// signaturesFile is the base name of a bundle's signatures file.
const signaturesFile = ".signatures.json"

// DefaultKeyID is the key id used when none is given (as `opa build`).
const DefaultKeyID = "default"

// Signature errors, wrapped by ReadVerifiedTarGz.
var (
	// ErrUnsigned means a signature was required and the bundle has none.
	ErrUnsigned = errors.New("bundle is not signed")
	// ErrBadSignature means the bundle's signature does not verify with the
	// configured keys, or the files do not match what was signed.
	ErrBadSignature = errors.New("bundle signature does not verify")
)

// Signer signs bundles with one private key.
type Signer struct {
	cfg   *bundle.SigningConfig
	keyID string
}

// NewSigner returns a signer for a PEM private key (PKCS#1 or PKCS#8 RSA,
// SEC 1 or PKCS#8 ECDSA, PKCS#8 Ed25519); the JWS algorithm follows the key
// (RS256, ES256/384/512, EdDSA). keyID names the key to verifiers
// (DefaultKeyID when empty).
func NewSigner(keyPEM []byte, keyID string) (*Signer, error) {
	alg, err := keyAlgorithm(keyPEM, true)
	if err != nil {
		return nil, fmt.Errorf("rego: signing key: %w", err)
	}
	if keyID == "" {
		keyID = DefaultKeyID
	}
	return &Signer{cfg: bundle.NewSigningConfig(string(keyPEM), alg, ""), keyID: keyID}, nil
}

// WriteSignedTarGz writes b as WriteTarGz does, plus /.signatures.json
// signing every file with s.
func (b *Bundle) WriteSignedTarGz(w io.Writer, s *Signer) error {
	if s == nil {
		return errors.New("rego: no signer")
	}
	files, err := b.tarFiles()
	if err != nil {
		return err
	}
	infos := make([]bundle.FileInfo, 0, len(files))
	for _, name := range slices.Sorted(maps.Keys(files)) {
		sum, err := fileDigest(strings.TrimPrefix(name, "/"), files[name])
		if err != nil {
			return fmt.Errorf("rego: signing %s: %w", name, err)
		}
		infos = append(infos, bundle.NewFile(strings.TrimPrefix(name, "/"), sum, string(bundle.SHA256)))
	}
	token, err := bundle.GenerateSignedToken(infos, s.cfg, s.keyID)
	if err != nil {
		return fmt.Errorf("rego: signing bundle: %w", err)
	}
	sigs, err := json.MarshalIndent(bundle.SignaturesConfig{Signatures: []string{token}}, "", " ")
	if err != nil {
		return err
	}
	files["/"+signaturesFile] = sigs
	return writeTarGz(w, files)
}

// fileDigest is OPA's SHA-256 digest of one bundle file.
func fileDigest(name string, body []byte) (string, error) {
	h, err := bundle.NewSignatureHasher(bundle.SHA256)
	if err != nil {
		return "", err
	}
	var v any = body
	if bundle.IsStructuredDoc(name) {
		if err := util.Unmarshal(body, &v); err != nil {
			return "", err
		}
	}
	sum, err := h.HashFile(v)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum), nil
}

// VerificationKey is one public key bundles may be signed with.
type VerificationKey struct {
	// ID is the key id the signature names (DefaultKeyID when empty).
	ID string
	// PEM is the public key (PKIX, PKCS#1 RSA) or a certificate.
	PEM []byte
}

// Verifier checks bundle signatures against a set of public keys.
type Verifier struct {
	cfg *bundle.VerificationConfig
	ids []string
}

// NewVerifier returns a verifier that accepts bundles signed by any of keys.
func NewVerifier(keys ...VerificationKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("rego: no verification keys")
	}
	m := make(map[string]*bundle.KeyConfig, len(keys))
	for _, k := range keys {
		id := k.ID
		if id == "" {
			id = DefaultKeyID
		}
		if _, dup := m[id]; dup {
			return nil, fmt.Errorf("rego: verification key id %q given twice", id)
		}
		alg, err := keyAlgorithm(k.PEM, false)
		if err != nil {
			return nil, fmt.Errorf("rego: verification key %q: %w", id, err)
		}
		m[id] = &bundle.KeyConfig{Key: string(k.PEM), Algorithm: alg}
	}
	return &Verifier{cfg: bundle.NewVerificationConfig(m, "", "", nil), ids: slices.Sorted(maps.Keys(m))}, nil
}

// KeyIDs lists the key ids v accepts.
func (v *Verifier) KeyIDs() []string { return slices.Clone(v.ids) }

// ReadVerifiedTarGz reads a bundle as ReadTarGz does and checks its
// signature with v: the bundle must carry /.signatures.json with one JWS
// that verifies with a configured key, every file of the bundle must be
// listed in it with a matching digest, and every file listed must be
// there. Errors wrap ErrUnsigned or ErrBadSignature. SignedBy is set to the
// key id.
func ReadVerifiedTarGz(r io.Reader, v *Verifier) (*Bundle, error) {
	if v == nil {
		return nil, errors.New("rego: no verifier")
	}
	b, contents, err := readTarGz(r)
	if err != nil {
		return nil, err
	}
	if contents.signatures == nil {
		return nil, fmt.Errorf("rego: %w (no %s; sign it with pbac policy build --signing-key)", ErrUnsigned, signaturesFile)
	}
	var sc bundle.SignaturesConfig
	if err := json.Unmarshal(contents.signatures, &sc); err != nil {
		return nil, fmt.Errorf("rego: %w: %s: %w", ErrBadSignature, signaturesFile, err)
	}
	if sc.Plugin != "" {
		return nil, fmt.Errorf("rego: %w: signing plugin %q is not supported", ErrBadSignature, sc.Plugin)
	}
	signed, err := bundle.VerifyBundleSignature(sc, v.cfg)
	if err != nil {
		return nil, fmt.Errorf("rego: %w: %w", ErrBadSignature, err)
	}
	for _, name := range slices.Sorted(maps.Keys(contents.files)) {
		if err := bundle.VerifyBundleFile(name, *bytes.NewBuffer(contents.files[name]), signed); err != nil {
			return nil, fmt.Errorf("rego: %w: %w", ErrBadSignature, err)
		}
	}
	if len(signed) > 0 {
		return nil, fmt.Errorf("rego: %w: signed files missing from the bundle: %s",
			ErrBadSignature, strings.Join(slices.Sorted(maps.Keys(signed)), ", "))
	}
	b.SignedBy = signatureKeyID(sc.Signatures[0])
	return b, nil
}

// signatureKeyID reads the key id of a verified JWS: the kid header, or
// the payload's keyid claim.
func signatureKeyID(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	var claims struct {
		Kid   string `json:"kid"`
		KeyID string `json:"keyid"`
	}
	for _, p := range parts[:2] {
		raw, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil {
			continue
		}
		if json.Unmarshal(raw, &claims) == nil && (claims.Kid != "" || claims.KeyID != "") {
			if claims.Kid != "" {
				return claims.Kid
			}
			return claims.KeyID
		}
	}
	return ""
}

// keyAlgorithm picks the JWS algorithm for a PEM key; private says which
// kind of key is expected.
func keyAlgorithm(keyPEM []byte, private bool) (string, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return "", errors.New("no PEM block")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return "", fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return "", err
	}
	isPrivate := strings.Contains(block.Type, "PRIVATE")
	if isPrivate != private {
		if private {
			return "", errors.New("want a private key, got a public one")
		}
		return "", errors.New("want a public key or certificate, got a private key")
	}
	switch k := key.(type) {
	case *rsa.PrivateKey, *rsa.PublicKey:
		return "RS256", nil
	case ed25519.PrivateKey, ed25519.PublicKey:
		return "EdDSA", nil
	case *ecdsa.PrivateKey:
		return ecAlgorithm(k.Curve)
	case *ecdsa.PublicKey:
		return ecAlgorithm(k.Curve)
	default:
		return "", fmt.Errorf("unsupported key type %T", key)
	}
}

func ecAlgorithm(c elliptic.Curve) (string, error) {
	switch c {
	case elliptic.P256():
		return "ES256", nil
	case elliptic.P384():
		return "ES384", nil
	case elliptic.P521():
		return "ES512", nil
	}
	return "", fmt.Errorf("unsupported curve %s", c.Params().Name)
}
