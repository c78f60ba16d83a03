package approvals

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// StatePrefix starts every requestState the gateway signs. A requestState
// without it is a backend's and is none of this package's business.
const StatePrefix = "pbac1."

// MaxStateLen is the longest requestState accepted, in bytes. Longer input
// is refused before anything is decoded.
const MaxStateLen = 4096

// stateMACContext separates this MAC from any other use of the key.
const stateMACContext = "pbac/approval-state/v1\x00"

// Why a requestState is refused. VerifyState and ParseState wrap exactly one
// of these, with detail safe to show the client.
var (
	// ErrStateMalformed: not a requestState this package could have signed
	// (too long, wrong prefix, bad encoding, missing fields).
	ErrStateMalformed = errors.New("malformed requestState")
	// ErrStateSignature: well formed, but the MAC does not match (tampered,
	// or signed with another key).
	ErrStateSignature = errors.New("requestState signature does not match")
	// ErrStateExpired: genuine, but past its expiry.
	ErrStateExpired = errors.New("requestState expired")
	// ErrStateOtherRequest: genuine, but bound to another call (other
	// arguments, client, subject or tool).
	ErrStateOtherRequest = errors.New("requestState is bound to another request")
)

// Call is a tools/call as the gateway sees it: who makes it, for whom, and
// the exact bytes of its arguments.
type Call struct {
	ClientID string
	Subject  string
	Method   string // "tools/call"
	Tool     string // the full (prefixed) tool name
	// Arguments are the arguments exactly as received; a byte of
	// difference (even whitespace or key order) is another call.
	Arguments []byte
}

// Digest is the hex SHA-256 of method, tool and arguments, each separated
// by a NUL byte (neither a JSON-RPC method nor a tool name holds one).
func (c Call) Digest() string {
	h := sha256.New()
	h.Write([]byte(c.Method))
	h.Write([]byte{0})
	h.Write([]byte(c.Tool))
	h.Write([]byte{0})
	h.Write(c.Arguments)
	return hex.EncodeToString(h.Sum(nil))
}

// State is what a requestState carries.
type State struct {
	ApprovalID    string
	ClientID      string
	Subject       string // "" for a machine agent, which acts for no person
	Tool          string
	Digest        string // Call.Digest
	PolicyVersion string // the policy version that asked for approval
	ExpiresAt     time.Time
}

// wireState is State as signed: short keys, expiry in Unix seconds.
type wireState struct {
	A string `json:"a"`
	C string `json:"c"`
	S string `json:"s"`
	T string `json:"t"`
	D string `json:"d"`
	V string `json:"v"`
	E int64  `json:"e"`
}

func (st State) wire() wireState {
	w := wireState{A: st.ApprovalID, C: st.ClientID, S: st.Subject, T: st.Tool, D: st.Digest, V: st.PolicyVersion}
	if !st.ExpiresAt.IsZero() {
		w.E = st.ExpiresAt.Unix()
	}
	return w
}

func (w wireState) state() State {
	return State{ApprovalID: w.A, ClientID: w.C, Subject: w.S, Tool: w.T, Digest: w.D, PolicyVersion: w.V,
		ExpiresAt: time.Unix(w.E, 0).UTC()}
}

// NewState returns the state binding approval id to call c, issued under
// policyVersion and valid until expiresAt.
func NewState(approvalID, policyVersion string, c Call, expiresAt time.Time) State {
	return State{
		ApprovalID:    approvalID,
		ClientID:      c.ClientID,
		Subject:       c.Subject,
		Tool:          c.Tool,
		Digest:        c.Digest(),
		PolicyVersion: policyVersion,
		ExpiresAt:     expiresAt,
	}
}

func (w wireState) check() error {
	for _, f := range []struct{ name, v string }{
		{"approval id", w.A},
		{"client id", w.C},
		{"tool", w.T},
		{"digest", w.D},
		{"policy version", w.V},
	} {
		if f.v == "" {
			return fmt.Errorf("no %s", f.name)
		}
	}
	if w.E <= 0 {
		return errors.New("no expiry")
	}
	return nil
}

var b64 = base64.RawURLEncoding.Strict()

// SignState returns the requestState for st:
// "pbac1." + b64url(payload) + "." + b64url(HMAC-SHA256(key, context || payload)).
// ExpiresAt is kept to the second (truncated). Every field is required, and the
// result must fit in MaxStateLen.
func SignState(key *StateKey, st State) (string, error) {
	if key == nil || len(key.k) != stateKeyLen {
		return "", errors.New("sign requestState: no key")
	}
	w := st.wire()
	if err := w.check(); err != nil {
		return "", fmt.Errorf("sign requestState: %w", err)
	}
	payload, err := json.Marshal(w)
	if err != nil {
		return "", fmt.Errorf("sign requestState: encode: %w", err)
	}
	s := StatePrefix + b64.EncodeToString(payload) + "." + b64.EncodeToString(stateMAC(key, payload))
	if len(s) > MaxStateLen {
		return "", fmt.Errorf("sign requestState: %d bytes, over the %d-byte limit", len(s), MaxStateLen)
	}
	return s, nil
}

