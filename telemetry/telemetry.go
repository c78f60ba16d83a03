// Package telemetry exports the gateway's traces with OpenTelemetry over
// OTLP (HTTP or gRPC), configured by the standard OTEL_* environment and the
// telemetry block of the configuration file. It is off unless an endpoint
// is given: an air-gapped gateway sends nothing anywhere by default.
//
// Off, it still reads a caller's W3C trace context and passes it on, so a
// trace crosses the gateway unbroken and the audit trail records its id;
// the gateway just adds no spans of its own.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// The protocols an OTLP exporter speaks here (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// DefaultServiceName is service.name unless OTEL_SERVICE_NAME or the
// configuration says otherwise.
const DefaultServiceName = "pbac-gateway"

// ErrConfig is a telemetry setting that cannot be used.
var ErrConfig = errors.New("telemetry configuration")

// Config is the telemetry block of the configuration file. The OTEL_*
// environment, where set, wins over it, as it does for every OpenTelemetry
// SDK.
type Config struct {
	// Endpoint is the OTLP endpoint's base URL (as
	// OTEL_EXPORTER_OTLP_ENDPOINT: over HTTP, /v1/traces is appended).
	Endpoint string
	// Protocol is ProtocolHTTP (the default) or ProtocolGRPC.
	Protocol string
	// Headers are sent with every export (an API key, for instance),
	// unless OTEL_EXPORTER_OTLP_HEADERS or its traces variant gives some.
	Headers map[string]string
	// SampleRatio is the share of requests whose traces are recorded
	// (0 < r ≤ 1), drawn by the gateway whatever the caller's sampled flag
	// says. Zero: every request. OTEL_TRACES_SAMPLER, when set, wins.
	SampleRatio float64
	// ServiceName is service.name (default DefaultServiceName;
	// OTEL_SERVICE_NAME wins).
	ServiceName string
	// Baggage passes a caller's W3C baggage on to backends. Off by
	// default: policy never sees baggage, and a backend may trust what it
	// says (a user id, a tenant).
	Baggage bool
	// Getenv reads the environment for the gateway's own choices (os.Getenv
	// when nil). The SDK's exporter, sampler and resource read the process's
	// environment themselves.
	Getenv func(string) string
}

// Telemetry is the tracer provider and propagator the composition root
// hands to each part. The zero value is not usable; New makes one.
type Telemetry struct {
	provider   trace.TracerProvider
	sdk        *sdktrace.TracerProvider // nil when off
	exporter   *loggingExporter         // nil when off
	propagator propagation.TextMapPropagator
	endpoint   string
	protocol   string
}

// maxAttributeLength bounds an attribute value (OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT
// wins): caller-chosen strings (a path, a user agent, a tool name) must not
// make spans large enough to fill the queue or exceed a collector's
// message size.
const maxAttributeLength = 1024

