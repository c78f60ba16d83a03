package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/jsonrpc"
)

// The gateway's spans follow OpenTelemetry's conventions for MCP: one
// server span per request, "{mcp.method.name} {target}", and a client span
// for the message sent to the backend. Their children are the token's
// introspection, the policy's decisions (telemetry.Decider) and the wait
// for an approver.
const (
	attrMethod        = attribute.Key("mcp.method.name")
	attrSession       = attribute.Key("mcp.session.id")
	attrProtocol      = attribute.Key("mcp.protocol.version")
	attrResourceURI   = attribute.Key("mcp.resource.uri")
	attrRequestID     = attribute.Key("jsonrpc.request.id")
	attrToolName      = attribute.Key("gen_ai.tool.name")
	attrPromptName    = attribute.Key("gen_ai.prompt.name")
	attrOperation     = attribute.Key("gen_ai.operation.name")
	attrTransport     = attribute.Key("network.transport")
	attrHTTPStatus    = attribute.Key("http.response.status_code")
	attrErrorType     = attribute.Key("error.type")
	attrBackend       = attribute.Key("pbac.backend")
	attrGatewayReqID  = attribute.Key("pbac.request_id")
	attrClientID      = attribute.Key("pbac.client_id")
	attrTier          = attribute.Key("pbac.agent.tier")
	attrDecision      = attribute.Key("pbac.decision")
	attrReasons       = attribute.Key("pbac.decision.reasons")
	attrPolicyVersion = attribute.Key("pbac.policy.version")
	attrApprovalID    = attribute.Key("pbac.approval.id")
	attrTokenActive   = attribute.Key("pbac.token.active")
)

// maxAttrLen bounds a value the caller chose (a tool name, a URI) in an
// attribute.
const maxAttrLen = 256

// spanMethod is what a request span is named after: its method when MCP
// defines it (one of the metrics' methodLabels), else "mcp.request" (its mcp.method.name attribute still says
// which), so span names stay few whatever callers send.
func spanMethod(m *jsonrpc.Message) string {
	switch {
	case m == nil:
		return "mcp.request"
	case m.IsResponse:
		return "mcp.response"
	case strings.HasPrefix(m.Method, "notifications/"):
		return "notifications"
	}
	// (Not the labels that name no JSON-RPC method: GET, auth, ….)
	if methodLabels[m.Method] && (strings.Contains(m.Method, "/") || m.Method == "initialize" || m.Method == "ping") {
		return m.Method
	}
	return "mcp.request"
}

