package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// The modes of `pbac bench`, in the order they run and are reported.
const (
	// ModeDirect calls the backend itself.
	ModeDirect = "direct"
	// ModeProxy goes through a bare net/http/httputil reverse proxy: the
	// floor of any extra hop.
	ModeProxy = "proxy"
	// ModeGateway goes through the gateway: token introspection, the Wasm
	// policy on tools/call with its arguments, audit, proxy.
	ModeGateway = "gateway"
	// ModeOPASidecar goes through the gateway deciding through an OPA
	// server over HTTP (introspection's decision too).
	ModeOPASidecar = "opa-sidecar"
)

// Modes lists every mode in run order.
func Modes() []string { return []string{ModeDirect, ModeProxy, ModeGateway, ModeOPASidecar} }

// Loop kinds of a scenario.
const (
	LoopOpen   = "open"
	LoopClosed = "closed"
)

// Scenario describes what was run.
type Scenario struct {
	// Loop is "open" (fixed rate, latency from intended send times) or
	// "closed" (saturation).
	Loop        string  `json:"loop"`
	Tool        string  `json:"tool"`
	ArgsBytes   int     `json:"args_bytes"`
	Rate        float64 `json:"rate,omitempty"`
	DurationS   float64 `json:"duration_s"`
	WarmupS     float64 `json:"warmup_s"`
	Concurrency int     `json:"concurrency"`
	// CPUs is GOMAXPROCS of the run.
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	// CPUScope says whose CPU time cpu_ms_per_1k counts.
	CPUScope string `json:"cpu_scope"`
	// Attackers is the number of hostile connections of the attack phase
	// (pbac bench --attackers), 0 for none.
	Attackers int `json:"attackers,omitempty"`
	// AttackTool is the tool they call with pathological arguments.
	AttackTool string `json:"attack_tool,omitempty"`
}

// UnderAttack is the suffix of a row measured while the attackers ran:
// "gateway" is the baseline, "gateway+attack" the same calls under attack.
const UnderAttack = "+attack"

// TokenRow is the suffix of a row that measures the authorization
// server's token endpoint (client credentials) beside a mode's tool calls:
// "gateway:token", "gateway:token+attack".
const TokenRow = ":token"

// AttackFigures is what the attackers of a row's run got.
type AttackFigures struct {
	Attackers int      `json:"attackers"`
	Tool      string   `json:"tool"`
	Shapes    []string `json:"shapes"`
	// ArgBytes is the size of each pathological string.
	ArgBytes int   `json:"arg_bytes"`
	Requests int64 `json:"requests"`
	// Outcomes counts their calls by outcome ("HTTP 403: …", "tool
	// error", "ok", "timed out").
	Outcomes map[string]int64 `json:"outcomes"`
	P50      float64          `json:"p50_us"`
	P99      float64          `json:"p99_us"`
	Max      float64          `json:"max_us"`
}

// NewAttackFigures summarises an attack.
func NewAttackFigures(attackers int, tool string, shapes []AttackShape, argBytes int, r *AttackResult) *AttackFigures {
	a := &AttackFigures{Attackers: attackers, Tool: tool, ArgBytes: argBytes, Requests: r.Requests, Outcomes: r.Outcomes}
	for _, s := range shapes {
		a.Shapes = append(a.Shapes, s.Name)
	}
	if h := r.Latency; h.TotalCount() > 0 {
		a.P50, a.P99, a.Max = micros(h.ValueAtQuantile(50)), micros(h.ValueAtQuantile(99)), micros(h.Max())
	}
	return a
}

