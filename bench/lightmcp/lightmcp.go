// Package lightmcp is a light MCP Streamable HTTP server for benchmarks: one
// tool, search_issues, shaped as the demo jira backend's (the same name and
// input schema, so the shipped policy's catalogue entry jira.search_issues
// applies when the gateway fronts it as backend "jira"), answered with a
// small fixed text that echoes the query.
//
// It exists so that a benchmark of the gateway measures the gateway: the
// demo backends are go-sdk servers, and the go-sdk's JSON Schema validation
// of every call's arguments is the largest CPU item of a demo backend. This
// server does no JSON Schema validation at all — it reads the arguments it
// knows into a Go struct with encoding/json (case-insensitive names, the last
// of duplicate keys wins, unknown arguments ignored) and answers. It is a
// bench backend, not a product server: it keeps no data, checks no
// authorization and must never stand in for a real tool server.
//
// What it speaks:
//   - revisions 2025-03-26, 2025-06-18 and 2025-11-25 with sessions:
//     initialize (answered with the client's version when it is one of
//     those, else the newest) names a session in Mcp-Session-Id; every other
//     request must carry a live one (400 without, 404 for an unknown one);
//     DELETE ends it;
//   - revision 2026-07-28 stateless: no session; server/discover; each
//     request's Mcp-Method (and Mcp-Name for tools/call) must agree with the
//     body and its _meta protocol version with the Mcp-Protocol-Version
//     header; results carry resultType "complete";
//   - methods initialize, ping, server/discover, tools/list, tools/call;
//     notifications and client responses are accepted (202); anything else
//     is a JSON-RPC method-not-found error;
//   - answers are application/json, never SSE; GET (no server stream) is 405.
//
// The hot path (a tools/call on a live session) allocates only what
// encoding/json needs to read the request: buffers are pooled and the answer
// is appended, not marshalled.
package lightmcp

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Protocol revisions.
const (
	// Stateless is the revision served without sessions (SEP-2575).
	Stateless = "2026-07-28"
	// Latest is the newest revision negotiated by initialize.
	Latest = "2025-11-25"
	// assumed is the revision of a request without Mcp-Protocol-Version
	// (the Streamable HTTP transport's rule).
	assumed = "2025-03-26"
)

// legacyVersions are the revisions initialize negotiates, newest first.
var legacyVersions = []string{Latest, "2025-06-18", assumed}

// Tool is the one tool served.
const Tool = "search_issues"

// JSON-RPC error codes.
const (
	codeParse           = -32700
	codeInvalidRequest  = -32600
	codeMethodNotFound  = -32601
	codeInvalidParams   = -32602
	codeHeaderMismatch  = -32020 // MCP: the Mcp-* headers disagree with the body
	codeUnsupportedVers = -32022 // MCP: unsupported protocol version
)

// Header names of the Streamable HTTP transport.
const (
	hdrSession  = "Mcp-Session-Id"
	hdrProtocol = "Mcp-Protocol-Version"
	hdrMethod   = "Mcp-Method"
	hdrName     = "Mcp-Name"
)

// metaProtocolVersion is the _meta key a 2026-07-28 request names its
// revision with.
const metaProtocolVersion = "io.modelcontextprotocol/protocolVersion"

// Limits.
const (
	// MaxBody bounds a request body (413 beyond).
	MaxBody = 1 << 20
	// MaxSessions bounds the live sessions; initialize beyond it ends an
	// arbitrary one (whose client gets 404 and starts again, as the
	// transport allows).
	MaxSessions = 1 << 16
)

// serverName is the implementation name it reports.
const serverName = "pbac-bench-light"

// Handler is the server: an http.Handler for the MCP endpoint. The zero
// value is not usable; call New.
type Handler struct {
	mu          sync.RWMutex
	sessions    map[string]struct{}
	maxSessions int
	bufs        sync.Pool // *bytes.Buffer, request bodies and answers
	// Fixed answers, prepared once.
	toolsLegacy, toolsStateless, discover []byte
	jsonType                              []string // the Content-Type value, shared by every answer
}

