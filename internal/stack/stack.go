// Package stack is the composition root of PBAC Gateway: it builds the
// whole running system — policy runtime, token store, authorization server
// (or the introspection of a remote one), audit trail, gateway, admin API,
// dashboard, the demo tenant when asked — from one Config, and Close stops
// and joins every goroutine it started, in order.
//
// pbac up, pbac asrv, pbac bench, the conformance tenant and the gateway's
// tests all build their system here; cmd/pbac only turns flags and the
// configuration file into a Config. A new part (an identity source, client
// admission, tracing) is wired once, here.
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/audit/index"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/bundlesource"
	"github.com/pbac-gateway/pbac/plugins/pgsync"
	"github.com/pbac-gateway/pbac/telemetry"
	tdstore "github.com/pbac-gateway/pbac/tooldefs/store"
)

// Config is everything the system is built from, resolved: cmd/pbac fills
// it from flags, the PBAC_* environment and the configuration file; tests
// and tools fill it directly. The zero value of an optional part leaves it
// out or takes its default, as each field says.
type Config struct {
	// Logger receives every part's logs (nil: discarded).
	Logger *slog.Logger
	// DataDir holds the state: token secret, statement issuer key, Badger
	// token store (store/), audit trail (audit/), policy bundles dropped in
	// (policies/), the Wasm compilation cache (wasm-cache/), the admin
	// token and the demo agents. Required; created (0700) when absent.
	DataDir string
	// Ephemeral keeps the token store and the audit index in memory and
	// writes no audit file and no compilation cache (tests, throwaway
	// tenants). The data dir still holds the secret and keys.
	Ephemeral bool

	// Listen is the address of the gateway and the in-process
	// authorization server (or of the authorization server alone);
	// "127.0.0.1:0" picks a free port. TLS, when set, is served there.
	Listen string
	TLS    *config.TLSFiles
	// PublicURL is the base URL clients reach (a proxy in front, say);
	// empty: http(s)://<Listen's address>. It is the gateway's public URL
	// and the in-process authorization server's issuer.
	PublicURL string
	// Admin, when set, runs the admin listener: the admin API, the
	// dashboard and the gateway's metrics. Nil: no admin listener.
	Admin *Admin

	// Store is the token store: "" (or "badger") for Badger under the data
	// dir, a postgres:// URL for PostgreSQL shared by replicas.
	Store string
	// Policy is where decisions come from.
	Policy Policy
	// AuthServer shapes the authorization server this process runs.
	AuthServer AuthServer
	// RemoteAS, when set, is an authorization server elsewhere that the
	// gateway trusts instead of running one: tokens are introspected over
	// RFC 7662, or read on its shared PostgreSQL store when
	// TokenSecretFile is set.
	RemoteAS *config.RemoteAS

	// Gateway shapes the MCP gateway. Nil: no gateway, the authorization
	// server alone (pbac asrv).
	Gateway *Gateway
	// Backends are the configured backends: a URL is proxied as it is, a
	// command runs behind a stdio bridge.
	Backends []config.Backend
	// Limits bound what one agent holds (zero fields: the defaults).
	Limits config.Limits
	// Demo is the demo tenant.
	Demo Demo
	// Audit shapes the audit trail (zero fields: the defaults).
	Audit Audit
	// Telemetry is where traces go (the configuration's telemetry block;
	// the OTEL_* environment wins). No endpoint: none are exported.
	Telemetry telemetry.Config
}

// Admin is the admin listener.
type Admin struct {
	Listen string
	TLS    *config.TLSFiles
	// Hosts are names the admin listener answers to besides its own
	// address (a DNS-rebinding defence).
	Hosts []string
	// Profiling serves Go's runtime profiles on the admin API (behind the
	// admin token).
	Profiling bool
}

