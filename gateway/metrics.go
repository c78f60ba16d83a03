package gateway

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the gateway's Prometheus metrics, on a registry of its own
// (no global state).
type metrics struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	sessions  prometheus.Gauge
	// sessionsEnded counts sessions the gateway ended itself, by reason
	// ("idle", "quota").
	sessionsEnded *prometheus.CounterVec
	policy        *prometheus.GaugeVec
	// calls and callSeconds count and time the calls (tools/call,
	// resources/read, prompts/get) by backend, tool, agent tier and
	// outcome; every label is bounded (callLabels).
	calls       *prometheus.CounterVec
	callSeconds *prometheus.HistogramVec
	// notifications counts the messages backends push on streams, by
	// backend and outcome (passed, withheld: listen.go).
	notifications *prometheus.CounterVec

	mu            sync.Mutex
	policyVersion string
	// active reads the active policy version at scrape time, so the
	// version metric moves when a new version goes live, before any
	// decision is made with it; nil when the policy cannot tell.
	active func() string

	// recent keeps each stage's latest observations for exact quantiles
	// over a window (the dashboard's latency panel).
	recent map[string]*window
	// observers caches latency's histogram of each stage observed so far
	// (stage -> prometheus.Observer): WithLabelValues hashes the label and
	// takes a lock on every call. A stage's series still appears with its
	// first observation.
	observers sync.Map
	// counts of decisions, for the same panel.
	counts sync.Map // decision -> *atomic.Uint64
}

// latencyWindow is how many latest observations of each stage the gateway
// keeps for the latency report.
const latencyWindow = 1024

// window is a ring of the latest observations of one stage.
type window struct {
	mu    sync.Mutex
	us    [latencyWindow]int64
	next  int
	total uint64
}

func (w *window) add(us int64) {
	w.mu.Lock()
	w.us[w.next] = us
	w.next = (w.next + 1) % latencyWindow
	w.total++
	w.mu.Unlock()
}

// quantiles returns the p50 and p99 of the window and how many
// observations it holds.
func (w *window) quantiles() (p50, p99 int64, n int) {
	w.mu.Lock()
	n = int(min(w.total, latencyWindow))
	vals := make([]int64, n)
	copy(vals, w.us[:n])
	w.mu.Unlock()
	if n == 0 {
		return 0, 0, 0
	}
	slices.Sort(vals)
	at := func(q float64) int64 { return vals[min(n-1, int(q*float64(n)))] }
	return at(0.50), at(0.99), n
}

// Latency stages of the report, in order.
var latencyStages = []string{"introspect", "policy", "backend", "total", "overhead"}

// StageLatency is one stage of a LatencyReport.
type StageLatency struct {
	Stage string `json:"stage"`
	Count int    `json:"count"`
	P50us int64  `json:"p50_us"`
	P99us int64  `json:"p99_us"`
}

// LatencyReport is p50/p99 per stage over the gateway's latest calls.
type LatencyReport struct {
	Window    int               `json:"window"`
	Stages    []StageLatency    `json:"stages"`
	Decisions map[string]uint64 `json:"decisions"`
}

