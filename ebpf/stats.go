package ebpf

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Stage is a point in a call's life the probe reports, in order.
type Stage uint8

const (
	// StageArrival: the request's bytes arrived on the gateway's connection
	// (kernel, socket level).
	StageArrival Stage = iota + 1
	// StageStart: the handler has the request (marker probeRequestStart).
	StageStart
	// StageAuthenticated: the token has been introspected (probeAuthenticated).
	StageAuthenticated
	// StageDecided: policy allowed the call (probeDecided).
	StageDecided
	// StageForward: the request to the backend is about to leave (probeForwardStart).
	StageForward
	// StageBackendSent: the gateway's HTTP client is handed the request
	// (probeBackendSent). The forwarding client (fasthttp's, in the
	// handler's goroutine) writes the request and reads the answer's
	// headers within one call, so "backend" holds that write, a few µs,
	// "wake-up" that read, and "client out" and "client in" are the
	// bookkeeping around it.
	StageBackendSent
	// StageBackendArrived: the backend's answer arrived on the connection
	// the forwarding client wrote the request to (kernel, socket level):
	// the end of the backend's own time. From here to
	// StageBackendFirstByte the gateway's thread is woken and reads the
	// answer's headers, a wait the client would not have had calling the
	// backend itself.
	StageBackendArrived
	// StageBackendFirstByte: the client has returned with the answer's
	// headers (probeBackendFirstByte).
	StageBackendFirstByte
	// StageBackendDone: the backend's response headers are in (probeBackendDone).
	StageBackendDone
	// StageReplyDone: the handler handed the reply to the server (probeReplyDone).
	StageReplyDone
	// StageReplyOut: the reply's first bytes leave for the client (kernel,
	// socket level).
	StageReplyOut
	numStages
)

var stageNames = [numStages]string{"", "arrival", "start", "authenticated", "decided", "forward", "backend_sent", "backend_arrived", "backend_first_byte", "backend_done", "reply_done", "reply_out"}

func (s Stage) String() string {
	if s < numStages {
		return stageNames[s]
	}
	return fmt.Sprintf("stage(%d)", uint8(s))
}

// segmentNames name the time between consecutive stages, the per-stage
// breakdown; with a stage not probed, the segment across it is named by
// its two ends.
var segmentNames = map[[2]Stage]string{
	{StageArrival, StageStart}:                   "receive",      // wake-up, read and parse of the request
	{StageStart, StageAuthenticated}:             "authenticate", // token introspection
	{StageAuthenticated, StageDecided}:           "decide",       // JSON-RPC parse, session, pbac/tool_call
	{StageDecided, StageForward}:                 "prepare",      // building the backend request
	{StageForward, StageBackendDone}:             "backend",      // the backend's time, as the gateway's handler sees it
	{StageForward, StageBackendSent}:             "client out",   // before the gateway's HTTP client takes the request
	{StageBackendSent, StageBackendFirstByte}:    "backend",      // the client writing the request, the backend, the client reading the headers
	{StageBackendSent, StageBackendArrived}:      "backend",      // the client writing the request, the backend until its answer arrives
	{StageBackendArrived, StageBackendFirstByte}: "wake-up",      // the gateway woken by the answer, reading its headers
	{StageBackendFirstByte, StageBackendDone}:    "client in",    // after the client returned
	{StageBackendDone, StageReplyDone}:           "respond",      // response headers, audit, handing over the body
	{StageReplyDone, StageReplyOut}:              "send",         // the server writing the reply
}

func segmentName(from, to Stage) string {
	if n, ok := segmentNames[[2]Stage{from, to}]; ok {
		return n
	}
	return from.String() + "→" + to.String()
}

// call is one call's stage times (ns since boot, 0 when not seen).
type call struct {
	ts [numStages]uint64
}

