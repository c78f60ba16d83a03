package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/jsonrpc"
	"github.com/pbac-gateway/pbac/tooldefs"
)

// The aggregated server at /mcp: one MCP server whose tools are every
// backend's, named <backend>.<tool>, so a client needs one URL. The gateway
// answers initialize, ping and tools/list itself and forwards each
// tools/call to its backend over a backend session it opens lazily.

// aggregateVersions are the protocol revisions the aggregated server
// speaks, newest first.
var aggregateVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26"}

// backendProtocol is the revision the gateway speaks to backends as a client.
const backendProtocol = "2025-06-18"

// maxToolPages bounds the tools/list pages read from one backend.
const maxToolPages = 20

// aggSession is a client's session with the aggregated server: its
// backend sessions, opened on first use.
type aggSession struct {
	mu       sync.Mutex
	backends map[string]string // backend name -> backend session id ("" if the backend is stateless)
	// owner is the caller's quota key, sent to backends that share by
	// owner (Backend.OwnerHeader).
	owner string
	// elicitURL: the client declared URL elicitation at initialize
	// (2025-11-25), so a held call is answered -32042.
	elicitURL bool
	// ids numbers the requests the gateway sends in this session's
	// backend sessions: the stateless calls of one agent share them
	// concurrently, and a backend refuses a second in-flight request
	// with the same id.
	ids atomic.Int64
}

func (g *Gateway) handleAggregate(c *fiber.Ctx) error {
	start := time.Now()
	rid := newID()
	probeRequestStart(c.Context().ID())
	c.Set("X-Request-Id", rid)
	if !g.checkOrigin(c, "") {
		return c.Status(fiber.StatusForbidden).JSON(fiber.Map{"error": "origin not allowed"})
	}
	// The body is read first for the trace context in its _meta; one that
	// does not parse is refused after the token's check.
	body, ok := requestBody(c)
	if !ok {
		return nil
	}
	msg, err := jsonrpc.Parse(body, g.cfg.MaxJSONDepth)
	var rec audit.Record
	span := g.startRequest(c, "", rid, msg, start)
	defer func() { endRequest(span, c, msg, &rec) }()
	cl, ok, took := g.authenticate(c, "", rid)
	if !ok {
		g.metrics.decision("auth", "deny")
		return nil
	}
	g.metrics.stage("introspect", took)
	probeAuthenticated(c.Context().ID())
	if err != nil {
		return g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(nil, jsonrpc.CodeInvalidRequest, "invalid request: "+err.Error(), nil))
	}
	if err := checkHeaders(c, msg); err != nil {
		return g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeHeaderMismatch, err.Error(), nil))
	}
	if backend, tool, ok := strings.Cut(msg.Name, "."); ok {
		if err := g.checkParams(c, backend, tool, msg); err != nil {
			return g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeHeaderMismatch, err.Error(), nil))
		}
	}
	rec = audit.Record{Time: start.UTC(), RequestID: rid, Method: msg.Method,
		LatencyMicros: map[string]int64{"introspect": took.Microseconds()}, TraceID: traceID(span)}
	fillCaller(&rec, cl)
	if msg.Method != "subscriptions/listen" { // bounded by listens instead
		done, err := g.takeInFlight(c, cl.inFlightKey(), msg, &rec, start)
		if done == nil {
			return err
		}
		defer done()
	}
	notification := msg.IsResponse || (msg.ID == nil && strings.HasPrefix(msg.Method, "notifications/"))
	switch {
	case notification, msg.Method == "initialize", msg.Method == "server/discover", msg.Method == "ping", msg.Method == "tools/list",
		msg.Method == "subscriptions/listen", listedKinds[msg.Method].key != "":
		// The aggregated server's own methods are decided as well
		// (pbac/method, backend ""): a caller with no grant anywhere opens
		// no session here.
		if allowed, err := g.decideMethod(c, "", cl, methodOf(msg), msg.ID, &rec, start); err != nil || !allowed {
			return err
		}
	}
	if notification {
		rec.Status = fiber.StatusAccepted
		g.finish(&rec, start)
		return c.SendStatus(fiber.StatusAccepted)
	}
	if msg.Method == "initialize" {
		return g.aggregateInitialize(c, cl, msg, &rec, start)
	}
	stateless := c.Get(hdrProtocol) >= statelessRevision
	if msg.Method == "server/discover" {
		rec.Status = fiber.StatusOK
		g.finish(&rec, start)
		return g.reply(c, fiber.StatusOK, rpcResult(msg.ID, map[string]any{
			"resultType":        "complete",
			"ttlMs":             0,
			"cacheScope":        "private",
			"supportedVersions": append([]string{statelessRevision}, aggregateVersions...),
			"capabilities": map[string]any{"tools": map[string]any{}, "prompts": map[string]any{}, "resources": map[string]any{"subscribe": true},
				"extensions": map[string]any{ExtensionOAuthClientCredentials: map[string]any{}}},
			"_meta":        map[string]any{"io.modelcontextprotocol/serverInfo": serverInfo()},
			"instructions": aggregateInstructions,
		}))
	}
	var sess *aggSession
	if stateless {
		// No sessions in this revision: the caller's backend sessions are
		// kept per agent and human instead.
		sess = g.statelessSession(cl)
	} else {
		var errBody []byte
		if sess, errBody = g.aggregateSession(c, cl, msg); errBody != nil {
			return g.reply(c, fiber.StatusNotFound, errBody)
		}
	}
	switch msg.Method {
	case "ping":
		rec.Status = fiber.StatusOK
		g.finish(&rec, start)
		return g.reply(c, fiber.StatusOK, rpcResult(msg.ID, map[string]any{}))
	case "tools/list":
		return g.aggregateToolsList(c, cl, msg, sess, &rec, start)
	case "tools/call", "prompts/get", "resources/read":
		return g.aggregateCall(c, cl, msg, sess, &rec, start)
	case "prompts/list", "resources/list", "resources/templates/list":
		return g.aggregateListed(c, cl, msg, sess, listedKinds[msg.Method], &rec, start)
	case "subscriptions/listen":
		return g.aggregateListen(c, cl, msg, &rec, start)
	default:
		return g.reply(c, fiber.StatusOK, jsonrpc.ErrorBody(msg.ID, -32601, "method not served by the aggregated server: use /mcp/<backend>", nil))
	}
}