// New returns a Handler with no sessions.
func New() *Handler {
	h := &Handler{
		sessions:    map[string]struct{}{},
		maxSessions: MaxSessions,
		jsonType:    []string{"application/json"},
	}
	h.bufs.New = func() any { return new(bytes.Buffer) }
	h.toolsLegacy = []byte(`{"tools":[` + toolJSON + `]}`)
	h.toolsStateless = []byte(`{"resultType":"complete","tools":[` + toolJSON + `]}`)
	h.discover = []byte(`{"resultType":"complete","supportedVersions":["` + Stateless + `","` + strings.Join(legacyVersions, `","`) +
		`"],"capabilities":{"tools":{}},"_meta":{"io.modelcontextprotocol/serverInfo":` + serverInfo + `},"instructions":` + instructions + `}`)
	return h
}

// toolJSON is search_issues as the demo jira backend lists it (name,
// description, input schema, annotations), without its output schema: the
// answer here is text only.
const toolJSON = `{"name":"search_issues",` +
	`"description":"Search issues with simple JQL (e.g. project = SEC AND status = \"To Do\") or a plain text query. No arguments lists every issue.",` +
	`"inputSchema":{"type":"object","properties":{` +
	`"jql":{"type":"string","description":"simple JQL: clauses joined by AND, each 'field = value', 'field != value' or 'field ~ text'; fields project, status, assignee, reporter, priority, key, summary, description, text"},` +
	`"query":{"type":"string","description":"plain text matched (case-insensitive) against key, summary and description"}},` +
	`"additionalProperties":false},` +
	`"annotations":{"title":"Search issues","readOnlyHint":true,"destructiveHint":false,"idempotentHint":true,"openWorldHint":false}}`

const (
	serverInfo   = `{"name":"` + serverName + `","title":"Light bench backend","version":"0.1.0"}`
	instructions = `"A bench backend: search_issues answers a fixed text echoing its query; it holds no issues."`
)

// message is a JSON-RPC message as far as this server reads it.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// callParams are tools/call's params (and initialize's version, and the
// 2026-07-28 _meta every request has).
type callParams struct {
	Name            *string         `json:"name"`
	Arguments       json.RawMessage `json:"arguments"`
	ProtocolVersion string          `json:"protocolVersion"`
	Meta            struct {
		ProtocolVersion string `json:"io.modelcontextprotocol/protocolVersion"`
	} `json:"_meta"`
}