// clip is a caller's string as an attribute: valid UTF-8, at most
// maxAttrLen bytes, cut between characters.
func clip(s string) string {
	if len(s) > maxAttrLen {
		cut := maxAttrLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// fiberCarrier reads the request's headers for the propagator. The trace
// state and baggage parsed from them are kept on the span, exported after
// the request; the app is Immutable (fiberConfig), so they are copies.
type fiberCarrier struct{ c *fiber.Ctx }

func (f fiberCarrier) Get(key string) string { return f.c.Get(key) }
func (f fiberCarrier) Set(string, string)    {}
func (f fiberCarrier) Keys() []string        { return []string{"traceparent", "tracestate", "baggage"} }

// fasthttpCarrier writes trace context on a forwarded request's headers.
type fasthttpCarrier struct{ h *fasthttp.RequestHeader }

func (f fasthttpCarrier) Get(key string) string { return string(f.h.Peek(key)) }
func (f fasthttpCarrier) Set(key, value string) { f.h.Set(key, value) }
func (f fasthttpCarrier) Keys() []string        { return nil }

// metaCarrier is a message's _meta trace context (SEP-414).
func metaCarrier(m *jsonrpc.Message) propagation.MapCarrier {
	mc := propagation.MapCarrier{"traceparent": m.TraceParent}
	if m.TraceState != "" {
		mc["tracestate"] = m.TraceState
	}
	if m.Baggage != "" {
		mc["baggage"] = m.Baggage
	}
	return mc
}

// startRequest starts the span of one MCP request, at start, its parent the
// trace context in the message's _meta (what MCP's conventions ask for),
// else in the request's headers. The span goes into the request's user
// context, where every step below finds it. m may be nil (a body that did
// not parse).
func (g *Gateway) startRequest(c *fiber.Ctx, backend, rid string, m *jsonrpc.Message, start time.Time) trace.Span {
	ctx := c.UserContext()
	if m != nil && m.TraceParent != "" {
		ctx = g.propagator.Extract(ctx, metaCarrier(m))
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = g.propagator.Extract(ctx, fiberCarrier{c})
	}
	ctx, span := g.tracer.Start(ctx, spanMethod(m), trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
	c.SetUserContext(ctx)
	if !span.IsRecording() {
		return span // tracing off or not sampled: no attributes to build
	}
	attrs := []attribute.KeyValue{attrTransport.String("tcp"), attrGatewayReqID.String(rid)}
	if backend != "" {
		attrs = append(attrs, attrBackend.String(backend))
	}
	if m != nil {
		attrs = append(attrs, messageAttrs(m)...)
	}
	if sid := c.Get(hdrSession); sid != "" {
		// The session id is held like a credential: the span gets a digest
		// that ties one session's requests together.
		sum := sha256.Sum256([]byte(sid))
		attrs = append(attrs, attrSession.String(hex.EncodeToString(sum[:8])))
	}
	if v := c.Get(hdrProtocol); v != "" {
		attrs = append(attrs, attrProtocol.String(clip(v)))
	} else if m != nil && m.MetaProtocolVersion != "" {
		attrs = append(attrs, attrProtocol.String(clip(m.MetaProtocolVersion)))
	}
	span.SetAttributes(attrs...)
	return span
}

func messageAttrs(m *jsonrpc.Message) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if m.Method != "" {
		attrs = append(attrs, attrMethod.String(clip(m.Method)))
	}
	if m.ID != nil {
		attrs = append(attrs, attrRequestID.String(clip(idString(m.ID))))
	}
	switch m.Method {
	case "tools/call":
		attrs = append(attrs, attrToolName.String(clip(m.Name)), attrOperation.String("execute_tool"))
	case "prompts/get":
		attrs = append(attrs, attrPromptName.String(clip(m.Name)))
	case "resources/read":
		attrs = append(attrs, attrResourceURI.String(clip(m.URI)))
	}
	return attrs
}

// idString is a JSON-RPC id as its conventions' attribute has it: a
// string's text, a number's digits.
func idString(id json.RawMessage) string {
	if s, ok := jsonrpc.Unquote(id); ok {
		return s
	}
	return string(id)
}

// traceID is the span's trace id in hex ("" without a trace): the
// gateway's own, or the caller's when the gateway records no spans.
func traceID(span trace.Span) string {
	if sc := span.SpanContext(); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// endRequest ends a request's span with what became of it: the decision
// and the policy version that made it, the HTTP status, and an error
// status when the gateway could not do what was allowed (or decide). The
// span is named after the tool (or prompt) only once policy allowed it, so
// the names of calls a policy refuses cannot multiply span names.
func endRequest(span trace.Span, c *fiber.Ctx, m *jsonrpc.Message, rec *audit.Record) {
	if !span.IsRecording() {
		return
	}
	status := c.Response().StatusCode()
	attrs := []attribute.KeyValue{attrHTTPStatus.Int(status)}
	if rec.Decision != "" {
		attrs = append(attrs, attrDecision.String(rec.Decision))
	}
	if rec.PolicyVersion != "" {
		attrs = append(attrs, attrPolicyVersion.String(rec.PolicyVersion))
	}
	if rec.ClientID != "" {
		attrs = append(attrs, attrClientID.String(rec.ClientID))
	}
	if rec.Tier != "" {
		attrs = append(attrs, attrTier.String(rec.Tier))
	}
	if rec.ApprovalID != "" {
		attrs = append(attrs, attrApprovalID.String(rec.ApprovalID))
	}
	if rec.Decision != "allow" && len(rec.Reasons) > 0 {
		attrs = append(attrs, attrReasons.StringSlice(rec.Reasons))
	}
	span.SetAttributes(attrs...)
	if rec.Decision == "allow" && m != nil && (m.Method == "tools/call" || m.Method == "prompts/get") && m.Name != "" {
		span.SetName(m.Method + " " + clip(m.Name))
	}
	switch {
	case rec.Decision == "error" || status >= 500:
		span.SetAttributes(attrErrorType.String(strconv.Itoa(status)))
		span.SetStatus(codes.Error, "the gateway could not complete the request")
	case status >= 400 && rec.Decision == "":
		// Refused before policy (a bad request, an unknown session).
		span.SetAttributes(attrErrorType.String(strconv.Itoa(status)))
		span.SetStatus(codes.Error, "refused before policy")
	}
	span.End()
}

// endIntrospect ends the span of a token's introspection: whether the
// token is active and whose it is, or why it could not be checked.
func endIntrospect(span trace.Span, res contract.Identity, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.SetAttributes(attrErrorType.String(errorKind(err)))
		span.SetStatus(codes.Error, "the token could not be checked")
	} else {
		span.SetAttributes(attrTokenActive.Bool(res.Active))
		if res.Active {
			span.SetAttributes(attrClientID.String(res.ClientID))
		}
	}
	span.End()
}

// startBackend starts the client span of a message forwarded to a backend.
func (g *Gateway) startBackend(ctx context.Context, backend *Backend, m *jsonrpc.Message) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noop.Span{}
	}
	name := spanMethod(m)
	if m != nil && (m.Method == "tools/call" || m.Method == "prompts/get") && m.Name != "" {
		name += " " + clip(m.Name)
	}
	ctx, span := g.child(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(attrBackend.String(backend.Name), attrTransport.String("tcp"))
		if m != nil {
			span.SetAttributes(messageAttrs(m)...)
		}
	}
	return ctx, span
}