// AuthServer shapes the in-process authorization server.
type AuthServer struct {
	// Settings are the configuration's asrv: block (introspection
	// clients, registration limits, statements, the longest a person's
	// sign-in lasts); nil: the defaults.
	Settings *config.ASrv
	// Resources are the protected resources tokens are for, when the
	// authorization server runs alone (nil: <issuer>/mcp). With a gateway
	// they are the gateway's: /mcp and each /mcp/<backend>.
	Resources []string
	// Scopes clients may ask for (nil: those of the active policy's data,
	// as of each request).
	Scopes []string
	// AccessTokenTTL is the access tokens' lifetime (0: Settings'
	// asrv.access_token_ttl, default 10 minutes).
	AccessTokenTTL time.Duration

	// Identity is the configuration's identity: section: the users file
	// people sign in from with a password, and the organisation's OpenID
	// provider (single sign-on); openAS opens them (people.go). Without
	// either, people sign in only in the demo tenant (Demo.Backends), as
	// its demo users; elsewhere the code flow is refused and only machine
	// clients get tokens. A replica that introspects on a remote AS's
	// shared store needs the AS's identity section too: tokens of a users
	// file's people are decided with the file as it is now.
	Identity identity.Config
	// Users, when set, are the people who sign in with a password instead
	// of Identity.UsersFile (tests; the conformance tenant's demo users).
	Users asrv.UserSource
	// Clients is the configuration's clients: section: Client ID Metadata
	// Documents (openAS builds the resolver, asrv.Config.ClientMetadata,
	// and closes it) and the trusted statement issuers. Nil: documents on
	// and fetched, no issuer but this AS's own key.
	Clients *config.Clients
}

// Gateway shapes the MCP gateway.
type Gateway struct {
	// Scopes are advertised in the protected resource metadata (nil: those
	// of the active policy's data, as of each request).
	Scopes []string
	// ArgumentLimits bound a call's arguments (nil or zero fields: the
	// gateway's defaults).
	ArgumentLimits *config.ArgumentLimits
	// SessionIdle ends a session unused this long (0: the default).
	SessionIdle time.Duration
	// ClientWriteWait bounds each write of a stream to its client
	// (gateway.Config.ClientWriteWait; 0: the default).
	ClientWriteWait time.Duration
	// InFlightPerAgent bounds one agent's requests in flight
	// (gateway.Config.InFlightPerAgent; 0: the default).
	InFlightPerAgent int
	// Denials is how a policy denial no scope fixes is answered
	// (gateway.Config.Denials; "": a tool result with isError).
	Denials string
	// RefusalWindow sums refusals of one kind (0: the default).
	RefusalWindow time.Duration
	// Approvals shapes how calls policy holds for a person's approval
	// wait for one.
	Approvals Approvals
	// IconSources are the icon sources listed tools, prompts and resources
	// may keep (gateway.Config.IconSources; nil: none).
	IconSources []string
}

// Approvals configures the approvals of held calls (package approvals).
type Approvals struct {
	// PageURL is the approval page's base as approvers reach it; the
	// approval's id is appended (default: the admin listener's
	// dashboard, <admin URL>/ui/approvals/).
	PageURL string
	// Wait is how long a client's retry waits for a pending approval
	// before it is told to ask again (0: gateway.DefaultApprovalWait).
	Wait time.Duration
	// StateKeyFile holds the key that signs requestStates (default
	// approval-state.key in the data dir); replicas share one.
	StateKeyFile string
}

// Demo is the demo tenant.
type Demo struct {
	// Backends starts the demo backends (drive, jira, …) in process and
	// makes this the demo tenant: its demo users sign in (unless a users
	// file is configured), and the dashboard is the tenant's (its users,
	// scenarios, agent registration).
	Backends bool
	// Agents registers the seed matrix's agents with the in-process
	// authorization server, once (kept in the data dir).
	Agents bool
}

// Audit shapes the audit trail.
type Audit struct {
	// MaxBackups rotated files of 100 MB are kept (0: 10).
	MaxBackups int
	// Retention is how long the index keeps records (0: 30 days).
	Retention time.Duration
	// Linger is how long the trail's writer waits after a record for more
	// to write with it (0: audit.DefaultLinger; negative: none, each record
	// is written as soon as nothing else is queued).
	Linger time.Duration
}

