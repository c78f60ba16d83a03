package jsonrpc

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr error  // sentinel, when set
		errText string // substring, when set
		check   func(t *testing.T, m *Message)
	}{
		{name: "tools/call", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/a"}}}`,
			check: func(t *testing.T, m *Message) {
				if m.Method != "tools/call" || m.Name != "read_file" || string(m.Arguments) != `{"path":"/a"}` || string(m.ID) != "7" {
					t.Fatalf("%+v", m)
				}
			}},
		{name: "notification", body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			check: func(t *testing.T, m *Message) {
				if m.ID != nil || m.Method != "notifications/initialized" {
					t.Fatalf("%+v", m)
				}
			}},
		{name: "client response", body: `{"jsonrpc":"2.0","id":"s1","result":{}}`,
			check: func(t *testing.T, m *Message) {
				if !m.IsResponse {
					t.Fatal("not a response")
				}
			}},
		{name: "duplicate top-level key", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}`, wantErr: ErrDuplicateKey},
		{name: "duplicate argument key", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"r","arguments":{"path":"/public/a","path":"/prod/secrets/k"}}}`, wantErr: ErrDuplicateKey},
		{name: "duplicate key deep inside", body: `{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":[{"b":1,"b":2}]}}`, wantErr: ErrDuplicateKey},
		{name: "same key in sibling objects is fine", body: `{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":{"k":1},"b":{"k":2}}}`},
		// A Go backend decodes keys case-insensitively: "Name" would be
		// the name it acts on, not the one policy decided.
		{name: "another spelling of name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}`, errText: "another spelling of params.name"},
		{name: "another spelling of uri", body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","URI":"b"}}`, errText: "another spelling of params.uri"},
		{name: "another spelling of arguments", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Arguments":{}}}`, errText: "another spelling of params.arguments"},
		{name: "another spelling of id", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"ID":"pbac-2"}`, errText: "ID is another spelling of id"},
		{name: "another spelling of params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","Params":{"name":"x"}}`, errText: "another spelling of params"},
		{name: "another spelling of the progress token", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":1,"ProgressToken":2}}}`, errText: "another spelling of _meta.progressToken"},
		{name: "another spelling of taskId", body: `{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"a","TASKID":"b"}}`, errText: "another spelling of params.taskId"},
		{name: "another spelling of notifications", body: `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{},"Notifications":{"resourceSubscriptions":["x"]}}}`, errText: "another spelling of params.notifications"},
		{name: "case variants elsewhere are different keys", body: `{"jsonrpc":"2.0","id":1,"method":"x","params":{"cursor":"a","Cursor":"b"}}`},
		{name: "batch", body: `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, wantErr: ErrNotObject},
		{name: "trailing data", body: `{"jsonrpc":"2.0","id":1,"method":"ping"} {}`, wantErr: ErrNotObject},
		{name: "too deep", body: `{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}}`, wantErr: ErrTooDeep},
		{name: "invalid utf-8", body: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"a\":\"\xff\"}}", wantErr: ErrBadUTF8},
		{name: "wrong version", body: `{"jsonrpc":"1.0","id":1,"method":"ping"}`, errText: "2.0"},
		{name: "name not a string", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}`, errText: "params.name"},
		{name: "arguments not an object", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}`, errText: "arguments"},
		{name: "not JSON", body: `{"jsonrpc":`, errText: "malformed"},
		{name: "progress token", body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":"p-1"}}}`,
			check: func(t *testing.T, m *Message) {
				if string(m.ProgressToken) != `"p-1"` {
					t.Fatalf("progress token %s", m.ProgressToken)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.body), 32)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			case tc.errText != "":
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.errText)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if tc.check != nil {
					tc.check(t, m)
				}
			}
		})
	}
}

// FuzzParseMessage: the parser of every request body never panics, and what
// it accepts is one object whose arguments are a sub-slice-equal copy of
// what is forwarded.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/a"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"x":[1,2,{"y":null}]}}`,
		`[{"jsonrpc":"2.0"}]`, `{"a":{"a":{"a":1,"a":2}}}`, "{\"\xff\":1}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Parse(body, 32)
		if err != nil {
			return
		}
		if m.Arguments != nil && !strings.Contains(string(body), string(m.Arguments)) {
			t.Fatalf("arguments %s are not the forwarded bytes", m.Arguments)
		}
	})
}

// TestCode: what is not JSON (or not UTF-8) is a parse error; every other
// refusal an invalid request.
func TestCode(t *testing.T) {
	for _, c := range []struct {
		body string
		code int
	}{
		{`{"jsonrpc":`, CodeParseError},
		{``, CodeParseError},
		{"{\"a\":\"\xff\"}", CodeParseError},
		{`[1]`, CodeInvalidRequest},
		{`{"jsonrpc":"2.0","id":1,"method":"x","method":"y"}`, CodeInvalidRequest},
		{`{"jsonrpc":"1.0","id":1,"method":"x"}`, CodeInvalidRequest},
	} {
		_, err := Parse([]byte(c.body), 8)
		if err == nil || Code(err) != c.code {
			t.Errorf("%q: err %v, code %d, want %d", c.body, err, Code(err), c.code)
		}
	}
}

// TestIDKey: ids are strings or numbers, numbers compared by value.
func TestIDKey(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{`1`, `1.0`, true}, {`1`, `1e0`, true}, {`1`, `"1"`, false}, {`"a"`, `"\u0061"`, true}, {`-2`, `-2`, true}, {`1.5`, `1.5`, true},
	} {
		ka, oka := IDKey([]byte(tc.a))
		kb, okb := IDKey([]byte(tc.b))
		if !oka || !okb || (ka == kb) != tc.same {
			t.Errorf("IDKey(%s)=%q, IDKey(%s)=%q", tc.a, ka, tc.b, kb)
		}
	}
	for _, bad := range []string{`null`, `{}`, `[1]`, `true`, ``} {
		if _, ok := IDKey([]byte(bad)); ok {
			t.Errorf("IDKey(%s) accepted", bad)
		}
	}
}

// FuzzIDKey: ids the bridge matches responses by never panic, and an id
// equals itself.
func FuzzIDKey(f *testing.F) {
	for _, s := range []string{`1`, `1.0`, `"a"`, `-0`, `1e400`, `"\ud800"`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		k, ok := IDKey(raw)
		k2, ok2 := IDKey(raw)
		if k != k2 || ok != ok2 || (ok && k == "") {
			t.Fatalf("IDKey(%q) = %q %v, then %q %v", raw, k, ok, k2, ok2)
		}
	})
}
