package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// parseReference is the first parser of the gateway (encoding/json
// tokens, a map per object): slow, and the reference the one-pass parser is
// checked against.
func parseReference(body []byte, maxDepth int) (*Message, error) {
	if !utf8.Valid(body) {
		return nil, ErrBadUTF8
	}
	if err := checkStrictReference(body, maxDepth); err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, ErrNotObject
	}
	for k := range top {
		for _, want := range []string{"jsonrpc", "id", "method", "params", "result", "error"} {
			if k != want && strings.EqualFold(k, want) {
				return nil, fmt.Errorf("%s is another spelling of %s", k, want)
			}
		}
	}
	m := &Message{Raw: body}
	if v, ok := top["jsonrpc"]; !ok || string(bytes.TrimSpace(v)) != `"2.0"` {
		return nil, errors.New(`jsonrpc must be "2.0"`)
	}
	if id, ok := top["id"]; ok {
		m.ID = id
	}
	method, hasMethod := top["method"]
	_, hasResult := top["result"]
	_, hasError := top["error"]
	switch {
	case hasMethod:
		if err := json.Unmarshal(method, &m.Method); err != nil || m.Method == "" {
			return nil, errors.New("method must be a non-empty string")
		}
	case hasResult || hasError:
		if m.ID == nil {
			return nil, errors.New("a response needs an id")
		}
		m.IsResponse = true
		return m, nil
	default:
		return nil, errors.New("no method")
	}
	if p, ok := top["params"]; ok && string(bytes.TrimSpace(p)) != "null" {
		if err := json.Unmarshal(p, &m.Params); err != nil {
			return nil, errors.New("params must be an object")
		}
		for k := range m.Params {
			for _, want := range []string{"name", "uri", "arguments", "taskId", "notifications"} {
				if k != want && strings.EqualFold(k, want) {
					return nil, fmt.Errorf("params.%s is another spelling of params.%s", k, want)
				}
			}
		}
	}
	str := func(key string) (string, error) {
		raw, ok := m.Params[key]
		if !ok {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("params.%s must be a string", key)
		}
		return s, nil
	}
	var err error
	if m.Name, err = str("name"); err != nil {
		return nil, err
	}
	if m.URI, err = str("uri"); err != nil {
		return nil, err
	}
	if meta, ok := m.Params["_meta"]; ok {
		var mm map[string]json.RawMessage
		if json.Unmarshal(meta, &mm) == nil {
			if v, ok := mm["io.modelcontextprotocol/protocolVersion"]; ok {
				if err := json.Unmarshal(v, &m.MetaProtocolVersion); err != nil {
					return nil, errors.New("_meta protocolVersion must be a string")
				}
			}
			if v, ok := mm["progressToken"]; ok {
				m.ProgressToken = v
			}
			for k := range mm {
				if k != "progressToken" && strings.EqualFold(k, "progressToken") {
					return nil, fmt.Errorf("_meta.%s is another spelling of _meta.progressToken", k)
				}
			}
		}
	}
	if a, ok := m.Params["arguments"]; ok && string(bytes.TrimSpace(a)) != "null" {
		if t := bytes.TrimSpace(a); len(t) == 0 || t[0] != '{' {
			return nil, errors.New("params.arguments must be an object")
		}
		m.Arguments = a
	}
	return m, nil
}

// checkStrictReference walks the document's tokens: one top-level object, no
// duplicate keys in any object, nesting at most maxDepth.
func checkStrictReference(body []byte, maxDepth int) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		obj  bool
		keys map[string]struct{}
		// expectKey is true in an object when the next string is a key.
		expectKey bool
	}
	var stack []*frame
	first := true
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("malformed JSON: %w", err)
		}
		if first {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return ErrNotObject
			}
			first = false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.obj {
					top.expectKey = true
				}
				if len(stack) >= maxDepth {
					return ErrTooDeep
				}
				stack = append(stack, &frame{obj: t == '{', keys: map[string]struct{}{}, expectKey: t == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					if dec.More() {
						return ErrNotObject
					}
					if _, err := dec.Token(); err != io.EOF {
						return ErrNotObject
					}
					return nil
				}
			}
		case string:
			if top != nil && top.obj && top.expectKey {
				if _, dup := top.keys[t]; dup {
					return fmt.Errorf("%w %q", ErrDuplicateKey, t)
				}
				top.keys[t] = struct{}{}
				top.expectKey = false
				continue
			}
			if top != nil && top.obj {
				top.expectKey = true
			}
		default:
			if top != nil && top.obj {
				top.expectKey = true
			}
		}
	}
	if len(stack) != 0 || first {
		return errors.New("malformed JSON: unexpected end")
	}
	return nil
}

// loneSurrogate matches an escaped UTF-16 surrogate, which the one-pass
// parser refuses (it does not decode to valid UTF-8) and the reference
// accepted (replacing it with U+FFFD).
var loneSurrogate = regexp.MustCompile(`(?i)\\ud[89a-f][0-9a-f]{2}`)

// FuzzParseMessageDifferential: the one-pass parser accepts nothing the
// reference refuses, reads the same fields from what both accept, and
// refuses what the reference accepts only for escaped surrogates.
func FuzzParseMessageDifferential(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/a"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"x":[1,2,{"y":null}]}}`,
		`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x\u0041","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"arguments":null}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"n\u0061me":"x","name":"y"}}`,
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"p-1"}}}`,
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"_meta":{"progressToken": 3 ,"progressToken":4}}}`,
		` {"jsonrpc" : "2.0" , "id" : 1 , "method" : "ping" } `,
		`[{"jsonrpc":"2.0"}]`, `{"a":{"a":{"a":1,"a":2}}}`, "{\"\xff\":1}", `{"jsonrpc":"2.0","method":"x","params":{"s":"\ud800"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := Parse(body, 16)
		want, refErr := parseReference(body, 16)
		switch {
		case err != nil && refErr != nil:
			return
		case err == nil && refErr != nil:
			t.Fatalf("accepted what the reference refuses (%v): %q", refErr, body)
		case err != nil && refErr == nil:
			if !loneSurrogate.Match(body) {
				t.Fatalf("refused (%v) what the reference accepts: %q", err, body)
			}
			return
		}
		if string(got.ID) != string(want.ID) || got.Method != want.Method || got.Name != want.Name || got.URI != want.URI ||
			string(got.Arguments) != string(want.Arguments) || got.IsResponse != want.IsResponse ||
			got.MetaProtocolVersion != want.MetaProtocolVersion ||
			string(bytes.TrimSpace(got.ProgressToken)) != string(bytes.TrimSpace(want.ProgressToken)) {
			t.Fatalf("fields differ for %q:\n got %+v\nwant %+v", body, got, want)
		}
		if !maps.EqualFunc(got.Params, want.Params, func(a, b json.RawMessage) bool {
			return string(bytes.TrimSpace(a)) == string(bytes.TrimSpace(b))
		}) {
			t.Fatalf("params differ for %q:\n got %v\nwant %v", body, got.Params, want.Params)
		}
	})
}