// Stack is the running system.
type Stack struct {
	cfg Config
	log *slog.Logger

	ln, adminLn     net.Listener
	base, adminBase string
	issuer          string
	policy          *policyRuntime
	decider         contract.Decider
	tel             *telemetry.Telemetry
	// collectors are parts' metrics the gateway serves beside its own:
	// the in-process AS's, each stdio backend's process count.
	collectors   []prometheus.Collector
	asMetrics    *asrv.Metrics
	data         *contract.Data // an outside decider's policy data
	bundleSource *bundlesource.Source
	sync         *pgsync.Sync
	as           *authRuntime // nil: the AS runs elsewhere
	remote       *gateway.RemoteIntrospector
	store        asrv.Store // the in-process AS's or the shared store; nil with a remote AS
	storeName    string
	trail        *audit.Trail
	index        *index.Index
	gw           *gateway.Gateway
	tools        *tdstore.Store // the tool definitions backends serve
	approvals    *approvals.Service
	backends     []gateway.Backend
	agents       []DemoAgent
	ready        *readiness
	bgCtx        context.Context // background work; cancelled by Close
	bgCancel     context.CancelFunc
	bg           sync.WaitGroup // policy sources: watch, bundle polling, sync
	gwServing    sync.WaitGroup // the gateway listener's serve loop
	serveErr     chan error     // what the serve loops returned
	closers      [numPhases][]closer
	closeOnce    sync.Once
	closeErr     error
	scopeCache   scopeCache // the active policy's scopes (scopes)

	// policyTrail is the trail once it is open, for the policy
	// registry's events: its sources (a bundle server, the shared
	// database) run before the trail opens.
	policyTrail atomic.Pointer[audit.Trail]
}

// phase is a step of Close: every part registers how it is closed in its
// phase, and Close runs the phases in this order (within a phase, the last
// registered first).
type phase int

const (
	phaseServe         phase = iota // listeners and their servers drain
	phaseGateway                    // the gateway's in-flight calls and its goroutines
	phasePolicySources              // bundle polling, policy sync, the policy directory watch
	phaseBackends                   // stdio bridges, demo backends
	phaseAudit                      // the audit trail flushes and closes its sinks
	phaseStore                      // the token store
	phasePolicy                     // the policy registry and the Wasm engine
	numPhases
)

type closer struct {
	name string
	fn   func(ctx context.Context) error
}

// drainTimeout bounds how long the listeners and the gateway's in-flight
// calls are given to finish on Close.
const drainTimeout = 10 * time.Second

