package host

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/pbac-gateway/pbac/host/audit"
	"github.com/pbac-gateway/pbac/rego"
)

// Header names of the Streamable HTTP transport.
const (
	hdrSession  = "Mcp-Session-Id"
	hdrProtocol = "Mcp-Protocol-Version"
	hdrMethod   = "Mcp-Method"
	hdrName     = "Mcp-Name"
	hdrLastID   = "Last-Event-ID"
)

// maxFilteredResponse bounds a tools/list response the gateway reads whole
// to filter it.
const maxFilteredResponse = 8 << 20

// handlePost is the hot path: authenticate, parse once, decide, forward the
// exact bytes, stream the answer back, audit.
func (g *Gateway) handlePost(c *fiber.Ctx) error {
	start := time.Now()
	rid := newID()
	probeRequestStart(c.Context().ID())
	c.Set("X-Request-Id", rid)
	backend, ok := g.backends[c.Params("backend")]
	if !ok {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "unknown backend"})
	}
	if !g.checkOrigin(c) {
		g.metrics.decision("origin", "deny")
		return c.Status(fiber.StatusForbidden).JSON(fiber.Map{"error": "origin not allowed"})
	}
	// A request without a token is read first: policy decides on its
	// method and tool whether it may proceed anonymously.
	var (
		cl             *caller
		introspectTook time.Duration
	)
	if bearerToken(c) != "" {
		var ok bool
		if cl, ok, introspectTook = g.authenticate(c, backend.Name, rid); !ok {
			g.metrics.decision("auth", "deny")
			return nil
		}
		g.metrics.stage("introspect", introspectTook)
		probeAuthenticated(c.Context().ID())
	}
	body := bytes.Clone(c.Body()) // fasthttp reuses its buffers
	msg, err := parseMessage(body, g.cfg.MaxJSONDepth)
	if err != nil {
		if cl == nil {
			g.metrics.decision("auth", "deny")
			g.challenge(c, backend.Name, "", "a bearer token is required")
			return nil
		}
		code := codeInvalidRequest
		if strings.HasPrefix(err.Error(), "malformed JSON") || errors.Is(err, errBadUTF8) {
			code = codeParseError
		}
		return g.reply(c, fiber.StatusBadRequest, rpcError(nil, code, "invalid request: "+err.Error(), nil))
	}
	latency := map[string]int64{"introspect": introspectTook.Microseconds()}
	if cl == nil {
		tool := ""
		if name := callTarget(msg); name != "" {
			tool = backend.Name + "." + name
		}
		method := msg.Method
		if msg.IsResponse {
			method = anonymousResponse
		}
		var ok bool
		var took time.Duration
		if cl, ok, took = g.admitAnonymous(c, backend.Name, method, tool, rid); !ok {
			g.metrics.decision("auth", "deny")
			return nil
		}
		latency = map[string]int64{"policy": took.Microseconds()}
	}
	if err := checkHeaders(c, msg); err != nil {
		return g.reply(c, fiber.StatusBadRequest, rpcError(msg.ID, codeHeaderMismatch, err.Error(), nil))
	}
	rec := audit.Record{
		Time: start.UTC(), RequestID: rid, Backend: backend.Name, Method: msg.Method,
		LatencyMicros: latency,
	}
	fillCaller(&rec, cl)
	sess, status, errBody := g.resolveSession(c, backend, cl, msg)
	if errBody != nil {
		return g.reply(c, status, errBody)
	}

	switch msg.Method {
	case "tools/call", "resources/read", "prompts/get":
		allowed, err := g.decideCall(c, backend, cl, msg, &rec)
		if err != nil || !allowed {
			g.finish(&rec, start)
			return err
		}
		probeDecided(c.Context().ID())
	case "tools/list":
		return g.forwardFiltered(c, backend, cl, msg, sess, &rec, start)
	}
	return g.forward(c, backend, cl, msg, sess, &rec, start)
}

// anonymousResponse is the method pbac/anonymous is asked about for a
// JSON-RPC response, which has none: the client answering a server's
// request (sampling, elicitation, roots).
const anonymousResponse = "response"