// Latency reports p50 and p99 of each stage (introspect, policy, backend,
// total, and overhead = total - backend) over the latest calls.
func (g *Gateway) Latency() LatencyReport {
	m := g.metrics
	out := LatencyReport{Window: latencyWindow, Decisions: map[string]uint64{}}
	for _, st := range latencyStages {
		p50, p99, n := m.recent[st].quantiles()
		out.Stages = append(out.Stages, StageLatency{Stage: st, Count: n, P50us: p50, P99us: p99})
	}
	m.counts.Range(func(k, v any) bool {
		out.Decisions[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

func newMetrics(active func() string) *metrics {
	m := &metrics{
		active: active,
		reg:    prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbac_decisions_total", Help: "Requests decided by the gateway, by MCP method and result.",
		}, []string{"method", "decision"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pbac_stage_seconds",
			Help: "Latency of each stage of a request: introspect, policy, backend, total.",
			// Fine below 100 µs: introspection and a decision take 2–100 µs,
			// and a p50 read off the histogram is no finer than its buckets.
			Buckets: []float64{5e-6, 10e-6, 15e-6, 20e-6, 25e-6, 35e-6, 50e-6, 75e-6, 100e-6, 150e-6, 250e-6, 500e-6,
				1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1},
		}, []string{"stage"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pbac_active_sessions", Help: "MCP sessions the gateway holds.",
		}),
		sessionsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbac_sessions_ended_total", Help: "Sessions the gateway ended itself: idle too long, or pushed out by the agent's session quota.",
		}, []string{"reason"}),
		policy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pbac_policy_version_info", Help: "The active policy version (value 1).",
		}, []string{"version"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbac_calls_total",
			Help: "Calls (tools/call, resources/read, prompts/get) decided, by backend, tool (catalogued tools; any other is \"other\"), agent tier and outcome (allow, deny, hold, error).",
		}, []string{"backend", "tool", "tier", "outcome"}),
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pbac_call_seconds",
			Help:    "Time from a call's arrival to its answer's headers (the audit record's total), by backend, tool (catalogued tools; any other is \"other\") and outcome.",
			Buckets: []float64{250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1, 10},
		}, []string{"backend", "tool", "outcome"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbac_stream_messages_total",
			Help: "Messages backends pushed on a subscriptions/listen or GET stream, by backend and outcome: passed, or withheld (what the caller may not see, or does not parse).",
		}, []string{"backend", "outcome"}),
	}
	m.recent = map[string]*window{}
	for _, st := range latencyStages {
		m.recent[st] = &window{}
	}
	m.reg.MustRegister(m.decisions, m.latency, m.sessions, m.sessionsEnded, policyVersionCollector{m}, m.calls, m.callSeconds, m.notifications,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// methodLabels are the values pbac_decisions_total's method label takes:
// what clients send in the MCP revisions the gateway speaks, the
// transport's GET and DELETE, "response" (a client's answer to a server
// request) and the gateway's own "auth" and "origin" refusals. Any other
// method is counted as "other": a label taken as the client wrote it would
// let one agent create series without bound.
var methodLabels = map[string]bool{
	"initialize": true, "ping": true, "server/discover": true,
	"tools/list": true, "tools/call": true,
	"resources/list": true, "resources/templates/list": true, "resources/read": true,
	"resources/subscribe": true, "resources/unsubscribe": true,
	"prompts/list": true, "prompts/get": true,
	"completion/complete": true, "logging/setLevel": true, "subscriptions/listen": true,
	"tasks/get": true, "tasks/list": true, "tasks/result": true, "tasks/cancel": true, "tasks/update": true,
	"notifications/initialized": true, "notifications/cancelled": true, "notifications/progress": true,
	"notifications/roots/list_changed": true, "notifications/tasks/status": true,
	"GET": true, "DELETE": true, anonymousResponse: true, "auth": true, "origin": true,
}

// decisionLabels are the values of the decision label.
var decisionLabels = map[string]bool{"allow": true, "deny": true, "error": true, "hold": true}

// boundedLabel is v when known lists it, else "other".
func boundedLabel(v string, known map[string]bool) string {
	if known[v] {
		return v
	}
	return "other"
}

func (m *metrics) decision(method, decision string) {
	if method == "" {
		method = anonymousResponse // a response carries no method
	}
	method, decision = boundedLabel(method, methodLabels), boundedLabel(decision, decisionLabels)
	m.decisions.WithLabelValues(method, decision).Inc()
	if method == "auth" {
		decision = "unauthenticated"
	}
	c, ok := m.counts.Load(decision)
	if !ok {
		c, _ = m.counts.LoadOrStore(decision, new(atomic.Uint64))
	}
	c.(*atomic.Uint64).Add(1)
}

// call counts and times one call under labels callLabels bounded.
func (m *metrics) call(backend, tool, tier, outcome string, took time.Duration) {
	m.calls.WithLabelValues(backend, tool, tier, outcome).Inc()
	m.callSeconds.WithLabelValues(backend, tool, outcome).Observe(took.Seconds())
}

// policyVersionCollector refreshes pbac_policy_version_info from the
// active version on every scrape.
type policyVersionCollector struct{ m *metrics }

func (c policyVersionCollector) Describe(ch chan<- *prometheus.Desc) { c.m.policy.Describe(ch) }

func (c policyVersionCollector) Collect(ch chan<- prometheus.Metric) {
	if c.m.active != nil {
		c.m.version(c.m.active())
	}
	c.m.policy.Collect(ch)
}

// activeVersion reads the active version of policy, when it can tell (the
// plugins registry can).
func activeVersion(policy Decider) func() string {
	a, ok := policy.(activePolicy)
	if !ok {
		return nil
	}
	return func() string {
		v, _, _ := a.ActivePolicy()
		return v
	}
}

// version records the policy version decisions are made with.
func (m *metrics) version(v string) {
	if v == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v == m.policyVersion {
		return
	}
	m.policy.Reset()
	m.policy.WithLabelValues(v).Set(1)
	m.policyVersion = v
}

func (m *metrics) stage(name string, d time.Duration) {
	o, ok := m.observers.Load(name)
	if !ok {
		o, _ = m.observers.LoadOrStore(name, m.latency.WithLabelValues(name))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
	m.recent[name].add(d.Microseconds())
}

// overhead records what the gateway added to a forwarded call.
func (m *metrics) overhead(d time.Duration) {
	m.recent["overhead"].add(d.Microseconds())
}

// notification counts one message a backend pushed on a stream.
func (m *metrics) notification(backend, outcome string) {
	m.notifications.WithLabelValues(backend, outcome).Inc()
}