// New builds the system cfg describes and starts serving. On an error
// everything already opened is closed again (and its goroutines joined)
// before New returns.
func New(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("no data dir: pass --data-dir or set PBAC_DATA_DIR")
	}
	if cfg.Gateway == nil && cfg.RemoteAS != nil {
		return nil, errors.New("the authorization server alone cannot use a remote one")
	}
	s := &Stack{cfg: cfg, log: cfg.Logger}
	s.bgCtx, s.bgCancel = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if cerr := s.Close(cctx); cerr != nil {
				s.log.Warn("closing what was built before the failure", "err", cerr)
			}
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create the data dir: %w", err)
	}
	if err := s.openListeners(); err != nil {
		return nil, err
	}
	if err := s.openTelemetry(ctx); err != nil {
		return nil, err
	}
	if err := s.openPolicy(ctx); err != nil {
		return nil, err
	}
	if cfg.Gateway != nil {
		if err := s.startBackends(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.openAuthorization(ctx); err != nil {
		return nil, err
	}
	if cfg.Gateway != nil {
		if err := s.openAudit(ctx); err != nil {
			return nil, err
		}
		if err := s.newGateway(); err != nil {
			return nil, err
		}
	}
	if cfg.Demo.Agents && s.as != nil && s.as.served {
		if s.agents, err = seedDemoAgents(ctx, cfg.DataDir, s.as, s.store); err != nil {
			return nil, fmt.Errorf("register the demo agents: %w", err)
		}
	}
	var adminHandler http.Handler
	if cfg.Admin != nil {
		if adminHandler, err = s.newAdmin(); err != nil {
			return nil, err
		}
	}
	s.serve(adminHandler)
	if s.gw != nil {
		gw := s.gw
		s.bg.Go(func() { discoverTools(s.bgCtx, gw, toolDiscoveryFirst, toolDiscoveryEvery) })
	}
	return s, nil
}

// openTelemetry sets up tracing; its spans are flushed once the gateway
// and the listeners have stopped.
func (s *Stack) openTelemetry(ctx context.Context) error {
	tel, err := telemetry.New(ctx, s.cfg.Telemetry, s.log)
	if err != nil {
		return err
	}
	s.tel = tel
	if tel.Enabled() {
		s.log.Info("tracing on", "endpoint", tel.Endpoint(), "protocol", tel.Protocol())
	}
	s.onClose(phaseAudit, "telemetry", tel.Shutdown)
	return nil
}

// onClose registers how a part is closed, in its phase.
func (s *Stack) onClose(p phase, name string, fn func(ctx context.Context) error) {
	s.closers[p] = append(s.closers[p], closer{name: name, fn: fn})
}

// openListeners opens the listener (and the admin one) first, so a port in
// use fails before anything else starts.
func (s *Stack) openListeners() error {
	ln, scheme, err := openListener(s.cfg.Listen, s.cfg.TLS, s.log)
	if err != nil {
		return err
	}
	s.ln = ln
	// Registered first, so it runs after the server or the gateway that
	// serves it shut down (which close it themselves): it matters only
	// when New fails before serving.
	s.onClose(phaseGateway, "listener", func(context.Context) error { return ignoreClosed(ln.Close()) })
	s.base = scheme + "://" + ln.Addr().String()
	if s.cfg.PublicURL != "" {
		s.base = strings.TrimSuffix(s.cfg.PublicURL, "/")
	}
	if s.cfg.Admin == nil {
		return nil
	}
	adminLn, adminScheme, err := openListener(s.cfg.Admin.Listen, s.cfg.Admin.TLS, s.log)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	s.adminLn = adminLn
	s.onClose(phaseServe, "admin listener", func(context.Context) error { return ignoreClosed(adminLn.Close()) })
	s.adminBase = adminScheme + "://" + adminLn.Addr().String()
	return nil
}

// resources are the protected resources tokens are issued for: the
// gateway's /mcp and /mcp/<backend>, or the AS's own list when it runs
// alone.
func (s *Stack) resources() []string {
	if s.cfg.Gateway == nil {
		if len(s.cfg.AuthServer.Resources) > 0 {
			return s.cfg.AuthServer.Resources
		}
		return []string{s.base + "/mcp"}
	}
	out := []string{s.base + "/mcp"}
	for _, b := range s.backends {
		out = append(out, s.base+"/mcp/"+b.Name)
	}
	return out
}

// scopes are the scopes the active policy's data names
// (contract.Data.Scopes), asked at each request: what the AS and the
// gateway advertise and clients may ask for; policy decides which are
// granted. A data change that adds or removes a backend's scopes applies
// from the next request.
func (s *Stack) scopes() []string {
	if s.policy == nil {
		if s.data == nil {
			return nil
		}
		return s.scopeCache.of("", s.data, nil)
	}
	v, d, err := s.policy.registry.ActivePolicy()
	return s.scopeCache.of(v, d, err)
}

// userAttestable are the providers the active policy lets a person vouch
// for a client as (contract.Data.UserAttestable), asked at each sign-in
// page; none when the active data does not read as contract.Data.
func (s *Stack) userAttestable() []string {
	d := s.data
	if s.policy != nil {
		_, ad, err := s.policy.registry.ActivePolicy()
		if err != nil {
			return nil
		}
		d = ad
	}
	if d == nil {
		return nil
	}
	return d.UserAttestable()
}

// scopeCache keeps the scopes of the last policy version asked about, so
// that a request computes them only when the version changed.
type scopeCache struct {
	last atomic.Pointer[versionScopes]
}

type versionScopes struct {
	version string
	scopes  []string
}

// of gives the scopes of data, the data of version; a version whose data
// does not read as contract.Data (err) keeps the last known scopes. The
// slice is shared: callers must not modify it.
func (c *scopeCache) of(version string, data *contract.Data, err error) []string {
	last := c.last.Load()
	if last != nil && last.version == version {
		return last.scopes
	}
	if err != nil || data == nil {
		if last != nil {
			return last.scopes
		}
		return nil
	}
	vs := &versionScopes{version: version, scopes: data.Scopes()}
	c.last.Store(vs)
	return vs.scopes
}

// The gateway lists every backend's tools on a session of its own a
// minute after start (not at once: a stdio backend's process would be
// taken from the agents starting then) and every 15 minutes after that,
// besides on the admin API's and the dashboard's request, so new and
// changed tools reach the review without an agent.
const (
	toolDiscoveryFirst = time.Minute
	toolDiscoveryEvery = 15 * time.Minute
)

// discoverTools lists every backend's tools after first, then every
// interval, until ctx ends.
func discoverTools(ctx context.Context, gw *gateway.Gateway, first, every time.Duration) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		gw.DiscoverTools(ctx)
		t.Reset(every)
	}
}

// toolDefinitionsDir is where the tool definitions backends serve are kept
// in the data dir (package tooldefs/store).
const toolDefinitionsDir = "tool-definitions"

