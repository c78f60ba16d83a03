package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/internal/latency"
	"github.com/pbac-gateway/pbac/internal/otlptest"
	system "github.com/pbac-gateway/pbac/internal/stack"
	"github.com/pbac-gateway/pbac/telemetry"
)

// recordingBackend fronts a backend and keeps what each tools/call it
// forwarded carried: the traceparent header and the body.
type recordingBackend struct {
	mu    sync.Mutex
	calls []recordedCall
}

type recordedCall struct {
	header string
	body   []byte
}

func (r *recordingBackend) front(t *testing.T, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte(`"tools/call"`)) {
			r.mu.Lock()
			r.calls = append(r.calls, recordedCall{header: req.Header.Get("Traceparent"), body: body})
			r.mu.Unlock()
		}
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + u.Path
}

func (r *recordingBackend) recorded() []recordedCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recordedCall(nil), r.calls...)
}

const (
	callerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan   = "00f067aa0ba902b7"
	headerTrace  = "0af7651916cd43dd8448eb211c80319c"
	headerSpan   = "b7ad6b7169203331"
	callerParent = "00-" + callerTrace + "-" + callerSpan + "-01"
	headerParent = "00-" + headerTrace + "-" + headerSpan + "-01"
)

// TestCallsAreTraced: with tracing on, each request is a server span under
// the caller's trace — taken from the message's _meta (SEP-414) before the
// traceparent header — with the token's introspection, the policy's
// decision and the backend's call as children, exported to the
// Collector's OTLP receiver; the backend gets its span's context in the
// header and in _meta, and nothing else of the body changes; the audit
// record holds the trace id. A denied call's span keeps the generic name.
func TestCallsAreTraced(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the Collector's OTLP receiver")
	}
	rcv := otlptest.Start(t)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	rb := &recordingBackend{}
	s := newStackWith(t, stackOptions{
		backendURL: func(name, u string) string {
			if name != "jira" {
				return u
			}
			return rb.front(t, u)
		},
		config: func(c *system.Config) {
			c.Telemetry = telemetry.Config{Endpoint: rcv.HTTP, ServiceName: "pbac-gateway-test", Getenv: func(string) string { return "" }}
		},
	})
	ci := s.machineAgent("ci-bot", false, "jira:read", "drive:read")
	sid := s.initialized("/mcp/jira", ci)
	const args = `{"query":"SEC"}`
	status, _, _, body := s.rpcCall("/mcp/jira", ci, "2025-11-25", sid,
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"_meta":{"progressToken":5,"traceparent":"`+callerParent+`"},"name":"search_issues","arguments":`+args+`}}`,
		"Traceparent", headerParent)
	if status != http.StatusOK || !strings.Contains(body, "SEC-12") {
		t.Fatalf("allowed call: %d %s", status, body)
	}
	status, _, _, body = s.rpcCall("/mcp/drive", ci, "2025-11-25", "",
		`{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/prod/secrets/db.env"}}}`,
		"Traceparent", headerParent)
	if status != http.StatusOK || !strings.Contains(body, "denied by policy") {
		t.Fatalf("denied call: %d %s", status, body)
	}

	spans := rcv.Wait(t, 15*time.Second, "the allowed call's backend span and the denied call", func(spans []otlptest.Span) bool {
		return len(otlptest.Find(spans, func(s otlptest.Span) bool { return s.Kind == "client" })) >= 1 &&
			len(otlptest.Find(spans, func(s otlptest.Span) bool { return s.Attr("pbac.decision") == "deny" })) >= 1
	})
	t.Logf("the receiver got:\n%s", otlptest.Tree(spans, "pbac.decision", "pbac.decision.reasons", "pbac.decision.allow",
		"pbac.policy.version", "gen_ai.tool.name", "pbac.backend", "http.response.status_code", "pbac.token.active"))

	inTrace := func(trace string) []otlptest.Span {
		return otlptest.Find(spans, func(s otlptest.Span) bool { return s.TraceID == trace })
	}
	one := func(in []otlptest.Span, what string, match func(otlptest.Span) bool) otlptest.Span {
		t.Helper()
		got := otlptest.Find(in, match)
		if len(got) != 1 {
			t.Fatalf("%d spans %s, want 1:\n%s", len(got), what, otlptest.Tree(in))
		}
		return got[0]
	}

	// The allowed call: under the caller's span named in _meta, not the
	// header's.
	allowed := inTrace(callerTrace)
	server := one(allowed, "for the call", func(s otlptest.Span) bool { return s.Kind == "server" })
	if server.ParentID != callerSpan || server.Name != "tools/call search_issues" || server.Service != "pbac-gateway-test" ||
		server.Attr("pbac.decision") != "allow" || server.Attr("mcp.method.name") != "tools/call" ||
		server.Attr("jsonrpc.request.id") != "7" || server.Attr("pbac.backend") != "jira" || server.Attr("http.response.status_code") != "200" {
		t.Errorf("the call's span: %+v", server)
	}
	intro := one(allowed, "of introspection", func(s otlptest.Span) bool { return s.Name == "pbac.introspect" })
	decide := one(allowed, "of the tool_call decision", func(s otlptest.Span) bool { return s.Name == "pbac.decide pbac/tool_call" })
	backend := one(allowed, "to the backend", func(s otlptest.Span) bool { return s.Kind == "client" })
	one(allowed, "of the introspect decision", func(s otlptest.Span) bool {
		return s.Name == "pbac.decide pbac/introspect" && s.ParentID == intro.SpanID
	})
	if intro.ParentID != server.SpanID || intro.Attr("pbac.token.active") != "true" ||
		decide.ParentID != server.SpanID || decide.Attr("pbac.decision.allow") != "true" || decide.Attr("pbac.policy.version") == "" ||
		backend.ParentID != server.SpanID || backend.Name != "tools/call search_issues" || backend.Attr("http.response.status_code") != "200" {
		t.Errorf("the call's children:\n%s", otlptest.Tree(allowed))
	}

	// The backend got the backend span's context, in the header and in
	// _meta, and otherwise the body the client sent.
	calls := rb.recorded()
	if len(calls) != 1 {
		t.Fatalf("the backend got %d calls, want 1", len(calls))
	}
	want := "00-" + callerTrace + "-" + backend.SpanID + "-01"
	var fwd struct {
		Params struct {
			Meta      map[string]json.RawMessage `json:"_meta"`
			Name      string                     `json:"name"`
			Arguments json.RawMessage            `json:"arguments"`
		} `json:"params"`
	}
	if err := json.Unmarshal(calls[0].body, &fwd); err != nil {
		t.Fatal(err)
	}
	if calls[0].header != want || string(fwd.Params.Meta["traceparent"]) != `"`+want+`"` ||
		string(fwd.Params.Meta["progressToken"]) != "5" || string(fwd.Params.Arguments) != args || fwd.Params.Name != "search_issues" {
		t.Errorf("the backend got traceparent %q and %s, want %q in both, the rest unchanged", calls[0].header, calls[0].body, want)
	}

	// The denied call: its trace is the header's; no backend span, and the
	// span is not named after a tool policy refused.
	denied := inTrace(headerTrace)
	dserver := one(denied, "for the denied call", func(s otlptest.Span) bool { return s.Kind == "server" })
	if dserver.ParentID != headerSpan || dserver.Name != "tools/call" || dserver.Attr("pbac.decision") != "deny" ||
		!strings.Contains(dserver.Attr("pbac.decision.reasons"), "prod-secrets") ||
		len(otlptest.Find(denied, func(s otlptest.Span) bool { return s.Kind == "client" })) != 0 {
		t.Errorf("the denied call's trace:\n%s", otlptest.Tree(denied))
	}

	// Each audit record names its trace.
	for _, tc := range []struct{ trace, decision string }{{callerTrace, "allow"}, {headerTrace, "deny"}} {
		recs, err := s.waitAudit(audit.Filter{TraceID: tc.trace, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].Decision != tc.decision || recs[0].Method != "tools/call" {
			t.Errorf("audit records of trace %s: %+v", tc.trace, recs)
		}
	}
}

