// Package jsonrpc is the one JSON-RPC 2.0 parser of the project: a strict,
// one-pass reader of an MCP message (exactly one object, no duplicate keys
// at any depth, valid UTF-8, bounded nesting) whose fields are sub-slices
// of the bytes that are forwarded, so what policy sees is what the backend
// gets. The gateway parses every request body with it and the stdio bridge
// every message in both directions; both answer with ErrorBody. It is
// fuzzed against a reference parser (FuzzParseMessageDifferential).
package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// JSON-RPC error codes the gateway and the stdio bridge answer with.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeDenied is the gateway's own code for a call policy refused.
	CodeDenied = -32001
	// CodeHeaderMismatch answers MCP headers that disagree with the body
	// or are missing (HeaderMismatch, 2026-07-28 revision).
	CodeHeaderMismatch = -32020
	// CodeApprovalRequired is the gateway's own code for a call policy
	// holds until a person approves it, answered to a client that can take
	// neither an input request (2026-07-28) nor a URL elicitation: its
	// data names the approval page; the same call, once approved, goes
	// through. (Not -32003, -32004 or -32005: the go-sdk's client reads
	// those as its connection closing or its transport refusing.)
	CodeApprovalRequired = -32010
	// CodeURLElicitationRequired is revision 2025-11-25's
	// URLElicitationRequiredError: the client opens the URL and retries.
	CodeURLElicitationRequired = -32042
)

// Errors Parse wraps; Code tells which JSON-RPC code answers each.
var (
	// ErrNotObject: the document is not exactly one JSON object.
	ErrNotObject = errors.New("a JSON-RPC message must be one JSON object (batches are not accepted)")
	// ErrDuplicateKey: an object names a member twice.
	ErrDuplicateKey = errors.New("duplicate object key")
	// ErrTooDeep: the document nests deeper than allowed.
	ErrTooDeep = errors.New("JSON nesting too deep")
	// ErrBadUTF8: the document is not valid UTF-8.
	ErrBadUTF8 = errors.New("invalid UTF-8")
	// ErrMalformed: the document is not JSON.
	ErrMalformed = errors.New("malformed JSON")
)

// Code is the JSON-RPC error code that answers a Parse error: a parse
// error for what is not JSON (or not UTF-8), an invalid request for
// everything else.
func Code(err error) int {
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrBadUTF8) {
		return CodeParseError
	}
	return CodeInvalidRequest
}

// Message is a JSON-RPC message as the gateway decides on it. Raw is the
// exact body that is forwarded; the fields are read from it by a strict
// parser that refuses duplicate keys (at any depth, compared exactly) and
// invalid UTF-8, so what policy sees is what the backend gets.
type Message struct {
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
	// MetaClientCapabilities is params._meta["io.modelcontextprotocol/clientCapabilities"],
	// the exact bytes (nil when absent): from 2026-07-28 a client says on
	// every request what it can do for the server (elicitation, sampling).
	MetaClientCapabilities json.RawMessage
	// ProgressToken is params._meta.progressToken, the exact bytes (nil
	// when absent): the token of the progress notifications a request
	// asks for.
	ProgressToken json.RawMessage
	// TraceParent, TraceState and Baggage are params._meta's W3C trace
	// context (SEP-414), "" when absent or not a string: a malformed one
	// is the tracer's to ignore, never a reason to refuse the message.
	TraceParent, TraceState, Baggage string
}

