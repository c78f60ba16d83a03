// Package gateway is the MCP policy enforcement point: a Fiber server in
// front of the MCP backends. Every request to /mcp/<backend> carries a bearer token
// that is introspected; every tools/call is decided by pbac/tool_call with
// its arguments and forwarded byte for byte only when allowed; tools/list is
// filtered by pbac/list; every decision is audited. A request without a
// token is decided by pbac/anonymous (default deny: the 401 challenge);
// one it admits proceeds as client "anonymous", never with a token.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/jsonrpc"
)

// Introspector checks a bearer token (contract.Introspector). The
// in-process *asrv.Server implements it; a remote AS is reached over RFC
// 7662 (RemoteIntrospector).
type Introspector = contract.Introspector

// Decider is the policy (contract.Decider). *plugins.Registry implements
// it; when it also shows its active policy (ActivePolicy, as the registry
// does), the gateway checks a call's arguments against the catalogue of
// that policy's data and reports its version in the metrics.
type Decider = contract.Decider

// Backend is one MCP server behind the gateway.
type Backend struct {
	// Name is the path segment (/mcp/<name>) and the tool name prefix.
	Name string
	// URL is the backend's Streamable HTTP endpoint.
	URL string
	// Headers are added to every forwarded request: credentials the backend
	// needs come from here, never from the client.
	Headers map[string]string
	// Timeout bounds one forwarded request (streams excepted); default 30 s.
	Timeout time.Duration
	// SecretURL says URL itself is a credential (a stdio bridge's, whose
	// path holds its secret): errors that would quote it (logs, audit
	// reasons, the admin API's health) do not.
	SecretURL bool
	// OwnerHeader, when set, is a header the gateway puts on every request
	// it sends there: an opaque key of the agent the request is for (never
	// its identity), which a backend that shares itself per agent reads. A
	// client cannot set it. A stdio bridge reads stdio.OwnerHeader.
	OwnerHeader string
}

// DefaultSessionIdle is how long a session lasts unused by default.
const DefaultSessionIdle = 30 * time.Minute

// DefaultInFlightPerAgent is Config.InFlightPerAgent's default.
const DefaultInFlightPerAgent = 64

// DefaultClientWriteWait is Config.ClientWriteWait's default.
const DefaultClientWriteWait = 30 * time.Second

