package asrv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"

	"github.com/ory/fosite"
	"golang.org/x/crypto/bcrypt"
)

// secretHashPrefix marks a SHA-256 client secret hash.
const secretHashPrefix = "sha256$"

// hashSecret hashes a client secret this AS generated. Such secrets are 256
// random bits: a slow salted hash protects nothing a guess could reach, and
// bcrypt on every token request costs tens of milliseconds of CPU, a lever
// for denial of service. So they are stored as SHA-256.
func hashSecret(secret []byte) []byte {
	sum := sha256.Sum256(secret)
	return append([]byte(secretHashPrefix), hex.EncodeToString(sum[:])...)
}

// secretHasher is fosite's client secret hasher: SHA-256 hashes compare in
// constant time; bcrypt hashes (a store written by an earlier version) still
// verify.
type secretHasher struct{}

var _ fosite.Hasher = secretHasher{}

var errSecretMismatch = errors.New("client secret mismatch")

func (secretHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	return hashSecret(data), nil
}

func (secretHasher) Compare(_ context.Context, hash, data []byte) error {
	if bytes.HasPrefix(hash, []byte(secretHashPrefix)) {
		if subtle.ConstantTimeCompare(hash, hashSecret(data)) != 1 {
			return errSecretMismatch
		}
		return nil
	}
	return bcrypt.CompareHashAndPassword(hash, data)
}