// Parse reads one JSON-RPC message from body, in one strict pass
// (jsontext): exactly one object, no duplicate keys at any depth (compared
// after unescaping), valid UTF-8, nesting at most maxDepth. The fields are
// sub-slices of body, so what policy sees is what the backend gets.
func Parse(body []byte, maxDepth int) (*Message, error) {
	if !utf8.Valid(body) {
		return nil, ErrBadUTF8
	}
	if err := checkDepth(body, maxDepth); err != nil {
		return nil, err
	}
	// One pass reads the message, the params object and its _meta: each
	// is parsed (and checked for duplicate keys) once.
	var params, metas []Member
	var paramsRead, metaRead bool
	inParams := func(key string) (*[]Member, *bool, descender) {
		if key == "_meta" {
			return &metas, &metaRead, nil
		}
		return nil, nil, nil
	}
	top, err := objectMembers(body, func(key string) (*[]Member, *bool, descender) {
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
	m := &Message{Raw: body}
	var (
		version, method, rawParams []byte
		hasResult, hasError, has   bool
	)
	for _, mb := range top {
		// A decoder that matches keys case-insensitively (Go's) would read
		// "ID" or "Params" as the member the gateway read.
		for _, k := range [...]string{"jsonrpc", "id", "method", "params", "result", "error"} {
			if mb.Key != k && strings.EqualFold(mb.Key, k) {
				return nil, fmt.Errorf("%s is another spelling of %s", mb.Key, k)
			}
		}
		switch mb.Key {
		case "jsonrpc":
			version = mb.Raw
		case "id":
			m.ID = json.RawMessage(mb.Raw)
		case "method":
			method, has = mb.Raw, true
		case "params":
			rawParams = mb.Raw
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
		s, ok := Unquote(method)
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
		// A decoder that matches keys case-insensitively (Go's) would read
		// "Name" or "URI" as the member the gateway decides on (a task's
		// id, a subscription's notifications alike).
		for _, k := range [...]string{"name", "uri", "arguments", "taskId", "notifications"} {
			if mb.Key != k && strings.EqualFold(mb.Key, k) {
				return nil, fmt.Errorf("params.%s is another spelling of params.%s", mb.Key, k)
			}
		}
		m.Params[mb.Key] = json.RawMessage(mb.Raw)
	}
	str := func(key string) (string, error) {
		raw, ok := m.Params[key]
		if !ok {
			return "", nil
		}
		s, ok := Unquote(raw)
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
			if mb.Key != "progressToken" && strings.EqualFold(mb.Key, "progressToken") {
				return nil, fmt.Errorf("_meta.%s is another spelling of _meta.progressToken", mb.Key)
			}
			switch mb.Key {
			case "io.modelcontextprotocol/protocolVersion":
				s, ok := Unquote(mb.Raw)
				if !ok {
					return nil, errors.New("_meta protocolVersion must be a string")
				}
				m.MetaProtocolVersion = s
			case "progressToken":
				m.ProgressToken = json.RawMessage(mb.Raw)
			case "io.modelcontextprotocol/clientCapabilities":
				m.MetaClientCapabilities = json.RawMessage(mb.Raw)
			case "traceparent":
				m.TraceParent, _ = Unquote(mb.Raw)
			case "tracestate":
				m.TraceState, _ = Unquote(mb.Raw)
			case "baggage":
				m.Baggage, _ = Unquote(mb.Raw)
			}
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

// Member is one member of a JSON object: its unescaped key and its
// value's exact bytes (a sub-slice of the document).
type Member struct {
	Key string
	Raw []byte
	// Whole is the member as written: its key (escapes included), the
	// colon and the value, with the space between them.
	Whole []byte
}

// Members reads doc as exactly one JSON object, strictly (the whole
// document is validated, duplicate keys refused at every depth), and
// returns its members in order.
func Members(doc []byte) ([]Member, error) {
	return objectMembers(doc, nil)
}

// descender says, for a member's key, where the members of its value go
// when the value is an object: into *dst (and *read is set), its own
// members descended into by next. A nil dst skips the value.
type descender func(key string) (dst *[]Member, read *bool, next descender)

// objectMembers reads doc as exactly one JSON object, strictly (the whole
// document is validated, duplicate keys refused at every depth), and
// returns its members in order; the object values descend names are read
// in the same pass.
func objectMembers(doc []byte, descend descender) ([]Member, error) {
	// A bytes.Buffer is parsed in place, without a copy into the
	// decoder's own buffer.
	dec := jsontext.NewDecoder(bytes.NewBuffer(doc))
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, malformed(err)
	}
	if tok.Kind() != '{' {
		return nil, ErrNotObject
	}
	out, err := readMembers(dec, doc, descend)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, ErrNotObject
	}
	return out, nil
}

// readMembers reads the members of the object whose '{' dec has just read,
// and its '}'.
func readMembers(dec *jsontext.Decoder, doc []byte, descend descender) ([]Member, error) {
	var out []Member
	for dec.PeekKind() != '}' {
		before := dec.InputOffset()
		name, err := dec.ReadToken()
		if err != nil {
			return nil, malformed(err)
		}
		key := name.String() // a token is valid only until the next read
		start := dec.InputOffset()
		var dst *[]Member
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
		end := dec.InputOffset()
		raw := bytes.TrimLeft(doc[start:end], " \t\r\n:")
		whole := bytes.TrimLeft(doc[before:end], " \t\r\n,")
		out = append(out, Member{Key: key, Raw: raw, Whole: whole})
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, malformed(err)
	}
	return out, nil
}

func malformed(err error) error {
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName):
		return fmt.Errorf("%w: %v", ErrDuplicateKey, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: unexpected end", ErrMalformed)
	}
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}

// Unquote decodes a JSON string value (a member's Raw); false when raw is
// not one.
func Unquote(raw []byte) (string, bool) {
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
				return ErrTooDeep
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// ErrorBody renders a JSON-RPC error response for id (nil: null).
func ErrorBody(id json.RawMessage, code int, msg string, data any) []byte {
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

// IDKey canonicalizes a JSON-RPC id (or a progress token): a string or a
// number, numbers compared by value ("1", "1.0" and "1e0" are one id). ok
// is false for anything else (null, an object, an array, a boolean).
func IDKey(raw json.RawMessage) (key string, ok bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return "s:" + s, true
	case c == '-' || (c >= '0' && c <= '9'):
		if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return "n:" + strconv.FormatInt(n, 10), true
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return "", false
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			return "n:" + strconv.FormatInt(int64(f), 10), true
		}
		return "n:" + strconv.FormatFloat(f, 'g', -1, 64), true
	}
	return "", false
}