// Config configures a Gateway.
type Config struct {
	// PublicURL is the gateway's base URL as clients reach it; the protected
	// resource is PublicURL + "/mcp".
	PublicURL string
	Backends  []Backend
	// AuthorizationServers are the issuer URLs the protected resource
	// metadata names.
	AuthorizationServers []string
	// Scopes, when not nil, are advertised in the protected resource
	// metadata, fixed.
	Scopes []string
	// ActiveScopes, when Scopes is nil, gives them at each request: those
	// of the active policy version, so a change is advertised from the
	// next request. It must be cheap and safe for concurrent use.
	ActiveScopes func() []string
	Introspector Introspector
	Policy       Decider
	Audit        *audit.Trail
	// ToolDefinitions keeps the definitions backends serve, for the
	// catalogue's pins; nil: none is kept, and a pinned tool is hidden and
	// denied (its definition is never seen).
	ToolDefinitions ToolDefinitions
	// AuthServer, when set, is mounted on the same listener (the AS runs in
	// process by default).
	AuthServer http.Handler
	// AllowedOrigins may call /mcp from a browser; requests with any other
	// Origin are refused (DNS rebinding). PublicURL's origin is always
	// allowed.
	AllowedOrigins []string
	MaxBodyBytes   int // default 4 MiB
	MaxJSONDepth   int // default 64
	// Denials is how a tools/call policy denies is answered when no scope
	// the person could grant would allow it: DenialToolError (the default,
	// "") or DenialHTTP403. A denial a scope would fix is always a 403 with
	// an insufficient_scope challenge (step-up).
	Denials string
	// ArgumentLimits bound a call's arguments, checked before policy
	// (zero fields: DefaultArgumentLimits).
	ArgumentLimits ArgumentLimits
	// SessionIdle ends a session unused this long (default
	// DefaultSessionIdle).
	SessionIdle time.Duration
	// InFlightPerAgent bounds the requests to backends one agent has in
	// flight at once (default DefaultInFlightPerAgent): each may hold a
	// connection to the backend, or an answer's memory, until its answer
	// is written (answer.go).
	InFlightPerAgent int
	// ClientWriteWait bounds each write of a stream to its client (an
	// event, a keep-alive): a client that takes none of it for this long
	// loses the stream, and with it the backend's connection the stream
	// holds (default DefaultClientWriteWait).
	ClientWriteWait time.Duration
	// SessionsPerAgent bounds the sessions one agent (a client and the
	// person it acts for; a caller without a token: its address) holds at
	// once, per-backend and aggregated together (default
	// DefaultSessionsPerAgent). A new session beyond it ends the agent's
	// least recently used one, at its backend too.
	SessionsPerAgent int
	// TasksPerAgent bounds the task ids one agent holds recorded at once
	// (tasks.go; default DefaultTasksPerAgent): past it, its oldest task is
	// forgotten and answered as unknown.
	TasksPerAgent int
	// RefusalWindow is how long refusals of one kind (a bad or missing
	// token, a foreign origin, from one address) are summed into one audit
	// record after the first (default DefaultRefusalWindow).
	RefusalWindow time.Duration
	Logger        *slog.Logger
	// Approvals, when set, lets a tools/call policy holds for a person's
	// approval wait for one (see hold.go); nil: such a call is denied,
	// with the policy's reason.
	Approvals *approvals.Service
	// ApprovalWait is how long a retry presenting a pending approval waits
	// for the approver (default DefaultApprovalWait).
	ApprovalWait time.Duration
	// Ready backs /readyz: nil when the gateway should get traffic, else
	// why not (errors.Join of one error per unready part). Nil Ready: always.
	Ready func(ctx context.Context) error
	// Tracer and Propagator trace each request (trace.go); nil: no spans
	// are recorded, and a caller's W3C trace context is passed on to the
	// backend as it came.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// IconSources are the prefixes (https URLs, or "data:") of the icons
	// listed tools, prompts and resources may keep; every other icon is
	// removed before the list reaches the client. Nil: none is kept.
	IconSources []string
	// Collectors are other parts' metrics (the authorization server's, the
	// stdio bridges'), served with the gateway's on the admin listener.
	Collectors []prometheus.Collector
}

