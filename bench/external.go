package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// The targets of `pbac bench external`, each a separate process in front of
// (or being) the same demo backend process, in the order a round runs them.
const (
	// TargetDirect is the backend process itself.
	TargetDirect = "direct"
	// TargetNginx is nginx (Debian's) as a keep-alive reverse proxy to
	// the backend: the floor of an extra hop, by a proxy no one here wrote.
	TargetNginx = "nginx"
	// TargetCaddy is Caddy (Debian's) as a keep-alive reverse proxy to the
	// backend: the same hop by a well-known proxy written in Go, so the
	// cost of Go's runtime and net/http alone shows beside nginx's event
	// loop and the gateway.
	TargetCaddy = "caddy"
	// TargetGateway is `pbac up` as its own process, with the backend as
	// its only backend.
	TargetGateway = "gateway"
)

// Targets lists the external targets in round order.
func Targets() []string { return []string{TargetDirect, TargetNginx, TargetCaddy, TargetGateway} }

// Proxies lists the targets that are a reference proxy no one here wrote,
// in round order.
func Proxies() []string { return []string{TargetNginx, TargetCaddy} }

// The processes whose CPU time an external run reads from /proc.
const (
	ProcBackend = "backend"
	ProcNginx   = "nginx"
	ProcCaddy   = "caddy"
	ProcGateway = "gateway"
	// ProcLoad is the load generator (the process running the bench).
	ProcLoad = "load"
)

// Procs lists the processes in report order.
func Procs() []string { return []string{ProcBackend, ProcNginx, ProcCaddy, ProcGateway, ProcLoad} }

// The backends an external run can put behind the targets.
const (
	BackendDemo  = "demo"  // pbac demo backend: the go-sdk demo server
	BackendLight = "light" // the light bench backend (lightmcp)
)

// ExternalScenario describes an external run.
type ExternalScenario struct {
	Tool string `json:"tool"`
	// Backend is the backend process: BackendDemo or BackendLight.
	Backend     string    `json:"backend,omitempty"`
	ArgsBytes   int       `json:"args_bytes"`
	Rates       []float64 `json:"rates"`
	DurationS   float64   `json:"duration_s"`
	WarmupS     float64   `json:"warmup_s"`
	Rounds      int       `json:"rounds"`
	Connections int       `json:"connections"`
	CPUs        int       `json:"cpus"`
	GoVersion   string    `json:"go_version"`
	// Nginx is `nginx -v`'s version, "" when nginx did not run.
	Nginx string `json:"nginx,omitempty"`
	// Caddy is `caddy version`'s version, "" when Caddy did not run.
	Caddy string `json:"caddy,omitempty"`
	// Date is when the run started (UTC).
	Date string `json:"date"`
	// LoadStart and LoadEnd are the machine's load averages (1, 5 and 15
	// minutes, /proc/loadavg) when the run started and ended: what else
	// ran beside it.
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
	// Pinned says which CPUs each process was held to (pbac bench external
	// --pin), "" when the kernel placed them.
	Pinned string `json:"pinned,omitempty"`
	// GoSysmon is how the gateway's Go monitor thread waited between calls
	// (PBAC_GO_SYSMON: backoff or default; operator when GODEBUG set it).
	GoSysmon string `json:"go_sysmon,omitempty"`
}

