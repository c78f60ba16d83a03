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
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
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
	// Headers are sent with every export (an API key, for instance).
	Headers map[string]string
	// SampleRatio is the share of traces the gateway starts that it
	// records (0 < r ≤ 1); a caller's sampling decision is followed. Zero
	// leaves it to OTEL_TRACES_SAMPLER (default: record every trace).
	SampleRatio float64
	// ServiceName is service.name (default DefaultServiceName;
	// OTEL_SERVICE_NAME wins).
	ServiceName string
	// Getenv reads the environment (os.Getenv when nil).
	Getenv func(string) string
}

// Telemetry is the tracer provider and propagator the composition root
// hands to each part. The zero value is not usable; New makes one.
type Telemetry struct {
	provider   trace.TracerProvider
	sdk        *sdktrace.TracerProvider // nil when off
	propagator propagation.TextMapPropagator
	endpoint   string
	protocol   string
}

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
	t := &Telemetry{
		provider:   noop.NewTracerProvider(),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return t, nil
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "", "otlp":
	case "none":
		return t, nil
	default:
		return nil, fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q: only otlp (or none) is supported", ErrConfig, exp)
	}
	envEndpoint := firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
	if envEndpoint == "" && cfg.Endpoint == "" {
		return t, nil
	}
	protocol := firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	if protocol == "" {
		protocol = cfg.Protocol
	}
	if protocol == "" {
		protocol = ProtocolHTTP
	}
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, fmt.Errorf("%w: sample_ratio %v is not between 0 and 1", ErrConfig, cfg.SampleRatio)
	}

	// The environment's endpoint is read by the exporter itself (with its
	// headers, certificates, timeout and compression); the file's is
	// passed only when the environment has none.
	var (
		exp      sdktrace.SpanExporter
		err      error
		endpoint = envEndpoint
	)
	switch protocol {
	case ProtocolHTTP:
		var opts []otlptracehttp.Option
		if envEndpoint == "" {
			u, err := tracesURL(cfg.Endpoint)
			if err != nil {
				return nil, err
			}
			endpoint = u
			opts = append(opts, otlptracehttp.WithEndpointURL(u))
			if len(cfg.Headers) > 0 {
				opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
			}
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if envEndpoint == "" {
			if _, err := parseEndpoint(cfg.Endpoint); err != nil {
				return nil, err
			}
			endpoint = cfg.Endpoint
			opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
			if len(cfg.Headers) > 0 {
				opts = append(opts, otlptracegrpc.WithHeaders(cfg.Headers))
			}
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
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithBatcher(&loggingExporter{SpanExporter: exp, log: log, every: time.Minute}),
	}
	if cfg.SampleRatio > 0 {
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))))
	}
	t.sdk = sdktrace.NewTracerProvider(opts...)
	t.provider, t.endpoint, t.protocol = t.sdk, endpoint, protocol
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
// ctx.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.sdk == nil {
		return nil
	}
	if err := t.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: shut down the tracer provider: %w", err)
	}
	return nil
}

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
// specification builds it from OTEL_EXPORTER_OTLP_ENDPOINT.
func tracesURL(base string) (string, error) {
	u, err := parseEndpoint(base)
	if err != nil {
		return "", err
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	return u.String(), nil
}

// loggingExporter reports failed exports to the log, at most once per
// every (with how many failed meanwhile), instead of to OpenTelemetry's
// process-wide error handler; the spans of a failed export are dropped.
type loggingExporter struct {
	sdktrace.SpanExporter
	log   *slog.Logger
	every time.Duration

	mu       sync.Mutex
	last     time.Time
	failures int
}

func (e *loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err == nil || e.log == nil {
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