// Gateway is the MCP enforcement point.
type Gateway struct {
	cfg      Config
	app      *fiber.App
	backends map[string]*Backend
	client   backendClient
	// forwarders send the allowed messages, one client per backend
	// (forwarder.go).
	forwarders map[string]*fasthttp.HostClient
	log        *slog.Logger
	metrics    *metrics
	sessions   *sessions
	tasks      *tasks
	resource   string
	origins    map[string]bool
	// catalogues holds the argument rules of the active policy's catalogue.
	catalogues catalogues
	// stopped ends at Shutdown: the gateway's own goroutines and every
	// stream it relays stop with it.
	stopped context.Context
	halt    context.CancelFunc
	// bg are the gateway's own goroutines (session expiry, ending
	// sessions at backends, refusal audit); Shutdown waits for them.
	bg       sync.WaitGroup
	refusals *refusals
	// waiting counts the retries waiting for an approver (hold.go), listens
	// the aggregated subscriptions/listen streams (aggregate_listen.go).
	waiting, listens *holders
	// inFlight counts each agent's requests to a backend in flight
	// (answer.go: inFlightSlot), getStreams its sessions' GET streams
	// open, as many as it may hold sessions.
	inFlight, getStreams *holders
	// draining bounds the backend streams being read to their end after
	// the answer went through (sse_answer.go).
	draining chan struct{}
	// params are the Mcp-Param-* declarations of the tools backends list
	// (params.go).
	params paramIndex
	// icons are the icon sources lists may keep (icons.go).
	icons iconFilter
	// tracer and propagator are Config's, or defaultTracing's.
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// New builds a gateway; a configuration mistake fails here.
func New(cfg Config) (*Gateway, error) {
	if cfg.Introspector == nil || cfg.Policy == nil {
		return nil, errors.New("gateway: an introspector and a policy are required")
	}
	if cfg.Denials != "" && !slices.Contains(DenialModes, cfg.Denials) {
		return nil, fmt.Errorf("gateway: denials %q: want one of %v", cfg.Denials, DenialModes)
	}
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil || pub.Host == "" || (pub.Scheme != "http" && pub.Scheme != "https") {
		return nil, fmt.Errorf("gateway: public URL %q must be an absolute http(s) URL", cfg.PublicURL)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if cfg.MaxJSONDepth <= 0 {
		cfg.MaxJSONDepth = 64
	}
	cfg.ArgumentLimits = cfg.ArgumentLimits.withDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SessionsPerAgent <= 0 {
		cfg.SessionsPerAgent = DefaultSessionsPerAgent
	}
	if cfg.InFlightPerAgent <= 0 {
		cfg.InFlightPerAgent = DefaultInFlightPerAgent
	}
	if cfg.ClientWriteWait <= 0 {
		cfg.ClientWriteWait = DefaultClientWriteWait
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = DefaultSessionIdle
	}
	base := strings.TrimSuffix(cfg.PublicURL, "/")
	tracer, propagator := defaultTracing()
	if cfg.Tracer != nil {
		tracer = cfg.Tracer
	}
	if cfg.Propagator != nil {
		propagator = cfg.Propagator
	}
	for _, src := range cfg.IconSources {
		if err := checkIconSource(src); err != nil {
			return nil, err
		}
	}
	g := &Gateway{
		icons:      iconFilter(slices.Clone(cfg.IconSources)),
		tracer:     tracer,
		propagator: propagator,
		cfg:        cfg,
		backends:   map[string]*Backend{},
		forwarders: map[string]*fasthttp.HostClient{},
		log:        cfg.Logger,
		metrics:    newMetrics(activeVersion(cfg.Policy)),
		sessions:   newSessions(cfg.SessionsPerAgent),
		tasks:      newTasks(cfg.TasksPerAgent),
		waiting:    &holders{perAgent: maxWaitsPerAgent, total: maxWaits},
		listens:    &holders{perAgent: maxListensPerAgent, total: maxListens},
		inFlight:   &holders{perAgent: cfg.InFlightPerAgent, total: maxInFlight},
		getStreams: &holders{perAgent: cfg.SessionsPerAgent, total: maxInFlight},
		resource:   base + "/mcp",
		origins:    map[string]bool{pub.Scheme + "://" + pub.Host: true},
		draining:   make(chan struct{}, maxDraining),
		client: backendClient{Client: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // backends are reached directly, never through an environment proxy
				MaxIdleConns:        256,
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     90 * time.Second,
				ForceAttemptHTTP2:   false,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}, secret: secretURLs(cfg.Backends)},
	}
	g.stopped, g.halt = context.WithCancel(context.Background())
	if cfg.Approvals != nil {
		for _, m := range cfg.Approvals.Collectors() {
			if err := g.metrics.reg.Register(m); err != nil {
				return nil, fmt.Errorf("gateway: registering the approvals' metrics: %w", err)
			}
		}
	}
	g.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pbac_tasks_recorded", Help: "Tasks (the tasks extension) the gateway holds the owners of.",
	}, func() float64 { return float64(g.tasks.count()) }))
	for _, m := range cfg.Collectors {
		if err := g.metrics.reg.Register(m); err != nil {
			return nil, fmt.Errorf("gateway: registering a collector: %w", err)
		}
	}
	for _, o := range cfg.AllowedOrigins {
		g.origins[strings.TrimSuffix(o, "/")] = true
	}
	for i := range cfg.Backends {
		b := cfg.Backends[i]
		// Nor "+" or ":": the aggregated server names resources
		// "<backend>+<uri>" and reads them back by the first "+".
		if b.Name == "" || strings.ContainsAny(b.Name, "/.? +:") {
			return nil, fmt.Errorf("gateway: backend name %q must be a plain path segment (no '.', '+' or ':')", b.Name)
		}
		if _, dup := g.backends[b.Name]; dup {
			return nil, fmt.Errorf("gateway: backend %s is configured twice", b.Name)
		}
		if b.Timeout <= 0 {
			b.Timeout = 30 * time.Second
		}
		fw, err := newForwarder(&b)
		if err != nil {
			return nil, err
		}
		g.backends[b.Name] = &b
		g.forwarders[b.Name] = fw
		// A backend's stream series exist from the start, at 0.
		for _, outcome := range []string{"passed", "withheld"} {
			g.metrics.notifications.WithLabelValues(b.Name, outcome)
		}
	}
	g.refusals = newRefusals(cfg.RefusalWindow, func(r audit.Record) {
		if g.cfg.Audit != nil {
			g.cfg.Audit.Record(r)
		}
	})
	g.app = g.routes()
	g.bg.Go(g.expireSessions)
	g.bg.Go(func() { g.refusals.run(g.stopped.Done()) })
	return g, nil
}

