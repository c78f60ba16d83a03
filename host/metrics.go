package host

import (
	"sync"
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
	policy    *prometheus.GaugeVec

	mu            sync.Mutex
	policyVersion string
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbac_decisions_total", Help: "Requests decided by the gateway, by MCP method and result.",
		}, []string{"method", "decision"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pbac_stage_seconds",
			Help:    "Latency of each stage of a request: introspect, policy, backend, total.",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1},
		}, []string{"stage"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pbac_active_sessions", Help: "MCP sessions the gateway holds.",
		}),
		policy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pbac_policy_version_info", Help: "The policy version of the latest decision (value 1).",
		}, []string{"version"}),
	}
	m.reg.MustRegister(m.decisions, m.latency, m.sessions, m.policy,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) decision(method, decision string) {
	m.decisions.WithLabelValues(method, decision).Inc()
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
	m.latency.WithLabelValues(name).Observe(d.Seconds())
}