// startBackendCall starts the client span of a message the aggregated
// endpoint (or a catalogue's author lookup) sends to a backend.
func (g *Gateway) startBackendCall(ctx context.Context, backend *Backend, method string, params any) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noop.Span{}
	}
	name := method
	attrs := []attribute.KeyValue{attrBackend.String(backend.Name), attrTransport.String("tcp"), attrMethod.String(method)}
	if method == "tools/call" {
		tool := ""
		switch m := params.(type) {
		case map[string]json.RawMessage:
			tool, _ = jsonrpc.Unquote(m["name"])
		case map[string]any:
			tool, _ = m["name"].(string)
		}
		if tool != "" {
			name += " " + clip(tool)
			attrs = append(attrs, attrToolName.String(clip(tool)), attrOperation.String("execute_tool"))
		}
	}
	return g.child(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// child starts a span under the recording span in ctx. Without one (the
// gateway's own background work, or tracing off) no span is started: ctx
// comes back as it is — still carrying a caller's context to pass on —
// with a span that records nothing.
func (g *Gateway) child(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noop.Span{}
	}
	return g.tracer.Start(ctx, name, opts...)
}

// paramsWithTraceMeta is params with _meta carrying ctx's trace context
// (SEP-414), for a message the gateway composes itself.
func (g *Gateway) paramsWithTraceMeta(ctx context.Context, params map[string]json.RawMessage) map[string]json.RawMessage {
	mc := propagation.MapCarrier{}
	g.propagator.Inject(ctx, mc)
	if mc["traceparent"] == "" {
		return params
	}
	meta := map[string]json.RawMessage{}
	if raw, ok := params["_meta"]; ok {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return params
		}
	}
	for k := range meta {
		if isTraceKey(k) {
			delete(meta, k)
		}
	}
	for k, v := range mc {
		meta[k], _ = json.Marshal(v)
	}
	out := make(map[string]json.RawMessage, len(params)+1)
	for k, v := range params {
		out[k] = v
	}
	out["_meta"], _ = json.Marshal(meta)
	return out
}

// endBackend ends a backend span with the answer's status or the error.
func endBackend(span trace.Span, status int, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		// Not the error's text: a net/http error quotes the backend's URL,
		// which may carry a credential, and a backend's error its answer.
		span.SetAttributes(attrErrorType.String(errorKind(err)))
		span.SetStatus(codes.Error, "backend unreachable or failed")
	} else if status > 0 {
		span.SetAttributes(attrHTTPStatus.Int(status))
		if status >= 500 {
			span.SetStatus(codes.Error, "backend error")
		}
	}
	span.End()
}

// errorKind is an error's kind for error.type: a timeout, a cancellation,
// a backend's JSON-RPC error, or "error".
func errorKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, fasthttp.ErrTimeout):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, errBackendError):
		return "backend_error"
	case errors.Is(err, contract.ErrUndecided):
		return "undecided"
	}
	return "error"
}

// endApprovalWait ends the span of a retry's wait for an approver with the
// approval's status when the wait ended.
func endApprovalWait(span trace.Span, a approvals.Approval, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.SetAttributes(attrErrorType.String(errorKind(err)))
		span.SetStatus(codes.Error, "the wait for an approver failed")
	} else {
		span.SetAttributes(attribute.String("pbac.approval.status", string(a.Status)))
	}
	span.End()
}

