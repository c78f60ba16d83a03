package telemetry_test

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/otlptest"
	"github.com/pbac-gateway/pbac/telemetry"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// TestNewFromSettings: tracing is off unless an endpoint is given, the
// environment wins over the file, and what cannot be used is refused.
func TestNewFromSettings(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name         string
		cfg          telemetry.Config
		env          map[string]string
		wantOn       bool
		wantEndpoint string
		wantProtocol string
		wantErr      bool
	}{
		{name: "nothing set: off"},
		{name: "file endpoint", cfg: telemetry.Config{Endpoint: "http://collector:4318"}, wantOn: true,
			wantEndpoint: "http://collector:4318/v1/traces", wantProtocol: "http/protobuf"},
		{name: "file endpoint with a path", cfg: telemetry.Config{Endpoint: "https://otlp.example/tenant/"}, wantOn: true,
			wantEndpoint: "https://otlp.example/tenant/v1/traces", wantProtocol: "http/protobuf"},
		{name: "file grpc", cfg: telemetry.Config{Endpoint: "http://collector:4317", Protocol: "grpc"}, wantOn: true,
			wantEndpoint: "http://collector:4317", wantProtocol: "grpc"},
		{name: "environment endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318"}, wantOn: true,
			wantEndpoint: "http://env:4318", wantProtocol: "http/protobuf"},
		{name: "the traces endpoint wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/v1/traces"}, wantOn: true,
			wantEndpoint: "http://traces:4318/v1/traces", wantProtocol: "http/protobuf"},
		{name: "environment wins over the file", cfg: telemetry.Config{Endpoint: "http://file:4318", Protocol: "http/protobuf"},
			env:    map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			wantOn: true, wantEndpoint: "http://env:4317", wantProtocol: "grpc"},
		{name: "the traces protocol wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
			wantOn: true, wantEndpoint: "http://env:4317", wantProtocol: "grpc"},
		{name: "SDK disabled", cfg: telemetry.Config{Endpoint: "http://collector:4318"}, env: map[string]string{"OTEL_SDK_DISABLED": "true"}},
		{name: "exporter none", cfg: telemetry.Config{Endpoint: "http://collector:4318"}, env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}},
		{name: "exporter zipkin alone", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: true},
		{name: "http/json", cfg: telemetry.Config{Endpoint: "http://collector:4318", Protocol: "http/json"}, wantErr: true},
		{name: "not a URL", cfg: telemetry.Config{Endpoint: "collector:4318"}, wantErr: true},
		{name: "ratio above 1", cfg: telemetry.Config{Endpoint: "http://collector:4318", SampleRatio: 1.5}, wantErr: true},
		{name: "ratio NaN", cfg: telemetry.Config{Endpoint: "http://collector:4318", SampleRatio: math.NaN()}, wantErr: true},
		{name: "a traces URL is not extended", cfg: telemetry.Config{Endpoint: "http://collector:4318/v1/traces"}, wantOn: true,
			wantEndpoint: "http://collector:4318/v1/traces", wantProtocol: "http/protobuf"},
		{name: "credentials are not shown", cfg: telemetry.Config{Endpoint: "https://user:secret@otlp.example"}, wantOn: true,
			wantEndpoint: "https://otlp.example/v1/traces", wantProtocol: "http/protobuf"},
		{name: "environment endpoint without a scheme", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector.invalid:4318"}, wantErr: true},
		{name: "names in any case", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "GRPC",
			"OTEL_TRACES_EXPORTER": "OTLP"}, wantOn: true, wantEndpoint: "http://env:4317", wantProtocol: "grpc"},
		{name: "an exporter list with otlp", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318", "OTEL_TRACES_EXPORTER": "otlp,console"},
			wantOn: true, wantEndpoint: "http://env:4318", wantProtocol: "http/protobuf"},
		{name: "none in a list", cfg: telemetry.Config{Endpoint: "http://collector:4318"}, env: map[string]string{"OTEL_TRACES_EXPORTER": "console, None"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Getenv = env(tc.env)
			tel, err := telemetry.New(ctx, cfg, slog.New(slog.DiscardHandler))
			if tc.wantErr {
				if !errors.Is(err, telemetry.ErrConfig) {
					t.Fatalf("New: %v, want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tel.Shutdown(ctx)
			if tel.Enabled() != tc.wantOn || tel.Endpoint() != tc.wantEndpoint || tel.Protocol() != tc.wantProtocol {
				t.Errorf("on=%v endpoint=%q protocol=%q, want %v %q %q", tel.Enabled(), tel.Endpoint(), tel.Protocol(),
					tc.wantOn, tc.wantEndpoint, tc.wantProtocol)
			}
		})
	}
}

// TestOffPassesTheCallersContextOn: with tracing off nothing is recorded,
// but a caller's trace context read by the propagator is what the next hop
// gets, unchanged.
func TestOffPassesTheCallersContextOn(t *testing.T) {
	ctx := context.Background()
	tel, err := telemetry.New(ctx, telemetry.Config{Getenv: env(nil)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	in := tel.Propagator().Extract(ctx, propagation.MapCarrier{"traceparent": tp, "baggage": "k=v"})
	ctx2, span := tel.Tracer("test").Start(in, "x")
	if span.IsRecording() {
		t.Error("a span is recorded with tracing off")
	}
	out := propagation.MapCarrier{}
	tel.Propagator().Inject(ctx2, out)
	if out["traceparent"] != tp || out["baggage"] != "" {
		t.Errorf("passed on %v, want the caller's traceparent and no baggage", out)
	}
	// Baggage passes only when the configuration says so.
	withBaggage, err := telemetry.New(ctx, telemetry.Config{Baggage: true, Getenv: env(nil)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out = propagation.MapCarrier{}
	withBaggage.Propagator().Inject(withBaggage.Propagator().Extract(ctx, propagation.MapCarrier{"traceparent": tp, "baggage": "k=v"}), out)
	if out["traceparent"] != tp || out["baggage"] != "k=v" {
		t.Errorf("with baggage: passed on %v, want the caller's context and baggage", out)
	}
	if d := tel.Decider(contract.DeciderFunc(allow)); d == nil {
		t.Fatal("no decider")
	}
}

func allow(context.Context, contract.Entrypoint, []byte) (contract.Decision, error) {
	return contract.Decision{Allow: true, Version: "v1", ContractVersion: 3}, nil
}

// TestExportsToACollector sends a span tree, with a decision in it, to the
// OpenTelemetry Collector's OTLP receiver over each protocol.
func TestExportsToACollector(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the Collector's OTLP receiver")
	}
	rcv := otlptest.Start(t)
	for _, tc := range []struct{ protocol, endpoint string }{
		{telemetry.ProtocolHTTP, rcv.HTTP},
		{telemetry.ProtocolGRPC, rcv.GRPC},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			ctx := context.Background()
			tel, err := telemetry.New(ctx, telemetry.Config{Endpoint: tc.endpoint, Protocol: tc.protocol,
				ServiceName: "pbac-test-" + tc.protocol, Getenv: env(nil)}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			root, span := tel.Tracer("test").Start(ctx, "request", trace.WithSpanKind(trace.SpanKindServer))
			d := tel.Decider(contract.DeciderFunc(allow))
			if _, err := d.Decide(root, contract.ToolCall, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			// Outside a traced request a decision starts no trace.
			if _, err := d.Decide(ctx, contract.Introspect, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			// A caller's string that is not UTF-8 (a header, a name cut
			// mid-character) is repaired, not the end of the whole batch.
			span.SetAttributes(attribute.String("mcp.protocol.version", "2025-11-25\xff"), attribute.StringSlice("pbac.decision.reasons", []string{"a\xc3"}))
			span.End()
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := tel.Shutdown(sctx); err != nil {
				t.Fatal(err)
			}
			service := "pbac-test-" + tc.protocol
			spans := rcv.Wait(t, 10*time.Second, "two spans of "+service, func(s []otlptest.Span) bool {
				return len(otlptest.Find(s, func(s otlptest.Span) bool { return s.Service == service })) >= 2
			})
			got := otlptest.Find(spans, func(s otlptest.Span) bool { return s.Service == service })
			if len(got) != 2 {
				t.Fatalf("received %d spans of %s, want 2 (no trace for the untraced decision):\n%s", len(got), service, otlptest.Tree(got))
			}
			var req, dec otlptest.Span
			for _, s := range got {
				switch s.Name {
				case "request":
					req = s
				case "pbac.decide pbac/tool_call":
					dec = s
				}
			}
			if req.Attr("mcp.protocol.version") != "2025-11-25\uFFFD" || req.Attr("pbac.decision.reasons") != "[a\uFFFD]" {
				t.Errorf("the repaired attributes: %v", req.Attrs)
			}
			if req.Kind != "server" || dec.ParentID != req.SpanID || dec.TraceID != req.TraceID ||
				dec.Attr("pbac.decision.allow") != "true" || dec.Attr("pbac.policy.version") != "v1" ||
				dec.Attr("pbac.policy.entrypoint") != "pbac/tool_call" {
				t.Fatalf("span tree:\n%s", otlptest.Tree(got))
			}
		})
	}
}

// TestCallersDoNotDecideSampling: the gateway draws whether a request is
// traced; a caller's sampled flag neither hides its requests (flag 00) nor
// overrides the ratio (flag 01). Spans under the gateway's own follow it.
func TestCallersDoNotDecideSampling(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		ratio    float64
		min, max int // recorded of 1000
	}{{0, 1000, 1000}, {0.2, 120, 280}} {
		tel, err := telemetry.New(ctx, telemetry.Config{Endpoint: "http://127.0.0.1:1", SampleRatio: tc.ratio, Getenv: env(nil)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, flag := range []string{"00", "01"} {
			parent := tel.Propagator().Extract(ctx, propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-" + flag})
			recorded := 0
			for range 1000 {
				c, span := tel.Tracer("test").Start(parent, "request")
				if span.IsRecording() {
					recorded++
					if _, child := tel.Tracer("test").Start(c, "child"); !child.IsRecording() {
						t.Fatal("a child of a recorded span is not recorded")
					}
				} else if _, child := tel.Tracer("test").Start(c, "child"); child.IsRecording() {
					t.Fatal("a child of a dropped span is recorded")
				}
			}
			if recorded < tc.min || recorded > tc.max {
				t.Errorf("ratio %v, caller's flag %s: %d of 1000 recorded, want %d..%d", tc.ratio, flag, recorded, tc.min, tc.max)
			}
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = tel.Shutdown(sctx) // nothing reaches port 1: the export fails, and is not retried
		cancel()
	}
}

// TestShutdownWithACollectorThatDoesNotAnswer: a collector that takes the
// connection and never answers holds Shutdown only as long as its context
// (plus the bounded drain), and leaves no exporter goroutine behind.
func TestShutdownWithACollectorThatDoesNotAnswer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	defer func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	ctx := context.Background()
	tel, err := telemetry.New(ctx, telemetry.Config{Endpoint: "http://" + ln.Addr().String(), Getenv: env(nil)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.Tracer("test").Start(ctx, "request")
	span.End()
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = tel.Shutdown(sctx)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Shutdown took %v with a 300 ms context", took)
	}
}

// sharedRegistry is a decider that, like the registry, tells its active
// version and takes inputs in two parts.
type sharedRegistry struct{ shared int }

func (r *sharedRegistry) Decide(ctx context.Context, ep contract.Entrypoint, in []byte) (contract.Decision, error) {
	return allow(ctx, ep, in)
}

func (r *sharedRegistry) DecideShared(context.Context, contract.Entrypoint, []contract.Member, []byte) (contract.Decision, error) {
	r.shared++
	return contract.Decision{Allow: true, Version: "v2"}, nil
}

func (r *sharedRegistry) ActivePolicy() (string, *contract.Data, error) { return "v2", nil, nil }

// TestTracedDeciderKeepsSharedDecisions: traced, a registry still takes a
// call's input in two parts (the gateway asks the decider whether it can),
// inside a traced request and outside one.
func TestTracedDeciderKeepsSharedDecisions(t *testing.T) {
	ctx := context.Background()
	tel, err := telemetry.New(ctx, telemetry.Config{Endpoint: "http://127.0.0.1:1", Getenv: env(nil)}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(ctx) }()
	inner := &sharedRegistry{}
	sd, ok := tel.Decider(inner).(contract.SharedDecider)
	if !ok {
		t.Fatal("the traced registry is not a SharedDecider")
	}
	root, span := tel.Tracer("test").Start(ctx, "request")
	defer span.End()
	for _, c := range []context.Context{root, ctx} {
		if d, err := sd.DecideShared(c, contract.ToolCall, []contract.Member{{Name: "token", Value: []byte(`{}`)}}, []byte(`{}`)); err != nil || d.Version != "v2" {
			t.Fatalf("DecideShared = %+v, %v", d, err)
		}
	}
	if inner.shared != 2 {
		t.Fatalf("the registry decided %d inputs in two parts, want 2", inner.shared)
	}
	if _, ok := tel.Decider(contract.DeciderFunc(allow)).(contract.SharedDecider); ok {
		t.Fatal("a decider that takes no input in two parts claims to")
	}
}
