package asrv

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	// LocalIssuer is the "iss" of statements signed by the data dir's key.
	LocalIssuer = "urn:pbac:local-issuer"
	// IssuerKeyFile is the local issuer key's file name in the data dir.
	IssuerKeyFile = "statement-issuer.key"

	maxKeyFileSize = 64 << 10
)

// DefaultDataDir is $PBAC_DATA_DIR, else $XDG_DATA_HOME/pbac (when
// absolute, as the XDG spec requires), else ~/.local/share/pbac. It is ""
// when none can be determined.
func DefaultDataDir() string {
	if d := os.Getenv("PBAC_DATA_DIR"); d != "" {
		return d
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "pbac")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".local", "share", "pbac")
}

// IssuerKey is the local software statement issuer: an Ed25519 key kept in
// the data dir, trusted by this gateway as LocalIssuer.
type IssuerKey struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	kid  string
	path string
}

// StatementClaims is what the local issuer asserts about an agent.
type StatementClaims struct {
	SoftwareID            string
	AgentProvider         string
	AgentModel            string
	SingleUseAccessTokens bool
	// Audience are the authorization servers (their issuer URLs) the
	// statement is for; at least one.
	Audience []string
	// TTL is the statement's lifetime, at least 1 s and at most
	// DefaultStatementMaxLifetime.
	TTL time.Duration
}

// LoadOrCreateIssuerKey loads <dataDir>/statement-issuer.key, creating the
// data dir (0700) and a new key (0600) when absent.
func LoadOrCreateIssuerKey(dataDir string) (*IssuerKey, error) {
	if dataDir == "" {
		return nil, errors.New("issuer key: no data dir (set --data-dir or PBAC_DATA_DIR)")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	return LoadOrCreateIssuerKeyFile(filepath.Join(dataDir, IssuerKeyFile))
}

// LoadOrCreateIssuerKeyFile loads the PKCS#8 PEM Ed25519 key at path or, if
// there is none, creates one atomically: written to a temporary file in the
// same directory, synced, then linked into place without replacing a key
// another process created meanwhile. It refuses a key file that group or
// other may access (except on Windows, which has no such mode bits).
func LoadOrCreateIssuerKeyFile(path string) (*IssuerKey, error) {
	k, err := loadIssuerKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := createIssuerKey(path); err != nil {
		return nil, fmt.Errorf("issuer key %s: %w", path, err)
	}
	return loadIssuerKey(path)
}

func loadIssuerKey(path string) (*IssuerKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("issuer key %s: not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("issuer key %s: permissions %04o allow group/other access; run chmod 600 %s",
			path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("issuer key %s: file too large", path)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("issuer key %s: not a PEM PRIVATE KEY (PKCS#8)", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("issuer key %s: invalid PKCS#8: %w", path, err)
	}
	priv, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("issuer key %s: want an Ed25519 key, got %T", path, parsed)
	}
	return newIssuerKey(priv, path)
}

func newIssuerKey(priv ed25519.PrivateKey, path string) (*IssuerKey, error) {
	pub := priv.Public().(ed25519.PublicKey)
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("issuer key thumbprint: %w", err)
	}
	return &IssuerKey{
		priv: priv,
		pub:  pub,
		kid:  base64.RawURLEncoding.EncodeToString(tp),
		path: path,
	}, nil
}

func createIssuerKey(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	// Never replaces a key a concurrent creator may already have signed with.
	return writeSecretFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// Path is the key file's path.
func (k *IssuerKey) Path() string { return k.path }

// KeyID is the key's RFC 7638 JWK SHA-256 thumbprint, base64url; it is the
// "kid" of statements the key signs.
func (k *IssuerKey) KeyID() string { return k.kid }

// PublicKey is the key's public half.
func (k *IssuerKey) PublicKey() ed25519.PublicKey { return append(ed25519.PublicKey(nil), k.pub...) }

// Trusted is the TrustedIssuer entry that verifies this key's statements.
func (k *IssuerKey) Trusted() TrustedIssuer {
	return TrustedIssuer{Name: LocalIssuerName, Issuer: LocalIssuer, KeyID: k.kid, Key: k.PublicKey()}
}

type signedStatementClaims struct {
	Iss                   string   `json:"iss"`
	Aud                   []string `json:"aud"`
	Jti                   string   `json:"jti"`
	SoftwareID            string   `json:"software_id,omitempty"`
	AgentProvider         string   `json:"agent_provider"`
	AgentModel            string   `json:"agent_model,omitempty"`
	SingleUseAccessTokens bool     `json:"single_use_access_tokens,omitempty"`
	Iat                   int64    `json:"iat"`
	Exp                   int64    `json:"exp"`
}

// Sign issues a software statement: an EdDSA compact JWS with iss
// LocalIssuer, kid the key's thumbprint, aud c.Audience, a random jti
// (revocable by it), iat now and exp now+TTL. The claims must pass the
// checks Verify applies.
func (k *IssuerKey) Sign(c StatementClaims, now time.Time) (string, error) {
	if c.AgentProvider == "" {
		return "", errors.New("sign statement: agent provider is required")
	}
	for name, s := range map[string]string{
		"software id": c.SoftwareID, "agent provider": c.AgentProvider, "agent model": c.AgentModel,
	} {
		if err := checkClaimString(s); err != nil {
			return "", fmt.Errorf("sign statement: %s %v", name, err)
		}
	}
	if c.TTL < time.Second || c.TTL > DefaultStatementMaxLifetime {
		return "", fmt.Errorf("sign statement: the lifetime must be from 1s to %s (a statement must expire)", DefaultStatementMaxLifetime)
	}
	if len(c.Audience) == 0 || len(c.Audience) > maxStatementAudiences {
		return "", fmt.Errorf("sign statement: name 1 to %d audiences (the authorization servers' issuer URLs)", maxStatementAudiences)
	}
	for _, a := range c.Audience {
		if a == "" {
			return "", errors.New("sign statement: empty audience")
		}
	}
	iat := now.Unix()
	if iat < 0 || iat > maxNumericDate {
		return "", errors.New("sign statement: time out of range")
	}
	ttl := int64(c.TTL / time.Second)
	if ttl > maxNumericDate-iat {
		return "", errors.New("sign statement: TTL too long")
	}
	claims := signedStatementClaims{
		Iss:                   LocalIssuer,
		Aud:                   c.Audience,
		Jti:                   randomToken(16),
		SoftwareID:            c.SoftwareID,
		AgentProvider:         c.AgentProvider,
		AgentModel:            c.AgentModel,
		SingleUseAccessTokens: c.SingleUseAccessTokens,
		Iat:                   iat,
		Exp:                   iat + ttl,
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.EdDSA, Key: k.priv},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), k.kid),
	)
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// DefaultStatementTTL is the lifetime of the statements the server signs
// for agents it registers in process.
const DefaultStatementTTL = time.Hour

// Statement signs a statement with key for this server (its audience is
// the server's issuer; a zero TTL is DefaultStatementTTL): for agents
// registered in process, such as the demo's and the dashboard's.
func (s *Server) Statement(key *IssuerKey, c StatementClaims) (string, error) {
	if len(c.Audience) == 0 {
		c.Audience = []string{s.cfg.Issuer}
	}
	if c.TTL == 0 {
		c.TTL = DefaultStatementTTL
	}
	return key.Sign(c, s.now())
}
