package audit

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDigest(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"nil", nil, ""},
		{"empty", []byte{}, ""},
		{"abc vector", []byte("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"empty object", []byte("{}"), "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Digest(tc.in); got != tc.want {
				t.Fatalf("Digest(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if again := Digest(append([]byte(nil), tc.in...)); again != Digest(tc.in) {
				t.Fatalf("digest not stable: %q vs %q", again, Digest(tc.in))
			}
		})
	}

	// Exact bytes: semantically equal JSON with different bytes differs.
	pairs := [][2]string{
		{`{"a":1,"b":2}`, `{"b":2,"a":1}`},
		{`{"a":1}`, `{ "a": 1 }`},
		{`{"path":"/etc/secrets"}`, `{"path":"/etc/secrets "}`},
	}
	for _, p := range pairs {
		if Digest([]byte(p[0])) == Digest([]byte(p[1])) {
			t.Errorf("Digest(%s) == Digest(%s)", p[0], p[1])
		}
	}
	d := Digest([]byte(`{"x":true}`))
	if !strings.HasPrefix(d, "sha256:") || len(d) != len("sha256:")+64 {
		t.Fatalf("bad digest format %q", d)
	}
}

func TestEncodeRecordInvalidRawJSON(t *testing.T) {
	r := rec(1)
	r.Act = json.RawMessage(`{"sub":"agent"`) // truncated
	r.Args = json.RawMessage(`not json`)
	b, err := Encode(&r)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("fallback encoding is not JSON: %v: %s", err, b)
	}
	if back["args"] != "not json" || back["act"] != `{"sub":"agent"` {
		t.Fatalf("raw bytes not preserved as strings: %s", b)
	}
	r.Act = json.RawMessage(`{"sub":"agent","act":{"sub":"planner"}}`)
	r.Args = json.RawMessage(`{"path":"/tmp"}`)
	b, _ = Encode(&r)
	if !strings.Contains(string(b), `"act":{"sub":"agent","act":{"sub":"planner"}}`) || !strings.Contains(string(b), `"ts":"2026-11-23T12:00:00.001Z"`) {
		t.Fatalf("unexpected encoding %s", b)
	}
}