// ExtensionOAuthClientCredentials is the MCP extension of the OAuth
// client credentials flow (SEP-1046): a machine agent gets its token with
// its own credentials (client_secret_basic, or private_key_jwt for a
// client of a metadata document), no person involved. The gateway takes
// such tokens, and says so in server/discover's capabilities.extensions,
// where the extension asks a server to advertise it.
const ExtensionOAuthClientCredentials = "io.modelcontextprotocol/oauth-client-credentials"

func rpcResult(id json.RawMessage, result any) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
	return b
}

func (g *Gateway) aggregateInitialize(c *fiber.Ctx, cl *caller, msg *jsonrpc.Message, rec *audit.Record, start time.Time) error {
	var params struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if raw, ok := msg.Params["protocolVersion"]; ok {
		_ = json.Unmarshal(raw, &params.ProtocolVersion)
	}
	version := aggregateVersions[0]
	if slices.Contains(aggregateVersions, params.ProtocolVersion) {
		version = params.ProtocolVersion
	}
	id := newID()
	g.putSession(id, &session{clientID: cl.token.ClientID, subject: cl.token.Subject, owner: cl.ownerKey(),
		agg: &aggSession{backends: map[string]string{}, owner: cl.ownerKey(), elicitURL: declaresURLElicitation(msg)}})
	c.Set(hdrSession, id)
	rec.Status = fiber.StatusOK
	g.finish(rec, start)
	return g.reply(c, fiber.StatusOK, rpcResult(msg.ID, map[string]any{
		"protocolVersion": version,
		"capabilities": map[string]any{"tools": map[string]any{"listChanged": false},
			"prompts": map[string]any{"listChanged": false}, "resources": map[string]any{"listChanged": false}},
		"serverInfo":   serverInfo(),
		"instructions": aggregateInstructions,
	}))
}

const aggregateInstructions = "Every backend's tools, named <backend>.<tool>. Each call is authorized by policy " +
	"with its arguments; a denied call returns an error with the reason."

func serverInfo() map[string]any {
	return map[string]any{"name": "pbac-gateway", "title": "PBAC Gateway", "version": "0.1.0"}
}

