package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// JSON-RPC error codes the gateway answers with.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeInvalidParams  = -32602
	codeInternalError  = -32603
	// codeDenied is the gateway's own code for a call policy refused.
	codeDenied = -32001
	// codeHeaderMismatch answers MCP headers that disagree with the body
	// or are missing (HeaderMismatch, 2026-07-28 revision).
	codeHeaderMismatch = -32020
)

var (
	errNotObject    = errors.New("a JSON-RPC message must be one JSON object (batches are not accepted)")
	errDuplicateKey = errors.New("duplicate object key")
	errTooDeep      = errors.New("JSON nesting too deep")
	errBadUTF8      = errors.New("invalid UTF-8")
)

// rpcMessage is a JSON-RPC message as the gateway decides on it. Raw is the
// exact body that is forwarded; the fields are read from it by a strict
// parser that refuses duplicate keys (at any depth, compared exactly) and
// invalid UTF-8, so what policy sees is what the backend gets.
type rpcMessage struct {
	Raw    []byte
	ID     json.RawMessage // nil for a notification
	Method string
	// Params is the params object's members, exact keys.
	Params map[string]json.RawMessage
	// Name is params.name for tools/call and prompts/get; URI is params.uri
	// for resources/read.
	Name, URI string
	// Arguments is params.arguments, the exact bytes (nil when absent).
	Arguments json.RawMessage
	// IsResponse is set for a client's response to a server request
	// (sampling, elicitation): it has result or error and no method.
	IsResponse bool
	// MetaProtocolVersion is params._meta["io.modelcontextprotocol/protocolVersion"]
	// (2026-07-28 requests carry it).
	MetaProtocolVersion string
}

// parseMessage reads one JSON-RPC message from body.
func parseMessage(body []byte, maxDepth int) (*rpcMessage, error) {
	if !utf8.Valid(body) {
		return nil, errBadUTF8
	}
	if err := checkStrict(body, maxDepth); err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, errNotObject
	}
	m := &rpcMessage{Raw: body}
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

// checkStrict walks the document's tokens: one top-level object, no
// duplicate keys in any object, nesting at most maxDepth.
func checkStrict(body []byte, maxDepth int) error {
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
				return errNotObject
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
					return errTooDeep
				}
				stack = append(stack, &frame{obj: t == '{', keys: map[string]struct{}{}, expectKey: t == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					if dec.More() {
						return errNotObject
					}
					if _, err := dec.Token(); err != io.EOF {
						return errNotObject
					}
					return nil
				}
			}
		case string:
			if top != nil && top.obj && top.expectKey {
				if _, dup := top.keys[t]; dup {
					return fmt.Errorf("%w %q", errDuplicateKey, t)
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

// rpcError renders a JSON-RPC error response for id.
func rpcError(id json.RawMessage, code int, msg string, data any) []byte {
	if id == nil {
		id = json.RawMessage("null")
	}
	e := map[string]any{"code": code, "message": msg}
	if data != nil {
		e["data"] = data
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "error": e})
	return b
}