// newGateway builds the gateway on what is open.
func (s *Stack) newGateway() error {
	g := s.cfg.Gateway
	dir := ""
	if !s.cfg.Ephemeral {
		dir = filepath.Join(s.cfg.DataDir, toolDefinitionsDir)
	}
	tools, err := tdstore.Open(s.bgCtx, dir, s.log)
	if err != nil {
		return fmt.Errorf("open the tool definitions: %w", err)
	}
	s.tools = tools
	// Registered before the gateway's, so it closes after the gateway.
	s.onClose(phaseGateway, "tool definitions", func(context.Context) error { return tools.Close() })
	approvalsSvc, err := s.openApprovals()
	if err != nil {
		return fmt.Errorf("open the approvals: %w", err)
	}
	s.approvals = approvalsSvc
	cfg := gateway.Config{
		Approvals: approvalsSvc, ApprovalWait: g.Approvals.Wait,
		PublicURL: s.base, Backends: s.backends, AuthorizationServers: []string{s.issuer}, Scopes: g.Scopes, ActiveScopes: s.scopes,
		Introspector: s.introspector(), Policy: s.tel.Decider(s.decider), Audit: s.trail, Logger: s.log, Ready: s.ready.check,
		Tracer: s.tel.Tracer("gateway"), Propagator: s.tel.Propagator(), Collectors: s.collectors,
		ArgumentLimits: gatewayArgumentLimits(g.ArgumentLimits), SessionsPerAgent: s.cfg.Limits.SessionsPerAgent,
		SessionIdle: g.SessionIdle, ClientWriteWait: g.ClientWriteWait, InFlightPerAgent: g.InFlightPerAgent, RefusalWindow: g.RefusalWindow, Denials: g.Denials, ToolDefinitions: tools, IconSources: g.IconSources,
	}
	if s.as != nil && s.as.served {
		cfg.AuthServer = s.as.server.Handler()
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	s.gw = gw
	ln := s.ln
	s.onClose(phaseGateway, "gateway", func(ctx context.Context) error {
		err := gw.Shutdown(ctx)
		// A serve loop that had not yet taken the listener when Shutdown
		// ran (a Close right after New) would serve on: closing the
		// listener ends it.
		err = errors.Join(err, ignoreClosed(ln.Close()))
		return errors.Join(err, waitGroup(ctx, &s.gwServing, "the gateway listener"))
	})
	return nil
}

// serve starts the listeners' serve loops.
func (s *Stack) serve(adminHandler http.Handler) {
	s.serveErr = make(chan error, 2)
	ln := s.ln
	if s.gw != nil {
		s.gwServing.Go(func() { s.serveErr <- s.gw.App().Listener(ln) })
	} else {
		s.serveHTTP("authorization server", ln, withProbes(s.as.server.Handler(), s.ready.check))
	}
	if adminHandler != nil {
		s.serveHTTP("admin listener", s.adminLn, adminHandler)
	}
}

// serveHTTP serves h on ln until Close drains it.
func (s *Stack) serveHTTP(name string, ln net.Listener, h http.Handler) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	var done sync.WaitGroup
	done.Go(func() { s.serveErr <- srv.Serve(ln) })
	s.onClose(phaseServe, name, func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		return errors.Join(err, waitGroup(ctx, &done, name))
	})
}

// waitGroup waits for wg within ctx.
func waitGroup(ctx context.Context, wg *sync.WaitGroup, what string) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s did not stop: %w", what, ctx.Err())
	}
}

// Wait blocks until ctx is done (nil) or a listener stops serving on its
// own (its error). Then drain and Close the stack.
func (s *Stack) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.serveErr:
		if err == nil {
			err = errors.New("a listener stopped serving")
		}
		return err
	}
}

// Drain turns /readyz to 503 and waits delay (or ctx), so load balancers
// stop sending new calls before Close stops the listeners.
func (s *Stack) Drain(ctx context.Context, delay time.Duration) {
	drainWait(ctx, s.ready, delay, s.log)
}

// Close stops the system and joins every goroutine it started, in order:
// the listeners drain (in-flight calls finish, within 10 s), the gateway
// stops, then the policy sources (bundle polling, policy sync, the policy
// directory watch), the stdio bridges and demo backends, the audit trail
// (flushed), the token store and the policy runtime. Each step is bounded
// by ctx; Close returns what failed. It may be called more than once.
func (s *Stack) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