// Collector assembles events into calls and keeps histograms of their
// overhead: cumulative ones and ones for the current window.
type Collector struct {
	mu      sync.Mutex
	sockets bool // socket stages are expected (StageArrival, StageReplyOut)
	open    map[uint64]*call
	total   *histSet
	window  *histSet
	// counts
	events, partial, notForwarded, evicted int64
	// unbound counts backend arrivals dropped as not the call's own;
	// withoutArrival the calls measured to the answer's first byte read
	// because the probe saw no arrival of their own.
	unbound, withoutArrival int64
	lastTS                  uint64
}

// histSet is one set of histograms, in ns.
type histSet struct {
	ingress, egress, overhead, backend, total *hdrhistogram.Histogram
	segments                                  map[string]*hdrhistogram.Histogram
	order                                     []segmentKey // segments as the call goes, each named once
	calls                                     int64
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000_000, 3) }

func newHistSet() *histSet {
	return &histSet{ingress: newHist(), egress: newHist(), overhead: newHist(), backend: newHist(), total: newHist(),
		segments: map[string]*hdrhistogram.Histogram{}}
}

// segmentKey is a segment's name and its two ends, where it was first seen.
type segmentKey struct {
	name     string
	from, to Stage
}

// segment is the histogram of the segment from → to, kept in call order:
// by its ends, a wider segment (across a stage a call did not report)
// before the narrower ones it spans.
func (h *histSet) segment(from, to Stage) *hdrhistogram.Histogram {
	name := segmentName(from, to)
	hist, ok := h.segments[name]
	if !ok {
		hist = newHist()
		h.segments[name] = hist
		k := segmentKey{name, from, to}
		i, _ := slices.BinarySearchFunc(h.order, k, func(a, b segmentKey) int {
			return cmp.Or(cmp.Compare(a.from, b.from), cmp.Compare(b.to, a.to))
		})
		h.order = slices.Insert(h.order, i, k)
	}
	return hist
}

// maxOpen bounds the calls being assembled; openTimeout is how long a call
// may wait for its last stage before it is dropped as partial.
const (
	maxOpen     = 65536
	openTimeout = 30e9
)

// NewCollector returns a collector; sockets says whether the socket-level
// stages are attached, so a call is complete only with them.
func NewCollector(sockets bool) *Collector {
	return &Collector{sockets: sockets, open: map[uint64]*call{}, total: newHistSet(), window: newHistSet()}
}