func stateMAC(key *StateKey, payload []byte) []byte {
	m := hmac.New(sha256.New, key.k)
	m.Write([]byte(stateMACContext))
	m.Write(payload)
	return m.Sum(nil)
}

// ParseState checks that s is a requestState signed with key and returns
// what it carries, without judging expiry or binding (VerifyState does).
// The MAC is checked, in constant time, before the payload is decoded.
// Errors wrap ErrStateMalformed or ErrStateSignature.
func ParseState(key *StateKey, s string) (State, error) {
	if key == nil || len(key.k) != stateKeyLen {
		return State{}, errors.New("parse requestState: no key")
	}
	if len(s) > MaxStateLen {
		return State{}, fmt.Errorf("%w: longer than %d bytes", ErrStateMalformed, MaxStateLen)
	}
	rest, ok := strings.CutPrefix(s, StatePrefix)
	if !ok {
		return State{}, fmt.Errorf("%w: does not start with %q", ErrStateMalformed, StatePrefix)
	}
	p64, m64, ok := strings.Cut(rest, ".")
	if !ok || p64 == "" || m64 == "" {
		return State{}, fmt.Errorf("%w: want payload.signature", ErrStateMalformed)
	}
	// encoding/base64 skips \r and \n even in strict mode; a state has one
	// spelling, so only the alphabet itself is accepted.
	if !isB64URL(p64) || !isB64URL(m64) {
		return State{}, fmt.Errorf("%w: not base64url", ErrStateMalformed)
	}
	payload, err := b64.DecodeString(p64)
	if err != nil {
		return State{}, fmt.Errorf("%w: payload is not base64url", ErrStateMalformed)
	}
	mac, err := b64.DecodeString(m64)
	if err != nil {
		return State{}, fmt.Errorf("%w: signature is not base64url", ErrStateMalformed)
	}
	if len(mac) != sha256.Size {
		return State{}, fmt.Errorf("%w: signature is %d bytes, want %d", ErrStateMalformed, len(mac), sha256.Size)
	}
	if !hmac.Equal(mac, stateMAC(key, payload)) {
		return State{}, ErrStateSignature
	}
	// Genuine from here on; still decode strictly and in the one form
	// SignState writes, so a state has exactly one spelling.
	var w wireState
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil || dec.More() {
		return State{}, fmt.Errorf("%w: payload does not decode", ErrStateMalformed)
	}
	if err := w.check(); err != nil {
		return State{}, fmt.Errorf("%w: %w", ErrStateMalformed, err)
	}
	if canon, err := json.Marshal(w); err != nil || !bytes.Equal(canon, payload) {
		return State{}, fmt.Errorf("%w: payload not in canonical form", ErrStateMalformed)
	}
	return w.state(), nil
}

// VerifyState parses s (see ParseState) and checks it against call c, as
// the retry presents it, at time now: it must not have expired (now before
// ExpiresAt) and must name c's client, subject, tool and argument digest.
// It does not judge the policy version: the retry is decided again anyway.
// Errors wrap one of the Err* sentinels.
func VerifyState(key *StateKey, s string, c Call, now time.Time) (State, error) {
	st, err := ParseState(key, s)
	if err != nil {
		return State{}, err
	}
	if !now.Before(st.ExpiresAt) {
		return State{}, fmt.Errorf("%w at %s", ErrStateExpired, st.ExpiresAt.Format(time.RFC3339))
	}
	switch {
	case !strEqual(st.ClientID, c.ClientID):
		return State{}, fmt.Errorf("%w: approval was for another client", ErrStateOtherRequest)
	case !strEqual(st.Subject, c.Subject):
		return State{}, fmt.Errorf("%w: approval was for another person", ErrStateOtherRequest)
	case !strEqual(st.Tool, c.Tool):
		return State{}, fmt.Errorf("%w: approval was for another tool", ErrStateOtherRequest)
	case !strEqual(st.Digest, c.Digest()):
		return State{}, fmt.Errorf("%w: approval was for other arguments", ErrStateOtherRequest)
	}
	return st, nil
}

func isB64URL(s string) bool {
	for i := range len(s) {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// strEqual compares in constant time for equal lengths.
func strEqual(a, b string) bool {
	return hmac.Equal([]byte(a), []byte(b))
}