// BenchmarkTracing measures what tracing costs a call through the gateway
// to the light backend, in one run: tracing off (the default), off with
// the caller's traceparent passed through, and on — every call's spans
// exported over OTLP/HTTP to the Collector's receiver. Each reports p50/p99
// of one connection calling in a loop and cpu-µs/call (client, gateway,
// backend and exporter together; the receiver is its own process).
func BenchmarkTracing(b *testing.B) {
	rcv := otlptest.Start(b)
	off := newLightStack(b)
	on := newLightStackWith(b, func(c *system.Config) {
		c.Telemetry = telemetry.Config{Endpoint: rcv.HTTP, Getenv: func(string) string { return "" }}
	})
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"SEC"}}}`
	withMeta := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"traceparent":"` + callerParent + `"},"name":"search_issues","arguments":{"query":"SEC"}}}`
	for _, mode := range []struct {
		name string
		s    *stack
		body string
	}{
		{"off", off, call},
		{"off/caller-context", off, withMeta},
		{"on", on, call},
		{"on/caller-context", on, withMeta},
	} {
		b.Run(mode.name, func(b *testing.B) {
			r := openRaw(b, mode.s.base+"/mcp/jira", mode.s.machineAgent("ci-bot", false, "jira:read"))
			samples := make([]time.Duration, 0, 1<<16)
			cpu := cpuMeter(b)
			for b.Loop() {
				start := time.Now()
				r.post(b, mode.body)
				samples = append(samples, time.Since(start))
			}
			cpu()
			latency.Report(b, samples)
		})
	}
}