// callTarget is what a decided call names: the tool of tools/call,
// "resource:<uri>" for resources/read, "prompt:<name>" for prompts/get;
// "" for other methods or when the name is missing.
func callTarget(msg *rpcMessage) string {
	switch msg.Method {
	case "tools/call":
		return msg.Name
	case "resources/read":
		if msg.URI != "" {
			return "resource:" + msg.URI
		}
	case "prompts/get":
		if msg.Name != "" {
			return "prompt:" + msg.Name
		}
	}
	return ""
}

// statelessRevision is the first revision whose requests carry the
// method and name in headers and have no sessions.
const statelessRevision = "2026-07-28"

// checkHeaders enforces that the MCP headers agree with the body: the
// gateway decides on the body and refuses a disagreement rather than
// resolving it. Under the 2026-07-28 revision the headers are required and
// the protocol version must match the body's _meta.
func checkHeaders(c *fiber.Ctx, m *rpcMessage) error {
	if m.IsResponse {
		return nil
	}
	version := c.Get(hdrProtocol)
	named := m.Method == "tools/call" || m.Method == "resources/read" || m.Method == "prompts/get"
	name := m.Name
	if m.Method == "resources/read" {
		name = m.URI
	}
	if version >= statelessRevision {
		if m.MetaProtocolVersion != "" && m.MetaProtocolVersion != version {
			return fmt.Errorf("header mismatch: %s %q does not match the body's protocol version %q", hdrProtocol, version, m.MetaProtocolVersion)
		}
		if c.Get(hdrMethod) == "" {
			return fmt.Errorf("header mismatch: %s is required", hdrMethod)
		}
		if named && c.Get(hdrName) == "" {
			return fmt.Errorf("header mismatch: %s is required for %s", hdrName, m.Method)
		}
	}
	if h := c.Get(hdrMethod); h != "" && h != m.Method {
		return fmt.Errorf("header mismatch: %s %q does not match the body's method %q", hdrMethod, h, m.Method)
	}
	if h := c.Get(hdrName); h != "" {
		v, err := decodeHeaderValue(h)
		if err != nil {
			return fmt.Errorf("header mismatch: %s: %w", hdrName, err)
		}
		if !named || v != name {
			return fmt.Errorf("header mismatch: %s %q does not match the body", hdrName, h)
		}
	}
	return nil
}

// decodeHeaderValue undoes the 2026-07-28 Base64 sentinel encoding
// (=?base64?...?=) of Mcp-Name and Mcp-Param-* values.
func decodeHeaderValue(v string) (string, error) {
	inner, ok := strings.CutPrefix(v, "=?base64?")
	if !ok {
		return v, nil
	}
	inner, ok = strings.CutSuffix(inner, "?=")
	if !ok {
		return "", errors.New("malformed base64 sentinel")
	}
	b, err := base64.StdEncoding.DecodeString(inner)
	if err != nil {
		return "", errors.New("malformed base64 value")
	}
	return string(b), nil
}

func fillCaller(rec *audit.Record, cl *caller) {
	if cl.anonymous {
		// The admission decision is this request's decision.
		d := cl.admitted
		rec.ClientID, rec.Decision, rec.Reasons, rec.PolicyVersion = AnonymousClientID, "allow", d.Reasons, d.Version
		return
	}
	t := cl.token
	rec.ClientID, rec.Subject, rec.Tier, rec.Scopes = t.ClientID, t.Subject, t.Tier, t.Scopes
	if t.Client != nil {
		rec.AgentProvider, rec.AgentModel = t.Client.Agent.AgentProvider, t.Client.Agent.AgentModel
	}
	if t.Act != nil {
		rec.Act, _ = json.Marshal(t.Act)
	}
}