// searchArgs are search_issues's arguments.
type searchArgs struct {
	JQL   string `json:"jql"`
	Query string `json:"query"`
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		h.post(w, r)
	case http.MethodDelete:
		h.delete(w, r)
	default:
		// No server-initiated stream (GET): the transport allows 405.
		w.Header()["Allow"] = []string{"POST, DELETE"}
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(hdrSession)
	if id == "" {
		http.Error(w, "DELETE needs an Mcp-Session-Id", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	_, ok := h.sessions[id]
	delete(h.sessions, id)
	h.mu.Unlock()
	if !ok {
		http.Error(w, "unknown session", http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	if !acceptsJSON(r.Header.Values("Accept")) {
		http.Error(w, "Accept must allow application/json", http.StatusNotAcceptable)
		return
	}
	in := h.bufs.Get().(*bytes.Buffer)
	defer h.put(in)
	in.Reset()
	if _, err := in.ReadFrom(io.LimitReader(r.Body, MaxBody+1)); err != nil {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if in.Len() > MaxBody {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	out := h.bufs.Get().(*bytes.Buffer)
	defer h.put(out)
	out.Reset()
	status := h.answer(out, w.Header(), r.Header, in.Bytes())
	if out.Len() == 0 {
		w.WriteHeader(status)
		return
	}
	w.Header()["Content-Type"] = h.jsonType
	w.WriteHeader(status)
	_, _ = w.Write(out.Bytes())
}

// put returns a buffer to the pool unless it grew large.
func (h *Handler) put(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		h.bufs.Put(b)
	}
}

// answer reads one message and appends its answer to out (nothing for a
// notification or a response), returning the HTTP status; initialize names
// its session in resp.
func (h *Handler) answer(out *bytes.Buffer, resp, hdr http.Header, body []byte) int {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		appendError(out, nil, codeInvalidRequest, "batches are not supported")
		return http.StatusBadRequest
	}
	var msg message
	if err := json.Unmarshal(body, &msg); err != nil {
		appendError(out, nil, codeParse, "parse error: "+err.Error())
		return http.StatusBadRequest
	}
	if msg.JSONRPC != "2.0" || !validID(msg.ID) {
		appendError(out, nil, codeInvalidRequest, `invalid request: want "jsonrpc":"2.0" and a string or number id`)
		return http.StatusBadRequest
	}
	if msg.Method == nil {
		if msg.ID != nil && (msg.Result != nil || msg.Error != nil) {
			return http.StatusAccepted // a client's response to nothing we asked: accepted, ignored
		}
		appendError(out, msg.ID, codeInvalidRequest, "invalid request: no method")
		return http.StatusBadRequest
	}
	method := *msg.Method
	version := hdr.Get(hdrProtocol)
	stateless := version >= Stateless
	if stateless && version != Stateless {
		appendUnsupported(out, msg.ID, version)
		return http.StatusBadRequest
	}
	if !stateless && version != "" && !slices.Contains(legacyVersions, version) {
		appendUnsupported(out, msg.ID, version)
		return http.StatusBadRequest
	}
	var params callParams
	if len(msg.Params) > 0 && !bytes.Equal(msg.Params, []byte("null")) {
		if err := json.Unmarshal(msg.Params, &params); err != nil {
			appendError(out, msg.ID, codeInvalidParams, "invalid params: "+err.Error())
			return http.StatusOK
		}
	}
	if stateless {
		if hdr.Get(hdrMethod) != method {
			appendError(out, msg.ID, codeHeaderMismatch, "the Mcp-Method header does not name the body's method")
			return http.StatusBadRequest
		}
		if msg.ID != nil && params.Meta.ProtocolVersion == "" {
			appendError(out, msg.ID, codeInvalidParams, "invalid params: a "+Stateless+" request names its revision in _meta "+metaProtocolVersion)
			return http.StatusBadRequest
		}
		if msg.ID != nil && params.Meta.ProtocolVersion != version {
			appendError(out, msg.ID, codeHeaderMismatch, "the request's _meta "+metaProtocolVersion+" does not match the Mcp-Protocol-Version header")
			return http.StatusBadRequest
		}
		if method == "tools/call" && (params.Name == nil || hdr.Get(hdrName) != *params.Name) {
			appendError(out, msg.ID, codeHeaderMismatch, "the Mcp-Name header does not name the tool called")
			return http.StatusBadRequest
		}
	}
	if msg.ID == nil {
		// A notification: accepted whatever it is, and no session is
		// needed for notifications/initialized to be harmless.
		return http.StatusAccepted
	}
	if method == "initialize" {
		if stateless {
			appendError(out, msg.ID, codeMethodNotFound, "revision "+Stateless+" has no initialize: use server/discover")
			return http.StatusOK
		}
		return h.initialize(out, resp, msg.ID, params.ProtocolVersion)
	}
	if !stateless && method != "server/discover" {
		if status, text := h.live(hdr.Get(hdrSession)); status != 0 {
			appendError(out, msg.ID, codeInvalidRequest, text)
			return status
		}
	}
	switch method {
	case "ping":
		appendResult(out, msg.ID, []byte(`{}`))
	case "server/discover":
		appendResult(out, msg.ID, h.discover)
	case "tools/list":
		if stateless {
			appendResult(out, msg.ID, h.toolsStateless)
		} else {
			appendResult(out, msg.ID, h.toolsLegacy)
		}
	case "tools/call":
		call(out, msg.ID, &params, stateless)
	default:
		appendError(out, msg.ID, codeMethodNotFound, "method not found: "+method)
	}
	return http.StatusOK
}

// live checks a session id: 0 when it names a live session, else the
// status and text of the refusal.
func (h *Handler) live(id string) (int, string) {
	if id == "" {
		return http.StatusBadRequest, "an Mcp-Session-Id is required: initialize first"
	}
	h.mu.RLock()
	_, ok := h.sessions[id]
	h.mu.RUnlock()
	if !ok {
		return http.StatusNotFound, "unknown or ended session: initialize again"
	}
	return 0, ""
}

func (h *Handler) initialize(out *bytes.Buffer, resp http.Header, id json.RawMessage, requested string) int {
	version := Latest
	if slices.Contains(legacyVersions, requested) {
		version = requested
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	sid := hex.EncodeToString(raw[:])
	h.mu.Lock()
	if len(h.sessions) >= h.maxSessions {
		for old := range h.sessions {
			delete(h.sessions, old)
			break
		}
	}
	h.sessions[sid] = struct{}{}
	h.mu.Unlock()
	resp.Set(hdrSession, sid)
	appendResult(out, id, []byte(`{"protocolVersion":"`+version+`","capabilities":{"tools":{}},"serverInfo":`+serverInfo+`,"instructions":`+instructions+`}`))
	return http.StatusOK
}

// call answers tools/call: unknown tools and malformed params are JSON-RPC
// errors; arguments of the wrong type are a tool error result (the 2025-11-25
// rule for input errors), read without any schema.
func call(out *bytes.Buffer, id json.RawMessage, p *callParams, stateless bool) {
	if p.Name == nil {
		appendError(out, id, codeInvalidParams, "invalid params: tools/call needs a tool name")
		return
	}
	if *p.Name != Tool {
		appendError(out, id, codeInvalidParams, "unknown tool: "+*p.Name)
		return
	}
	var args searchArgs
	if len(p.Arguments) > 0 && !bytes.Equal(p.Arguments, []byte("null")) {
		if p.Arguments[0] != '{' {
			appendError(out, id, codeInvalidParams, "invalid params: arguments must be an object")
			return
		}
		if err := json.Unmarshal(p.Arguments, &args); err != nil {
			appendToolError(out, id, "invalid arguments: "+err.Error(), stateless)
			return
		}
	}
	appendPrefix(out, id)
	out.WriteString(`"result":{`)
	if stateless {
		out.WriteString(`"resultType":"complete",`)
	}
	out.WriteString(`"content":[{"type":"text","text":`)
	b := out.AvailableBuffer()
	b = append(b, `"light bench backend: no issues for query \"`...)
	b = appendEscaped(b, args.Query)
	b = append(b, `\" and jql \"`...)
	b = appendEscaped(b, args.JQL)
	b = append(b, `\""`...)
	out.Write(b)
	out.WriteString(`}],"isError":false}}`)
}

func appendToolError(out *bytes.Buffer, id json.RawMessage, text string, stateless bool) {
	appendPrefix(out, id)
	out.WriteString(`"result":{`)
	if stateless {
		out.WriteString(`"resultType":"complete",`)
	}
	out.WriteString(`"content":[{"type":"text","text":`)
	out.Write(appendString(out.AvailableBuffer(), text))
	out.WriteString(`}],"isError":true}}`)
}

func appendPrefix(out *bytes.Buffer, id json.RawMessage) {
	out.WriteString(`{"jsonrpc":"2.0","id":`)
	if id == nil {
		out.WriteString("null")
	} else {
		out.Write(id)
	}
	out.WriteByte(',')
}

func appendResult(out *bytes.Buffer, id json.RawMessage, result []byte) {
	appendPrefix(out, id)
	out.WriteString(`"result":`)
	out.Write(result)
	out.WriteByte('}')
}

func appendError(out *bytes.Buffer, id json.RawMessage, code int, text string) {
	appendPrefix(out, id)
	out.WriteString(`"error":{"code":`)
	out.Write(strconv.AppendInt(out.AvailableBuffer(), int64(code), 10))
	out.WriteString(`,"message":`)
	out.Write(appendString(out.AvailableBuffer(), text))
	out.WriteString(`}}`)
}

// appendUnsupported is the error for a revision not served, naming the
// ones that are.
func appendUnsupported(out *bytes.Buffer, id json.RawMessage, requested string) {
	appendPrefix(out, id)
	out.WriteString(`"error":{"code":`)
	out.Write(strconv.AppendInt(out.AvailableBuffer(), codeUnsupportedVers, 10))
	out.WriteString(`,"message":"unsupported protocol version","data":{"supported":["` + Stateless + `","` + strings.Join(legacyVersions, `","`) + `"],"requested":`)
	out.Write(appendString(out.AvailableBuffer(), requested))
	out.WriteString(`}}}`)
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s)
	return append(dst, '"')
}

// appendEscaped appends s escaped for a JSON string: quotes, backslashes
// and control characters escaped, invalid UTF-8 replaced by U+FFFD (as
// encoding/json does), U+2028 and U+2029 escaped.
func appendEscaped(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}

// validID tells whether id is absent (a notification), a string or a
// number; null, objects, arrays and booleans are not ids.
func validID(id json.RawMessage) bool {
	if id == nil {
		return true
	}
	switch c := id[0]; {
	case c == '"':
		return true
	case c == '-' || (c >= '0' && c <= '9'):
		return true
	}
	return false
}

// isJSON tells whether a Content-Type is application/json (with any
// parameters).
func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// acceptsJSON tells whether the Accept values allow an application/json
// answer (no Accept header allows anything).
func acceptsJSON(values []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "application/json", "application/*", "*/*":
				return true
			}
		}
	}
	return false
}