// statelessSession returns the backend sessions kept for a caller of the
// stateless revision.
func (g *Gateway) statelessSession(cl *caller) *aggSession {
	key := "stateless\x00" + cl.token.ClientID + "\x00" + cl.token.Subject
	if sess, ok := g.sessions.get(key); ok && sess.agg != nil {
		return sess.agg
	}
	agg := &aggSession{backends: map[string]string{}, owner: cl.ownerKey()}
	g.putSession(key, &session{clientID: cl.token.ClientID, subject: cl.token.Subject, owner: cl.ownerKey(), agg: agg})
	return agg
}

// aggregateSession finds the caller's aggregated session.
func (g *Gateway) aggregateSession(c *fiber.Ctx, cl *caller, msg *jsonrpc.Message) (*aggSession, []byte) {
	sess, ok := g.sessions.get(c.Get(hdrSession))
	if !ok || sess.agg == nil {
		return nil, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidRequest, "unknown or missing session: send initialize first", nil)
	}
	if sess.clientID != cl.token.ClientID || sess.subject != cl.token.Subject {
		return nil, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidRequest, "the session belongs to another agent", nil)
	}
	return sess.agg, nil
}

func (g *Gateway) aggregateToolsList(c *fiber.Ctx, cl *caller, msg *jsonrpc.Message, sess *aggSession, rec *audit.Record, start time.Time) error {
	ctx := c.UserContext()
	var tools []json.RawMessage
	var names []string
	defs := map[string]contract.ToolDefinition{}
	for _, name := range slices.Sorted(maps.Keys(g.backends)) {
		b := g.backends[name]
		// The gateway opens a backend session only where the caller could
		// open one itself (pbac/method, tools/list on that backend).
		if d, _, err := g.askMethod(ctx, name, cl, "tools/list"); err != nil || !d.Allow {
			if err != nil {
				g.log.Warn("aggregate: policy could not decide tools/list", "backend", name, "err", err)
			}
			continue
		}
		cursor := ""
		var listed []tooldefs.Tool
		for range maxToolPages {
			params := map[string]any{}
			if cursor != "" {
				params["cursor"] = cursor
			}
			res, err := g.backendCall(ctx, b, sess, "tools/list", params)
			if err != nil {
				g.log.Warn("aggregate: tools/list failed", "backend", name, "err", err)
				break // one unavailable backend does not hide the others
			}
			var page struct {
				Tools      []json.RawMessage `json:"tools"`
				NextCursor string            `json:"nextCursor"`
			}
			if tooldefs.CheckObjectKeys(res) != nil || json.Unmarshal(res, &page) != nil {
				g.log.Warn("aggregate: a tools/list result that cannot be read is not passed on", "backend", name)
				break
			}
			listed = append(listed, g.readTools(name, page.Tools)...)
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		// A name on two pages is one listed twice: neither is passed on.
		count := map[string]int{}
		for _, lt := range listed {
			count[lt.Name]++
		}
		kept := listed[:0]
		for _, lt := range listed {
			if count[lt.Name] == 1 {
				kept = append(kept, lt)
			}
		}
		maps.Copy(defs, g.listedDefinitions(ctx, name, kept))
		for _, lt := range kept {
			var t map[string]json.RawMessage
			if json.Unmarshal(lt.Canonical, &t) != nil {
				continue
			}
			full := name + "." + lt.Name
			t["name"], _ = json.Marshal(full)
			g.icons.stripIcons(t)
			raw, _ := json.Marshal(t)
			tools = append(tools, raw)
			names = append(names, full)
		}
	}
	return g.replyAggregatedList(c, cl, msg, "tools/list", "tools", tools, names, defs, rec, start)
}

// replyAggregatedList answers an aggregated list (tools, prompts,
// resources, templates) with the items, named as the aggregated server
// names them, that pbac/list lets the caller see (names[i] is items[i]'s
// policy name), and audits it.
func (g *Gateway) replyAggregatedList(c *fiber.Ctx, cl *caller, msg *jsonrpc.Message, method, key string, items []json.RawMessage, names []string,
	defs map[string]contract.ToolDefinition, rec *audit.Record, start time.Time) error {
	allowed, version, err := g.allowedTools(c.UserContext(), &Backend{}, cl, method, names, defs)
	if err != nil {
		rec.Decision, rec.Reasons = "error", []string{err.Error()}
		g.finish(rec, start)
		return g.reply(c, fiber.StatusForbidden, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeDenied, "denied: the policy could not decide", nil))
	}
	out := make([]json.RawMessage, 0, len(items))
	for i, it := range items {
		if allowed[names[i]] {
			out = append(out, it)
		}
	}
	rec.PolicyVersion, rec.Status = version, fiber.StatusOK
	rec.Reasons = []string{fmt.Sprintf("%d of %d %s listed", len(out), len(items), key)}
	g.finish(rec, start)
	result := map[string]any{key: out}
	if c.Get(hdrProtocol) >= statelessRevision {
		// Filtered for this caller, under a policy that may change at any
		// moment: fresh for no one else, and not for long.
		result["ttlMs"], result["cacheScope"] = 0, "private"
	}
	return g.reply(c, fiber.StatusOK, rpcResult(msg.ID, result))
}