// ExternalRun is one target measured at one rate in one round.
type ExternalRun struct {
	Target   string  `json:"target"`
	Rate     float64 `json:"rate"`
	Round    int     `json:"round"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	// P50 and P99 are from the intended send time (open loop), in µs.
	P50 float64 `json:"p50_us"`
	P99 float64 `json:"p99_us"`
	// ServiceP50 is from the actual send.
	ServiceP50 float64 `json:"service_p50_us"`
	Throughput float64 `json:"throughput_rps"`
	// CPU is each process's user + system CPU time over the run divided by
	// the successful calls, in µs, by process (Procs).
	CPU map[string]float64 `json:"cpu_us_per_call"`
	// BackendConns is how many TCP connections the target's process
	// (nginx's, the gateway's) held established to the backend right
	// after the run; nil for direct, or where /proc is not readable.
	BackendConns *int             `json:"backend_conns,omitempty"`
	Error        string           `json:"error,omitempty"`
	ErrorKinds   map[string]int64 `json:"error_kinds,omitempty"`
}

// NewExternalRun summarises one run; cpu is each process's CPU time over
// it.
func NewExternalRun(target string, round int, r *Result, cpu map[string]time.Duration) ExternalRun {
	m := NewModeReport(target, r, 0)
	run := ExternalRun{Target: target, Rate: r.Rate, Round: round, Requests: m.Requests, Errors: m.Errors,
		P50: m.P50, P99: m.P99, ServiceP50: m.ServiceP50, Throughput: m.ThroughputRPS,
		Error: m.Error, ErrorKinds: m.ErrorKinds, CPU: map[string]float64{}}
	if ok := r.Latency.TotalCount(); ok > 0 {
		for p, d := range cpu {
			run.CPU[p] = round1(float64(d) / float64(time.Microsecond) / float64(ok))
		}
	}
	return run
}

// Spread is a figure's median over rounds and its range.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func spreadOf(vs []float64) *Spread {
	if len(vs) == 0 {
		return nil
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &Spread{Median: round1(med), Min: s[0], Max: s[len(s)-1]}
}

// ExternalSummary is one target at one rate over every round.
type ExternalSummary struct {
	Target   string  `json:"target"`
	Rate     float64 `json:"rate"`
	Rounds   int     `json:"rounds"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	P50      *Spread `json:"p50_us"`
	P99      *Spread `json:"p99_us"`
	// AddedP50 and AddedP99 are, round by round, this target's figure
	// minus direct's of the same round.
	AddedP50 *Spread `json:"added_p50_us,omitempty"`
	AddedP99 *Spread `json:"added_p99_us,omitempty"`
	// CPU is the median over rounds of each process's CPU µs per call.
	CPU map[string]float64 `json:"cpu_us_per_call"`
	// BackendConns spreads ExternalRun.BackendConns over the rounds.
	BackendConns *Spread `json:"backend_conns,omitempty"`
}

// ExternalReport is the outcome of `pbac bench external`.
type ExternalReport struct {
	Scenario ExternalScenario  `json:"scenario"`
	Runs     []ExternalRun     `json:"runs"`
	Summary  []ExternalSummary `json:"summary"`
	// Notes say what did not run and why (nginx or Caddy not installed,
	// say).
	Notes []string `json:"notes,omitempty"`
}

// Compute fills the summary from the runs.
func (r *ExternalReport) Compute() {
	r.Summary = nil
	direct := map[[2]float64]ExternalRun{} // by rate, round
	for _, run := range r.Runs {
		if run.Target == TargetDirect && run.P50 > 0 {
			direct[[2]float64{run.Rate, float64(run.Round)}] = run
		}
	}
	for _, rate := range r.Scenario.Rates {
		for _, target := range Targets() {
			s := ExternalSummary{Target: target, Rate: rate, CPU: map[string]float64{}}
			var p50, p99, a50, a99, conns []float64
			cpu := map[string][]float64{}
			for _, run := range r.Runs {
				if run.Target != target || run.Rate != rate {
					continue
				}
				s.Rounds++
				s.Requests += run.Requests
				s.Errors += run.Errors
				if run.BackendConns != nil {
					conns = append(conns, float64(*run.BackendConns))
				}
				if run.P50 <= 0 {
					continue
				}
				p50, p99 = append(p50, run.P50), append(p99, run.P99)
				if d, ok := direct[[2]float64{rate, float64(run.Round)}]; ok && target != TargetDirect {
					a50, a99 = append(a50, round1(run.P50-d.P50)), append(a99, round1(run.P99-d.P99))
				}
				for p, v := range run.CPU {
					cpu[p] = append(cpu[p], v)
				}
			}
			if s.Rounds == 0 {
				continue
			}
			s.P50, s.P99, s.AddedP50, s.AddedP99 = spreadOf(p50), spreadOf(p99), spreadOf(a50), spreadOf(a99)
			s.BackendConns = spreadOf(conns)
			for p, vs := range cpu {
				s.CPU[p] = spreadOf(vs).Median
			}
			r.Summary = append(r.Summary, s)
		}
	}
}

