package asrv

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
)

// Software statement verification errors. Every error Verify returns wraps
// exactly one of them.
var (
	// ErrInvalidStatement means the statement is malformed, uses a
	// disallowed algorithm, is outside its validity window, or carries
	// missing or mistyped claims (RFC 7591 invalid_software_statement).
	ErrInvalidStatement = errors.New("invalid software statement")
	// ErrUntrustedStatement means the statement's issuer or key is not
	// trusted or its signature does not verify (RFC 7591
	// unapproved_software_statement).
	ErrUntrustedStatement = errors.New("untrusted software statement")
)

const (
	// MaxStatementSize is the largest software statement Verify accepts.
	MaxStatementSize = 16 << 10
	// DefaultStatementMaxLifetime is the longest a statement may be valid
	// (exp - iat) unless the verifier says otherwise: a statement is a
	// bearer credential for registering as a verified agent, so it must
	// expire.
	DefaultStatementMaxLifetime = 30 * 24 * time.Hour
	// StatementClockSkew is the clock skew tolerated for nbf and iat.
	StatementClockSkew = 60 * time.Second

	// maxClaimStringLen bounds the agent identity claims, which end up in
	// policy input and audit records.
	maxClaimStringLen = 256
	// maxNumericDate is 9999-12-31T23:59:59Z; larger dates are rejected
	// rather than overflowing time arithmetic.
	maxNumericDate = 253402300799
	// maxJSONDepth bounds nesting in statement payloads and DCR bodies.
	maxJSONDepth = 32
)

// statementAlgs are the only JWS algorithms a statement may use: "none",
// HMAC and RSA are refused at parse time.
var statementAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// TrustedIssuer is a software statement issuer trusted by its public key.
type TrustedIssuer struct {
	// Name is what policy calls the issuer (data.agents.statement_issuers;
	// AgentClaims.IssuerName of what its key verifies): LocalIssuerName for
	// this server's own key, the configured name for others. Empty: policy
	// knows the issuer by its Issuer.
	Name string
	// Issuer is matched exactly against the statement's "iss" claim.
	Issuer string
	// KeyID, when set, must equal the statement's "kid" header. An issuer
	// may be listed several times (key rotation) only with distinct KeyIDs.
	KeyID string
	// Key is an *ecdsa.PublicKey on P-256 (ES256) or an ed25519.PublicKey
	// (EdDSA). The key fixes the algorithm: a statement whose header names
	// the other algorithm does not verify.
	Key crypto.PublicKey
}

type trustedKey struct {
	name   string
	issuer string
	kid    string
	key    crypto.PublicKey
	alg    jose.SignatureAlgorithm
}

// StatementVerifier verifies software statements against a fixed set of
// trusted issuers. A statement must name its audience (aud, one of the
// verifier's audiences: the authorization server's issuer), expire within
// the maximum lifetime, carry an id (jti), and be neither revoked itself
// nor signed by a revoked key. It is immutable after construction (the
// With… methods return changed copies) and safe for concurrent use.
type StatementVerifier struct {
	byIssuer    map[string][]trustedKey
	audiences   []string
	maxLifetime time.Duration
	revoked     StatementRevocations
}

// StatementRevocations are statements and issuer keys no longer trusted:
// a statement with a revoked id (jti), or signed by a key whose id (kid)
// is revoked, no longer registers, and a client registered with one is
// treated as unverified from then on.
type StatementRevocations struct {
	StatementIDs []string
	KeyIDs       []string
}

// WithAudience returns a copy of v that accepts statements for any of
// audiences (aud); a statement without one of them is invalid.
func (v *StatementVerifier) WithAudience(audiences ...string) *StatementVerifier {
	c := v.clone()
	c.audiences = slices.Clone(audiences)
	return c
}

// Audiences are the audiences v accepts (none: not yet bound to an
// authorization server).
func (v *StatementVerifier) Audiences() []string {
	if v == nil {
		return nil
	}
	return slices.Clone(v.audiences)
}