// ModeReport is one mode's figures; latencies in microseconds.
type ModeReport struct {
	Name     string  `json:"name"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	P50      float64 `json:"p50_us"`
	P90      float64 `json:"p90_us"`
	P99      float64 `json:"p99_us"`
	P999     float64 `json:"p999_us"`
	Max      float64 `json:"max_us"`
	Mean     float64 `json:"mean_us"`
	// ServiceP50 and ServiceP99 are measured from the actual send rather
	// than the intended one (equal to P50, P99 in the closed loop).
	ServiceP50    float64 `json:"service_p50_us"`
	ServiceP99    float64 `json:"service_p99_us"`
	ThroughputRPS float64 `json:"throughput_rps"`
	// Overloaded is set when an open-loop mode completed less than 95% of
	// the rate: calls queued for a connection and its latencies are mostly
	// that wait.
	Overloaded bool    `json:"overloaded,omitempty"`
	CPUMsPer1k float64 `json:"cpu_ms_per_1k"`
	// AddedP50 and AddedP99 are this mode's latency over direct's.
	AddedP50 *float64 `json:"added_p50_us,omitempty"`
	AddedP99 *float64 `json:"added_p99_us,omitempty"`
	// Stages is the gateway's own per-stage timing over its latest calls,
	// for a gateway the benchmark started.
	Stages []Stage `json:"gateway_stages,omitempty"`
	// Probe is what the eBPF probe saw of the measured calls (pbac bench
	// --probe), as pbac probe --json prints it.
	Probe json.RawMessage `json:"probe,omitempty"`
	// Attack is what the attackers got while this row was measured (rows
	// named <mode>+attack).
	Attack *AttackFigures `json:"attack,omitempty"`
	// Error says why the mode did not run, or its most frequent error.
	Error      string           `json:"error,omitempty"`
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
}

// Failed reports whether the mode did not run or had more than 1% errors.
func (m ModeReport) Failed() bool {
	return m.Requests == 0 || float64(m.Errors) > 0.01*float64(m.Requests)
}

// Stage is one stage of the gateway's own timing of a call (introspect,
// policy, backend, overhead = total − backend), in microseconds.
type Stage struct {
	Name string  `json:"stage"`
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
}

// Report is the whole run: per mode, and what the gateway adds.
type Report struct {
	Scenario Scenario     `json:"scenario"`
	Modes    []ModeReport `json:"modes"`
	// AddedP50 and AddedP99 are gateway − direct (null when either did not
	// run).
	AddedP50 *float64 `json:"added_p50_us"`
	AddedP99 *float64 `json:"added_p99_us"`
	// RatioP50 and RatioP99 are (gateway − direct) / (proxy − direct):
	// the gateway's cost in units of a bare extra hop.
	RatioP50 *float64 `json:"ratio_p50,omitempty"`
	RatioP99 *float64 `json:"ratio_p99,omitempty"`
	// Notes are what went wrong around the measurements, such as a
	// system that did not shut down.
	Notes []string `json:"notes,omitempty"`
}

// micros converts histogram nanoseconds to microseconds, to 0.1 µs.
func micros(ns int64) float64 { return math.Round(float64(ns)/100) / 10 }

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// NewModeReport summarises one run. extraCPU is CPU time spent outside
// this process on the mode's behalf (the OPA server's, say).
func NewModeReport(name string, r *Result, extraCPU time.Duration) ModeReport {
	m := ModeReport{Name: name, Requests: r.Requests, Errors: r.Errors}
	if h := r.Latency; h.TotalCount() > 0 {
		m.P50, m.P90, m.P99 = micros(h.ValueAtQuantile(50)), micros(h.ValueAtQuantile(90)), micros(h.ValueAtQuantile(99))
		m.P999, m.Max, m.Mean = micros(h.ValueAtQuantile(99.9)), micros(h.Max()), round1(h.Mean()/1e3)
	}
	if h := r.Service; h.TotalCount() > 0 {
		m.ServiceP50, m.ServiceP99 = micros(h.ValueAtQuantile(50)), micros(h.ValueAtQuantile(99))
	}
	m.ThroughputRPS = round1(r.Throughput())
	m.Overloaded = r.Rate > 0 && r.Throughput() < 0.95*r.Rate && !m.Failed()
	if r.Requests > 0 {
		cpu := r.CPU + extraCPU
		m.CPUMsPer1k = round1(float64(cpu) / float64(time.Millisecond) * 1000 / float64(r.Requests))
	}
	if r.Errors > 0 {
		m.Error = r.FirstError()
		m.ErrorKinds = r.ErrorKinds
	}
	return m
}

// FailedMode reports a mode that could not be set up.
func FailedMode(name string, err error) ModeReport {
	return ModeReport{Name: name, Error: err.Error()}
}

// Mode returns the named mode's report, if it ran.
func (r *Report) Mode(name string) (ModeReport, bool) {
	for _, m := range r.Modes {
		if m.Name == name && m.Requests > 0 && m.Requests > m.Errors {
			return m, true
		}
	}
	return ModeReport{}, false
}

// Compute fills in the added latencies and ratios from the modes.
func (r *Report) Compute() {
	r.AddedP50, r.AddedP99, r.RatioP50, r.RatioP99 = nil, nil, nil, nil
	direct, ok := r.Mode(ModeDirect)
	for i := range r.Modes {
		m := &r.Modes[i]
		m.AddedP50, m.AddedP99 = nil, nil
		if ok && m.Name != ModeDirect && !strings.Contains(m.Name, TokenRow) && m.Requests > m.Errors {
			m.AddedP50, m.AddedP99 = ptr(round1(m.P50-direct.P50)), ptr(round1(m.P99-direct.P99))
		}
	}
	gw, gok := r.Mode(ModeGateway)
	if !ok || !gok {
		return
	}
	r.AddedP50, r.AddedP99 = ptr(round1(gw.P50-direct.P50)), ptr(round1(gw.P99-direct.P99))
	if px, ok := r.Mode(ModeProxy); ok {
		if d := px.P50 - direct.P50; d > 0 {
			r.RatioP50 = ptr(math.Round(*r.AddedP50/d*100) / 100)
		}
		if d := px.P99 - direct.P99; d > 0 {
			r.RatioP99 = ptr(math.Round(*r.AddedP99/d*100) / 100)
		}
	}
}

func ptr(v float64) *float64 { return &v }

// Failed reports whether any mode failed (see ModeReport.Failed).
func (r *Report) Failed() bool {
	for _, m := range r.Modes {
		if m.Failed() {
			return true
		}
	}
	return false
}

// JSON is the report as indented JSON, ending in a newline.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteTable writes the report for people: one row per mode, then what
// the gateway adds and what dominates.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	s := r.Scenario
	if s.Loop == LoopClosed {
		fmt.Fprintf(&b, "pbac bench --saturate — %s, closed loop on %d connections for %s per mode (after %s warm-up), arguments %d B, %d CPUs\n\n",
			s.Tool, s.Concurrency, secs(s.DurationS), secs(s.WarmupS), s.ArgsBytes, s.CPUs)
	} else {
		fmt.Fprintf(&b, "pbac bench — %s at %g calls/s for %s per mode (after %s warm-up), %d connections, arguments %d B, %d CPUs\n",
			s.Tool, s.Rate, secs(s.DurationS), secs(s.WarmupS), s.Concurrency, s.ArgsBytes, s.CPUs)
		b.WriteString("latency in µs from each call's intended send time (open loop, coordinated omission corrected)\n\n")
	}
	width := 12
	for _, m := range r.Modes {
		width = max(width, len(m.Name)+1)
	}
	row := func(cells ...string) {
		fmt.Fprintf(&b, "%-*s", width, cells[0])
		for _, c := range cells[1:] {
			fmt.Fprintf(&b, " %9s", c)
		}
		b.WriteString("\n")
	}
	if s.Loop == LoopClosed {
		row("mode", "requests", "errors", "calls/s", "p50", "p99", "max", "CPU ms/1k")
	} else {
		row("mode", "requests", "errors", "p50", "p90", "p99", "p99.9", "max", "+p50", "+p99")
	}
	for _, m := range r.Modes {
		switch {
		case m.Requests == 0:
			row(m.Name, "—", "—")
		case s.Loop == LoopClosed:
			row(m.Name, strconv.FormatInt(m.Requests, 10), strconv.FormatInt(m.Errors, 10),
				fmt.Sprintf("%.0f", m.ThroughputRPS), us(m.P50), us(m.P99), us(m.Max), fmt.Sprintf("%.1f", m.CPUMsPer1k))
		default:
			row(m.Name, strconv.FormatInt(m.Requests, 10), strconv.FormatInt(m.Errors, 10),
				us(m.P50), us(m.P90), us(m.P99), us(m.P999), us(m.Max), added(m.AddedP50), added(m.AddedP99))
		}
	}
	b.WriteString("\n")
	if s.Loop == LoopClosed {
		r.closedSummary(&b)
	} else {
		r.openSummary(&b)
		r.attackSummary(&b)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "%s\n", n)
	}
	for _, m := range r.Modes {
		switch {
		case m.Requests == 0:
			fmt.Fprintf(&b, "%s did not run: %s\n", m.Name, m.Error)
		case m.Errors > 0:
			fmt.Fprintf(&b, "%s: %d of %d calls failed (%.2f%%): %s\n", m.Name, m.Errors, m.Requests,
				100*float64(m.Errors)/float64(m.Requests), describeErrors(m.ErrorKinds))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) openSummary(b *strings.Builder) {
	if r.AddedP50 != nil {
		fmt.Fprintf(b, "the gateway (introspection + Wasm policy + audit + proxy) adds %s µs at p50 and %s µs at p99 to a direct call\n",
			num(*r.AddedP50), num(*r.AddedP99))
		if px, ok := r.Mode(ModeProxy); ok && px.AddedP50 != nil {
			fmt.Fprintf(b, "a bare reverse proxy adds %s µs at p50 and %s µs at p99", num(*px.AddedP50), num(*px.AddedP99))
			var rs []string
			if r.RatioP50 != nil {
				rs = append(rs, fmt.Sprintf("%.1f× at p50", *r.RatioP50))
			}
			if r.RatioP99 != nil {
				rs = append(rs, fmt.Sprintf("%.1f× at p99", *r.RatioP99))
			}
			if len(rs) > 0 {
				fmt.Fprintf(b, "; the gateway costs %s what an extra hop does", strings.Join(rs, " and "))
			}
			b.WriteString("\n")
		}
	}
	gw, gok := r.Mode(ModeGateway)
	if sc, ok := r.Mode(ModeOPASidecar); ok && sc.AddedP50 != nil {
		if sc.Overloaded {
			fmt.Fprintf(b, "deciding through an OPA sidecar over HTTP did not keep up with %g calls/s on %d connections (%.0f/s): its calls queued for a connection",
				r.Scenario.Rate, r.Scenario.Concurrency, sc.ThroughputRPS)
			if gok {
				fmt.Fprintf(b, ";\nfrom the actual send it takes %s µs at p50 and %s µs at p99, the gateway %s and %s",
					us(sc.ServiceP50), us(sc.ServiceP99), us(gw.ServiceP50), us(gw.ServiceP99))
			}
		} else {
			fmt.Fprintf(b, "deciding through an OPA sidecar over HTTP adds %s µs at p50 and %s µs at p99", num(*sc.AddedP50), num(*sc.AddedP99))
			if gok {
				fmt.Fprintf(b, ": embedding the policy saves %s µs at p50 and %s µs at p99 per call", num(sc.P50-gw.P50), num(sc.P99-gw.P99))
			}
		}
		b.WriteString("\n")
	}
	for _, m := range r.Modes {
		if m.Overloaded && m.Name != ModeOPASidecar {
			fmt.Fprintf(b, "%s did not keep up with %g calls/s on %d connections (%.0f/s): its latencies are mostly queueing\n",
				m.Name, r.Scenario.Rate, r.Scenario.Concurrency, m.ThroughputRPS)
		}
	}
	for _, m := range r.Modes {
		if len(m.Stages) == 0 {
			continue
		}
		parts := make([]string, 0, len(m.Stages))
		for _, st := range m.Stages {
			parts = append(parts, fmt.Sprintf("%s %s/%s", st.Name, us(st.P50), us(st.P99)))
		}
		fmt.Fprintf(b, "%s, timed inside the gateway (p50/p99 µs over its latest calls): %s\n", m.Name, strings.Join(parts, ", "))
	}
	var svc []string
	for _, m := range r.Modes {
		if m.Requests > m.Errors {
			svc = append(svc, fmt.Sprintf("%s %s/%s", m.Name, us(m.ServiceP50), us(m.ServiceP99)))
		}
	}
	if len(svc) > 0 {
		fmt.Fprintf(b, "from the actual send (p50/p99 µs, without queueing for a connection): %s\n", strings.Join(svc, ", "))
	}
}

// attackSummary compares each row measured under attack with its
// baseline and says what the attackers got.
func (r *Report) attackSummary(b *strings.Builder) {
	for _, m := range r.Modes {
		base, ok := strings.CutSuffix(m.Name, UnderAttack)
		if !ok {
			continue
		}
		if a := m.Attack; a != nil {
			fmt.Fprintf(b, "%s: %d attackers called %s with %d-byte pathological arguments (%s) in a closed loop: %d calls, p50 %s µs, p99 %s µs, max %s µs; %s\n",
				m.Name, a.Attackers, a.Tool, a.ArgBytes, strings.Join(a.Shapes, ", "), a.Requests,
				us(a.P50), us(a.P99), us(a.Max), describeErrors(a.Outcomes))
		}
		bm, ok := r.Mode(base)
		if !ok || m.Requests <= m.Errors {
			continue
		}
		fmt.Fprintf(b, "%s under attack: p50 %s → %s µs (%s), p99 %s → %s µs (%s)\n", base,
			us(bm.P50), us(m.P50), times(m.P50, bm.P50), us(bm.P99), us(m.P99), times(m.P99, bm.P99))
	}
}

// times is v as a multiple of base.
func times(v, base float64) string {
	if base <= 0 {
		return "—"
	}
	return fmt.Sprintf("×%.1f", v/base)
}

func (r *Report) closedSummary(b *strings.Builder) {
	gw, gok := r.Mode(ModeGateway)
	if gok {
		fmt.Fprintf(b, "the gateway sustains %.0f tools/call per second at saturation on %d CPUs", gw.ThroughputRPS, r.Scenario.CPUs)
		if d, ok := r.Mode(ModeDirect); ok {
			fmt.Fprintf(b, " (the backend alone: %.0f/s); it costs %.1f CPU ms per 1k calls over a direct call", d.ThroughputRPS, gw.CPUMsPer1k-d.CPUMsPer1k)
		}
		b.WriteString("\n")
	}
	if r.Scenario.CPUScope != "" {
		fmt.Fprintf(b, "CPU: %s\n", r.Scenario.CPUScope)
	}
}

func us(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// num formats a difference, which may be negative.
func num(v float64) string {
	if math.Abs(v) >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func added(v *float64) string {
	if v == nil {
		return "—"
	}
	if *v >= 0 {
		return "+" + us(*v)
	}
	return "−" + us(-*v)
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).String()
}
