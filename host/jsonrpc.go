package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
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

// parseMessage reads one JSON-RPC message from body, in one strict pass
// (jsontext): exactly one object, no duplicate keys at any depth (compared
// after unescaping), valid UTF-8, nesting at most maxDepth. The fields are
// sub-slices of body, so what policy sees is what the backend gets.
func parseMessage(body []byte, maxDepth int) (*rpcMessage, error) {
	if !utf8.Valid(body) {
		return nil, errBadUTF8
	}
	if err := checkDepth(body, maxDepth); err != nil {
		return nil, err
	}
	// One pass reads the message, the params object and its _meta: each
	// is parsed (and checked for duplicate keys) once.
	var params, metas []member
	var paramsRead, metaRead bool
	inParams := func(key string) (*[]member, *bool, descender) {
		if key == "_meta" {
			return &metas, &metaRead, nil
		}
		return nil, nil, nil
	}
	top, err := objectMembers(body, func(key string) (*[]member, *bool, descender) {
		if key == "params" {
			return &params, &paramsRead, inParams
		}
		return nil, nil, nil
	})
	if err != nil {
		// The error of a pass that skips every value: its wording names
		// what is wrong as the whole document's parse does.
		if _, err2 := objectMembers(body, nil); err2 != nil {
			return nil, err2
		}
		return nil, err
	}
	m := &rpcMessage{Raw: body}
	var (
		version, method, rawParams []byte
		hasResult, hasError, has   bool
	)
	for _, mb := range top {
		switch mb.key {
		case "jsonrpc":
			version = mb.raw
		case "id":
			m.ID = json.RawMessage(mb.raw)
		case "method":
			method, has = mb.raw, true
		case "params":
			rawParams = mb.raw
		case "result":
			hasResult = true
		case "error":
			hasError = true
		}
	}
	if string(version) != `"2.0"` {
		return nil, errors.New(`jsonrpc must be "2.0"`)
	}
	switch {
	case has:
		s, ok := jsonString(method)
		if !ok || s == "" {
			return nil, errors.New("method must be a non-empty string")
		}
		m.Method = s
	case hasResult || hasError:
		if m.ID == nil {
			return nil, errors.New("a response needs an id")
		}
		m.IsResponse = true
		return m, nil
	default:
		return nil, errors.New("no method")
	}
	if rawParams == nil || string(rawParams) == "null" {
		return m, nil
	}
	if rawParams[0] != '{' || !paramsRead {
		return nil, errors.New("params must be an object")
	}
	m.Params = make(map[string]json.RawMessage, len(params))
	for _, mb := range params {
		m.Params[mb.key] = json.RawMessage(mb.raw)
	}
	str := func(key string) (string, error) {
		raw, ok := m.Params[key]
		if !ok {
			return "", nil
		}
		s, ok := jsonString(raw)
		if !ok {
			return "", fmt.Errorf("params.%s must be a string", key)
		}
		return s, nil
	}
	if m.Name, err = str("name"); err != nil {
		return nil, err
	}
	if m.URI, err = str("uri"); err != nil {
		return nil, err
	}
	if meta, ok := m.Params["_meta"]; ok && len(meta) > 0 && meta[0] == '{' && metaRead {
		for _, mb := range metas {
			if mb.key != "io.modelcontextprotocol/protocolVersion" {
				continue
			}
			s, ok := jsonString(mb.raw)
			if !ok {
				return nil, errors.New("_meta protocolVersion must be a string")
			}
			m.MetaProtocolVersion = s
		}
	}
	if a, ok := m.Params["arguments"]; ok && string(a) != "null" {
		if len(a) == 0 || a[0] != '{' {
			return nil, errors.New("params.arguments must be an object")
		}
		m.Arguments = a
	}
	return m, nil
}

// member is one member of a JSON object: its unescaped key and its value's
// exact bytes (a sub-slice of the document).
type member struct {
	key string
	raw []byte
}

// descender says, for a member's key, where the members of its value go
// when the value is an object: into *dst (and *read is set), its own
// members descended into by next. A nil dst skips the value.
type descender func(key string) (dst *[]member, read *bool, next descender)

// objectMembers reads doc as exactly one JSON object, strictly (the whole
// document is validated, duplicate keys refused at every depth), and
// returns its members in order; the object values descend names are read
// in the same pass.
func objectMembers(doc []byte, descend descender) ([]member, error) {
	// A bytes.Buffer is parsed in place, without a copy into the
	// decoder's own buffer.
	dec := jsontext.NewDecoder(bytes.NewBuffer(doc))
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, malformed(err)
	}
	if tok.Kind() != '{' {
		return nil, errNotObject
	}
	out, err := readMembers(dec, doc, descend)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, errNotObject
	}
	return out, nil
}

// readMembers reads the members of the object whose '{' dec has just read,
// and its '}'.
func readMembers(dec *jsontext.Decoder, doc []byte, descend descender) ([]member, error) {
	var out []member
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, malformed(err)
		}
		key := name.String() // a token is valid only until the next read
		start := dec.InputOffset()
		var dst *[]member
		var read *bool
		var next descender
		if descend != nil {
			dst, read, next = descend(key)
		}
		if dst != nil && dec.PeekKind() == '{' {
			if _, err := dec.ReadToken(); err != nil {
				return nil, malformed(err)
			}
			if *dst, err = readMembers(dec, doc, next); err != nil {
				return nil, err
			}
			*read = true
		} else if err := dec.SkipValue(); err != nil {
			return nil, malformed(err)
		}
		raw := bytes.TrimLeft(doc[start:dec.InputOffset()], " \t\r\n:")
		out = append(out, member{key: key, raw: raw})
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, malformed(err)
	}
	return out, nil
}

func malformed(err error) error {
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName):
		return fmt.Errorf("%w: %v", errDuplicateKey, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("malformed JSON: unexpected end")
	}
	return fmt.Errorf("malformed JSON: %w", err)
}

// jsonString decodes a JSON string value; false when raw is not one.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// checkDepth refuses a document nested deeper than maxDepth, before any
// parser walks it.
func checkDepth(doc []byte, maxDepth int) error {
	depth, inString, escaped := 0, false, false
	for _, c := range doc {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > maxDepth {
				return errTooDeep
			}
		case c == '}' || c == ']':
			depth--
		}
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
