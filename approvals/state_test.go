package approvals

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)

func testKey(t testing.TB, fill byte) *StateKey {
	t.Helper()
	k, err := NewStateKey(bytes.Repeat([]byte{fill}, stateKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func deployCall() Call {
	return Call{
		ClientID:  "ci-bot-client",
		Subject:   "alice",
		Method:    "tools/call",
		Tool:      "jenkins.trigger_deploy",
		Arguments: []byte(`{"job":"deploy-prod","environment":"production"}`),
	}
}

func signed(t testing.TB, k *StateKey, c Call) string {
	t.Helper()
	s, err := SignState(k, NewState("apr_4f9c2e", "v12", c, t0.Add(10*time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// resign signs payload properly with k: a genuine state whose content is
// not what SignState would write.
func resign(t *testing.T, k *StateKey, payload []byte) string {
	t.Helper()
	return StatePrefix + b64.EncodeToString(payload) + "." + b64.EncodeToString(stateMAC(k, payload))
}

func TestStateRoundTrip(t *testing.T) {
	k := testKey(t, 1)
	c := deployCall()
	exp := t0.Add(10*time.Minute + 700*time.Millisecond)
	want := NewState("apr_4f9c2e", "v12", c, exp)
	s, err := SignState(k, want)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, StatePrefix) || strings.Count(s, ".") != 2 {
		t.Fatalf("state %q: want pbac1.<payload>.<mac>", s)
	}
	got, err := VerifyState(k, s, c, t0)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	want.ExpiresAt = exp.Truncate(time.Second)
	if got != want {
		t.Fatalf("verified state\n got %+v\nwant %+v", got, want)
	}
	again, err := SignState(k, got)
	if err != nil || again != s {
		t.Fatalf("re-signing the parsed state gave %q, %v; want %q", again, err, s)
	}
	// The payload is the design's: short keys, expiry in Unix seconds.
	p64, _, _ := strings.Cut(strings.TrimPrefix(s, StatePrefix), ".")
	raw, _ := b64.DecodeString(p64)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for key, v := range map[string]any{"a": "apr_4f9c2e", "c": "ci-bot-client", "s": "alice",
		"t": "jenkins.trigger_deploy", "d": c.Digest(), "v": "v12", "e": float64(exp.Unix())} {
		if m[key] != v {
			t.Errorf("payload %q = %v, want %v", key, m[key], v)
		}
	}
}

func TestStateRefused(t *testing.T) {
	k := testKey(t, 1)
	c := deployCall()
	good := signed(t, k, c)
	p64, m64, _ := strings.Cut(strings.TrimPrefix(good, StatePrefix), ".")
	payload, _ := b64.DecodeString(p64)
	mac, _ := b64.DecodeString(m64)

	flip := func(b []byte, i int) []byte {
		b = append([]byte(nil), b...)
		b[i] ^= 0x01
		return b
	}
	with := func(f func(*Call)) Call {
		c := deployCall()
		f(&c)
		return c
	}
	edited := func(f func(map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	tests := []struct {
		name  string
		state string
		call  Call
		now   time.Time
		want  error
		why   string // in the error, when set
	}{
		{"tampered payload", StatePrefix + b64.EncodeToString(flip(payload, 10)) + "." + m64, c, t0, ErrStateSignature, ""},
		{"payload of another state", StatePrefix + b64.EncodeToString(edited(func(m map[string]any) { m["s"] = "bob" })) + "." + m64, c, t0, ErrStateSignature, ""},
		{"tampered signature", StatePrefix + p64 + "." + b64.EncodeToString(flip(mac, 31)), c, t0, ErrStateSignature, ""},
		{"another key", signed(t, testKey(t, 2), c), c, t0, ErrStateSignature, ""},
		{"truncated", good[:len(good)-4], c, t0, ErrStateMalformed, ""},
		{"signature cut off", StatePrefix + p64 + ".", c, t0, ErrStateMalformed, ""},
		{"no signature", StatePrefix + p64, c, t0, ErrStateMalformed, ""},
		{"extra part", good + ".AAAA", c, t0, ErrStateMalformed, ""},
		{"wrong prefix", "pbac2." + strings.TrimPrefix(good, StatePrefix), c, t0, ErrStateMalformed, ""},
		{"no prefix", strings.TrimPrefix(good, StatePrefix), c, t0, ErrStateMalformed, ""},
		{"empty", "", c, t0, ErrStateMalformed, ""},
		{"line breaks inside", good[:20] + "\r\n" + good[20:], c, t0, ErrStateMalformed, "not base64url"},
		{"padded base64", StatePrefix + base64.URLEncoding.EncodeToString(payload) + "." + m64, c, t0, ErrStateMalformed, ""},
		{"oversized", StatePrefix + strings.Repeat("A", MaxStateLen) + "." + m64, c, t0, ErrStateMalformed, ""},
		{"signed but not JSON", resign(t, k, []byte("not json")), c, t0, ErrStateMalformed, ""},
		{"signed, unknown field", resign(t, k, edited(func(m map[string]any) { m["x"] = 1 })), c, t0, ErrStateMalformed, ""},
		{"signed, missing approval id", resign(t, k, edited(func(m map[string]any) { delete(m, "a") })), c, t0, ErrStateMalformed, ""},
		{"signed, no expiry", resign(t, k, edited(func(m map[string]any) { m["e"] = 0 })), c, t0, ErrStateMalformed, ""},
		{"signed, not canonical", resign(t, k, append([]byte(" "), payload...)), c, t0, ErrStateMalformed, ""},
		{"expired", good, c, t0.Add(10 * time.Minute), ErrStateExpired, ""},
		{"long expired", good, c, t0.Add(24 * time.Hour), ErrStateExpired, ""},
		{"other arguments", good, with(func(c *Call) { c.Arguments = []byte(`{"job":"deploy-prod","environment":"staging"}`) }), t0, ErrStateOtherRequest, "other arguments"},
		{"same arguments spelt otherwise", good, with(func(c *Call) { c.Arguments = []byte(`{"environment":"production","job":"deploy-prod"}`) }), t0, ErrStateOtherRequest, ""},
		{"other method", good, with(func(c *Call) { c.Method = "tools/other" }), t0, ErrStateOtherRequest, ""},
		{"other client", good, with(func(c *Call) { c.ClientID = "planner-client" }), t0, ErrStateOtherRequest, "another client"},
		{"other subject", good, with(func(c *Call) { c.Subject = "bob" }), t0, ErrStateOtherRequest, "another person"},
		{"other tool", good, with(func(c *Call) { c.Tool = "jenkins.trigger_build" }), t0, ErrStateOtherRequest, "another tool"},
	}
	sentinels := []error{ErrStateMalformed, ErrStateSignature, ErrStateExpired, ErrStateOtherRequest}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := VerifyState(k, tt.state, tt.call, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyState = %+v, %v; want %v", st, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("error %q does not say %q", err, tt.why)
			}
			if st != (State{}) {
				t.Errorf("refused state still returned content %+v", st)
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("error %v also matches %v", err, s)
				}
			}
		})
	}
	// The good state, against the call it was made for, before expiry.
	if _, err := VerifyState(k, good, c, t0.Add(10*time.Minute-time.Nanosecond)); err != nil {
		t.Fatalf("the untouched state: %v", err)
	}
}

func TestStateEveryByteFlipRefused(t *testing.T) {
	k := testKey(t, 1)
	c := deployCall()
	good := signed(t, k, c)
	for i := range len(good) {
		for _, bit := range []byte{0x01, 0x20} {
			b := []byte(good)
			b[i] ^= bit
			if _, err := VerifyState(k, string(b), c, t0); err == nil {
				t.Fatalf("byte %d ^ %#x: %q verified", i, bit, b)
			} else if !errors.Is(err, ErrStateMalformed) && !errors.Is(err, ErrStateSignature) {
				t.Fatalf("byte %d ^ %#x: %v, want malformed or bad signature", i, bit, err)
			}
		}
	}
}

func TestSignStateRefusesIncompleteOrHugeStates(t *testing.T) {
	k := testKey(t, 1)
	base := NewState("apr_1", "v1", deployCall(), t0)
	tests := []struct {
		name string
		edit func(*State)
	}{
		{"no approval id", func(s *State) { s.ApprovalID = "" }},
		{"no client", func(s *State) { s.ClientID = "" }},
		{"no tool", func(s *State) { s.Tool = "" }},
		{"no digest", func(s *State) { s.Digest = "" }},
		{"no policy version", func(s *State) { s.PolicyVersion = "" }},
		{"no expiry", func(s *State) { s.ExpiresAt = time.Time{} }},
		{"expiry before 1970", func(s *State) { s.ExpiresAt = time.Unix(-5, 0) }},
		{"over the size limit", func(s *State) { s.Subject = strings.Repeat("x", MaxStateLen) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := base
			tt.edit(&st)
			if s, err := SignState(k, st); err == nil {
				t.Fatalf("signed %q", s)
			}
		})
	}
	if _, err := SignState(nil, base); err == nil {
		t.Fatal("signed without a key")
	}
	if _, err := SignState(&StateKey{}, base); err == nil {
		t.Fatal("signed with the zero key")
	}
	if _, err := ParseState(&StateKey{}, signed(t, k, deployCall())); err == nil {
		t.Fatal("parsed with the zero key")
	}
}

// The wire format is the design's (issue20-design.md §5, §7), computed here
// independently of SignState and Digest.
func TestStateWireFormat(t *testing.T) {
	k := testKey(t, 1)
	c := deployCall()
	sum := sha256.Sum256([]byte("tools/call\x00jenkins.trigger_deploy\x00" + string(c.Arguments)))
	if got, want := c.Digest(), hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("digest %s, want %s", got, want)
	}
	s := signed(t, k, c)
	p64, m64, _ := strings.Cut(strings.TrimPrefix(s, StatePrefix), ".")
	payload, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, bytes.Repeat([]byte{1}, 32))
	m.Write([]byte("pbac/approval-state/v1\x00"))
	m.Write(payload)
	if want := base64.RawURLEncoding.EncodeToString(m.Sum(nil)); m64 != want {
		t.Fatalf("signature %s, want HMAC-SHA256(key, context || payload) = %s", m64, want)
	}
}

func TestCallDigestSeparatesFields(t *testing.T) {
	for _, pair := range [][2]Call{
		{{Method: "tools/call", Tool: "a", Arguments: []byte("b")}, {Method: "tools/call", Tool: "ab"}},
		{{Method: "tools/call", Tool: "ab", Arguments: []byte("{}")}, {Method: "tools/calla", Tool: "b", Arguments: []byte("{}")}},
	} {
		if pair[0].Digest() == pair[1].Digest() {
			t.Fatalf("%+v and %+v have one digest", pair[0], pair[1])
		}
	}
	a := Call{Method: "tools/call", Tool: "a", Arguments: []byte("b")}
	if d := a.Digest(); len(d) != 64 || strings.Trim(d, "0123456789abcdef") != "" {
		t.Fatalf("digest %q: want 64 lowercase hex digits", d)
	}
	// Who calls is bound by the state, not the digest.
	c := a
	c.ClientID, c.Subject = "x", "y"
	if a.Digest() != c.Digest() {
		t.Fatal("digest depends on client or subject")
	}
}

func FuzzParseState(f *testing.F) {
	k := testKey(f, 1)
	good := signed(f, k, deployCall())
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(StatePrefix)
	f.Add(StatePrefix + ".")
	f.Add("pbac1.e30.AAAA")
	f.Add(strings.Replace(good, "e", "f", 1))
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseState(k, s)
		if err != nil {
			if !errors.Is(err, ErrStateMalformed) && !errors.Is(err, ErrStateSignature) {
				t.Fatalf("ParseState(%q): %v wraps no sentinel", s, err)
			}
			if st != (State{}) {
				t.Fatalf("ParseState(%q) failed but returned %+v", s, st)
			}
			return
		}
		again, err := SignState(k, st)
		if err != nil {
			t.Fatalf("ParseState(%q) = %+v, which does not sign: %v", s, st, err)
		}
		if again != s {
			t.Fatalf("state %q parsed and signed again is %q", s, again)
		}
	})
}

// A machine agent acts for no person: its state has no subject, and it is
// refused for a call on someone's behalf.
func TestStateWithoutSubject(t *testing.T) {
	k := testKey(t, 1)
	c := deployCall()
	c.Subject = ""
	s, err := SignState(k, NewState("apr_1", "v1", c, t0.Add(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyState(k, s, c, t0); err != nil {
		t.Fatalf("the machine agent's own retry: %v", err)
	}
	c.Subject = "alice"
	if _, err := VerifyState(k, s, c, t0); !errors.Is(err, ErrStateOtherRequest) {
		t.Fatalf("the state for alice's call = %v, want ErrStateOtherRequest", err)
	}
}