// decideCall asks pbac/tool_call about a call. On deny it has answered 403.
// For an anonymous caller, pbac/anonymous has decided the call already.
func (g *Gateway) decideCall(c *fiber.Ctx, backend *Backend, cl *caller, msg *rpcMessage, rec *audit.Record) (bool, error) {
	tool := callTarget(msg)
	if tool == "" {
		return false, g.reply(c, fiber.StatusBadRequest, rpcError(msg.ID, codeInvalidParams, "params.name is required", nil))
	}
	full := backend.Name + "." + tool
	rec.Tool = full
	rec.ArgsDigest = audit.Digest(msg.Arguments)
	if cl.anonymous {
		return true, nil
	}
	in := cl.input(backend.Name, msg.Method)
	in.Request.Tool = full
	in.Request.Arguments = msg.Arguments
	raw, err := json.Marshal(in)
	if err != nil {
		return false, err
	}
	start := time.Now()
	d, err := g.cfg.Policy.Decide(c.UserContext(), "pbac/tool_call", raw)
	took := time.Since(start)
	g.metrics.stage("policy", took)
	rec.LatencyMicros["policy"] = took.Microseconds()
	if err != nil {
		// A decision that cannot be made is a deny.
		rec.Decision, rec.Reasons, rec.Status = "error", []string{"policy could not decide: " + err.Error()}, fiber.StatusForbidden
		g.log.Error("policy could not decide", "request_id", rec.RequestID, "entrypoint", "pbac/tool_call", "tool", full, "err", err)
		return false, g.reply(c, fiber.StatusForbidden, rpcError(msg.ID, codeDenied, "denied: the policy could not decide", nil))
	}
	rec.PolicyVersion = d.Version
	rec.Reasons = d.Reasons
	if d.Allow {
		rec.Decision = "allow"
		return true, nil
	}
	var extra struct {
		RequiredScope     string `json:"required_scope"`
		InsufficientScope bool   `json:"insufficient_scope"`
	}
	_ = d.Decode(&extra)
	rec.Decision, rec.Status = "deny", fiber.StatusForbidden
	if extra.InsufficientScope && extra.RequiredScope != "" {
		c.Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope=%q, resource_metadata=%q`,
			extra.RequiredScope, g.metadataURL(backend.Name)))
	}
	data := map[string]any{"reasons": d.Reasons, "policy_version": d.Version}
	if extra.RequiredScope != "" {
		data["required_scope"] = extra.RequiredScope
	}
	return false, g.reply(c, fiber.StatusForbidden,
		rpcError(msg.ID, codeDenied, "denied by policy: "+strings.Join(d.Reasons, "; "), data))
}

func (g *Gateway) reply(c *fiber.Ctx, status int, body []byte) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(status).Send(body)
}

// finish completes and emits the audit record.
func (g *Gateway) finish(rec *audit.Record, start time.Time) {
	total := time.Since(start)
	rec.LatencyMicros["total"] = total.Microseconds()
	if rec.Decision == "" {
		rec.Decision = "allow"
	}
	g.metrics.decision(rec.Method, rec.Decision)
	g.metrics.stage("total", total)
	if b, ok := rec.LatencyMicros["backend"]; ok {
		g.metrics.overhead(total - time.Duration(b)*time.Microsecond)
	}
	g.metrics.version(rec.PolicyVersion)
	if g.cfg.Audit != nil {
		g.cfg.Audit.Record(*rec)
	}
}

// resolveSession maps the client's session id to the backend's, checking
// the session belongs to this agent and human.
func (g *Gateway) resolveSession(c *fiber.Ctx, backend *Backend, cl *caller, msg *rpcMessage) (*session, int, []byte) {
	id := c.Get(hdrSession)
	if id == "" {
		return nil, 0, nil
	}
	sess, ok := g.sessions.get(id)
	if !ok || sess.backend != backend.Name {
		return nil, fiber.StatusNotFound, rpcError(msg.ID, codeInvalidRequest, "unknown or expired session", nil)
	}
	if sess.anonymous != cl.anonymous || sess.clientID != cl.token.ClientID || sess.subject != cl.token.Subject {
		return nil, fiber.StatusForbidden, rpcError(msg.ID, codeInvalidRequest, "the session belongs to another agent", nil)
	}
	return sess, 0, nil
}

// backendRequest builds the request to the backend: the exact body, the
// transport headers, the backend's own credentials, never the client's token.
func (g *Gateway) backendRequest(ctx context.Context, c *fiber.Ctx, backend *Backend, method string, body []byte, sess *session) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, backend.URL, rd)
	if err != nil {
		return nil, err
	}
	for _, h := range []string{fiber.HeaderContentType, fiber.HeaderAccept, hdrProtocol, hdrLastID, hdrMethod, hdrName} {
		if v := c.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	// Mcp-Param-* mirror annotated arguments (2026-07-28); the backend
	// validates them against the body it gets, which is the body policy saw.
	c.Request().Header.VisitAll(func(k, v []byte) {
		if key := string(k); len(key) > len("Mcp-Param-") && strings.EqualFold(key[:len("Mcp-Param-")], "Mcp-Param-") {
			req.Header.Set(key, string(v))
		}
	})
	if sess != nil {
		req.Header.Set(hdrSession, sess.backendID)
	}
	for k, v := range backend.Headers {
		req.Header.Set(k, v)
	}
	return req, nil
}

// forward sends an allowed message to the backend and streams the answer.
func (g *Gateway) forward(c *fiber.Ctx, backend *Backend, cl *caller, msg *rpcMessage, sess *session, rec *audit.Record, start time.Time) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.UserContext()), backend.Timeout)
	req, err := g.backendRequest(ctx, c, backend, http.MethodPost, msg.Raw, sess)
	if err != nil {
		cancel()
		return err
	}
	probeForwardStart(c.Context().ID())
	bstart := time.Now()
	resp, err := g.client.Do(req)
	probeBackendDone(c.Context().ID())
	if err != nil {
		cancel()
		rec.Decision, rec.Status = "error", fiber.StatusBadGateway
		rec.Reasons = append(rec.Reasons, "backend unreachable")
		g.finish(rec, start)
		g.log.Warn("backend request failed", "backend", backend.Name, "request_id", rec.RequestID, "err", err)
		return g.reply(c, fiber.StatusBadGateway, rpcError(msg.ID, codeInternalError, "backend "+backend.Name+" is unavailable", nil))
	}
	rec.Status = resp.StatusCode
	g.adoptSession(c, backend, cl, resp)
	copyResponseHeaders(c, resp)
	c.Status(resp.StatusCode)
	rec.LatencyMicros["backend"] = time.Since(bstart).Microseconds()
	g.metrics.stage("backend", time.Since(bstart))
	g.finish(rec, start)
	probeReplyDone(c.Context().ID())
	if !strings.HasPrefix(resp.Header.Get(fiber.HeaderContentType), "text/event-stream") {
		// A JSON answer is passed on whole, whatever its size, without being
		// held in memory; the backend request ends when it has been sent.
		size := -1
		if resp.ContentLength >= 0 {
			size = int(resp.ContentLength)
		}
		c.Response().SetBodyStream(&closeFunc{ReadCloser: resp.Body, after: cancel}, size)
		return nil
	}
	// An SSE answer streams through as it comes, flushed event by event.
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer cancel()
		defer resp.Body.Close()
		pipe(w, resp.Body)
	})
	return nil
}

// closeFunc runs after once the body is closed.
type closeFunc struct {
	io.ReadCloser
	after func()
}

func (c *closeFunc) Close() error {
	err := c.ReadCloser.Close()
	c.after()
	return err
}

// pipe copies a stream, flushing each chunk, until either side is done.
func pipe(w *bufio.Writer, r io.Reader) {
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if werr := w.Flush(); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func copyResponseHeaders(c *fiber.Ctx, resp *http.Response) {
	for _, h := range []string{fiber.HeaderContentType, hdrProtocol, fiber.HeaderCacheControl} {
		if v := resp.Header.Get(h); v != "" {
			c.Set(h, v)
		}
	}
}

// adoptSession replaces a session id the backend assigned (on initialize)
// with one of the gateway's, bound to the caller.
func (g *Gateway) adoptSession(c *fiber.Ctx, backend *Backend, cl *caller, resp *http.Response) {
	bid := resp.Header.Get(hdrSession)
	if bid == "" {
		return
	}
	if cur := c.Get(hdrSession); cur != "" {
		c.Set(hdrSession, cur) // the session continues
		return
	}
	id := newID()
	g.sessions.put(id, &session{backend: backend.Name, backendID: bid, clientID: cl.token.ClientID, subject: cl.token.Subject,
		anonymous: cl.anonymous})
	g.metrics.sessions.Set(float64(g.sessions.count()))
	c.Set(hdrSession, id)
}

// forwardFiltered forwards tools/list and removes from the answer every tool
// pbac/list does not let this caller call.
func (g *Gateway) forwardFiltered(c *fiber.Ctx, backend *Backend, cl *caller, msg *rpcMessage, sess *session, rec *audit.Record, start time.Time) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.UserContext()), backend.Timeout)
	defer cancel()
	req, err := g.backendRequest(ctx, c, backend, http.MethodPost, msg.Raw, sess)
	if err != nil {
		return err
	}
	bstart := time.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		rec.Decision, rec.Status = "error", fiber.StatusBadGateway
		g.finish(rec, start)
		return g.reply(c, fiber.StatusBadGateway, rpcError(msg.ID, codeInternalError, "backend "+backend.Name+" is unavailable", nil))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFilteredResponse))
	rec.LatencyMicros["backend"] = time.Since(bstart).Microseconds()
	if err != nil {
		return err
	}
	g.adoptSession(c, backend, cl, resp)
	copyResponseHeaders(c, resp)
	sse := strings.HasPrefix(resp.Header.Get(fiber.HeaderContentType), "text/event-stream")
	filtered, kept, err := g.filterTools(c.UserContext(), backend, cl, body, sse, rec)
	if errors.Is(err, errUndecided) {
		rec.Decision, rec.Status, rec.Reasons = "error", fiber.StatusForbidden, []string{err.Error()}
		g.log.Error("policy could not decide", "request_id", rec.RequestID, "entrypoint", "pbac/list", "err", err)
		g.finish(rec, start)
		return g.reply(c, fiber.StatusForbidden, rpcError(msg.ID, codeDenied, "denied: the policy could not decide", nil))
	}
	if err != nil {
		// Fail closed: an answer we cannot filter is not passed on.
		rec.Decision, rec.Status = "error", fiber.StatusBadGateway
		rec.Reasons = []string{err.Error()}
		g.finish(rec, start)
		return g.reply(c, fiber.StatusBadGateway, rpcError(msg.ID, codeInternalError, "the tool list could not be filtered", nil))
	}
	rec.Status = resp.StatusCode
	rec.Reasons = append(rec.Reasons, fmt.Sprintf("%d tools listed", kept))
	g.finish(rec, start)
	return c.Status(resp.StatusCode).Send(filtered)
}

// filterTools rewrites a tools/list result (plain JSON or the SSE events
// carrying it) to the tools policy allows.
func (g *Gateway) filterTools(ctx context.Context, backend *Backend, cl *caller, body []byte, sse bool, rec *audit.Record) ([]byte, int, error) {
	kept := 0
	rewrite := func(msg []byte) ([]byte, error) {
		var env map[string]json.RawMessage
		if err := json.Unmarshal(msg, &env); err != nil {
			return nil, fmt.Errorf("backend answer is not JSON: %w", err)
		}
		res, ok := env["result"]
		if !ok {
			return msg, nil // an error answer passes as it is
		}
		var result map[string]json.RawMessage
		if err := json.Unmarshal(res, &result); err != nil {
			return nil, fmt.Errorf("tools/list result is not an object: %w", err)
		}
		var tools []json.RawMessage
		if err := json.Unmarshal(result["tools"], &tools); err != nil {
			return nil, fmt.Errorf("tools/list result has no tool array: %w", err)
		}
		names := make([]string, 0, len(tools))
		for _, t := range tools {
			var tn struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(t, &tn)
			names = append(names, backend.Name+"."+tn.Name)
		}
		allowed, version, err := g.allowedTools(ctx, backend, cl, names)
		if err != nil {
			return nil, err
		}
		rec.PolicyVersion = version
		out := make([]json.RawMessage, 0, len(tools))
		for i, t := range tools {
			if allowed[names[i]] {
				out = append(out, t)
			}
		}
		kept = len(out)
		if result["tools"], err = json.Marshal(out); err != nil {
			return nil, err
		}
		if env["result"], err = json.Marshal(result); err != nil {
			return nil, err
		}
		return json.Marshal(env)
	}
	if !sse {
		b, err := rewrite(body)
		return b, kept, err
	}
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(body, []byte("\n")) {
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			out.Write(line)
			continue
		}
		b, err := rewrite(bytes.TrimSpace(data))
		if err != nil {
			return nil, 0, err
		}
		out.WriteString("data: ")
		out.Write(b)
		out.WriteByte('\n')
	}
	return out.Bytes(), kept, nil
}

// errUndecided is a decision the policy could not make; the request is
// denied ("denied: the policy could not decide").
var errUndecided = errors.New("the policy could not decide")

// allowedTools asks pbac/list (pbac/anonymous for a caller without a
// token) which of names the caller may call.
func (g *Gateway) allowedTools(ctx context.Context, backend *Backend, cl *caller, names []string) (map[string]bool, string, error) {
	in, entrypoint := cl.input(backend.Name, "tools/list"), "pbac/list"
	if cl.anonymous {
		in, entrypoint = rego.Input{Request: rego.Request{Backend: backend.Name, Method: "tools/list"}, Now: time.Now().Unix()}, "pbac/anonymous"
	}
	in.Request.Tools = names
	raw, err := json.Marshal(in)
	if err != nil {
		return nil, "", err
	}
	start := time.Now()
	d, err := g.cfg.Policy.Decide(ctx, entrypoint, raw)
	g.metrics.stage("policy", time.Since(start))
	if err != nil {
		return nil, "", fmt.Errorf("%w: the tool list: %w", errUndecided, err)
	}
	var res struct {
		Tools []string `json:"tools"`
	}
	if err := d.Decode(&res); err != nil {
		return nil, "", err
	}
	allowed := map[string]bool{}
	if d.Allow {
		for _, t := range res.Tools {
			allowed[t] = true
		}
	}
	return allowed, d.Version, nil
}

// sessionRequest checks a GET or DELETE on /mcp/<backend>: a known
// backend, an allowed origin, a valid token and, when one is named, the
// caller's own session. When ok is false the answer has been written.
func (g *Gateway) sessionRequest(c *fiber.Ctx) (backend *Backend, sess *session, ok bool, err error) {
	backend, known := g.backends[c.Params("backend")]
	if !known {
		return nil, nil, false, c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "unknown backend"})
	}
	if !g.checkOrigin(c) {
		return nil, nil, false, c.Status(fiber.StatusForbidden).JSON(fiber.Map{"error": "origin not allowed"})
	}
	var (
		cl     *caller
		authed bool
	)
	if bearerToken(c) != "" {
		cl, authed, _ = g.authenticate(c, backend.Name, newID())
	} else {
		// The transport's bodiless requests ask as method GET or DELETE.
		cl, authed, _ = g.admitAnonymous(c, backend.Name, c.Method(), "", newID())
	}
	if !authed {
		return nil, nil, false, nil
	}
	sess, status, errBody := g.resolveSession(c, backend, cl, &rpcMessage{})
	if errBody != nil {
		return nil, nil, false, g.reply(c, status, errBody)
	}
	return backend, sess, true, nil
}

// handleStream serves the GET stream (server-to-client messages) through.
func (g *Gateway) handleStream(c *fiber.Ctx) error {
	backend, sess, ok, err := g.sessionRequest(c)
	if !ok {
		return err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.UserContext()))
	// A client that went away is noticed only on the next write, which may
	// never come on a quiet stream: Shutdown ends every stream instead of
	// waiting for it.
	go func() {
		select {
		case <-g.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := g.backendRequest(ctx, c, backend, http.MethodGet, nil, sess)
	if err != nil {
		cancel()
		return err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		cancel()
		return g.reply(c, fiber.StatusBadGateway, rpcError(nil, codeInternalError, "backend "+backend.Name+" is unavailable", nil))
	}
	copyResponseHeaders(c, resp)
	c.Status(resp.StatusCode)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer cancel()
		defer resp.Body.Close()
		pipe(w, resp.Body)
	})
	return nil
}

// handleDelete ends a session at the backend and forgets it.
func (g *Gateway) handleDelete(c *fiber.Ctx) error {
	backend, sess, ok, err := g.sessionRequest(c)
	if !ok {
		return err
	}
	if sess == nil {
		return g.reply(c, fiber.StatusBadRequest, rpcError(nil, codeInvalidRequest, "no session to end", nil))
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), backend.Timeout)
	defer cancel()
	req, err := g.backendRequest(ctx, c, backend, http.MethodDelete, nil, sess)
	if err != nil {
		return err
	}
	if resp, err := g.client.Do(req); err == nil {
		resp.Body.Close()
	}
	g.sessions.delete(c.Get(hdrSession))
	g.metrics.sessions.Set(float64(g.sessions.count()))
	return c.SendStatus(fiber.StatusNoContent)
}
