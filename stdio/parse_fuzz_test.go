package stdio

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/pbac-gateway/pbac/jsonrpc"
)

// FuzzBridgeMessages: what the bridge parses — a POSTed message (parsePost)
// and a line the process writes to stdout (dispatch) — never panics. A
// POST it accepts becomes exactly one line for stdin that reads back as the
// same message (same id, method and kind); a response the process writes
// reaches the request waiting for its id, byte for byte.
func FuzzBridgeMessages(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`,
		`{"jsonrpc":"2.0","id":"s1","error":{"code":-1,"message":"no"}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":1}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":7}}}`,
		"{\"jsonrpc\":\"2.0\",\r\n\"id\":1,\"result\":{}}",
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, `{"jsonrpc":"2.0","id":null,"method":"x"}`, `not json`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if in, _, err := parsePost(raw); err == nil {
			line := in.line
			if len(line) == 0 || line[len(line)-1] != '\n' || bytes.ContainsAny(line[:len(line)-1], "\r\n") {
				t.Fatalf("parsePost(%q): line %q is not one line", raw, line)
			}
			back, err := jsonrpc.Parse(line[:len(line)-1], maxDepth)
			if err != nil {
				t.Fatalf("parsePost(%q): the line %q does not read back: %v", raw, line, err)
			}
			k, _ := jsonrpc.IDKey(back.ID)
			if back.Method != in.method || back.IsResponse != (in.kind == kindResponse) || (in.kind != kindNotification && k != in.key) {
				t.Fatalf("parsePost(%q): the line reads back as %+v, not %+v", raw, back, in)
			}
		}

		// The process's stdout: a request with id 1 waits.
		s := &session{log: slog.New(slog.DiscardHandler), pending: map[string]*pendingCall{}, standalone: newMailbox(backlog)}
		waiting := &pendingCall{sse: true, token: "s:p", box: newMailbox(streamQueue)}
		s.pending["n:1"] = waiting
		s.dispatch(raw, &lineLimiter{})
		msgs, final := waiting.box.take()
		m, err := jsonrpc.Parse(bytes.TrimSpace(raw), maxDepth)
		switch {
		case err != nil:
			if final != nil || len(msgs) > 0 {
				t.Fatalf("dispatch(%q) delivered what is not a message", raw)
			}
		case m.IsResponse:
			if k, _ := jsonrpc.IDKey(m.ID); (k == "n:1") != (final != nil) {
				t.Fatalf("dispatch(%q): response delivered %v", raw, final != nil)
			}
			if final != nil && !json.Valid(final) {
				t.Fatalf("dispatch(%q): delivered %q", raw, final)
			}
		}
	})
}