// WithMaxLifetime returns a copy of v accepting statements valid (exp -
// iat) for at most d (d <= 0: DefaultStatementMaxLifetime).
func (v *StatementVerifier) WithMaxLifetime(d time.Duration) *StatementVerifier {
	c := v.clone()
	c.maxLifetime = d
	return c
}

// WithRevoked returns a copy of v that refuses the revoked statements and
// keys.
func (v *StatementVerifier) WithRevoked(r StatementRevocations) *StatementVerifier {
	c := v.clone()
	c.revoked = StatementRevocations{StatementIDs: slices.Clone(r.StatementIDs), KeyIDs: slices.Clone(r.KeyIDs)}
	return c
}

// Revoked tells whether a client's verified claims come from a statement,
// or a key, revoked since: such a client is treated as unverified.
func (v *StatementVerifier) Revoked(a AgentClaims) bool {
	if v == nil || !a.Verified {
		return false
	}
	return (a.StatementID != "" && slices.Contains(v.revoked.StatementIDs, a.StatementID)) ||
		(a.KeyID != "" && slices.Contains(v.revoked.KeyIDs, a.KeyID))
}

// Untrusted tells whether a client's verified claims are no longer backed
// by this verifier: revoked (Revoked), or verified by an issuer no longer
// trusted at all (an operator removed it from clients.statement_issuers).
// Such a client is treated as unverified. A key rotation within an issuer
// that is still trusted does not unverify its clients: the statement was
// checked when the client registered.
func (v *StatementVerifier) Untrusted(a AgentClaims) bool {
	if v == nil || !a.Verified {
		return false
	}
	return v.Revoked(a) || (a.Issuer != "" && len(v.byIssuer[a.Issuer]) == 0)
}

func (v *StatementVerifier) clone() *StatementVerifier {
	if v == nil {
		return &StatementVerifier{byIssuer: map[string][]trustedKey{}}
	}
	c := *v
	return &c
}

func (v *StatementVerifier) lifetime() time.Duration {
	if v.maxLifetime <= 0 {
		return DefaultStatementMaxLifetime
	}
	return v.maxLifetime
}

// NewStatementVerifier returns a verifier trusting issuers. It rejects
// empty issuer names, unsupported or invalid keys, duplicate (issuer, kid)
// pairs, and an issuer listed more than once without distinct KeyIDs.
// With no issuers every statement is untrusted.
func NewStatementVerifier(issuers ...TrustedIssuer) (*StatementVerifier, error) {
	v := &StatementVerifier{byIssuer: make(map[string][]trustedKey, len(issuers))}
	for i, ti := range issuers {
		if ti.Issuer == "" {
			return nil, fmt.Errorf("trusted issuer %d: empty issuer", i)
		}
		if ti.Name == LocalIssuerName && ti.Issuer != LocalIssuer {
			return nil, fmt.Errorf("trusted issuer %q: the name %q is reserved for this server's own key", ti.Issuer, LocalIssuerName)
		}
		alg, key, err := statementKey(ti.Key)
		if err != nil {
			return nil, fmt.Errorf("trusted issuer %q: %w", ti.Issuer, err)
		}
		for _, other := range v.byIssuer[ti.Issuer] {
			if other.kid == "" || ti.KeyID == "" {
				return nil, fmt.Errorf("trusted issuer %q: listed more than once, each entry needs a distinct KeyID", ti.Issuer)
			}
			if other.kid == ti.KeyID {
				return nil, fmt.Errorf("trusted issuer %q: duplicate KeyID %q", ti.Issuer, ti.KeyID)
			}
		}
		v.byIssuer[ti.Issuer] = append(v.byIssuer[ti.Issuer], trustedKey{
			name: ti.Name, issuer: ti.Issuer, kid: ti.KeyID, key: key, alg: alg,
		})
	}
	return v, nil
}