// streamContext is the context of a backend stream a handler hands on to
// its body writer: it outlives the handler (keeping the request's trace)
// and ends with cancel or at Shutdown, which ends every stream rather than
// wait for a quiet one to notice that its client has gone.
func (g *Gateway) streamContext(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.UserContext()))
	stop := context.AfterFunc(g.stopped, cancel)
	return ctx, func() { stop(); cancel() }
}

// callerStreamContext is streamContext for a stream of cl's: it also ends
// when cl's token expires, as a stream lasts no longer than the token it
// was opened with.
func (g *Gateway) callerStreamContext(c *fiber.Ctx, cl *caller) (context.Context, context.CancelFunc) {
	ctx, cancel := g.streamContext(c)
	if exp := cl.token.ExpiresAt; exp > 0 && !cl.anonymous {
		var end context.CancelFunc
		ctx, end = context.WithDeadline(ctx, time.Unix(exp, 0))
		stop := cancel
		cancel = func() { end(); stop() }
	}
	return ctx, cancel
}

// expireSessions forgets sessions idle longer than SessionIdle (their
// clients must initialize again, 404, as the transport specifies) and the
// tasks past their life.
func (g *Gateway) expireSessions() {
	t := time.NewTicker(max(g.cfg.SessionIdle/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-g.stopped.Done():
			return
		case now := <-t.C:
			if gone := g.sessions.expire(now.Add(-g.cfg.SessionIdle)); len(gone) > 0 {
				g.metrics.sessions.Set(float64(g.sessions.count()))
				g.metrics.sessionsEnded.WithLabelValues("idle").Add(float64(len(gone)))
				g.log.Info("idle sessions ended", "count", len(gone))
				g.endAtBackends(gone...)
			}
			g.tasks.expire(now)
		}
	}
}

// Resources are the protected resource identifiers the gateway serves: the
// aggregate /mcp and each /mcp/<backend>. The AS must issue tokens for them.
func (g *Gateway) Resources() []string {
	out := []string{g.resource}
	for _, name := range slices.Sorted(maps.Keys(g.backends)) {
		out = append(out, g.resource+"/"+name)
	}
	return out
}

// App is the Fiber application serving the gateway (and the AS when
// mounted).
func (g *Gateway) App() *fiber.App { return g.app }

// Shutdown drains in-flight requests and the gateway's own goroutines
// (within ctx), then closes idle backend connections.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.halt()
	err := g.app.ShutdownWithContext(ctx)
	done := make(chan struct{})
	go func() { g.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("gateway: shutdown: background work still running: %w", ctx.Err()))
	}
	g.client.CloseIdleConnections()
	for _, fw := range g.forwarders {
		fw.CloseIdleConnections()
	}
	return err
}

// MetricsRegistry exposes the gateway's Prometheus registry.
func (g *Gateway) MetricsRegistry() *prometheus.Registry { return g.metrics.reg }

// MetricsHandler serves the gateway's metrics in the Prometheus text
// format. It belongs on the admin listener: the agents' listener does not
// serve /metrics (the policy version and the counts are the operator's).
func (g *Gateway) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{})
}

