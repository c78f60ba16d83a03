package lightmcp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
)

// TestCallAllocatesOnlyForDecoding: a tools/call on a live session
// allocates no more than encoding/json needs to read it.
func TestCallAllocatesOnlyForDecoding(t *testing.T) {
	h := New()
	resp := http.Header{}
	var out bytes.Buffer
	h.initialize(&out, resp, json.RawMessage("0"), Latest)
	hdr := http.Header{}
	hdr.Set(hdrSession, resp.Get(hdrSession))
	hdr.Set(hdrProtocol, Latest)
	body := []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"SEC","jql":"project = SEC"}}}`)
	decode := testing.AllocsPerRun(200, func() {
		var m message
		var p callParams
		var a searchArgs
		if json.Unmarshal(body, &m) != nil || json.Unmarshal(m.Params, &p) != nil || json.Unmarshal(p.Arguments, &a) != nil {
			t.Fatal("decoding")
		}
	})
	var status int
	call := testing.AllocsPerRun(200, func() {
		out.Reset()
		status = h.answer(&out, resp, hdr, body)
	})
	if status != http.StatusOK || !bytes.Contains(out.Bytes(), []byte(`"isError":false`)) {
		t.Fatalf("answer %d %s", status, out.Bytes())
	}
	if call > decode {
		t.Fatalf("a call allocates %.0f times, decoding it %.0f", call, decode)
	}
	t.Logf("allocations per call: %.0f (decoding alone: %.0f)", call, decode)
}

// FuzzAppendString: what appendString writes is a JSON string that reads
// back as encoding/json reads the same text.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "SEC", `a"b\c`, "\x00\x1f\n\r\t", "\u2028\u2029", "\xff\xfe", "héllo 世界", "</script>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := appendString(nil, s)
		var back string
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatalf("%q encoded as %s: %v", s, enc, err)
		}
		want, _ := json.Marshal(s)
		var ref string
		if err := json.Unmarshal(want, &ref); err != nil {
			t.Fatal(err)
		}
		if back != ref {
			t.Fatalf("%q reads back as %q, encoding/json's as %q", s, back, ref)
		}
	})
}

// TestSessionsAreBounded: beyond the bound, initialize ends an older
// session, whose client then gets 404.
func TestSessionsAreBounded(t *testing.T) {
	h := New()
	h.maxSessions = 2
	var ids []string
	for range 3 {
		resp := http.Header{}
		var out bytes.Buffer
		if status := h.initialize(&out, resp, json.RawMessage("0"), Latest); status != http.StatusOK {
			t.Fatalf("initialize: %d", status)
		}
		ids = append(ids, resp.Get(hdrSession))
	}
	live := 0
	for i, id := range ids {
		status, _ := h.live(id)
		if status == 0 {
			live++
		} else if status != http.StatusNotFound || i == 2 {
			t.Fatalf("session %d: %d", i, status)
		}
	}
	if live != 2 {
		t.Fatalf("%d live sessions, want 2", live)
	}
}