// aggregateCall routes a call on the aggregated server — a tool or a
// prompt named "<backend>.<name>", a resource by "<backend>+<uri>" — to its
// backend under the backend's own name, decided as on /mcp/<backend>.
func (g *Gateway) aggregateCall(c *fiber.Ctx, cl *caller, msg *jsonrpc.Message, sess *aggSession, rec *audit.Record, start time.Time) error {
	named, sep, noun, what := msg.Name, ".", "tool", "tools are named <backend>.<tool>"
	switch msg.Method {
	case "prompts/get":
		noun, what = "prompt", "prompts are named <backend>.<prompt>"
	case "resources/read":
		named, sep, noun, what = msg.URI, "+", "resource", "resources are read as <backend>+<uri>"
	}
	backendName, tool, ok := strings.Cut(named, sep)
	b, known := g.backends[backendName]
	if !ok || !known || tool == "" {
		return g.reply(c, fiber.StatusOK, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidParams, "unknown "+noun+" "+named+": "+what, nil))
	}
	rec.Backend = backendName
	local := *msg
	if msg.Method == "resources/read" {
		local.URI = tool
	} else {
		local.Name = tool
	}
	msg, attrs, ok, err := g.prepareCall(c, b, cl, msg, callTarget(&local), rec, start)
	if !ok {
		return err
	}
	local.Raw, local.Params, local.Arguments = msg.Raw, msg.Params, msg.Arguments
	allowed, err := g.decideCall(c, "", b, cl, &local, attrs, sess.elicitURL, rec)
	if err != nil || !allowed {
		g.finish(rec, start)
		return err
	}
	probeDecided(c.Context().ID())
	// Forward the same params with the backend's own tool name; the
	// arguments are the exact bytes policy decided on.
	params := map[string]json.RawMessage{}
	for k, v := range msg.Params {
		params[k] = v
	}
	if msg.Method == "resources/read" {
		params["uri"], _ = json.Marshal(tool)
	} else {
		params["name"], _ = json.Marshal(tool)
	}
	withoutApprovalFields(params)
	// The protocol fields of _meta belong to the client's hop; the backend
	// session speaks its own revision.
	if meta, ok := params["_meta"]; ok {
		var mm map[string]json.RawMessage
		if json.Unmarshal(meta, &mm) == nil {
			for k := range mm {
				if strings.HasPrefix(k, "io.modelcontextprotocol/") {
					delete(mm, k)
				}
			}
			if len(mm) == 0 {
				delete(params, "_meta")
			} else {
				params["_meta"], _ = json.Marshal(mm)
			}
		}
	}
	probeForwardStart(c.Context().ID())
	bstart := time.Now()
	probeBackendSent(c.Context().ID())
	res, err := g.backendCall(c.UserContext(), b, sess, msg.Method, params)
	probeBackendFirstByte(c.Context().ID())
	probeBackendDone(c.Context().ID())
	btook := time.Since(bstart)
	g.metrics.stage("backend", btook)
	rec.LatencyMicros["backend"] = btook.Microseconds()
	if err != nil {
		rec.Decision, rec.Status = "error", fiber.StatusBadGateway
		rec.Reasons = append(rec.Reasons, err.Error())
		g.finish(rec, start)
		return g.reply(c, fiber.StatusOK, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInternalError, "backend "+backendName+" failed: "+err.Error(), nil))
	}
	if msg.Method == "resources/read" {
		res = aggregateURIs(res, backendName)
	}
	rec.Status = fiber.StatusOK
	g.finish(rec, start)
	probeReplyDone(c.Context().ID())
	return g.reply(c, fiber.StatusOK, rpcResult(msg.ID, json.RawMessage(res)))
}