// fiberConfig is the agents' listener's server configuration. Immutable:
// the strings Fiber hands out (headers, parameters, the method) are copies,
// not views of fasthttp's buffers, which the next request on the
// connection overwrites; the gateway keeps such strings past the request
// (sessions, spans, refusal records, caches), and three times a view kept
// too long was found only after the fact. The cost was not measurable
// (BenchmarkLightBackend, gateway/light: p50 208–212 µs without, 209–220
// with).
func (g *Gateway) fiberConfig() fiber.Config {
	return fiber.Config{
		BodyLimit:             g.cfg.MaxBodyBytes,
		Immutable:             true,
		DisableStartupMessage: true,
		ReadTimeout:           60 * time.Second,
		IdleTimeout:           idleWait,
		ReadBufferSize:        16 << 10,
		ErrorHandler: func(c *fiber.Ctx, err error) error {
			code := fiber.StatusInternalServerError
			var fe *fiber.Error
			if errors.As(err, &fe) {
				code = fe.Code
			}
			return c.Status(code).JSON(fiber.Map{"error": http.StatusText(code)})
		},
	}
}

func (g *Gateway) routes() *fiber.App {
	app := fiber.New(g.fiberConfig())
	app.Use(defaultWriteDeadline) // every response is written in bounded time (answer.go)
	prm := func(c *fiber.Ctx) error { return g.serveResourceMetadata(c) }
	app.Get("/.well-known/oauth-protected-resource", prm)
	app.Get("/.well-known/oauth-protected-resource/mcp", prm)
	app.Get("/.well-known/oauth-protected-resource/mcp/:backend", prm)
	app.Post("/mcp", g.handleAggregate)
	app.Get("/mcp", func(c *fiber.Ctx) error {
		// The aggregated server sends nothing unprompted.
		return c.SendStatus(fiber.StatusMethodNotAllowed)
	})
	app.Delete("/mcp", g.handleAggregateDelete)
	app.Post("/mcp/:backend", g.handlePost)
	app.Get("/mcp/:backend", g.handleStream)
	app.Delete("/mcp/:backend", g.handleDelete)
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok") })
	app.Get("/readyz", g.serveReady)
	if g.cfg.AuthServer != nil {
		mountAuthServer(app, g.cfg.AuthServer)
	}
	return app
}

// serveResourceMetadata is RFC 9728 protected resource metadata, at the
// well-known URL and its path-suffixed forms.
func (g *Gateway) serveResourceMetadata(c *fiber.Ctx) error {
	resource := g.resource
	if b := c.Params("backend"); b != "" {
		if _, ok := g.backends[b]; !ok {
			return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "unknown resource"})
		}
		resource += "/" + b
	}
	// scopes_supported follows the active policy: a cache must ask again.
	c.Set("Cache-Control", "no-cache")
	return c.JSON(fiber.Map{
		"resource":                 resource,
		"authorization_servers":    g.cfg.AuthorizationServers,
		"bearer_methods_supported": []string{"header"},
		"scopes_supported":         g.scopes(),
		"resource_name":            "PBAC Gateway",
	})
}

// scopes are the scopes the protected resource metadata advertises now
// (Config.Scopes, else Config.ActiveScopes). Never offline_access: whether
// a refresh token comes with a grant is the authorization server's and
// policy's business, not a scope a resource asks for (SEP-2207).
func (g *Gateway) scopes() []string {
	var l []string
	switch {
	case g.cfg.Scopes != nil:
		l = g.cfg.Scopes
	case g.cfg.ActiveScopes != nil:
		l = g.cfg.ActiveScopes()
	}
	out := make([]string, 0, len(l))
	for _, sc := range l {
		if sc != "offline_access" {
			out = append(out, sc)
		}
	}
	return out
}

func (g *Gateway) metadataURL(backend string) string {
	u := strings.TrimSuffix(g.cfg.PublicURL, "/") + "/.well-known/oauth-protected-resource/mcp"
	if backend != "" {
		u += "/" + backend
	}
	return u
}