// New builds telemetry from cfg and the environment. Tracing is on when an
// endpoint is configured (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// OTEL_EXPORTER_OTLP_ENDPOINT or cfg.Endpoint), and not disabled by
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. No connection is
// made here: spans are exported in batches by the SDK's processor, whose
// goroutine Shutdown stops.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Telemetry, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Telemetry{propagator: propagation.TraceContext{}, provider: noop.NewTracerProvider()}
	if cfg.Baggage {
		t.propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	if !(cfg.SampleRatio >= 0 && cfg.SampleRatio <= 1) { // NaN too
		return nil, fmt.Errorf("%w: sample_ratio %v is not between 0 and 1", ErrConfig, cfg.SampleRatio)
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return t, nil
	}
	if exporters := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exporters != "" {
		otlp := false
		for _, e := range strings.Split(exporters, ",") {
			switch e = strings.ToLower(strings.TrimSpace(e)); e {
			case "none":
				return t, nil
			case "otlp":
				otlp = true
			default:
				log.Warn("telemetry: OTEL_TRACES_EXPORTER names an exporter this gateway does not have; ignored", "exporter", e)
			}
		}
		if !otlp {
			return nil, fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q names no exporter this gateway has (otlp, or none)", ErrConfig, exporters)
		}
	}
	envEndpoint := firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
	if envEndpoint == "" && cfg.Endpoint == "" {
		return t, nil
	}
	protocol := strings.ToLower(firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"))
	if protocol == "" {
		protocol = strings.ToLower(cfg.Protocol)
	}
	if protocol == "" {
		protocol = ProtocolHTTP
	}
	if envEndpoint != "" {
		// The exporter reads it itself; a value it would take as
		// "localhost" or an empty host is refused here instead.
		if _, err := parseEndpoint(envEndpoint); err != nil {
			return nil, fmt.Errorf("%w (from the OTEL_EXPORTER_OTLP_* environment)", err)
		}
	}
	envHeaders := firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") != ""

	// The environment's endpoint is read by the exporter itself (with its
	// headers, certificates, timeout and compression); the file's is
	// passed only when the environment has none. A failed export is not
	// retried: the batch is dropped and logged, and Shutdown is not held
	// up by a minute of retries.
	var (
		exp      sdktrace.SpanExporter
		err      error
		endpoint = envEndpoint
	)
	switch protocol {
	case ProtocolHTTP:
		opts := []otlptracehttp.Option{otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false})}
		if envEndpoint == "" {
			u, err := tracesURL(cfg.Endpoint)
			if err != nil {
				return nil, err
			}
			endpoint = u
			opts = append(opts, otlptracehttp.WithEndpointURL(u))
		}
		if len(cfg.Headers) > 0 && !envHeaders {
			opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	case ProtocolGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false})}
		if envEndpoint == "" {
			if _, err := parseEndpoint(cfg.Endpoint); err != nil {
				return nil, err
			}
			endpoint = cfg.Endpoint
			opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
		}
		if len(cfg.Headers) > 0 && !envHeaders {
			opts = append(opts, otlptracegrpc.WithHeaders(cfg.Headers))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("%w: OTLP protocol %q: want %s or %s", ErrConfig, protocol, ProtocolHTTP, ProtocolGRPC)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: the OTLP %s exporter: %w", protocol, err)
	}

	name := cfg.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	// Later detectors win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// over the file's name.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(name)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("telemetry: the resource: %w", err)
	}
	t.exporter = newLoggingExporter(exp, log)
	limits := sdktrace.NewSpanLimits() // OTEL_SPAN_* limits, where set
	if getenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT") == "" && getenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT") == "" {
		limits.AttributeValueLengthLimit = maxAttributeLength
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithBatcher(t.exporter),
		sdktrace.WithRawSpanLimits(limits),
	}
	if getenv("OTEL_TRACES_SAMPLER") == "" {
		ratio := cfg.SampleRatio
		if ratio == 0 {
			ratio = 1
		}
		opts = append(opts, sdktrace.WithSampler(trustBoundarySampler(ratio)))
	}
	t.sdk = sdktrace.NewTracerProvider(opts...)
	t.provider, t.endpoint, t.protocol = t.sdk, redacted(endpoint), protocol
	return t, nil
}

// Enabled says whether spans are recorded and exported.
func (t *Telemetry) Enabled() bool { return t.sdk != nil }

// Endpoint and Protocol say where spans go ("" when off).
func (t *Telemetry) Endpoint() string { return t.endpoint }

// Protocol is the OTLP protocol spans are sent with ("" when off).
func (t *Telemetry) Protocol() string { return t.protocol }

// TracerProvider is the SDK's provider, or a no-op one when off.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.provider }

// Tracer is the named tracer of one part of the gateway.
func (t *Telemetry) Tracer(name string) trace.Tracer {
	return t.provider.Tracer("github.com/pbac-gateway/pbac/" + name)
}

