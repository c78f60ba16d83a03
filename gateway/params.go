package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"

	"github.com/pbac-gateway/pbac/jsonrpc"
	"github.com/pbac-gateway/pbac/tooldefs"
)

// From 2026-07-28 a tool may mark arguments with "x-mcp-header" in its
// inputSchema, and a client mirrors each into an Mcp-Param-<Name> header,
// so that something in front of the server can route or meter on it
// without reading the body. The gateway decides on the body; a header that
// says something else would let whatever stands behind the gateway act on
// another call than the one policy allowed. So, like Mcp-Method and
// Mcp-Name, the headers are checked against the body, with the
// declarations of the tool as its backend last listed it.

// paramHeader is one x-mcp-header declaration: the header's name (after
// Mcp-Param-), the argument it mirrors (a chain of properties) and its
// type.
type paramHeader struct {
	name string
	path []string
	typ  string
}

// headerToken is an RFC 9110 token: what a header name may be.
var headerToken = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// maxParamHeaders bounds the declarations read from one tool.
const maxParamHeaders = 64

// paramHeadersOf reads a tool's declarations from its inputSchema: the
// properties reachable through "properties" keys alone, of type string,
// integer, boolean (or number). ok is false when the declarations are not
// usable (a bad name, a name twice, a declaration on another type): then
// nothing is checked against them.
func paramHeadersOf(tool json.RawMessage) (decls []paramHeader, ok bool) {
	var t struct {
		InputSchema json.RawMessage `json:"inputSchema"`
	}
	if json.Unmarshal(tool, &t) != nil || len(t.InputSchema) == 0 {
		return nil, true
	}
	seen := map[string]bool{}
	var walk func(schema json.RawMessage, path []string, depth int) bool
	walk = func(schema json.RawMessage, path []string, depth int) bool {
		var s struct {
			Properties map[string]json.RawMessage `json:"properties"`
		}
		if depth > 8 || json.Unmarshal(schema, &s) != nil {
			return true
		}
		for name, sub := range s.Properties {
			var p struct {
				Header *string         `json:"x-mcp-header"`
				Type   json.RawMessage `json:"type"`
			}
			if json.Unmarshal(sub, &p) != nil {
				continue
			}
			at := append(append([]string(nil), path...), name)
			if p.Header != nil {
				typ, _ := jsonrpc.Unquote(p.Type)
				key := strings.ToLower(*p.Header)
				if !headerToken.MatchString(*p.Header) || seen[key] || len(decls) >= maxParamHeaders ||
					(typ != "string" && typ != "integer" && typ != "boolean" && typ != "number") {
					return false
				}
				seen[key] = true
				decls = append(decls, paramHeader{name: *p.Header, path: at, typ: typ})
			}
			if !walk(sub, at, depth+1) {
				return false
			}
		}
		return true
	}
	if !walk(t.InputSchema, nil, 0) {
		return nil, false
	}
	return decls, true
}

// paramIndex keeps each listed tool's declarations, per backend and name,
// as the backend last listed it: at most maxIndexedTools names a backend
// (a backend that invents names without end is not indexed beyond; its
// later tools are left to it to check).
type paramIndex struct {
	mu       sync.RWMutex
	backends map[string]map[string]paramDecls
}

const maxIndexedTools = 4096

type paramDecls struct {
	decls []paramHeader
	ok    bool
}

func (x *paramIndex) observe(backend string, tools []tooldefs.Tool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.backends == nil {
		x.backends = map[string]map[string]paramDecls{}
	}
	m := x.backends[backend]
	if m == nil {
		m = map[string]paramDecls{}
		x.backends[backend] = m
	}
	for _, t := range tools {
		if _, known := m[t.Name]; !known && len(m) >= maxIndexedTools {
			continue
		}
		decls, ok := paramHeadersOf(t.Canonical)
		m[t.Name] = paramDecls{decls: decls, ok: ok}
	}
}