// aggregateURIs renames the contents of a resources/read result as the
// aggregated server names resources: "<backend>+<uri>". A result it cannot
// read is passed as it is.
func aggregateURIs(res json.RawMessage, backend string) json.RawMessage {
	var result map[string]json.RawMessage
	if json.Unmarshal(res, &result) != nil {
		return res
	}
	var contents []map[string]json.RawMessage
	if json.Unmarshal(result["contents"], &contents) != nil {
		return res
	}
	for _, c := range contents {
		if u, ok := jsonrpc.Unquote(c["uri"]); ok {
			c["uri"], _ = json.Marshal(backend + "+" + u)
		}
	}
	result["contents"], _ = json.Marshal(contents)
	out, err := json.Marshal(result)
	if err != nil {
		return res
	}
	return out
}

// aggregateListed answers prompts/list, resources/list and
// resources/templates/list on the aggregated server: each backend's list
// (where the caller may list there, every page) with prompts named
// "<backend>.<name>" and resources (and templates) "<backend>+<uri>" —
// reversible, as backend names hold no "." or "+" — filtered by pbac/list
// like the list of one backend.
func (g *Gateway) aggregateListed(c *fiber.Ctx, cl *caller, msg *jsonrpc.Message, sess *aggSession, kind listedKind, rec *audit.Record, start time.Time) error {
	ctx := c.UserContext()
	var items []json.RawMessage
	var names []string
	for _, name := range slices.Sorted(maps.Keys(g.backends)) {
		b := g.backends[name]
		if d, _, err := g.askMethod(ctx, name, cl, kind.method); err != nil || !d.Allow {
			if err != nil {
				g.log.Warn("aggregate: policy could not decide a list", "backend", name, "method", kind.method, "err", err)
			}
			continue
		}
		var page []json.RawMessage
		cursor := ""
		for range maxToolPages {
			params := map[string]any{}
			if cursor != "" {
				params["cursor"] = cursor
			}
			res, err := g.backendCall(ctx, b, sess, kind.method, params)
			if err != nil {
				g.log.Warn("aggregate: a list failed", "backend", name, "method", kind.method, "err", err)
				break // one unavailable backend does not hide the others
			}
			var result map[string]json.RawMessage
			var listed []json.RawMessage
			if tooldefs.CheckObjectKeys(res) != nil || json.Unmarshal(res, &result) != nil || json.Unmarshal(result[kind.key], &listed) != nil {
				g.log.Warn("aggregate: a list that cannot be read is not passed on", "backend", name, "method", kind.method)
				break
			}
			page = append(page, listed...)
			if cursor, _ = jsonrpc.Unquote(result["nextCursor"]); cursor == "" {
				break
			}
		}
		seen := map[string]int{}
		type entry struct {
			name string
			item map[string]json.RawMessage
		}
		var entries []entry
		for _, raw := range page {
			var it map[string]json.RawMessage
			if tooldefs.CheckObjectKeys(raw) != nil || json.Unmarshal(raw, &it) != nil {
				continue
			}
			n, ok := kind.name(name, it)
			if !ok {
				continue
			}
			seen[n]++
			entries = append(entries, entry{n, it})
		}
		for _, e := range entries {
			if seen[e.name] != 1 || !aggregateName(kind, name, e.item) {
				continue
			}
			g.icons.stripIcons(e.item)
			raw, err := json.Marshal(e.item)
			if err != nil {
				continue
			}
			items = append(items, raw)
			names = append(names, e.name)
		}
	}
	return g.replyAggregatedList(c, cl, msg, kind.method, kind.key, items, names, nil, rec, start)
}

// aggregateName renames a listed item as the aggregated server names it.
func aggregateName(kind listedKind, backend string, it map[string]json.RawMessage) bool {
	field, sep := "name", "."
	switch kind.key {
	case "resources":
		field, sep = "uri", "+"
	case "resourceTemplates":
		field, sep = "uriTemplate", "+"
	}
	v, ok := jsonrpc.Unquote(it[field])
	if !ok || v == "" {
		return false
	}
	it[field], _ = json.Marshal(backend + sep + v)
	return true
}

// errBackendError is a JSON-RPC error a backend answered with.
var errBackendError = errors.New("backend error")