// Summaries returns the summaries of target, by rate.
func (r *ExternalReport) Summaries(target string) []ExternalSummary {
	var out []ExternalSummary
	for _, s := range r.Summary {
		if s.Target == target {
			out = append(out, s)
		}
	}
	return out
}

// Failed tells whether a run had more than 1% errors or a target that ran
// produced no figures.
func (r *ExternalReport) Failed() bool {
	if len(r.Runs) == 0 {
		return true
	}
	for _, run := range r.Runs {
		if run.Requests == 0 || float64(run.Errors) > 0.01*float64(run.Requests) || run.P50 <= 0 {
			return true
		}
	}
	return false
}

// JSON is the report as indented JSON.
func (r *ExternalReport) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteTable prints the summary as a text table.
func (r *ExternalReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %6s %8s %6s %20s %22s %20s %24s %12s  %s\n", "target", "rate", "calls", "errors",
		"p50 µs", "p99 µs", "+p50 µs", "+p99 µs", "conns", "CPU µs/call: "+strings.Join(Procs(), " / "))
	for _, s := range r.Summary {
		fmt.Fprintf(&b, "%-8s %6.0f %8d %6d %20s %22s %20s %24s %12s  %s\n", s.Target, s.Rate, s.Requests, s.Errors,
			spreadText(s.P50, false), spreadText(s.P99, false), spreadText(s.AddedP50, true), spreadText(s.AddedP99, true),
			spreadText(s.BackendConns, false), cpuText(s.CPU))
	}
	b.WriteString("\nmedian over rounds [min..max]; +p50/+p99: the target's figure minus direct's, round by round;\n")
	b.WriteString("conns: TCP connections the target's process held established to the backend right after each run\n")
	if r.Scenario.Pinned != "" {
		fmt.Fprintf(&b, "pinned: %s\n", r.Scenario.Pinned)
	}
	if r.Scenario.GoSysmon != "" {
		fmt.Fprintf(&b, "the gateway's Go monitor thread (PBAC_GO_SYSMON): %s\n", r.Scenario.GoSysmon)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func spreadText(s *Spread, signed bool) string {
	if s == nil {
		return "—"
	}
	f := us
	if signed {
		f = func(v float64) string {
			if v >= 0 {
				return "+" + us(v)
			}
			return "−" + us(-v)
		}
	}
	if s.Min == s.Max {
		return f(s.Median)
	}
	return fmt.Sprintf("%s [%s..%s]", f(s.Median), f(s.Min), f(s.Max))
}

func cpuText(cpu map[string]float64) string {
	parts := make([]string, 0, len(Procs()))
	for _, p := range Procs() {
		if v, ok := cpu[p]; ok {
			parts = append(parts, us(v))
		} else {
			parts = append(parts, "—")
		}
	}
	return strings.Join(parts, " / ")
}

// ExternalSection marks the part of bench/RESULTS.md `pbac bench external
// --markdown-file` rewrites: from the start marker to the end marker.
const (
	ExternalSectionStart = "<!-- pbac bench external: start -->"
	ExternalSectionEnd   = "<!-- pbac bench external: end -->"
)

// ExternalSectionMarkers are the markers of a run on backend ("demo" or
// "light"), pinned (--pin) or not: each of the four has a section of its
// own, so that a run on the light bench backend does not replace the demo
// backend's, nor a pinned run one the kernel placed.
func ExternalSectionMarkers(backend string, pinned bool) (start, end string) {
	name := "pbac bench external"
	if backend == BackendLight {
		name += " --backend light"
	}
	if pinned {
		name += " --pin"
	}
	return "<!-- " + name + ": start -->", "<!-- " + name + ": end -->"
}

// WriteMarkdown writes the report as a Markdown section (without the
// markers): the scenario, a table per rate and the notes.
func (r *ExternalReport) WriteMarkdown(w io.Writer, command string) error {
	var b strings.Builder
	sc := r.Scenario
	backend := "the demo backend"
	if sc.Backend == BackendLight {
		backend = "the light bench backend"
	}
	fmt.Fprintf(&b, "Run %s: `%s` — %s of %s on %d connections, %d rounds of %s per target and rate (after %s of warm-up each), the targets interleaved in every round (%s); %d CPUs, %s",
		sc.Date, command, sc.Tool, backend, sc.Connections, sc.Rounds, secs(sc.DurationS), secs(sc.WarmupS), strings.Join(r.targetsRun(), ", "), sc.CPUs, sc.GoVersion)
	if sc.Nginx != "" {
		fmt.Fprintf(&b, ", %s", sc.Nginx)
	}
	if sc.Caddy != "" {
		fmt.Fprintf(&b, ", Caddy %s", sc.Caddy)
	}
	if sc.LoadStart != "" && sc.LoadEnd != "" {
		fmt.Fprintf(&b, "; the machine's load average (1/5/15 min) was %s at the start and %s at the end", sc.LoadStart, sc.LoadEnd)
	}
	if sc.Pinned != "" {
		fmt.Fprintf(&b, "; pinned: %s", sc.Pinned)
	}
	if sc.GoSysmon != "" {
		fmt.Fprintf(&b, "; the gateway's Go monitor thread (PBAC_GO_SYSMON): %s", sc.GoSysmon)
	}
	b.WriteString(".\n\n")
	b.WriteString("| target | rate (calls/s) | calls | errors | p50 µs | p99 µs | added p50 µs | added p99 µs |")
	for i, p := range Procs() {
		if i == 0 {
			b.WriteString(" CPU µs/call:")
		}
		if p == ProcLoad {
			p = "load generator"
		}
		fmt.Fprintf(&b, " %s |", p)
	}
	b.WriteString(" connections to the backend |\n|---|---:|---:|---:|---|---|---|---|")
	b.WriteString(strings.Repeat("---:|", len(Procs())) + "---|\n")
	for _, s := range r.Summary {
		fmt.Fprintf(&b, "| %s | %.0f | %d | %d | %s | %s | %s | %s |", s.Target, s.Rate, s.Requests, s.Errors,
			spreadText(s.P50, false), spreadText(s.P99, false), spreadText(s.AddedP50, true), spreadText(s.AddedP99, true))
		for _, p := range Procs() {
			if v, ok := s.CPU[p]; ok {
				fmt.Fprintf(&b, " %s |", us(v))
			} else {
				b.WriteString(" — |")
			}
		}
		fmt.Fprintf(&b, " %s |\n", spreadText(s.BackendConns, false))
	}
	b.WriteString("\nFigures are the median over rounds, [min..max] the spread; added = the target's figure minus direct's in the same round. ")
	b.WriteString("CPU is each process's user + system time from /proc/<pid>/stat (children included: nginx's workers) over the measured run, divided by its successful calls; a process the target does not use shows what it spends idle. Connections to the backend: those the target's process (nginx's, Caddy's or the gateway's) held established to the backend right after each run.\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nNote: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// targetsRun lists the targets the runs measured, in round order.
func (r *ExternalReport) targetsRun() []string {
	var out []string
	for _, t := range Targets() {
		if slices.ContainsFunc(r.Runs, func(run ExternalRun) bool { return run.Target == t }) {
			out = append(out, t)
		}
	}
	return out
}

// SpliceSection returns doc with the text between start and end replaced
// by section, or doc with heading, the markers and section appended when
// it has no such markers.
func SpliceSection(doc []byte, start, end, heading string, section []byte) ([]byte, error) {
	i := bytes.Index(doc, []byte(start))
	j := bytes.Index(doc, []byte(end))
	var out bytes.Buffer
	switch {
	case i < 0 && j < 0:
		out.Write(bytes.TrimRight(doc, "\n"))
		if len(doc) > 0 {
			out.WriteString("\n\n")
		}
		out.WriteString(heading + "\n\n" + start + "\n")
		out.Write(section)
		out.WriteString(end + "\n")
	case i < 0 || j < i:
		return nil, errors.New("the section's markers are missing or out of order: " + start + " … " + end)
	default:
		out.Write(doc[:i+len(start)])
		out.WriteString("\n")
		out.Write(section)
		out.Write(doc[j:])
	}
	return out.Bytes(), nil
}
