package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/propagation"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/jsonrpc"
	"github.com/pbac-gateway/pbac/tooldefs"
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
	if !g.checkOrigin(c, backend.Name) {
		g.metrics.decision("origin", "deny")
		return c.Status(fiber.StatusForbidden).JSON(fiber.Map{"error": "origin not allowed"})
	}
	// The body is read before the token is checked: its _meta may carry
	// the caller's trace, which the request's span joins; a request
	// without a token is decided on its method and tool. A body that does
	// not parse is refused after the token's check, as before.
	body, ok := requestBody(c)
	if !ok {
		return nil
	}
	msg, err := jsonrpc.Parse(body, g.cfg.MaxJSONDepth)
	var rec audit.Record
	span := g.startRequest(c, backend.Name, rid, msg, start)
	defer func() { endRequest(span, c, msg, &rec) }()
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
	if err != nil {
		if cl == nil {
			g.metrics.decision("auth", "deny")
			g.challenge(c, backend.Name, "", "a bearer token is required")
			return nil
		}
		return g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(nil, jsonrpc.Code(err), "invalid request: "+err.Error(), nil))
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
		return g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeHeaderMismatch, err.Error(), nil))
	}
	if err := g.checkParams(c, backend.Name, msg.Name, msg); err != nil {
		return g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeHeaderMismatch, err.Error(), nil))
	}
	rec = audit.Record{
		Time: start.UTC(), RequestID: rid, Backend: backend.Name, Method: msg.Method,
		LatencyMicros: latency, TraceID: traceID(span),
	}
	fillCaller(&rec, cl)
	sess, status, errBody := g.resolveSession(c, backend, cl, msg)
	if errBody != nil {
		return g.reply(c, status, errBody)
	}
	if msg.Method != "subscriptions/listen" { // bounded by listens instead
		done, err := g.takeInFlight(c, cl.inFlightKey(), msg, &rec, start)
		if done == nil {
			return err
		}
		defer done()
	}

	switch msg.Method {
	case "tools/call", "resources/read", "prompts/get", "resources/subscribe", "resources/unsubscribe", "completion/complete":
		var (
			attrs map[string]any
			ok    bool
		)
		if msg, attrs, ok, err = g.prepareCall(c, backend, cl, msg, callTarget(msg), &rec, start); !ok {
			return err
		}
		// What the backend gets: the call without the gateway's own
		// approval fields (read before the decision, so that nothing can
		// fail between an approval's use and the forwarding).
		fwd, err := forwardedWithoutApproval(msg, g.cfg.MaxJSONDepth)
		if err != nil {
			rec.Decision, rec.Status, rec.Reasons = "deny", fiber.StatusBadRequest, []string{"refused before policy: " + err.Error()}
			g.finish(&rec, start)
			return g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidParams, err.Error(),
				map[string]any{"request_id": rec.RequestID}))
		}
		allowed, err := g.decideCall(c, backend.Name, backend, cl, msg, attrs, sess != nil && sess.elicitURL, &rec)
		if err != nil || !allowed {
			g.finish(&rec, start)
			return err
		}
		msg = fwd
		probeDecided(c.Context().ID())
		if asksForTask(msg) {
			return g.forwardTaskable(c, backend, cl, msg, sess, &rec, start)
		}
	case "subscriptions/listen":
		if allowed, err := g.decideMethod(c, backend.Name, cl, methodOf(msg), msg.ID, &rec, start); err != nil || !allowed {
			return err
		}
		return g.listen(c, backend, cl, msg, sess, &rec, start)
	default:
		// A task is named only by its owner (tasks.go), then decided as
		// any method.
		if taskMethods[msg.Method] && !g.checkTaskOwner(c, backend, cl, msg, &rec, start) {
			return nil
		}
		// Every other method is decided too (pbac/method): no grant on a
		// backend, no session there; an unknown method never reaches it.
		if allowed, err := g.decideMethod(c, backend.Name, cl, methodOf(msg), msg.ID, &rec, start); err != nil || !allowed {
			return err
		}
		if _, listed := listedKinds[msg.Method]; listed || msg.Method == "tools/list" || servesServerInfo(msg.Method) {
			return g.forwardFiltered(c, backend, cl, msg, sess, &rec, start)
		}
	}
	return g.forward(c, backend, cl, msg, sess, &rec, start)
}

// requestBody is the request's body as it came (a copy: fasthttp reuses its
// buffers). A body with a Content-Encoding is refused (415) before a byte
// of it is read: Fiber would inflate it without a bound — a few hundred
// kilobytes of gzip are gigabytes — and MCP clients send none.
func requestBody(c *fiber.Ctx) ([]byte, bool) {
	if ce := c.Get(fiber.HeaderContentEncoding); ce != "" && !strings.EqualFold(ce, "identity") {
		_ = c.Status(fiber.StatusUnsupportedMediaType).JSON(fiber.Map{"error": "a request body with a Content-Encoding is not accepted"})
		return nil, false
	}
	return bytes.Clone(c.Request().Body()), true
}

// completionTarget is what a completion/complete completes an argument
// of: "prompt:<name>" for a prompt, "template:<literal>" for a resource
// template (the literal part of its URI, as lists name templates); "" when
// the reference is neither, or a template with an RFC 6570 operator. The
// reference is read as servers read it, its names exactly: a "NAME" or
// "URI" beside "name" or "uri" (which encoding/json would take, the last
// of them, where the SDKs take the exact one) makes it neither.
func completionTarget(msg *jsonrpc.Message) string {
	for k := range msg.Params {
		if k != "ref" && strings.EqualFold(k, "ref") {
			return "" // a second ref, which some servers read instead
		}
	}
	var ref struct{ Type, Name, URI string }
	members, err := jsonrpc.Members(msg.Params["ref"])
	if err != nil {
		return ""
	}
	for _, m := range members {
		var dst *string
		switch {
		case m.Key == "type":
			dst = &ref.Type
		case m.Key == "name":
			dst = &ref.Name
		case m.Key == "uri":
			dst = &ref.URI
		case strings.EqualFold(m.Key, "type") || strings.EqualFold(m.Key, "name") || strings.EqualFold(m.Key, "uri"):
			return ""
		default:
			continue
		}
		if json.Unmarshal(m.Raw, dst) != nil {
			return ""
		}
	}
	switch ref.Type {
	case "ref/prompt":
		if ref.Name != "" {
			return "prompt:" + ref.Name
		}
	case "ref/resource":
		if ref.URI == "" || templateOperator.MatchString(ref.URI) {
			return ""
		}
		literal, _, _ := strings.Cut(ref.URI, "{")
		if literal != "" {
			return "template:" + literal
		}
	}
	return ""
}