// checkOrigin refuses browser requests from origins that are not allowed:
// the MCP transport's defence against DNS rebinding. A refusal is audited
// (aggregated, see refusals).
func (g *Gateway) checkOrigin(c *fiber.Ctx, backend string) bool {
	o := c.Get("Origin")
	if o == "" || g.origins[o] {
		return true
	}
	g.noteRefusal(c, backend, "origin_not_allowed", "origin "+o+" is not allowed", fiber.StatusForbidden)
	return false
}

// noteRefusal audits a request refused before any identity is known.
func (g *Gateway) noteRefusal(c *fiber.Ctx, backend, reason, desc string, status int) {
	rid := c.GetRespHeader("X-Request-Id")
	if rid == "" {
		rid = newID()
	}
	// The record outlives the request: Fiber's strings are copies here
	// (fiberConfig: Immutable).
	g.refusals.note(time.Now(), rid, reason, desc, backend, c.IP(), c.Method(), status)
}

// caller is a request's identity: an introspected token, or a caller
// without one that pbac/anonymous admitted.
type caller struct {
	token contract.Identity
	// anonymous is set for a caller without a token; admitted is then the
	// pbac/anonymous decision that let it in (for a call, the call's
	// decision).
	anonymous bool
	admitted  contract.Decision
	// remote is the address of a caller without a token (its session
	// quota key).
	remote string
}

// AnonymousClientID is the client_id audit records carry for requests
// made without a token that policy (pbac/anonymous) admitted.
const AnonymousClientID = "anonymous"