func (x *paramIndex) lookup(backend, tool string) (paramDecls, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	d, ok := x.backends[backend][tool]
	return d, ok
}

// checkParamHeaders compares a 2026-07-28 tools/call's Mcp-Param-* headers
// with its arguments, by the tool's declarations: every declared argument
// that is present and not null has its header, with the same value; no
// header is there for one absent or null, or for an argument the tool does
// not declare. A tool the gateway has not seen listed, or whose
// declarations are not usable, is left to its backend, which checks too.
func (g *Gateway) checkParamHeaders(c *fiber.Ctx, backend, tool string, args json.RawMessage) error {
	got := map[string]string{}
	for k, v := range c.Request().Header.All() {
		name, ok := cutFold(string(k), "Mcp-Param-")
		if !ok {
			continue
		}
		key := strings.ToLower(name)
		if _, twice := got[key]; twice {
			return fmt.Errorf("header mismatch: Mcp-Param-%s is sent twice", name)
		}
		got[key] = string(v)
	}
	d, known := g.params.lookup(backend, tool)
	if !known || !d.ok {
		return nil
	}
	var body map[string]any
	if len(args) > 0 {
		dec := json.NewDecoder(bytes.NewReader(args))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil {
			return fmt.Errorf("header mismatch: the arguments: %w", err)
		}
	}
	for _, p := range d.decls {
		key := strings.ToLower(p.name)
		h, sent := got[key]
		delete(got, key)
		v := valueAt(body, p.path)
		if v == nil {
			if sent {
				return fmt.Errorf("header mismatch: Mcp-Param-%s is sent for an argument the call does not give", p.name)
			}
			continue
		}
		if !sent {
			return fmt.Errorf("header mismatch: Mcp-Param-%s is required: the call gives %s", p.name, strings.Join(p.path, "."))
		}
		hv, err := decodeHeaderValue(h)
		if err != nil {
			return fmt.Errorf("header mismatch: Mcp-Param-%s: %w", p.name, err)
		}
		if !sameValue(hv, v) {
			return fmt.Errorf("header mismatch: Mcp-Param-%s does not match the argument %s", p.name, strings.Join(p.path, "."))
		}
	}
	for key := range got {
		return fmt.Errorf("header mismatch: the tool declares no Mcp-Param-%s", key)
	}
	return nil
}

func cutFold(s, prefix string) (string, bool) {
	if len(s) <= len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// valueAt is the argument at path, nil when absent or null.
func valueAt(args map[string]any, path []string) any {
	var v any = args
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// sameValue compares a header's (decoded) text with an argument: a string
// exactly, a boolean as true or false, a number by its value (42 and 42.0
// agree). An object or array is never mirrored.
func sameValue(h string, v any) bool {
	switch x := v.(type) {
	case string:
		return h == x
	case bool:
		return h == fmt.Sprint(x)
	case json.Number:
		// As float64s (integers are mirrored only within ±2^53): exact
		// arithmetic on a caller's "1e999999999" would not end soon.
		a, err1 := strconv.ParseFloat(strings.TrimSpace(h), 64)
		b, err2 := strconv.ParseFloat(x.String(), 64)
		return err1 == nil && err2 == nil && a == b
	}
	return false
}

// checkParams checks a request's Mcp-Param-* headers: on a 2026-07-28
// tools/call against the tool's declarations (checkParamHeaders); on any
// other request, or an earlier revision, where no server checks them,
// such headers are refused: nothing may route on what nobody verified.
func (g *Gateway) checkParams(c *fiber.Ctx, backend, tool string, m *jsonrpc.Message) error {
	if m.Method == "tools/call" && c.Get(hdrProtocol) >= statelessRevision {
		return g.checkParamHeaders(c, backend, tool, m.Arguments)
	}
	for k := range c.Request().Header.All() {
		if _, ok := cutFold(string(k), "Mcp-Param-"); ok {
			return fmt.Errorf("header mismatch: %s on a request that is not a 2026-07-28 tools/call", k)
		}
	}
	return nil
}