func (s *Stack) close(ctx context.Context) error {
	var errs []error
	run := func(ctx context.Context, p phase) {
		list := s.closers[p]
		for i := len(list) - 1; i >= 0; i-- {
			if err := list[i].fn(ctx); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", list[i].name, err))
			}
		}
	}
	dctx, cancel := context.WithTimeout(ctx, drainTimeout)
	run(dctx, phaseServe)
	run(dctx, phaseGateway)
	cancel()
	if s.serveErr != nil {
	drain:
		for {
			select {
			case err := <-s.serveErr:
				if err != nil && !errors.Is(err, http.ErrServerClosed) {
					errs = append(errs, err)
				}
			default:
				break drain
			}
		}
	}
	s.bgCancel()
	run(ctx, phasePolicySources)
	if err := waitGroup(ctx, &s.bg, "the policy sources"); err != nil {
		errs = append(errs, err)
	}
	for p := phaseBackends; p < numPhases; p++ {
		run(ctx, p)
	}
	return errors.Join(errs...)
}

// ignoreClosed drops the error of closing what is closed already.
func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// URL is the base URL clients reach: the gateway's MCP endpoints are under
// URL()/mcp.
func (s *Stack) URL() string { return s.base }

// Addr is the address the gateway (or the AS alone) listens on.
func (s *Stack) Addr() net.Addr { return s.ln.Addr() }

// AdminURL is the admin listener's base URL ("" without one).
func (s *Stack) AdminURL() string { return s.adminBase }

// Issuer is the authorization server's issuer URL: this process's or the
// remote one's.
func (s *Stack) Issuer() string { return s.issuer }

// DataDir is the data dir.
func (s *Stack) DataDir() string { return s.cfg.DataDir }

// Registry is the policy registry (nil when an outside decider decides).
func (s *Stack) Registry() *plugins.Registry {
	if s.policy == nil {
		return nil
	}
	return s.policy.registry
}

// Gateway is the gateway (nil when the AS runs alone).
func (s *Stack) Gateway() *gateway.Gateway { return s.gw }

// Approvals returns the approvals of held calls (nil without a gateway).
func (s *Stack) Approvals() *approvals.Service { return s.approvals }

// AuthServer is the in-process authorization server (nil with a remote
// one).
func (s *Stack) AuthServer() *asrv.Server {
	if s.as == nil {
		return nil
	}
	return s.as.server
}

// StatementKey is the data dir's software statement issuer key, which the
// in-process authorization server trusts (nil with a remote AS).
func (s *Stack) StatementKey() *asrv.IssuerKey {
	if s.as == nil {
		return nil
	}
	return s.as.issuer
}

// Store is the token store (nil when tokens are introspected over HTTP).
func (s *Stack) Store() asrv.Store { return s.store }

// StoreName names the token store for people (no password).
func (s *Stack) StoreName() string { return s.storeName }

// Trail is the audit trail (nil without a gateway).
func (s *Stack) Trail() *audit.Trail { return s.trail }

// Index is the audit index (nil without a gateway).
func (s *Stack) Index() *index.Index { return s.index }

// Backends are the gateway's backends: the demo ones, then the configured.
func (s *Stack) Backends() []gateway.Backend { return s.backends }

// DemoAgents are the seeded demo agents (Demo.Agents).
func (s *Stack) DemoAgents() []DemoAgent { return s.agents }

// SignIn says where people sign in at the in-process authorization server
// (the zero SignIn when there is none, or nobody can).
type SignIn struct {
	// Mode names the sources for people ("" for none): the demo users, a
	// users file, single sign-on at <issuer>.
	Mode string
	// Demo: the demo tenant's demo users sign in.
	Demo bool
	// UsersFile: people sign in with a password from a users file (or the
	// source given as AuthServer.Users).
	UsersFile bool
	// SSO is the provider's issuer and RedirectURI the redirect URI to
	// register there; empty without single sign-on. DashboardRedirectURI
	// is the dashboard's (on the admin listener), when there is one.
	SSO, RedirectURI, DashboardRedirectURI string
	// Remote: people sign in at a remote authorization server
	// (Config.RemoteAS), not here.
	Remote bool
}

// SignIn says where people sign in.
func (s *Stack) SignIn() SignIn {
	if s.as == nil || !s.as.served {
		return SignIn{Remote: s.cfg.RemoteAS != nil}
	}
	p := s.as.people
	out := SignIn{Mode: p.mode(), Demo: p.demo, UsersFile: p.users != nil && !p.demo}
	if p.sso != nil {
		out.SSO, out.RedirectURI = p.sso.Issuer(), p.sso.RedirectURL()
		if s.adminBase != "" {
			out.DashboardRedirectURI = identity.CallbackURL(s.adminBase)
		}
	}
	return out
}