// backendCall sends one request to a backend as an MCP client, opening the
// backend session first if needed, and returns the result.
func (g *Gateway) backendCall(ctx context.Context, b *Backend, sess *aggSession, method string, params any) (json.RawMessage, error) {
	sid, err := g.backendSession(ctx, b, sess)
	if err != nil {
		return nil, err
	}
	ctx, span := g.startBackendCall(ctx, b, method, params)
	if m, ok := params.(map[string]json.RawMessage); ok && span.IsRecording() {
		params = g.paramsWithTraceMeta(ctx, m)
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": sess.ids.Add(1), "method": method, "params": params})
	res, _, err := g.backendRoundTrip(ctx, b, sess.owner, sid, body)
	endBackend(span, 0, err)
	return res, err
}

func (g *Gateway) backendSession(ctx context.Context, b *Backend, sess *aggSession) (string, error) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sid, ok := sess.backends[b.Name]; ok {
		return sid, nil
	}
	init, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": map[string]any{
		"protocolVersion": backendProtocol, "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "pbac-gateway", "version": "0.1.0"}}})
	_, sid, err := g.backendRoundTrip(ctx, b, sess.owner, "", init)
	if err != nil {
		return "", fmt.Errorf("initialize %s: %w", b.Name, err)
	}
	note := []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if _, _, err := g.backendRoundTrip(ctx, b, sess.owner, sid, note); err != nil {
		return "", fmt.Errorf("initialize %s: %w", b.Name, err)
	}
	sess.backends[b.Name] = sid
	return sid, nil
}

// backendRoundTrip posts one message for the caller whose quota key is
// owner and returns the result of the answer (JSON or SSE) and the session
// id the backend named.
func (g *Gateway) backendRoundTrip(ctx context.Context, b *Backend, owner, sid string, body []byte) (json.RawMessage, string, error) {
	ans, err := g.post(ctx, b, owner, sid, body)
	if err != nil {
		return nil, "", err
	}
	defer ans.body.Close()
	if ans.sid != "" {
		sid = ans.sid
	}
	if ans.status == http.StatusAccepted {
		return nil, sid, nil
	}
	if ans.status != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(ans.body, 512))
		return nil, sid, fmt.Errorf("HTTP %d: %s", ans.status, bytes.TrimSpace(msg))
	}
	var msgs [][]byte
	if isEventStream(ans.contentType) {
		sc := bufio.NewScanner(io.LimitReader(ans.body, maxFilteredResponse))
		sc.Buffer(make([]byte, 64<<10), maxFilteredResponse)
		for sc.Scan() {
			if data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data:")); ok {
				msgs = append(msgs, bytes.Clone(bytes.TrimSpace(data)))
			}
		}
	} else {
		raw, err := io.ReadAll(io.LimitReader(ans.body, maxFilteredResponse))
		if err != nil {
			return nil, sid, err
		}
		msgs = append(msgs, raw)
	}
	for _, m := range msgs {
		var env struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(m, &env) != nil || env.ID == nil {
			continue // a notification on the way
		}
		if env.Error != nil {
			return nil, sid, fmt.Errorf("%w: %s", errBackendError, env.Error.Message)
		}
		return env.Result, sid, nil
	}
	return nil, sid, errors.New("no response from the backend")
}

// handleAggregateDelete ends an aggregated session and its backend sessions.
func (g *Gateway) handleAggregateDelete(c *fiber.Ctx) error {
	start := time.Now()
	rid := newID()
	cl, ok, _ := g.authenticate(c, "", rid)
	if !ok {
		return nil
	}
	sess, errBody := g.aggregateSession(c, cl, &jsonrpc.Message{})
	if errBody != nil {
		return g.reply(c, fiber.StatusNotFound, errBody)
	}
	rec := audit.Record{Time: start.UTC(), RequestID: rid, Method: http.MethodDelete, LatencyMicros: map[string]int64{}}
	fillCaller(&rec, cl)
	if allowed, err := g.decideMethod(c, "", cl, http.MethodDelete, nil, &rec, start); err != nil || !allowed {
		return err
	}
	sess.mu.Lock()
	for name, sid := range sess.backends {
		if b, ok := g.backends[name]; ok && sid != "" {
			req, err := http.NewRequestWithContext(c.UserContext(), http.MethodDelete, b.URL, nil)
			if err == nil {
				req.Header.Set(hdrSession, sid)
				if resp, err := g.client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}
	}
	sess.mu.Unlock()
	g.sessions.delete(c.Get(hdrSession))
	g.metrics.sessions.Set(float64(g.sessions.count()))
	rec.Status = fiber.StatusNoContent
	g.finish(&rec, start)
	return c.SendStatus(fiber.StatusNoContent)
}