// anonymousResponse is the method pbac/anonymous is asked about for a
// JSON-RPC response, which has none: the client answering a server's
// request (sampling, elicitation, roots).
const anonymousResponse = "response"

// callTarget is what a decided call names: the tool of tools/call,
// "resource:<uri>" for resources/read, "prompt:<name>" for prompts/get;
// "" for other methods or when the name is missing.
func callTarget(msg *jsonrpc.Message) string {
	switch msg.Method {
	case "tools/call":
		return msg.Name
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		if msg.URI != "" {
			return "resource:" + msg.URI
		}
	case "completion/complete":
		return completionTarget(msg)
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
func checkHeaders(c *fiber.Ctx, m *jsonrpc.Message) error {
	if m.IsResponse {
		return nil
	}
	version := c.Get(hdrProtocol)
	named := m.Method == "tools/call" || m.Method == "resources/read" || m.Method == "prompts/get" || taskMethods[m.Method]
	name := m.Name
	switch {
	case m.Method == "resources/read":
		name = m.URI
	case taskMethods[m.Method]:
		// The tasks extension names the task in Mcp-Name.
		name, _ = taskOf(m)
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
	rec.AgentProvider, rec.AgentModel = t.Agent.AgentProvider, t.Agent.AgentModel
	if t.Act != nil {
		rec.Act, _ = json.Marshal(t.Act)
	}
}

// prepareCall checks a call's arguments before policy: the limits, then
// what the active catalogue declares about tool (the backend's name for
// it): canonical path and name arguments, no other spelling of an argument
// policy looks at, the actor argument the caller (filled in when absent).
// It then looks up what the catalogue says policy needs from the backend
// (the author of a merge request). It returns the message to decide on and
// to forward — msg, or a copy with the actor filled in — and the resource
// attributes for policy. When ok is false it has answered 400 (invalid
// params) and audited the refusal.
func (g *Gateway) prepareCall(c *fiber.Ctx, backend *Backend, cl *caller, msg *jsonrpc.Message, tool string, rec *audit.Record, start time.Time) (_ *jsonrpc.Message, attrs map[string]any, ok bool, _ error) {
	full := backend.Name + "." + tool
	refused := func(err error) (*jsonrpc.Message, map[string]any, bool, error) {
		rec.Tool, rec.ArgsDigest = full, audit.Digest(msg.Arguments)
		rec.Decision, rec.Status = "deny", fiber.StatusBadRequest
		rec.Reasons = []string{"refused before policy: " + err.Error()}
		g.finish(rec, start)
		return nil, nil, false, g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidParams, err.Error(),
			map[string]any{"request_id": rec.RequestID}))
	}
	if msg.Arguments != nil {
		if err := g.cfg.ArgumentLimits.check(msg.Arguments); err != nil {
			return refused(err)
		}
	}
	rules, err := g.catalogues.rules(g.cfg.Policy, full)
	if err != nil {
		// Policy makes the same checks and denies what it cannot look up.
		g.log.Error("the policy data's catalogue cannot be read", "request_id", rec.RequestID, "err", err)
	}
	if rules == nil {
		return msg, nil, true, nil
	}
	var members []jsonrpc.Member
	if msg.Arguments != nil {
		if members, err = jsonrpc.Members(msg.Arguments); err != nil {
			return refused(fmt.Errorf("%w: %w", errArguments, err))
		}
	}
	identity := ""
	if !cl.anonymous {
		identity = orDefault(cl.token.Subject, cl.token.ClientID)
	}
	fill, err := rules.checkArguments(members, identity, g.cfg.ArgumentLimits)
	if err != nil {
		return refused(err)
	}
	if fill && msg.Arguments != nil {
		if msg, err = withArgument(msg, rules.actor, identity, g.cfg.MaxJSONDepth); err != nil {
			return refused(fmt.Errorf("%w: %w", errArguments, err))
		}
		if members, err = jsonrpc.Members(msg.Arguments); err != nil {
			return refused(fmt.Errorf("%w: %w", errArguments, err))
		}
	}
	if rules.lookup != nil && !cl.anonymous {
		// What the backend records, not what the caller says; without it
		// policy denies (the author could not be determined).
		res, err := g.backendCall(c.UserContext(), backend, g.statelessSession(cl), "tools/call", rules.lookup.params(members))
		if err != nil {
			g.log.Warn("author lookup failed", "request_id", rec.RequestID, "tool", full, "err", err)
		} else if a := rules.lookup.author(res); a != "" {
			attrs = map[string]any{"author": a}
		}
	}
	return msg, attrs, true, nil
}

// How a policy denial of a tools/call is answered (Config.Denials). The
// default is DenialToolError: measured with the TypeScript SDK and
// mcp-remote (conformance/CLIENTS.md), a 403 reaches the application as a
// transport exception wrapping the raw JSON-RPC body, a tool result
// reaches the model as text it can tell the person.
const (
	// DenialHTTP403 answers HTTP 403 with a JSON-RPC error (-32001)
	// carrying the policy's public reasons (before issue 18, the only
	// answer).
	DenialHTTP403 = "http_403"
	// DenialToolError (the default) answers HTTP 200 with a
	// CallToolResult whose isError is true and whose text is the policy's
	// public reasons, so the model sees why and can tell the person; the
	// session goes on.
	DenialToolError = "tool_error"
)

// DenialModes are the values Config.Denials takes.
var DenialModes = []string{DenialHTTP403, DenialToolError}

// deniedByPolicy is what the agent is told when policy gives no public
// reason (a bundle older than public_reasons).
const deniedByPolicy = "denied by policy"

// decideCall asks pbac/tool_call about a call (attrs are the resource
// attributes prepareCall looked up) that reached the gateway at endpoint
// ("" for the aggregated /mcp, else the backend's name). On deny it has
// answered with the policy's public reasons and the request id (see
// denyCall); the full reasons go to the audit record and the log. For an
// anonymous caller, pbac/anonymous has decided the call already.
func (g *Gateway) decideCall(c *fiber.Ctx, endpoint string, backend *Backend, cl *caller, msg *jsonrpc.Message, attrs map[string]any, elicitURL bool, rec *audit.Record) (bool, error) {
	tool := callTarget(msg)
	if tool == "" {
		what := "params.name is required"
		switch msg.Method {
		case "resources/read", "resources/subscribe", "resources/unsubscribe":
			what = "params.uri is required"
		case "completion/complete":
			what = "params.ref must name a prompt, or a resource template without RFC 6570 operators"
		}
		return false, g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidParams, what, nil))
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
	in.Request.ToolDefinition = g.calledDefinition(backend.Name, tool)
	in.Request.ResourceAttributes = attrs
	h := g.newHold(endpoint, backend, cl, msg, full, elicitURL)
	if h != nil {
		pres, done, err := g.presentedState(c, h, cl, msg, rec)
		if done {
			return false, err
		}
		if pres != nil {
			h.presented, in.Approval = pres, pres.Granted()
		}
	}
	d, err := g.decideToolCall(c.UserContext(), &in, rec)
	var asked *contract.Approval
	if err == nil {
		if asked, err = heldBy(d); err != nil {
			err = fmt.Errorf("%w: %w", contract.ErrUndecided, err)
		}
	}
	if err == nil && asked != nil && h != nil && h.presented == nil {
		// The channels without a requestState find the approval by the
		// call itself, and the call is decided again with it.
		if pres := g.grantedFor(c.UserContext(), h, asked.Rule); pres != nil {
			h.presented, in.Approval = pres, pres.Granted()
			if d, err = g.decideToolCall(c.UserContext(), &in, rec); err == nil {
				if asked, err = heldBy(d); err != nil {
					err = fmt.Errorf("%w: %w", contract.ErrUndecided, err)
				}
			}
		}
	}
	if err != nil {
		// A decision that cannot be made is a deny.
		rec.Decision, rec.Reasons, rec.Status = "error", []string{"policy could not decide: " + err.Error()}, fiber.StatusForbidden
		g.log.Error("policy could not decide", "request_id", rec.RequestID, "entrypoint", contract.ToolCall, "tool", full, "err", err)
		return false, g.reply(c, fiber.StatusForbidden, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeDenied, "denied: the policy could not decide",
			map[string]any{"request_id": rec.RequestID}))
	}
	rec.PolicyVersion = d.Version
	rec.Reasons = d.Reasons
	if d.Allow {
		rec.Decision = "allow"
		if h != nil && h.presented != nil {
			// One approval, one call: of concurrent retries only one
			// gets past this.
			_, err := g.cfg.Approvals.Use(c.UserContext(), h.presented.ID, rec.RequestID)
			rec.ApprovalID = h.presented.ID
			if err != nil {
				return false, g.approvalError(c, msg, rec, err)
			}
		}
		return true, nil
	}
	if h != nil && h.presented != nil && asked == nil && h.presented.PolicyVersion != d.Version {
		// A newer policy denies the call outright: the approval it
		// presents is void. (Held again, the approval is void when the
		// new one is asked for; denied by the policy that asked for it,
		// for a scope say, it stays, for the retry after a step-up.)
		why := fmt.Sprintf("decided again under policy %s, the call is denied", d.Version)
		if _, err := g.cfg.Approvals.Void(c.UserContext(), h.presented.ID, why, rec.RequestID); err != nil {
			g.log.Warn("voiding an approval", "request_id", rec.RequestID, "approval", h.presented.ID, "err", err)
		}
	}
	if asked != nil && h != nil {
		g.log.Info("call held for approval", "request_id", rec.RequestID, "tool", full, "client_id", rec.ClientID, "rule", asked.Rule)
		return false, g.holdCall(c, h, cl, msg, rec, asked, d.Version)
	}
	var extra contract.ToolCallResult
	_ = d.Decode(&extra)
	rec.Decision, rec.Status = "deny", fiber.StatusForbidden
	g.log.Info("call denied by policy", "request_id", rec.RequestID, "tool", full, "client_id", rec.ClientID, "reasons", d.Reasons)
	return false, g.denyCall(c, endpoint, cl, msg, extra, rec, d.Version)
}