// statementKey checks a trusted key and returns the one algorithm it verifies.
func statementKey(k crypto.PublicKey) (jose.SignatureAlgorithm, crypto.PublicKey, error) {
	switch k := k.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", nil, errors.New("invalid Ed25519 public key length")
		}
		return jose.EdDSA, append(ed25519.PublicKey(nil), k...), nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return "", nil, errors.New("ECDSA keys must be on P-256")
		}
		if _, err := k.Bytes(); err != nil { // rejects the point at infinity and off-curve points
			return "", nil, errors.New("invalid P-256 public key")
		}
		cp := *k
		return jose.ES256, &cp, nil
	default:
		return "", nil, fmt.Errorf("unsupported key type %T (want *ecdsa.PublicKey on P-256 or ed25519.PublicKey)", k)
	}
}

// Verify checks a compact-serialized software statement and returns the
// verified agent claims. Errors wrap ErrInvalidStatement or
// ErrUntrustedStatement, say which check failed and never echo the token.
func (v *StatementVerifier) Verify(jws string, now time.Time) (AgentClaims, error) {
	if len(jws) == 0 {
		return AgentClaims{}, stmtInvalidf("empty statement")
	}
	if len(jws) > MaxStatementSize {
		return AgentClaims{}, stmtInvalidf("statement larger than %d bytes", MaxStatementSize)
	}
	obj, err := jose.ParseSignedCompact(jws, statementAlgs)
	if err != nil {
		var algErr *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &algErr) {
			return AgentClaims{}, stmtInvalidf("signature algorithm not allowed (want ES256 or EdDSA)")
		}
		return AgentClaims{}, stmtInvalidf("not a compact-serialized JWS")
	}
	if len(obj.Signatures) != 1 {
		return AgentClaims{}, stmtInvalidf("want exactly one signature")
	}
	sig := obj.Signatures[0]
	for _, h := range []jose.HeaderKey{"crit", "b64"} {
		if _, ok := sig.Header.ExtraHeaders[h]; ok {
			return AgentClaims{}, stmtInvalidf("header parameter %q not supported", string(h))
		}
	}

	// The unverified payload is read only to choose the key.
	iss, err := unverifiedIssuer(obj.UnsafePayloadWithoutVerification())
	if err != nil {
		return AgentClaims{}, err
	}
	var tk *trustedKey
	if v != nil {
		tk = v.selectKey(iss, sig.Header.KeyID)
	}
	if tk == nil {
		return AgentClaims{}, stmtUntrustedf("issuer or key id is not trusted")
	}
	if jose.SignatureAlgorithm(sig.Header.Algorithm) != tk.alg {
		return AgentClaims{}, stmtUntrustedf("signature algorithm does not match the issuer's key")
	}
	payload, err := obj.Verify(tk.key)
	if err != nil {
		return AgentClaims{}, stmtUntrustedf("signature does not verify with the issuer's key")
	}

	c, err := parseStatementClaims(payload)
	if err != nil {
		return AgentClaims{}, err
	}
	if c.iss != tk.issuer { // same bytes as above; defensive
		return AgentClaims{}, stmtUntrustedf("issuer changed after verification")
	}
	if err := c.checkTimes(now, v.lifetime()); err != nil {
		return AgentClaims{}, err
	}
	if !slices.ContainsFunc(c.aud, func(a string) bool { return slices.Contains(v.audiences, a) }) {
		return AgentClaims{}, stmtInvalidf("statement is not for this authorization server (aud)")
	}
	claims := AgentClaims{
		Verified:              true,
		Issuer:                c.iss,
		IssuerName:            tk.name,
		SoftwareID:            c.softwareID,
		AgentProvider:         c.agentProvider,
		AgentModel:            c.agentModel,
		SingleUseAccessTokens: c.singleUse,
		StatementID:           c.jti,
		KeyID:                 tk.kid,
	}
	if v.Revoked(claims) {
		return AgentClaims{}, stmtUntrustedf("statement or its issuer key is revoked")
	}
	return claims, nil
}

func (v *StatementVerifier) selectKey(iss, kid string) *trustedKey {
	keys := v.byIssuer[iss]
	if len(keys) == 1 && keys[0].kid == "" {
		return &keys[0]
	}
	if kid == "" {
		return nil
	}
	for i := range keys {
		if keys[i].kid == kid {
			return &keys[i]
		}
	}
	return nil
}

func stmtInvalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidStatement, fmt.Sprintf(format, args...))
}

func stmtUntrustedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUntrustedStatement, fmt.Sprintf(format, args...))
}

// unverifiedIssuer extracts "iss" from a payload whose signature has not been
// checked yet.
func unverifiedIssuer(payload []byte) (string, error) {
	fields, err := decodeStrictObject(payload, maxJSONDepth)
	if err != nil {
		return "", stmtInvalidf("payload: %v", err)
	}
	raw, ok := fields["iss"]
	if !ok {
		return "", stmtInvalidf("missing iss claim")
	}
	iss, ok := stmtJSONString(raw)
	if !ok || iss == "" {
		return "", stmtInvalidf("iss claim must be a non-empty string")
	}
	return iss, nil
}

type statementClaims struct {
	iss, softwareID, agentProvider, agentModel, jti string
	aud                                             []string
	singleUse                                       bool
	iat, exp                                        time.Time
	nbf                                             *time.Time
}

// maxStatementAudiences bounds the aud array.
const maxStatementAudiences = 16

// parseStatementClaims decodes a verified payload. Unknown claims are
// ignored; known claims must have their registered type.
func parseStatementClaims(payload []byte) (*statementClaims, error) {
	fields, err := decodeStrictObject(payload, maxJSONDepth)
	if err != nil {
		return nil, stmtInvalidf("payload: %v", err)
	}
	c := &statementClaims{}
	var ok bool
	if c.iss, ok = stmtJSONString(fields["iss"]); !ok || c.iss == "" {
		return nil, stmtInvalidf("iss claim must be a non-empty string")
	}
	for _, s := range []struct {
		name     string
		dst      *string
		required bool
	}{
		{"software_id", &c.softwareID, false},
		{"agent_provider", &c.agentProvider, true},
		{"agent_model", &c.agentModel, false},
		{"jti", &c.jti, true},
	} {
		raw, present := fields[s.name]
		if !present {
			if s.required {
				return nil, stmtInvalidf("missing %s claim", s.name)
			}
			continue
		}
		if *s.dst, ok = stmtJSONString(raw); !ok {
			return nil, stmtInvalidf("%s claim must be a string", s.name)
		}
		if s.required && *s.dst == "" {
			return nil, stmtInvalidf("%s claim must not be empty", s.name)
		}
		if err := checkClaimString(*s.dst); err != nil {
			return nil, stmtInvalidf("%s claim %v", s.name, err)
		}
	}
	if raw, present := fields["single_use_access_tokens"]; present {
		if err := json.Unmarshal(raw, &c.singleUse); err != nil || !stmtIsJSONBool(raw) {
			return nil, stmtInvalidf("single_use_access_tokens claim must be a boolean")
		}
	}
	if c.aud, err = stmtAudienceClaim(fields["aud"]); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		name string
		dst  *time.Time
	}{{"iat", &c.iat}, {"exp", &c.exp}} {
		raw, present := fields[d.name]
		if !present {
			return nil, stmtInvalidf("missing %s claim", d.name)
		}
		if *d.dst, err = stmtNumericDate(raw); err != nil {
			return nil, stmtInvalidf("%s claim %v", d.name, err)
		}
	}
	if raw, present := fields["nbf"]; present {
		t, err := stmtNumericDate(raw)
		if err != nil {
			return nil, stmtInvalidf("nbf claim %v", err)
		}
		c.nbf = &t
	}
	return c, nil
}

// stmtAudienceClaim decodes the aud claim (RFC 7519 §4.1.3): a string or an
// array of strings, required.
func stmtAudienceClaim(raw json.RawMessage) ([]string, error) {
	if raw == nil {
		return nil, stmtInvalidf("missing aud claim")
	}
	if one, ok := stmtJSONString(raw); ok {
		return []string{one}, nil
	}
	var many []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &many) != nil || len(many) == 0 || len(many) > maxStatementAudiences {
		return nil, stmtInvalidf("aud claim must be a string or 1 to %d strings", maxStatementAudiences)
	}
	out := make([]string, 0, len(many))
	for _, m := range many {
		a, ok := stmtJSONString(m)
		if !ok {
			return nil, stmtInvalidf("aud claim must be a string or 1 to %d strings", maxStatementAudiences)
		}
		out = append(out, a)
	}
	return out, nil
}