// Add records one event.
func (c *Collector) Add(id uint64, stage Stage, ts uint64) {
	if stage == 0 || stage >= numStages {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events++
	if ts > c.lastTS {
		c.lastTS = ts
	}
	cl := c.open[id]
	if cl == nil && stage == StageBackendArrived {
		// It is reported with the call's first byte: a call it does not
		// find is over, and this is not its answer.
		c.unbound++
		return
	}
	if cl == nil {
		if len(c.open) >= maxOpen {
			c.evictLocked()
		}
		cl = &call{}
		c.open[id] = cl
	}
	cl.ts[stage] = ts
	last := StageReplyDone
	if c.sockets {
		last = StageReplyOut
	}
	if stage == last {
		delete(c.open, id)
		c.finishLocked(cl)
	}
}

// evictLocked drops calls that waited too long for their last stage.
func (c *Collector) evictLocked() {
	for id, cl := range c.open {
		first := uint64(0)
		for _, t := range cl.ts {
			if t != 0 && (first == 0 || t < first) {
				first = t
			}
		}
		if c.lastTS-first > openTimeout || len(c.open) >= maxOpen {
			delete(c.open, id)
			c.evicted++
		}
	}
}

func (c *Collector) finishLocked(cl *call) {
	ts := cl.ts
	if ts[StageForward] == 0 && ts[StageBackendSent] == 0 {
		// Answered by the gateway itself: a denial, an error.
		c.notForwarded++
		return
	}
	begin, end := StageStart, StageReplyDone
	if c.sockets {
		begin, end = StageArrival, StageReplyOut
	}
	// The backend's own time is from the request written to its
	// connection to the answer's first byte read (the HTTP client's
	// markers); the gateway's HTTP client on either side of it (handing
	// the request to its connection's writer, reading the response
	// headers) is the gateway's. Without those markers (an older gateway)
	// it is the handler's view, forward → response headers.
	out0, in1 := StageBackendSent, StageBackendFirstByte
	if ts[out0] == 0 || ts[in1] == 0 {
		out0, in1 = StageForward, StageBackendDone
	}
	// With the socket stages, the backend's own time ends when its answer
	// arrives on the gateway's connection; the gateway's wake-up and the
	// client's header read after it are the gateway's. An arrival outside
	// the client's markers (what the marker's goroutine read for another
	// call) is not this call's.
	arrivalDropped := false
	if arr := ts[StageBackendArrived]; arr != 0 {
		if in1 == StageBackendFirstByte && ts[out0] <= arr && arr <= ts[in1] {
			in1 = StageBackendArrived
		} else {
			ts[StageBackendArrived] = 0
			arrivalDropped = true
		}
	}
	if ts[begin] == 0 || ts[end] == 0 || ts[out0] == 0 || ts[in1] == 0 ||
		!(ts[begin] <= ts[out0] && ts[out0] <= ts[in1] && ts[in1] <= ts[end]) {
		c.partial++
		return
	}
	switch {
	case arrivalDropped:
		c.unbound++
	case in1 == StageBackendFirstByte && c.sockets:
		c.withoutArrival++
	}
	in, out := int64(ts[out0]-ts[begin]), int64(ts[end]-ts[in1])
	for _, h := range []*histSet{c.total, c.window} {
		h.calls++
		_ = h.ingress.RecordValue(in)
		_ = h.egress.RecordValue(out)
		_ = h.overhead.RecordValue(in + out)
		_ = h.backend.RecordValue(int64(ts[in1] - ts[out0]))
		_ = h.total.RecordValue(int64(ts[end] - ts[begin]))
		prev := Stage(0)
		for st := StageArrival; st < numStages; st++ {
			if ts[st] == 0 {
				continue
			}
			if prev != 0 && ts[st] >= ts[prev] {
				h.segment(prev, st).RecordValue(int64(ts[st] - ts[prev]))
			}
			prev = st
		}
	}
}

// Percentiles are a histogram's figures in µs.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	Max   float64 `json:"max_us"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	us := func(v int64) float64 { return float64(v) / 1e3 }
	return Percentiles{Count: h.TotalCount(), P50: us(h.ValueAtQuantile(50)), P90: us(h.ValueAtQuantile(90)),
		P99: us(h.ValueAtQuantile(99)), Max: us(h.Max())}
}

// Summary is what the probe saw, over a window or the whole run.
type Summary struct {
	// Calls forwarded to a backend with every stage the probe expects.
	Calls int64 `json:"calls"`
	// Sockets is true when the socket-level stages were attached: Ingress
	// then starts when the request arrived on the gateway's connection and
	// Egress ends when the reply left on it; otherwise both are bounded by
	// the markers inside the handler.
	Sockets bool `json:"sockets"`
	// Ingress: request in → the request to the backend written by the
	// gateway's HTTP client (forwarded, for a gateway without its markers):
	// the gateway's time before the backend.
	Ingress Percentiles `json:"ingress"`
	// Egress: the backend's answer arriving on the gateway's connection to
	// it (with the socket stages; otherwise its first byte read, or its
	// response headers for a gateway without the client's markers) →
	// reply out.
	Egress Percentiles `json:"egress"`
	// Overhead: ingress + egress of each call, what the gateway adds.
	Overhead Percentiles `json:"overhead"`
	// Backend: the request handed to the forwarding client → the answer
	// arriving (with the socket stages) or its first byte read (forward →
	// response headers, for a gateway without the client's markers).
	Backend Percentiles `json:"backend"`
	// Total: request in → reply out, the whole call in the gateway.
	Total Percentiles `json:"total"`
	// AddedP50 and AddedP99 are Total's percentiles minus Backend's: what
	// the gateway adds computed as pbac bench computes its added latency
	// (the gateway's percentile minus the backend's), where Overhead is
	// the percentile of each call's own overhead. With skewed latencies
	// the percentile of a sum exceeds the sum of the percentiles, so
	// AddedP50 is the figure to set beside the bench's added p50.
	AddedP50 float64 `json:"added_p50_us"`
	AddedP99 float64 `json:"added_p99_us"`
	// Stages breaks the call down between consecutive stages.
	Stages []StageFigures `json:"stages"`
	// Events read, calls not forwarded (answered by the gateway), calls
	// missing a stage or out of order, calls dropped waiting.
	Events       int64 `json:"events"`
	NotForwarded int64 `json:"not_forwarded"`
	Partial      int64 `json:"partial"`
	Evicted      int64 `json:"evicted,omitempty"`
	// Unbound: backend arrivals dropped as not the call's own (before its
	// request or after its first byte: the call is then measured to the
	// first byte read; or reported for a call already over).
	Unbound int64 `json:"unbound,omitempty"`
	// WithoutArrival: calls measured to the answer's first byte read, the
	// probe having seen no arrival for them (an answer that came before its
	// request's send was marked, one read by a goroutine other than the
	// marker's).
	WithoutArrival int64 `json:"without_arrival,omitempty"`
}