// decideToolCall asks pbac/tool_call about in, timing it into rec.
func (g *Gateway) decideToolCall(ctx context.Context, in *contract.Input, rec *audit.Record) (contract.Decision, error) {
	var (
		d     contract.Decision
		err   error
		start time.Time
	)
	if sd, ok := g.cfg.Policy.(contract.SharedDecider); ok {
		// The token's part apart: a run of calls by one token has it in
		// common, and the policy instance parses it once for them.
		shared, rest, merr := contract.MarshalInputParts(in)
		if merr != nil {
			return contract.Decision{}, merr
		}
		start = time.Now()
		d, err = sd.DecideShared(ctx, contract.ToolCall, shared, rest)
	} else {
		raw, merr := contract.MarshalInput(in)
		if merr != nil {
			return contract.Decision{}, merr
		}
		start = time.Now()
		d, err = g.cfg.Policy.Decide(ctx, contract.ToolCall, raw)
	}
	took := time.Since(start)
	g.metrics.stage("policy", took)
	rec.LatencyMicros["policy"] += took.Microseconds()
	return d, err
}

// denyCall answers a call policy denied. A denial a scope would fix
// (insufficient_scope) is HTTP 403 with a step-up challenge naming the
// protected resource the client connected to (endpoint) and the scopes to
// ask for (stepUpScopes). Any other denial is answered as Config.Denials
// says: a 403 JSON-RPC error, or a tool result with isError.
func (g *Gateway) denyCall(c *fiber.Ctx, endpoint string, cl *caller, msg *jsonrpc.Message, extra contract.ToolCallResult, rec *audit.Record, version string) error {
	text, data := publicDenial(extra.PublicReasons, rec.RequestID, version)
	// The scope is named only where it is what is missing: a denial a
	// scope would not fix (a protected path, say) must not suggest one.
	stepUp := extra.InsufficientScope && extra.RequiredScope != ""
	if stepUp {
		data["required_scope"] = extra.RequiredScope
	}
	if stepUp {
		c.Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope=%q, resource_metadata=%q, error_description=%q`,
			strings.Join(stepUpScopes(c.Get(hdrProtocol), cl.token.Scopes, extra.RequiredScope), " "), g.metadataURL(endpoint),
			"the call needs scope "+extra.RequiredScope))
	}
	if stepUp || g.cfg.Denials == DenialHTTP403 || msg.Method != "tools/call" {
		return g.reply(c, fiber.StatusForbidden, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeDenied, text, data))
	}
	rec.Status = fiber.StatusOK
	return g.reply(c, fiber.StatusOK, rpcResult(msg.ID, map[string]any{
		"content": []map[string]any{{"type": "text", "text": text + " (request id " + rec.RequestID + ")"}},
		"isError": true,
		"_meta":   map[string]any{contract.DenialMetaKey: data},
	}))
}

// stepUpScopes are the scopes an insufficient_scope challenge asks for.
// From revision 2026-07-28 (SEP-2350) the client keeps what it was
// granted and adds the challenge's scopes, so the challenge names only
// what the operation needs; a client of an earlier revision replaces its
// scopes with the challenge's, so the challenge keeps the token's scopes
// too and the step-up does not cost the agent what it could do before.
func stepUpScopes(protocol string, granted []string, required string) []string {
	if protocol >= statelessRevision {
		return []string{required}
	}
	out := make([]string, 0, len(granted)+1)
	for _, s := range granted {
		if s != required && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return append(out, required)
}

// publicDenial is the JSON-RPC error message and data of a denial: what
// policy says the agent may be told (deniedByPolicy when it says nothing),
// and the request id that finds the full reasons in the audit trail.
func publicDenial(public []string, requestID, version string) (string, map[string]any) {
	text := deniedByPolicy
	if len(public) > 0 {
		text += ": " + strings.Join(public, "; ")
	} else {
		public = []string{deniedByPolicy}
	}
	return text, map[string]any{"reasons": public, "request_id": requestID, "policy_version": version}
}

func (g *Gateway) reply(c *fiber.Ctx, status int, body []byte) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Status(status)
	g.sendAnswer(c, body)
	return nil
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
	if isCall(rec.Method) {
		backend, tool, tier := g.callLabels(rec)
		g.metrics.call(backend, tool, tier, boundedLabel(rec.Decision, decisionLabels), total)
	}
	if g.cfg.Audit != nil {
		g.cfg.Audit.Record(*rec)
	}
}

// isCall tells the methods counted as calls (pbac_calls_total).
func isCall(method string) bool {
	return method == "tools/call" || method == "resources/read" || method == "prompts/get"
}

// callLabels are a call's backend, tool and tier as the metrics name them,
// each from a bounded set: a configured backend (else "other"), a tool the
// active catalogue lists (else "other"), a tier of the active data (else
// "other"; "none" for a caller without one).
func (g *Gateway) callLabels(rec *audit.Record) (backend, tool, tier string) {
	backend, tool, tier = "other", "other", "other"
	if _, ok := g.backends[rec.Backend]; ok {
		backend = rec.Backend
	}
	if rec.Tier == "" {
		tier = "none"
	}
	if cat := g.catalogues.current.Load(); cat != nil {
		if _, ok := cat.tools[rec.Tool]; ok {
			tool = rec.Tool
		}
		if cat.tiers[rec.Tier] {
			tier = rec.Tier
		}
	}
	return backend, tool, tier
}

// resolveSession maps the client's session id to the backend's, checking
// the session belongs to this agent and human.
func (g *Gateway) resolveSession(c *fiber.Ctx, backend *Backend, cl *caller, msg *jsonrpc.Message) (*session, int, []byte) {
	id := c.Get(hdrSession)
	if id == "" {
		return nil, 0, nil
	}
	sess, ok := g.sessions.get(id)
	if !ok || sess.backend != backend.Name {
		return nil, fiber.StatusNotFound, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidRequest, "unknown or expired session", nil)
	}
	if sess.anonymous != cl.anonymous || sess.clientID != cl.token.ClientID || sess.subject != cl.token.Subject {
		return nil, fiber.StatusForbidden, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidRequest, "the session belongs to another agent", nil)
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
	forwardHeaders(c, backend, sess, req.Header.Set)
	g.propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	return req, nil
}

// forward sends an allowed message to the backend and streams the answer
// (with the backend's forwarder, forwarder.go).
func (g *Gateway) forward(c *fiber.Ctx, backend *Backend, cl *caller, msg *jsonrpc.Message, sess *session, rec *audit.Record, start time.Time) error {
	id := c.Context().ID()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	ctx, bspan := g.startBackend(c.UserContext(), backend, msg)
	out := msg.Raw
	if bspan.IsRecording() {
		if b, err := g.withTraceMeta(ctx, msg); err == nil {
			out = b
		} else {
			g.log.Debug("trace context not written in _meta", "request_id", rec.RequestID, "err", err)
		}
	}
	forwardRequest(req, c, backend, cl, out, sess)
	g.propagator.Inject(ctx, fasthttpCarrier{&req.Header})
	resp := fasthttp.AcquireResponse()
	probeForwardStart(id)
	bstart := time.Now()
	// The client writes the request and reads the answer's headers within
	// DoDeadline, in this goroutine: the probe's backend stage holds the
	// write (a few µs), and its wake-up stage, from the answer's arrival
	// on the connection, the read.
	probeBackendSent(id)
	err := g.forwarders[backend.Name].DoDeadline(req, resp, bstart.Add(backend.Timeout))
	probeBackendFirstByte(id)
	probeBackendDone(id)
	endBackend(bspan, resp.StatusCode(), err)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		return g.unreachable(c, backend, msg.ID, rec, start, err)
	}
	rec.Status = resp.StatusCode()
	rec.LatencyMicros["backend"] = time.Since(bstart).Microseconds()
	g.metrics.stage("backend", time.Since(bstart))
	if !isEventStream(string(resp.Header.ContentType())) {
		// A JSON answer is read whole (at most maxFilteredResponse) and
		// passed on when it answers this request (answer.go): a client
		// acts on a JSON body only once it has all of it.
		return g.forwardJSONAnswer(c, backend, cl, msg, resp, rec, start)
	}
	g.adoptSession(c, backend, cl, msg, string(resp.Header.Peek(hdrSession)))
	copyAnswerHeaders(c, func(k string) string { return string(resp.Header.Peek(k)) })
	c.Status(rec.Status)
	g.finish(rec, start)
	probeReplyDone(id)
	keep := g.notificationVetter(backend, cl, answeredID(msg))
	if resp.BodyStream() == nil {
		// fasthttp read what there was: its events that may pass go back
		// now.
		defer fasthttp.ReleaseResponse(resp)
		answer, err := vetEvents(ctx, resp.Body(), keep)
		if err != nil {
			g.log.Warn("the backend's answer stream could not be read", "backend", backend.Name, "request_id", rec.RequestID, "err", err)
		}
		g.sendAnswer(c, answer)
		return nil
	}
	// An SSE answer streams through as it comes, event by event, each
	// message held to what this request may bring back (answer.go), until
	// the response to the request has gone through.
	body := newForwardBody(resp)
	g.sendStream(c, func(w *bufio.Writer) {
		answered, err := relayAnswer(ctx, w, body, keep)
		if err != nil {
			g.log.Info("the backend's answer stream ended", "backend", backend.Name, "request_id", rec.RequestID, "err", err)
		}
		if answered {
			g.drainAnswered(body)
			return
		}
		_ = body.Close()
	})
	return nil
}

// forwardJSONAnswer passes on a backend's answer that is not an event
// stream, read whole (at most maxFilteredResponse), when it answers msg
// (checkJSONAnswer); otherwise the client gets 502 (a request) or the
// status alone (a notification, which has no answer to wait for). resp is
// released.
func (g *Gateway) forwardJSONAnswer(c *fiber.Ctx, backend *Backend, cl *caller, msg *jsonrpc.Message, resp *fasthttp.Response, rec *audit.Record, start time.Time) error {
	defer fasthttp.ReleaseResponse(resp)
	var body []byte
	owned := false // body is not resp's, which is released on return
	if stream := resp.BodyStream(); stream != nil {
		b, err := io.ReadAll(io.LimitReader(stream, maxFilteredResponse+1))
		_ = resp.CloseBodyStream()
		if err != nil || len(b) > maxFilteredResponse {
			reason := "the backend's answer is larger than the gateway reads"
			if err != nil {
				reason = "the backend's answer could not be read"
			}
			g.log.Warn("a backend's answer was not passed on", "backend", backend.Name, "request_id", rec.RequestID, "reason", reason, "err", err)
			return g.withheld(c, msg, rec, start, reason)
		}
		body, owned = b, true
	} else {
		body = resp.Body()
	}
	if err := checkJSONAnswer(body, answeredID(msg), resp.StatusCode()); err != nil {
		g.log.Warn("a backend's answer was withheld", "backend", backend.Name, "request_id", rec.RequestID, "err", err)
		return g.withheld(c, msg, rec, start, err.Error())
	}
	g.adoptSession(c, backend, cl, msg, string(resp.Header.Peek(hdrSession)))
	copyAnswerHeaders(c, func(k string) string { return string(resp.Header.Peek(k)) })
	c.Status(rec.Status)
	g.finish(rec, start)
	probeReplyDone(c.Context().ID())
	if len(body) > smallAnswer && !owned {
		body = bytes.Clone(body) // sendAnswer holds a large one past the return
	}
	g.sendAnswer(c, body)
	return nil
}

// answeredID is the id whose response may come back for msg: its own, for
// a request; none for a notification or for a client's response to the
// server's request, neither of which is answered.
func answeredID(msg *jsonrpc.Message) json.RawMessage {
	if msg.IsResponse {
		return nil
	}
	return msg.ID
}

// withheld answers a request whose backend's answer was not passed on
// (reason, for the audit trail): 502 with a JSON-RPC error, or, for a
// message that is not answered (answeredID), the backend's status with no
// body.
func (g *Gateway) withheld(c *fiber.Ctx, msg *jsonrpc.Message, rec *audit.Record, start time.Time, reason string) error {
	rec.Reasons = append(rec.Reasons, "answer withheld: "+reason)
	if answeredID(msg) == nil {
		g.finish(rec, start)
		return c.SendStatus(rec.Status)
	}
	rec.Decision, rec.Status = "error", fiber.StatusBadGateway
	g.finish(rec, start)
	return g.reply(c, fiber.StatusBadGateway, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInternalError, "the backend's answer could not be checked", nil))
}

// unreachable answers a request whose backend could not be reached: 502
// with a JSON-RPC error (id: the request's), audited and logged.
func (g *Gateway) unreachable(c *fiber.Ctx, backend *Backend, id json.RawMessage, rec *audit.Record, start time.Time, err error) error {
	rec.Decision, rec.Status = "error", fiber.StatusBadGateway
	rec.Reasons = append(rec.Reasons, "backend unreachable")
	g.finish(rec, start)
	g.log.Warn("backend request failed", "backend", backend.Name, "request_id", rec.RequestID, "err", err)
	return g.reply(c, fiber.StatusBadGateway, jsonrpc.ErrorBody(id, jsonrpc.CodeInternalError, "backend "+backend.Name+" is unavailable", nil))
}

// streamFromBackend posts body (nil: msg as the client sent it, with the
// backend span's trace context in its _meta, as forward sends it) to
// backend for the caller, under a backend span, within ctx (a
// streamContext, which cancel ends). The backend has its Timeout to answer
// with headers; the body it then streams lasts as long as ctx. When the
// backend cannot be reached the client has been answered (unreachable)
// and the response is nil.
func (g *Gateway) streamFromBackend(ctx context.Context, cancel context.CancelFunc, c *fiber.Ctx, backend *Backend, cl *caller,
	msg *jsonrpc.Message, body []byte, sess *session, rec *audit.Record, start time.Time) (*http.Response, error) {
	headers := time.AfterFunc(backend.Timeout, cancel)
	defer headers.Stop()
	ctx, bspan := g.startBackend(ctx, backend, msg)
	if body == nil {
		body = msg.Raw
		if bspan.IsRecording() {
			if b, err := g.withTraceMeta(ctx, msg); err == nil {
				body = b
			}
		}
	}
	req, err := g.backendRequest(ctx, c, backend, http.MethodPost, body, sess)
	if err != nil {
		return nil, err
	}
	setCallerOwner(req.Header.Set, backend, cl)
	bstart := time.Now()
	resp, err := g.client.Do(req)
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	endBackend(bspan, code, err)
	if err != nil {
		return nil, g.unreachable(c, backend, msg.ID, rec, start, err)
	}
	rec.LatencyMicros["backend"] = time.Since(bstart).Microseconds()
	return resp, nil
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

// copyAnswerHeaders passes on the headers of a backend's answer a client
// needs; get reads one from the answer (net/http's or fasthttp's).
func copyAnswerHeaders(c *fiber.Ctx, get func(k string) string) {
	for _, h := range []string{fiber.HeaderContentType, hdrProtocol, fiber.HeaderCacheControl, fiber.HeaderRetryAfter} {
		if v := get(h); v != "" {
			c.Set(h, v)
		}
	}
}

// adoptSession replaces a session id the backend assigned (on initialize)
// with one of the gateway's, bound to the caller.
func (g *Gateway) adoptSession(c *fiber.Ctx, backend *Backend, cl *caller, msg *jsonrpc.Message, bid string) {
	if bid == "" {
		return
	}
	if cur := c.Get(hdrSession); cur != "" {
		c.Set(hdrSession, cur) // the session continues
		return
	}
	id := newID()
	g.putSession(id, &session{backend: backend.Name, backendID: bid, clientID: cl.token.ClientID, subject: cl.token.Subject,
		anonymous: cl.anonymous, owner: cl.ownerKey(), elicitURL: msg.Method == "initialize" && declaresURLElicitation(msg)})
	c.Set(hdrSession, id)
}

// forwardFiltered forwards tools/list (and the prompts and resources lists)
// and removes from the answer every item pbac/list does not let this caller
// see; it forwards initialize and server/discover and removes the icons of
// the server's own serverInfo that Config.IconSources does not allow.
func (g *Gateway) forwardFiltered(c *fiber.Ctx, backend *Backend, cl *caller, msg *jsonrpc.Message, sess *session, rec *audit.Record, start time.Time) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.UserContext()), backend.Timeout)
	defer cancel()
	req, err := g.backendRequest(ctx, c, backend, http.MethodPost, msg.Raw, sess)
	if err != nil {
		return err
	}
	setCallerOwner(req.Header.Set, backend, cl)
	bstart := time.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		rec.Decision, rec.Status = "error", fiber.StatusBadGateway
		g.finish(rec, start)
		return g.reply(c, fiber.StatusBadGateway, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInternalError, "backend "+backend.Name+" is unavailable", nil))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFilteredResponse))
	rec.LatencyMicros["backend"] = time.Since(bstart).Microseconds()
	if err != nil {
		rec.Decision, rec.Status = "error", fiber.StatusBadGateway
		rec.Reasons = []string{"the backend's answer could not be read"}
		g.finish(rec, start)
		g.log.Warn("a backend's answer could not be read", "backend", backend.Name, "request_id", rec.RequestID, "err", err)
		return g.reply(c, fiber.StatusBadGateway, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInternalError, "backend "+backend.Name+" is unavailable", nil))
	}
	g.adoptSession(c, backend, cl, msg, resp.Header.Get(hdrSession))
	copyAnswerHeaders(c, resp.Header.Get)
	sse := isEventStream(resp.Header.Get(fiber.HeaderContentType))
	// Only this request's response, and what may pass on its stream, is
	// filtered and passed on (answer.go).
	if sse {
		body, err = vetEvents(c.UserContext(), body, g.notificationVetter(backend, cl, msg.ID))
	} else {
		err = checkJSONAnswer(body, msg.ID, resp.StatusCode)
	}
	if err != nil {
		g.log.Warn("a backend's answer was withheld", "backend", backend.Name, "request_id", rec.RequestID, "err", err)
		return g.withheld(c, msg, rec, start, err.Error())
	}
	filter, what := g.filterTools, "tools"
	if kind, ok := listedKinds[msg.Method]; ok {
		filter = func(ctx context.Context, backend *Backend, cl *caller, body []byte, sse bool, rec *audit.Record) ([]byte, int, error) {
			return g.filterListed(ctx, kind, backend, cl, body, sse, rec)
		}
		what = kind.key
	} else if servesServerInfo(msg.Method) {
		// The server's own icons (serverInfo) are held to the icon
		// sources like a listed tool's.
		filter = func(_ context.Context, _ *Backend, _ *caller, body []byte, sse bool, _ *audit.Record) ([]byte, int, error) {
			out, err := rewriteAnswer(body, sse, g.icons.serverInfoIcons)
			return out, 0, err
		}
		what = ""
	}
	filtered, kept, err := filter(c.UserContext(), backend, cl, body, sse, rec)
	if errors.Is(err, errUndecided) {
		rec.Decision, rec.Status, rec.Reasons = "error", fiber.StatusForbidden, []string{err.Error()}
		g.log.Error("policy could not decide", "request_id", rec.RequestID, "entrypoint", contract.List, "err", err)
		g.finish(rec, start)
		return g.reply(c, fiber.StatusForbidden, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeDenied, "denied: the policy could not decide", nil))
	}
	if err != nil {
		// Fail closed: an answer we cannot filter is not passed on.
		rec.Decision, rec.Status = "error", fiber.StatusBadGateway
		rec.Reasons = []string{err.Error()}
		g.finish(rec, start)
		return g.reply(c, fiber.StatusBadGateway, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInternalError, "the backend's answer could not be checked", nil))
	}
	rec.Status = resp.StatusCode
	if what != "" {
		rec.Reasons = append(rec.Reasons, fmt.Sprintf("%d %s listed", kept, what))
	}
	g.finish(rec, start)
	c.Status(resp.StatusCode)
	g.sendAnswer(c, filtered)
	return nil
}

// listBatch is how many names one pbac/list evaluation decides.
const listBatch = 250

// markPrivate makes a list result filtered for one caller say so to caches
// (2026-07-28's caching hints): whatever scope the backend gave its whole
// list, this one is "private", never to be served to another caller. A
// result without hints (an older revision) is left without.
func markPrivate(result map[string]json.RawMessage) {
	_, ttl := result["ttlMs"]
	_, scope := result["cacheScope"]
	if ttl || scope {
		result["cacheScope"] = json.RawMessage(`"private"`)
	}
}

// filterTools rewrites a tools/list result (plain JSON or the SSE events
// carrying it) to the tools policy allows.
func (g *Gateway) filterTools(ctx context.Context, backend *Backend, cl *caller, body []byte, sse bool, rec *audit.Record) ([]byte, int, error) {
	// Each tool object is read strictly on its own, by readTools.
	return filterListAnswer(body, sse, "tools/list", "tools", func(tools []json.RawMessage) ([]json.RawMessage, error) {
		listed := g.readTools(backend.Name, tools)
		names := make([]string, len(listed))
		for i, lt := range listed {
			names[i] = backend.Name + "." + lt.Name
		}
		allowed, version, err := g.allowedTools(ctx, backend, cl, "tools/list", names, g.listedDefinitions(ctx, backend.Name, listed))
		if err != nil {
			return nil, err
		}
		rec.PolicyVersion = version
		out := make([]json.RawMessage, 0, len(listed))
		for i, lt := range listed {
			if allowed[names[i]] {
				// What was hashed is what is forwarded, less the icons no
				// allowed source serves (icons.go).
				out = append(out, g.icons.stripIconsRaw(lt.Canonical))
			}
		}
		return out, nil
	})
}

// filterListAnswer rewrites a list answer (plain JSON, or the SSE events
// carrying it) of method: the result's key array is replaced by what keep
// returns for it, and the result is marked private to the caller
// (markPrivate). A key twice (or spelt twice) in the message or its result
// is read one way here and another by some client: such an answer is not
// passed on. An error answer passes as it is. It reports how many items
// the (last) rewritten result kept.
func filterListAnswer(body []byte, sse bool, method, key string, keep func([]json.RawMessage) ([]json.RawMessage, error)) ([]byte, int, error) {
	kept := 0
	rewrite := func(msg []byte) ([]byte, error) {
		if err := tooldefs.CheckObjectKeys(msg); err != nil {
			return nil, fmt.Errorf("backend answer: %w", err)
		}
		var env map[string]json.RawMessage
		if err := json.Unmarshal(msg, &env); err != nil {
			return nil, fmt.Errorf("backend answer is not JSON: %w", err)
		}
		res, ok := env["result"]
		if !ok {
			return msg, nil
		}
		if err := tooldefs.CheckObjectKeys(res); err != nil {
			return nil, fmt.Errorf("%s result: %w", method, err)
		}
		var result map[string]json.RawMessage
		if err := json.Unmarshal(res, &result); err != nil {
			return nil, fmt.Errorf("%s result is not an object: %w", method, err)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(result[key], &items); err != nil {
			return nil, fmt.Errorf("%s result has no %s array: %w", method, key, err)
		}
		out, err := keep(items)
		if err != nil {
			return nil, err
		}
		kept = len(out)
		if result[key], err = json.Marshal(out); err != nil {
			return nil, err
		}
		markPrivate(result)
		if env["result"], err = json.Marshal(result); err != nil {
			return nil, err
		}
		return json.Marshal(env)
	}
	out, err := rewriteAnswer(body, sse, rewrite)
	return out, kept, err
}

// rewriteAnswer applies rewrite to a backend's answer: the JSON message,
// or the data of each SSE event. Events are read as clients read them
// (CR, LF or CRLF line ends, a byte order mark, data over several lines)
// and written back in one form: every data the client will see has been
// through rewrite.
func rewriteAnswer(body []byte, sse bool, rewrite func([]byte) ([]byte, error)) ([]byte, error) {
	if !sse {
		return rewrite(body)
	}
	var out bytes.Buffer
	events := newSSEReader(bytes.NewReader(body), maxFilteredResponse)
	for {
		ev, err := events.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		data := ev.data
		if ev.hasData && len(bytes.TrimSpace(data)) > 0 { // an empty data is a priming event
			if data, err = rewrite(data); err != nil {
				return nil, err
			}
		}
		if err := ev.write(&out, data); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// errUndecided is a decision the policy could not make; the request is
// denied ("denied: the policy could not decide").
var errUndecided = errors.New("the policy could not decide")

// allowedTools asks pbac/list (pbac/anonymous for a caller without a
// token) which of names the caller may call.
func (g *Gateway) allowedTools(ctx context.Context, backend *Backend, cl *caller, method string, names []string, defs map[string]contract.ToolDefinition) (map[string]bool, string, error) {
	// A long list is decided in parts, each well within one evaluation's
	// time: a resource's name costs policy tens of µs (its prefixes are
	// looked up), and 2,000 at once would run past policy.eval_timeout.
	if len(names) > listBatch {
		allowed, version := map[string]bool{}, ""
		for part := range slices.Chunk(names, listBatch) {
			var partDefs map[string]contract.ToolDefinition
			if defs != nil {
				partDefs = make(map[string]contract.ToolDefinition, len(part))
				for _, n := range part {
					if d, ok := defs[n]; ok {
						partDefs[n] = d
					}
				}
			}
			got, v, err := g.allowedTools(ctx, backend, cl, method, part, partDefs)
			if err != nil {
				return nil, "", err
			}
			maps.Copy(allowed, got)
			version = v
		}
		return allowed, version, nil
	}
	in, entrypoint := cl.input(backend.Name, method), contract.List
	if cl.anonymous {
		in, entrypoint = contract.Input{Request: contract.Request{Backend: backend.Name, Method: method}, Now: time.Now().Unix()}, contract.Anonymous
	}
	in.Request.Tools = names
	in.Request.ToolDefinitions = defs
	raw, err := contract.MarshalInput(&in)
	if err != nil {
		return nil, "", err
	}
	start := time.Now()
	d, err := g.cfg.Policy.Decide(ctx, entrypoint, raw)
	g.metrics.stage("policy", time.Since(start))
	if err != nil {
		return nil, "", fmt.Errorf("%w: the tool list: %w", errUndecided, err)
	}
	var res contract.ListResult
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
// backend, an allowed origin, a valid token, the caller's own session when
// one is named, and policy's decision on the method (GET or DELETE). When
// ok is false the answer has been written; else rec is the request's audit
// record, to finish once the backend has answered.
func (g *Gateway) sessionRequest(c *fiber.Ctx) (backend *Backend, cl *caller, sess *session, rec *audit.Record, ok bool, err error) {
	start := time.Now()
	backend, known := g.backends[c.Params("backend")]
	if !known {
		return nil, nil, nil, nil, false, c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "unknown backend"})
	}
	if !g.checkOrigin(c, backend.Name) {
		return nil, nil, nil, nil, false, c.Status(fiber.StatusForbidden).JSON(fiber.Map{"error": "origin not allowed"})
	}
	var authed bool
	rid := newID()
	if bearerToken(c) != "" {
		cl, authed, _ = g.authenticate(c, backend.Name, rid)
	} else {
		// The transport's bodiless requests ask as method GET or DELETE.
		cl, authed, _ = g.admitAnonymous(c, backend.Name, c.Method(), "", rid)
	}
	if !authed {
		return nil, nil, nil, nil, false, nil
	}
	sess, status, errBody := g.resolveSession(c, backend, cl, &jsonrpc.Message{})
	if errBody != nil {
		return nil, nil, nil, nil, false, g.reply(c, status, errBody)
	}
	method := c.Method() // a copy (fiberConfig: Immutable); the record outlives the request
	rec = &audit.Record{Time: start.UTC(), RequestID: rid, Backend: backend.Name, Method: method, LatencyMicros: map[string]int64{}}
	fillCaller(rec, cl)
	if allowed, err := g.decideMethod(c, backend.Name, cl, method, nil, rec, start); err != nil || !allowed {
		return nil, nil, nil, nil, false, err
	}
	return backend, cl, sess, rec, true, nil
}

// handleStream serves the GET stream (server-to-client messages) through.
func (g *Gateway) handleStream(c *fiber.Ctx) error {
	start := time.Now()
	backend, cl, sess, rec, ok, err := g.sessionRequest(c)
	if !ok {
		return err
	}
	if c.Method() != fiber.MethodGet {
		// HEAD (which Fiber routes here): no body would carry the stream,
		// and the backend's would be held unread.
		rec.Status = fiber.StatusMethodNotAllowed
		g.finish(rec, start)
		c.Set(fiber.HeaderAllow, "GET, POST, DELETE")
		return c.SendStatus(fiber.StatusMethodNotAllowed)
	}
	// It holds a connection to the backend while it lasts, and may last
	// for hours: bounded per agent on its own (getStreams), not among the
	// agent's requests in flight, which idle streams would use up.
	done, err := g.takeSlot(c, quota{"GET streams open", g.getStreams, g.cfg.SessionsPerAgent, "5"}, cl.inFlightKey(), nil, rec, start)
	if done == nil {
		return err
	}
	defer done()
	// The stream lasts no longer than the token it was opened with, as a
	// listen stream.
	ctx, cancel := g.callerStreamContext(c, cl)
	req, err := g.backendRequest(ctx, c, backend, http.MethodGet, nil, sess)
	if err != nil {
		cancel()
		return err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		cancel()
		return g.unreachable(c, backend, nil, rec, start, err)
	}
	rec.Status = resp.StatusCode
	g.finish(rec, start)
	copyAnswerHeaders(c, resp.Header.Get)
	c.Status(resp.StatusCode)
	if !isEventStream(resp.Header.Get(fiber.HeaderContentType)) {
		// No stream (405 from a server without one, an error): the status
		// alone. A body that is not an event stream carries no message a
		// client may take from this stream.
		cancel()
		resp.Body.Close()
		return nil
	}
	g.sendStream(c, func(w *bufio.Writer) {
		defer cancel()
		defer resp.Body.Close()
		if err := relayVetted(ctx, w, resp.Body, g.notificationVetter(backend, cl, nil)); err != nil {
			g.log.Warn("the backend's event stream ended", "backend", backend.Name, "err", err)
		}
	})
	return nil
}

// handleDelete ends a session at the backend and forgets it.
func (g *Gateway) handleDelete(c *fiber.Ctx) error {
	start := time.Now()
	backend, _, sess, rec, ok, err := g.sessionRequest(c)
	if !ok {
		return err
	}
	if sess == nil {
		rec.Status = fiber.StatusBadRequest
		g.finish(rec, start)
		return g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(nil, jsonrpc.CodeInvalidRequest, "no session to end", nil))
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
	rec.Status = fiber.StatusNoContent
	g.finish(rec, start)
	return c.SendStatus(fiber.StatusNoContent)
}
