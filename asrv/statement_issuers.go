package asrv

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/go-jose/go-jose/v4"
)

// maxIssuerKeys bounds the keys of one trusted issuer's file.
const maxIssuerKeys = 16

// ReadTrustedIssuer reads a configured statement issuer's key file: PEM
// public keys (keysFile, TrustedIssuersFromPEM) or a JSON Web Key Set
// (jwksFile, TrustedIssuersFromJWKS), whichever is set.
func ReadTrustedIssuer(name, issuer, keyID, keysFile, jwksFile string) ([]TrustedIssuer, error) {
	path, parse := keysFile, TrustedIssuersFromPEM
	if jwksFile != "" {
		path, parse = jwksFile, TrustedIssuersFromJWKS
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxKeyFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxKeyFileSize)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out, err := parse(name, issuer, keyID, raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// TrustedIssuersFromPEM are the TrustedIssuer entries of a configured
// statement issuer whose public keys are PEM blocks (PKIX "PUBLIC KEY":
// P-256 or Ed25519). With keyID set the file must hold exactly one key, and
// statements must name keyID as their kid. One key without keyID verifies
// whatever kid a statement names. Several keys are told apart by their
// RFC 7638 thumbprint (SHA-256, base64url), which statements must name as
// their kid.
func TrustedIssuersFromPEM(name, issuer, keyID string, pemBytes []byte) ([]TrustedIssuer, error) {
	var keys []crypto.PublicKey
	for rest := pemBytes; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("a %q block: want PUBLIC KEY blocks (public keys only)", b.Type)
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key %d: %w", len(keys)+1, err)
		}
		keys = append(keys, k)
	}
	switch {
	case len(keys) == 0:
		return nil, errors.New("no PEM public key in it")
	case len(keys) > maxIssuerKeys:
		return nil, fmt.Errorf("%d keys, more than %d", len(keys), maxIssuerKeys)
	case keyID != "" && len(keys) > 1:
		return nil, fmt.Errorf("key_id %q names one key, the file holds %d (leave key_id out: several keys are told apart by their thumbprints)", keyID, len(keys))
	}
	out := make([]TrustedIssuer, 0, len(keys))
	for i, k := range keys {
		if _, _, err := statementKey(k); err != nil {
			return nil, fmt.Errorf("public key %d: %w", i+1, err)
		}
		kid := keyID
		if len(keys) > 1 {
			tp, err := (&jose.JSONWebKey{Key: k}).Thumbprint(crypto.SHA256)
			if err != nil {
				return nil, fmt.Errorf("public key %d: thumbprint: %w", i+1, err)
			}
			kid = base64.RawURLEncoding.EncodeToString(tp)
		}
		out = append(out, TrustedIssuer{Name: name, Issuer: issuer, KeyID: kid, Key: k})
	}
	return out, nil
}

// TrustedIssuersFromJWKS are the TrustedIssuer entries of a configured
// statement issuer whose public keys are a JSON Web Key Set (RFC 7517 §5):
// every key (P-256 or Ed25519, public, for signing), or with keyID only
// the one whose kid it is. Keys are known by their kid; several keys need
// distinct ones.
func TrustedIssuersFromJWKS(name, issuer, keyID string, raw []byte) ([]TrustedIssuer, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	if len(set.Keys) == 0 || len(set.Keys) > maxIssuerKeys {
		return nil, fmt.Errorf("%d keys: want 1 to %d", len(set.Keys), maxIssuerKeys)
	}
	var out []TrustedIssuer
	var kids []string
	for i, k := range set.Keys {
		if keyID != "" && k.KeyID != keyID {
			continue
		}
		where := fmt.Sprintf("key %d", i+1)
		if k.KeyID != "" {
			where += fmt.Sprintf(" (kid %q)", k.KeyID)
		}
		switch {
		case !k.IsPublic():
			return nil, fmt.Errorf("%s: a private key: publish the public key only", where)
		case k.Use != "" && k.Use != "sig":
			return nil, fmt.Errorf("%s: not a signing key (use %q)", where, k.Use)
		case len(set.Keys) > 1 && keyID == "" && k.KeyID == "":
			return nil, fmt.Errorf("%s: no kid; the keys of a set are told apart by their kid", where)
		case slices.Contains(kids, k.KeyID):
			return nil, fmt.Errorf("%s: the kid is used twice", where)
		}
		alg, _, err := statementKey(k.Key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			return nil, fmt.Errorf("%s: alg %s does not fit the key (want %s)", where, k.Algorithm, alg)
		}
		kids = append(kids, k.KeyID)
		out = append(out, TrustedIssuer{Name: name, Issuer: issuer, KeyID: k.KeyID, Key: k.Key})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no key with kid %q", keyID)
	}
	return out, nil
}