// StageFigures is one segment of the breakdown.
type StageFigures struct {
	Name string `json:"name"`
	Percentiles
}

func (h *histSet) summary() Summary {
	s := Summary{Calls: h.calls, Ingress: percentiles(h.ingress), Egress: percentiles(h.egress),
		Overhead: percentiles(h.overhead), Backend: percentiles(h.backend), Total: percentiles(h.total)}
	s.AddedP50, s.AddedP99 = s.Total.P50-s.Backend.P50, s.Total.P99-s.Backend.P99
	for _, k := range h.order {
		s.Stages = append(s.Stages, StageFigures{Name: k.name, Percentiles: percentiles(h.segments[k.name])})
	}
	return s
}

// Total is the summary of every call so far.
func (c *Collector) Total() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.summaryLocked(c.total)
}

// Window is the summary of the calls since the last Window, and starts a
// new window.
func (c *Collector) Window() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.summaryLocked(c.window)
	c.window = newHistSet()
	return s
}

func (c *Collector) summaryLocked(h *histSet) Summary {
	s := h.summary()
	s.Sockets = c.sockets
	s.Events, s.NotForwarded, s.Partial, s.Evicted, s.Unbound, s.WithoutArrival = c.events, c.notForwarded, c.partial, c.evicted, c.unbound, c.withoutArrival
	return s
}

// WriteText prints a summary as a few lines of text.
func (s Summary) WriteText(w io.Writer, title string) error {
	var b strings.Builder
	pp := func(p Percentiles) string { return fmt.Sprintf("%.1f/%.1f", p.P50, p.P99) }
	in, out := "request in → request to the backend", "backend's answer in → reply out"
	if !s.Sockets {
		in, out = "handler start → request to the backend", "backend's answer → reply handed to the server"
	}
	fmt.Fprintf(&b, "%s: %d calls (p50/p99 µs): %s %s, %s %s, overhead %s; total %s, backend %s, added (total − backend) %.1f/%.1f\n",
		title, s.Calls, in, pp(s.Ingress), out, pp(s.Egress), pp(s.Overhead), pp(s.Total), pp(s.Backend), s.AddedP50, s.AddedP99)
	if len(s.Stages) > 0 {
		parts := make([]string, 0, len(s.Stages))
		for _, st := range s.Stages {
			parts = append(parts, st.Name+" "+pp(st.Percentiles))
		}
		fmt.Fprintf(&b, "  stages (p50/p99 µs): %s\n", strings.Join(parts, ", "))
	}
	if s.Partial > 0 || s.NotForwarded > 0 || s.Evicted > 0 || s.Unbound > 0 || s.WithoutArrival > 0 {
		fmt.Fprintf(&b, "  not forwarded %d, partial %d, evicted %d; backend arrivals not the call's %d, calls without one %d\n",
			s.NotForwarded, s.Partial, s.Evicted, s.Unbound, s.WithoutArrival)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