// Propagator reads and writes W3C trace context and baggage.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.propagator }

// Shutdown exports the spans still queued and stops the exporter, within
// ctx. An export still running when ctx ends (a collector that does not
// answer) is cancelled and waited for, at most exportDrain more, so no
// exporter goroutine outlives the gateway.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.sdk == nil {
		return nil
	}
	err := t.sdk.Shutdown(ctx)
	t.exporter.abort()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exportDrain)
	defer cancel()
	t.exporter.drain(sctx)
	// The SDK stops the exporter after a flush that finished in time; this
	// closes its connections when it did not.
	_ = t.exporter.inner.Shutdown(sctx)
	if err != nil {
		return fmt.Errorf("telemetry: shut down the tracer provider: %w", err)
	}
	return nil
}

// exportDrain bounds the wait for a cancelled export to return.
const exportDrain = 5 * time.Second

func firstSet(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

func parseEndpoint(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: endpoint %q: want an http:// or https:// URL", ErrConfig, s)
	}
	return u, nil
}

// tracesURL is the traces URL for a base endpoint, as the OTLP exporter
// specification builds it from OTEL_EXPORTER_OTLP_ENDPOINT (a URL that
// already ends in /v1/traces is taken as it is).
func tracesURL(base string) (string, error) {
	u, err := parseEndpoint(base)
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(u.Path, "/v1/traces") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	}
	return u.String(), nil
}

// redacted is an endpoint as it may be logged: without credentials.
func redacted(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	u.User = nil
	return u.String()
}

// trustBoundarySampler decides a span that starts a request at the
// gateway — a root, or a child of a caller's context — by the gateway's
// own draw at ratio: the caller's sampled flag neither hides its requests
// from the trace nor floods it, and its trace id (which it chose) does
// not decide. A span under one of the gateway's own follows its parent.
func trustBoundarySampler(ratio float64) sdktrace.Sampler {
	own := drawSampler{ratio: ratio}
	return sdktrace.ParentBased(own, sdktrace.WithRemoteParentSampled(own), sdktrace.WithRemoteParentNotSampled(own))
}

type drawSampler struct{ ratio float64 }

