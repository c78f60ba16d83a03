package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
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

func TestRecordEventKind(t *testing.T) {
	tests := []struct {
		name     string
		line     string // a stored JSON line
		wantKind string
	}{
		{"a line written before records had a kind is a decision", `{"ts":"2026-11-23T12:00:00Z","request_id":"a","client_id":"c","method":"tools/call","decision":"allow","status":200}`, EventDecision},
		{"an empty kind is a decision", `{"event":"","request_id":"b","method":"tools/call","decision":"deny","status":403}`, EventDecision},
		{"a token event", `{"event":"token","request_id":"c","method":"token/refresh_token","decision":"allow","status":200}`, EventToken},
		{"a policy event", `{"event":"policy","request_id":"d","method":"policy/activate","decision":"allow","status":200}`, EventPolicy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Record
			if err := json.Unmarshal([]byte(tc.line), &r); err != nil {
				t.Fatal(err)
			}
			if got := r.Kind(); got != tc.wantKind {
				t.Fatalf("Kind() = %q, want %q", got, tc.wantKind)
			}
			if f := (Filter{Event: tc.wantKind}); !f.Matches(&r) {
				t.Fatalf("a filter on %q does not match %s", tc.wantKind, tc.line)
			}
			// Written again, the line says its kind.
			b, err := Encode(&r)
			if err != nil {
				t.Fatal(err)
			}
			if want := `"event":"` + tc.wantKind + `"`; !strings.Contains(string(b), want) {
				t.Fatalf("re-encoded %s lacks %s", b, want)
			}
		})
	}
}

func TestValidEvent(t *testing.T) {
	for _, k := range EventKinds() {
		if !ValidEvent(k) {
			t.Errorf("ValidEvent(%q) = false for a kind of EventKinds", k)
		}
	}
	for _, k := range []string{"", "Decision", "tool_call", "token "} {
		if ValidEvent(k) {
			t.Errorf("ValidEvent(%q) = true", k)
		}
	}
}

// TestEncodeAgreesWithMarshal: Encode writes exactly what encoding/json
// writes for the record through its MarshalJSON method, which Encode
// skips so as not to pass over every line twice.
func TestEncodeAgreesWithMarshal(t *testing.T) {
	ts := time.Date(2026, 12, 3, 17, 0, 0, 123456789, time.UTC)
	for _, r := range []Record{
		{},
		{Time: ts, RequestID: "r1", ClientID: "c", Method: "tools/call", Tool: "jira.search_issues", Decision: "allow", Status: 200,
			Scopes: []string{"jira:read"}, Args: json.RawMessage(`{ "query" : "SEC" }`), Act: json.RawMessage(`{"sub":"a"}`),
			LatencyMicros: map[string]int64{"total": 30, "backend": 12, "policy": 5}},
		{Time: ts, Event: EventToken, ClientID: "c", Reasons: []string{"<html> & \u2028"}, Count: 3, Remote: "127.0.0.1:1"},
	} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Encode(&r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Encode:\n%s\njson.Marshal:\n%s", got, want)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	r := Record{Time: time.Now().UTC(), RequestID: "0f9c2b7e5d3a4c1b", ClientID: "ci-bot", Method: "tools/call", Backend: "jira",
		Tool: "jira.search_issues", Decision: "allow", Status: 200, Scopes: []string{"jira:read"}, PolicyVersion: "v3-1a2b3c",
		ArgsDigest: Digest([]byte(`{"query":"SEC"}`)), LatencyMicros: map[string]int64{"introspect": 4, "policy": 30, "backend": 120, "total": 190}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(&r); err != nil {
			b.Fatal(err)
		}
	}
}