// bearerToken is the request's bearer token, "" when it carries none.
func bearerToken(c *fiber.Ctx) string {
	token, ok := strings.CutPrefix(c.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return token
}

// challenge answers 401 with the WWW-Authenticate header that leads an
// MCP client to the protected resource metadata (RFC 9728).
func (g *Gateway) challenge(c *fiber.Ctx, backend, errCode, desc string) {
	g.noteRefusal(c, backend, refusalReason(errCode), desc, fiber.StatusUnauthorized)
	h := fmt.Sprintf(`Bearer resource_metadata=%q`, g.metadataURL(backend))
	if errCode != "" {
		h += fmt.Sprintf(`, error=%q, error_description=%q`, errCode, desc)
	}
	c.Set("WWW-Authenticate", h)
	_ = c.Status(fiber.StatusUnauthorized).JSON(fiber.Map{"error": orDefault(errCode, "unauthorized"), "error_description": desc})
}

// admitAnonymous asks pbac/anonymous whether a request without a token may
// proceed: method is the JSON-RPC method (GET or DELETE for the transport's
// bodiless requests), tool the called "<backend>.<name>" or "". When the
// policy refuses, or cannot decide, it has written the usual 401 challenge
// and returns false: a token is what the caller needs.
func (g *Gateway) admitAnonymous(c *fiber.Ctx, backend, method, tool, rid string) (*caller, bool, time.Duration) {
	start := time.Now()
	req := contract.Request{Backend: backend, Method: method, Tool: tool}
	if name, ok := strings.CutPrefix(tool, backend+"."); ok && name != "" {
		req.ToolDefinition = g.calledDefinition(backend, name)
	}
	raw, err := json.Marshal(contract.Input{Request: req, Now: start.Unix()})
	if err != nil {
		g.challenge(c, backend, "", "a bearer token is required")
		return nil, false, time.Since(start)
	}
	d, err := g.cfg.Policy.Decide(c.UserContext(), contract.Anonymous, raw)
	took := time.Since(start)
	g.metrics.stage("policy", took)
	if err != nil {
		g.log.Error("policy error on an anonymous request", "request_id", rid, "err", err)
	}
	if err != nil || !d.Allow {
		g.challenge(c, backend, "", "a bearer token is required")
		return nil, false, took
	}
	return &caller{anonymous: true, admitted: d, remote: c.IP()}, true, took
}

// authenticate introspects the bearer token for this backend's resource.
// On failure it has written the 401 and returns false.
func (g *Gateway) authenticate(c *fiber.Ctx, backend string, rid string) (*caller, bool, time.Duration) {
	start := time.Now()
	challenge := func(errCode, desc string) { g.challenge(c, backend, errCode, desc) }
	token := bearerToken(c)
	if token == "" {
		challenge("", "a bearer token is required")
		return nil, false, time.Since(start)
	}
	// The resource travels with the introspection, so a token for another
	// resource is refused before a single-use token is spent.
	resource := g.resource
	if backend != "" {
		resource += "/" + backend
	}
	ctx, span := g.child(c.UserContext(), "pbac.introspect", trace.WithSpanKind(trace.SpanKindInternal))
	res, err := g.cfg.Introspector.Introspect(ctx, token, resource)
	took := time.Since(start)
	endIntrospect(span, res, err)
	if err != nil {
		g.log.Error("introspection failed", "request_id", rid, "err", err)
		if errors.Is(err, contract.ErrUndecided) {
			// The token may be fine: a 401 would send the client to get
			// another. Policy could not decide, so this request is denied.
			_ = g.reply(c, fiber.StatusForbidden, jsonrpc.ErrorBody(nil, jsonrpc.CodeDenied, "denied: the policy could not decide", nil))
			return nil, false, took
		}
		challenge("invalid_token", "the token could not be checked")
		return nil, false, took
	}
	if !res.Active {
		challenge("invalid_token", "the token is not active")
		return nil, false, took
	}
	if !slices.Contains(res.Audience, g.resource) && (backend == "" || !slices.Contains(res.Audience, g.resource+"/"+backend)) {
		challenge("invalid_token", "the token was not issued for this resource")
		return nil, false, took
	}
	return &caller{token: res}, true, took
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func newID() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("crypto/rand failed"))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// input is the policy input for a call by this caller (pbac/tool_call,
// pbac/list): the agent's verified claims, the human (their roles and the
// groups their grant records, which policy data maps to roles), the token
// as introspected now.
func (cl *caller) input(backend, method string) contract.Input {
	t := cl.token
	in := contract.Input{
		Client: t.PolicyClient(),
		Token: &contract.TokenClaims{ClientID: t.ClientID, Sub: t.Subject, Scp: t.Scopes, Aud: t.Audience,
			Iat: t.IssuedAt, Exp: t.ExpiresAt, Act: t.Act},
		Request: contract.Request{Backend: backend, Method: method},
		Now:     time.Now().Unix(),
	}
	if t.Subject != "" {
		in.Subject = &contract.Subject{Sub: t.Subject, Roles: t.Roles, Groups: t.Groups}
	}
	return in
}

// BackendHealth probes every backend (a GET without a session, which any
// Streamable HTTP server answers, if only with an error status) and reports
// "up" with the status, or "down" with the reason.
func (g *Gateway) BackendHealth(ctx context.Context) map[string]string {
	out := make(map[string]string, len(g.backends))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, b := range g.backends {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			state := "down"
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL, nil)
			if err == nil {
				req.Header.Set("Accept", "text/event-stream")
				var resp *http.Response
				if resp, err = g.client.Do(req); err == nil {
					resp.Body.Close()
					state = fmt.Sprintf("up (HTTP %d)", resp.StatusCode)
				}
			}
			if err != nil {
				state = "down: " + err.Error()
			}
			mu.Lock()
			out[name] = state
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// backendClient is the gateway's net/http client to backends. Its errors
// quote the request's URL (net/http's *url.Error), unless the URL is a
// backend's secret (Backend.SecretURL): then they name the backend's URL
// without it.
type backendClient struct {
	*http.Client
	secret map[string]string // a secret URL: what its errors say instead
}

// Do is http.Client.Do, its error free of secret URLs.
func (c backendClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.Client.Do(req)
	var ue *url.Error
	if err != nil && errors.As(err, &ue) {
		if shown, ok := c.secret[ue.URL]; ok {
			ue.URL = shown
		}
	}
	return resp, err
}

// secretURLs maps the secret URLs of backends to what errors show of them.
func secretURLs(backends []Backend) map[string]string {
	m := map[string]string{}
	for _, b := range backends {
		if !b.SecretURL {
			continue
		}
		shown := "the URL of backend " + b.Name
		if u, err := url.Parse(b.URL); err == nil {
			shown = u.Scheme + "://" + u.Host + "/…"
		}
		m[b.URL] = shown
	}
	return m
}