// withTraceMeta is the message's body with params._meta carrying ctx's
// trace context (SEP-414), so the backend's own spans join the trace under
// the span that sent them. Only those keys change, after the decision:
// the caller's traceparent, tracestate and baggage (in any letter case)
// give way to the gateway's, and every other member of _meta, params and
// the message is kept byte for byte. Policy's input has no _meta, so it
// decided on the same call. A message without params (or a response), or
// whose _meta is not an object, is returned as it is (the headers still
// carry the context).
func (g *Gateway) withTraceMeta(ctx context.Context, msg *jsonrpc.Message) ([]byte, error) {
	body := msg.Raw
	if msg.IsResponse || msg.Params == nil {
		return body, nil
	}
	mc := propagation.MapCarrier{}
	g.propagator.Inject(ctx, mc)
	if mc["traceparent"] == "" {
		return body, nil
	}
	params, ok, err := memberOf(body, "params")
	if err != nil || !ok || len(params) == 0 || params[0] != '{' {
		return body, err
	}
	meta, hasMeta, err := memberOf(params, "_meta")
	if err != nil {
		return body, err
	}
	var entries []byte
	for _, k := range traceKeys() {
		v, ok := mc[k]
		if !ok || v == "" {
			continue
		}
		kv, _ := json.Marshal(v)
		entries = append(append(append(entries, `"`+k+`":`...), kv...), ',')
	}
	entries = entries[:len(entries)-1]
	switch {
	case !hasMeta:
		// "_meta" first in params: {"_meta":{…},<the rest>}
		ins := append(append([]byte(`"_meta":{`), entries...), '}')
		if len(trimSpace(params[1:])) > 1 { // not "{}"
			ins = append(ins, ',')
		}
		return splice(body, params, 1, ins)
	case len(meta) == 0 || meta[0] != '{':
		return body, nil
	}
	members, err := jsonrpc.Members(meta)
	if err != nil {
		return body, err
	}
	nm := append([]byte{'{'}, entries...)
	for _, mb := range members {
		if isTraceKey(mb.Key) {
			continue
		}
		nm = append(append(nm, ','), mb.Whole...)
	}
	nm = append(nm, '}')
	// meta is a sub-slice of params, a sub-slice of body.
	out, err := replaceIn(body, meta, nm)
	if err != nil {
		return body, err
	}
	return out, nil
}

// traceKeys are the W3C keys SEP-414 puts in _meta, in the order the
// gateway writes them.
func traceKeys() [3]string { return [3]string{"traceparent", "tracestate", "baggage"} }

// isTraceKey is whether key is one of traceKeys in any letter case (a
// decoder that matches keys case-insensitively would read either).
func isTraceKey(key string) bool {
	for _, k := range traceKeys() {
		if strings.EqualFold(key, k) {
			return true
		}
	}
	return false
}

// memberOf is the value of an object's member key, a sub-slice of doc.
func memberOf(doc []byte, key string) ([]byte, bool, error) {
	members, err := jsonrpc.Members(doc)
	if err != nil {
		return nil, false, err
	}
	for _, m := range members {
		if m.Key == key {
			return m.Raw, true, nil
		}
	}
	return nil, false, nil
}

// offsetIn is where sub (a sub-slice of doc) starts in doc.
func offsetIn(doc, sub []byte) (int, error) {
	off := cap(doc) - cap(sub)
	if len(sub) == 0 || off < 0 || off+len(sub) > len(doc) || &doc[off] != &sub[0] {
		return 0, errors.New("the value is not part of the document")
	}
	return off, nil
}

// replaceIn is doc with its sub-slice sub replaced by with.
func replaceIn(doc, sub, with []byte) ([]byte, error) {
	off, err := offsetIn(doc, sub)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(doc)-len(sub)+len(with))
	return append(append(append(out, doc[:off]...), with...), doc[off+len(sub):]...), nil
}

// splice inserts ins into body at offset at of the sub-slice part.
func splice(body, part []byte, at int, ins []byte) ([]byte, error) {
	off, err := offsetIn(body, part)
	if err != nil {
		return body, err
	}
	out := make([]byte, 0, len(body)+len(ins))
	out = append(append(out, body[:off+at]...), ins...)
	return append(out, body[off+at:]...), nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// defaultTracing is a tracer that records nothing and a propagator of W3C
// trace context and baggage: a caller's context still passes through.
func defaultTracing() (trace.Tracer, propagation.TextMapPropagator) {
	return noop.NewTracerProvider().Tracer(""), propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}