func (c *statementClaims) checkTimes(now time.Time, maxLifetime time.Duration) error {
	if !c.exp.After(now) {
		return stmtInvalidf("statement expired")
	}
	if c.exp.Sub(c.iat) > maxLifetime {
		return stmtInvalidf("statement is valid for longer than %s (exp - iat)", maxLifetime)
	}
	if c.nbf != nil && c.nbf.After(now.Add(StatementClockSkew)) {
		return stmtInvalidf("statement not valid yet (nbf in the future)")
	}
	if c.iat.After(now.Add(StatementClockSkew)) {
		return stmtInvalidf("statement issued in the future (iat)")
	}
	return nil
}

// checkClaimString bounds an identity claim: valid UTF-8, no control
// characters, at most maxClaimStringLen bytes.
func checkClaimString(s string) error {
	if len(s) > maxClaimStringLen {
		return fmt.Errorf("longer than %d bytes", maxClaimStringLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errors.New("contains control characters")
		}
	}
	return nil
}

// stmtNumericDate parses an RFC 7519 NumericDate (seconds, possibly fractional).
func stmtNumericDate(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return time.Time{}, errors.New("must be a number")
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, errors.New("must be a number")
	}
	if f < 0 || f > maxNumericDate {
		return time.Time{}, errors.New("out of range")
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)).UTC(), nil
}

// stmtJSONString decodes raw if it is a JSON string.
func stmtJSONString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func stmtIsJSONBool(raw json.RawMessage) bool {
	return bytes.Equal(raw, []byte("true")) || bytes.Equal(raw, []byte("false"))
}

// decodeStrictObject decodes data as exactly one JSON object (no trailing
// data) whose object members are unique at every depth, nesting at most
// maxDepth, and returns its top-level members. Member names match exactly
// (encoding/json's struct decoding would match them case-insensitively).
func decodeStrictObject(data []byte, maxDepth int) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not valid UTF-8")
	}
	if err := checkJSONStructure(data, maxDepth); err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return nil, errors.New("not a JSON object")
	}
	return fields, nil
}

type jsonFrame struct {
	keys      map[string]struct{} // nil for arrays
	expectKey bool
}

func checkJSONStructure(data []byte, maxDepth int) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*jsonFrame
	first := true
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if first || len(stack) != 0 {
				return errors.New("not a JSON object")
			}
			return nil
		}
		if err != nil {
			return errors.New("not valid JSON")
		}
		if first {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return errors.New("not a JSON object")
			}
			first = false
			stack = append(stack, &jsonFrame{keys: map[string]struct{}{}, expectKey: true})
			continue
		}
		if len(stack) == 0 {
			return errors.New("trailing data after the JSON object")
		}
		top := stack[len(stack)-1]
		if top.keys != nil && top.expectKey {
			switch t := tok.(type) {
			case string:
				if _, dup := top.keys[t]; dup {
					return errors.New("duplicate member name")
				}
				top.keys[t] = struct{}{}
				top.expectKey = false
			case json.Delim: // '}'
				stack = stack[:len(stack)-1]
				markValueDone(stack)
			}
			continue
		}
		// A value, or the end of an array.
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if len(stack) >= maxDepth {
					return errors.New("nested too deeply")
				}
				f := &jsonFrame{}
				if d == '{' {
					f.keys = map[string]struct{}{}
					f.expectKey = true
				}
				stack = append(stack, f)
			case ']':
				stack = stack[:len(stack)-1]
				markValueDone(stack)
			}
			continue
		}
		if top.keys != nil {
			top.expectKey = true
		}
	}
}

func markValueDone(stack []*jsonFrame) {
	if len(stack) > 0 && stack[len(stack)-1].keys != nil {
		stack[len(stack)-1].expectKey = true
	}
}
