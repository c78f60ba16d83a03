package usersfile

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters.
type Params struct {
	// Memory in KiB, Time the passes, Threads the lanes.
	Memory  uint32
	Time    uint32
	Threads uint8
	SaltLen uint32
	KeyLen  uint32
}

// DefaultParams are RFC 9106 §4's second recommended option (64 MiB, three
// passes, four lanes): about 140 ms a check on a 2-core machine.
var DefaultParams = Params{Memory: 64 * 1024, Time: 3, Threads: 4, SaltLen: 16, KeyLen: 32}

// Bounds on the parameters a users file may ask for, so no entry can make
// a sign-in take unbounded memory or time.
const (
	maxMemoryKiB = 256 * 1024
	maxTime      = 16
	maxThreads   = 16
)

// hash is a parsed argon2id hash.
type hash struct {
	p         Params
	salt, key []byte
}

var b64 = base64.RawStdEncoding.Strict()

// HashPassword returns password's argon2id hash in the PHC string format
// ($argon2id$v=19$m=…,t=…,p=…$salt$key) with a random salt.
func HashPassword(password []byte, p Params) (string, error) {
	if err := p.check(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	_, _ = rand.Read(salt)
	key := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

func (p Params) check() error {
	switch {
	case p.Threads < 1 || p.Threads > maxThreads:
		return fmt.Errorf("argon2id: p=%d is not within 1..%d", p.Threads, maxThreads)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("argon2id: t=%d is not within 1..%d", p.Time, maxTime)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemoryKiB:
		return fmt.Errorf("argon2id: m=%d KiB is not within %d..%d", p.Memory, 8*uint32(p.Threads), maxMemoryKiB)
	case p.SaltLen < 8 || p.SaltLen > 64:
		return fmt.Errorf("argon2id: a salt of %d bytes is not within 8..64", p.SaltLen)
	case p.KeyLen < 16 || p.KeyLen > 64:
		return fmt.Errorf("argon2id: a key of %d bytes is not within 16..64", p.KeyLen)
	}
	return nil
}

var errHashFormat = errors.New("not an argon2id hash ($argon2id$v=19$m=…,t=…,p=…$salt$key)")

// parseHash reads a PHC argon2id string, strictly: version 19, the three
// parameters in order, unpadded standard base64, parameters within bounds.
func parseHash(s string) (hash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v=19" {
		return hash{}, errHashFormat
	}
	var p Params
	kv := strings.Split(parts[3], ",")
	if len(kv) != 3 {
		return hash{}, errHashFormat
	}
	for i, name := range []string{"m", "t", "p"} {
		k, v, ok := strings.Cut(kv[i], "=")
		if !ok || k != name || v == "" || (len(v) > 1 && v[0] == '0') {
			return hash{}, errHashFormat
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return hash{}, errHashFormat
		}
		switch name {
		case "m":
			p.Memory = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return hash{}, errHashFormat
			}
			p.Threads = uint8(n)
		}
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return hash{}, errHashFormat
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil {
		return hash{}, errHashFormat
	}
	// The decoder skips CR and LF; a hash is exactly its canonical text.
	if b64.EncodeToString(salt) != parts[4] || b64.EncodeToString(key) != parts[5] {
		return hash{}, errHashFormat
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	if err := p.check(); err != nil {
		return hash{}, err
	}
	return hash{p: p, salt: salt, key: key}, nil
}

// matches tells, in time independent of where they differ, whether
// password hashes to h.
func (h hash) matches(password string) bool {
	got := argon2.IDKey([]byte(password), h.salt, h.p.Time, h.p.Memory, h.p.Threads, h.p.KeyLen)
	return subtle.ConstantTimeCompare(got, h.key) == 1
}