func (d drawSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	decision := sdktrace.Drop
	if d.ratio >= 1 || rand.Float64() < d.ratio {
		decision = sdktrace.RecordAndSample
	}
	return sdktrace.SamplingResult{Decision: decision, Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
}

func (d drawSampler) Description() string { return fmt.Sprintf("PbacGatewayDraw{%g}", d.ratio) }

// loggingExporter is the SDK's exporter as the gateway runs it:
//   - a failed export is reported to the log, at most once per minute (with
//     how many failed meanwhile), instead of to OpenTelemetry's
//     process-wide error handler; the spans of a failed export are dropped;
//   - a span holding a string that is not UTF-8 (a caller's header, path or
//     name cut anywhere) is exported with those strings repaired: OTLP
//     refuses the whole batch otherwise, so one caller could stop every
//     trace;
//   - an export in flight is cancelled by abort (Shutdown), and drain waits
//     for it.
type loggingExporter struct {
	inner sdktrace.SpanExporter
	log   *slog.Logger
	every time.Duration

	ctx    context.Context // cancelled by abort
	cancel context.CancelFunc
	busy   chan struct{} // held during an export

	mu       sync.Mutex
	last     time.Time
	failures int
}

func newLoggingExporter(inner sdktrace.SpanExporter, log *slog.Logger) *loggingExporter {
	ctx, cancel := context.WithCancel(context.Background())
	return &loggingExporter{inner: inner, log: log, every: time.Minute, ctx: ctx, cancel: cancel, busy: make(chan struct{}, 1)}
}

func (e *loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.busy <- struct{}{}
	defer func() { <-e.busy }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()
	err := e.inner.ExportSpans(ctx, repaired(spans))
	if err == nil {
		return nil
	}
	e.mu.Lock()
	e.failures++
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < e.every {
		e.mu.Unlock()
		return nil
	}
	n := e.failures
	e.last, e.failures = now, 0
	e.mu.Unlock()
	e.log.Warn("telemetry: spans not exported", "spans", len(spans), "failed_exports", n, "err", err)
	return nil
}

func (e *loggingExporter) Shutdown(ctx context.Context) error { return e.inner.Shutdown(ctx) }

// abort cancels an export in flight, and every later one.
func (e *loggingExporter) abort() { e.cancel() }

// drain waits, within ctx, for an export in flight to return.
func (e *loggingExporter) drain(ctx context.Context) {
	select {
	case e.busy <- struct{}{}:
		<-e.busy
	case <-ctx.Done():
	}
}

// repaired is spans with every string that is not valid UTF-8 repaired
// (invalid bytes become U+FFFD); spans that need nothing are passed as
// they are.
func repaired(spans []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for i, s := range spans {
		if spanValid(s) {
			if out != nil {
				out[i] = s
			}
			continue
		}
		if out == nil {
			out = make([]sdktrace.ReadOnlySpan, len(spans))
			copy(out, spans[:i])
		}
		stub := tracetest.SpanStubFromReadOnlySpan(s)
		stub.Name = validString(stub.Name)
		stub.Attributes = validAttrs(stub.Attributes)
		stub.Status.Description = validString(stub.Status.Description)
		for j := range stub.Events {
			stub.Events[j].Name = validString(stub.Events[j].Name)
			stub.Events[j].Attributes = validAttrs(stub.Events[j].Attributes)
		}
		for j := range stub.Links {
			stub.Links[j].Attributes = validAttrs(stub.Links[j].Attributes)
		}
		out[i] = stub.Snapshot()
	}
	if out == nil {
		return spans
	}
	return out
}

func spanValid(s sdktrace.ReadOnlySpan) bool {
	if !utf8.ValidString(s.Name()) || !utf8.ValidString(s.Status().Description) || !attrsValid(s.Attributes()) {
		return false
	}
	for _, ev := range s.Events() {
		if !utf8.ValidString(ev.Name) || !attrsValid(ev.Attributes) {
			return false
		}
	}
	for _, l := range s.Links() {
		if !attrsValid(l.Attributes) {
			return false
		}
	}
	return true
}

func attrsValid(kvs []attribute.KeyValue) bool {
	for _, kv := range kvs {
		if !utf8.ValidString(string(kv.Key)) {
			return false
		}
		switch kv.Value.Type() {
		case attribute.STRING:
			if !utf8.ValidString(kv.Value.AsString()) {
				return false
			}
		case attribute.STRINGSLICE:
			for _, v := range kv.Value.AsStringSlice() {
				if !utf8.ValidString(v) {
					return false
				}
			}
		}
	}
	return true
}

func validAttrs(kvs []attribute.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, len(kvs))
	for i, kv := range kvs {
		k := attribute.Key(validString(string(kv.Key)))
		switch kv.Value.Type() {
		case attribute.STRING:
			out[i] = k.String(validString(kv.Value.AsString()))
		case attribute.STRINGSLICE:
			vs := kv.Value.AsStringSlice()
			for j := range vs {
				vs[j] = validString(vs[j])
			}
			out[i] = k.StringSlice(vs)
		default:
			out[i] = attribute.KeyValue{Key: k, Value: kv.Value}
		}
	}
	return out
}

func validString(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// Instrument traces one HTTP endpoint: a server span named after its route
// pattern (never the raw path, so names stay few), its parent taken from
// the request's traceparent. Off, it is h itself.
func (t *Telemetry) Instrument(pattern string, h http.Handler) http.Handler {
	if !t.Enabled() {
		return h
	}
	return otelhttp.NewHandler(h, pattern,
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(string, *http.Request) string { return pattern }),
	)
}
