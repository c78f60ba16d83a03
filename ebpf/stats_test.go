package ebpf

import (
	"slices"
	"testing"
)

// TestCollectorBackendEnds: the backend's time is taken from the HTTP
// client's first marker (request handed over) to the answer's arrival on
// the backend connection when the probe saw it in between, else to the
// client's second (first byte read) when a call has them, the gateway's client on either side counting as overhead; a call
// from a gateway without them is measured from forward to the response
// headers; a call with neither is partial, one with no forward at all was
// not forwarded.
func TestCollectorBackendEnds(t *testing.T) {
	µs := func(n uint64) uint64 { return n * 1000 }
	tests := []struct {
		name                       string
		ts                         map[Stage]uint64
		calls, partial, notFwd     int64
		backend, overhead, ingress float64
		unbound                    int64
	}{
		{"the answer's arrival", map[Stage]uint64{StageArrival: µs(1), StageStart: µs(2), StageForward: µs(10), StageBackendSent: µs(30),
			StageBackendArrived: µs(110), StageBackendFirstByte: µs(130), StageBackendDone: µs(150), StageReplyOut: µs(200)}, 1, 0, 0, 80, 119, 29, 0},
		{"an arrival before the request went out", map[Stage]uint64{StageArrival: µs(1), StageStart: µs(2), StageBackendSent: µs(30),
			StageBackendArrived: µs(20), StageBackendFirstByte: µs(130), StageReplyOut: µs(200)}, 1, 0, 0, 100, 99, 29, 1},
		{"an arrival after the first byte", map[Stage]uint64{StageArrival: µs(1), StageStart: µs(2), StageBackendSent: µs(30),
			StageBackendArrived: µs(140), StageBackendFirstByte: µs(130), StageReplyOut: µs(200)}, 1, 0, 0, 100, 99, 29, 1},
		{"an arrival without the client's markers", map[Stage]uint64{StageArrival: µs(1), StageStart: µs(2), StageForward: µs(10),
			StageBackendArrived: µs(110), StageBackendDone: µs(150), StageReplyOut: µs(200)}, 1, 0, 0, 140, 59, 9, 1},
		{"split", map[Stage]uint64{StageArrival: µs(1), StageStart: µs(2), StageForward: µs(10), StageBackendSent: µs(30),
			StageBackendFirstByte: µs(130), StageBackendDone: µs(150), StageReplyOut: µs(200)}, 1, 0, 0, 100, 99, 29, 0},
		{"split without the handler's ends", map[Stage]uint64{StageArrival: µs(1), StageStart: µs(2), StageBackendSent: µs(30),
			StageBackendFirstByte: µs(130), StageReplyOut: µs(200)}, 1, 0, 0, 100, 99, 29, 0},
		{"an older gateway", map[Stage]uint64{StageArrival: µs(1), StageStart: µs(2), StageForward: µs(10),
			StageBackendDone: µs(150), StageReplyOut: µs(200)}, 1, 0, 0, 140, 59, 9, 0},
		{"ends out of order", map[Stage]uint64{StageArrival: µs(1), StageStart: µs(2), StageBackendSent: µs(130),
			StageBackendFirstByte: µs(30), StageReplyOut: µs(200)}, 0, 1, 0, 0, 0, 0, 0},
		{"no answer from the backend", map[Stage]uint64{StageArrival: µs(1), StageStart: µs(2), StageBackendSent: µs(30),
			StageReplyOut: µs(200)}, 0, 1, 0, 0, 0, 0, 0},
		{"answered by the gateway", map[Stage]uint64{StageArrival: µs(1), StageStart: µs(2), StageReplyOut: µs(20)}, 0, 0, 1, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCollector(true)
			for st := StageArrival; st < numStages; st++ {
				if ts, ok := tt.ts[st]; ok {
					c.Add(7, st, ts)
				}
			}
			s := c.Total()
			if s.Calls != tt.calls || c.partial != tt.partial || c.notForwarded != tt.notFwd || s.Unbound != tt.unbound {
				t.Fatalf("calls %d, partial %d, not forwarded %d, unbound %d; want %d, %d, %d, %d",
					s.Calls, c.partial, c.notForwarded, s.Unbound, tt.calls, tt.partial, tt.notFwd, tt.unbound)
			}
			if tt.calls == 0 {
				return
			}
			near := func(got, want float64) bool { return got >= want*0.99 && got <= want*1.01+1 }
			if !near(s.Backend.P50, tt.backend) || !near(s.Overhead.P50, tt.overhead) || !near(s.Ingress.P50, tt.ingress) {
				t.Errorf("backend %.1f, overhead %.1f, ingress %.1f µs; want %.0f, %.0f, %.0f",
					s.Backend.P50, s.Overhead.P50, s.Ingress.P50, tt.backend, tt.overhead, tt.ingress)
			}
		})
	}
}

// TestCollectorStagesInCallOrder: the breakdown lists segments as a call
// goes, whichever call first had them: a stage only later calls report
// (the backend's answer arriving) comes where it happens.
func TestCollectorStagesInCallOrder(t *testing.T) {
	c := NewCollector(true)
	add := func(id uint64, ts map[Stage]uint64) {
		for st := StageArrival; st < numStages; st++ {
			if v, ok := ts[st]; ok {
				c.Add(id, st, v)
			}
		}
	}
	add(1, map[Stage]uint64{StageArrival: 1000, StageStart: 2000, StageBackendSent: 30000, StageBackendFirstByte: 130000, StageReplyOut: 200000})
	add(2, map[Stage]uint64{StageArrival: 1000, StageStart: 2000, StageBackendSent: 30000, StageBackendArrived: 110000,
		StageBackendFirstByte: 130000, StageReplyOut: 200000})
	var got []string
	for _, st := range c.Total().Stages {
		got = append(got, st.Name)
	}
	want := []string{"receive", "start→backend_sent", "backend", "wake-up", "backend_first_byte→reply_out"}
	if !slices.Equal(got, want) {
		t.Fatalf("stages %q, want %q", got, want)
	}
}

// TestCollectorArrivals: an arrival reported for a call already over is
// counted as not its own and opens no call that would wait for ever; a
// call the probe saw no arrival for is counted as measured without one.
func TestCollectorArrivals(t *testing.T) {
	µs := func(n uint64) uint64 { return n * 1000 }
	call := map[Stage]uint64{StageArrival: µs(1), StageStart: µs(2), StageBackendSent: µs(30), StageBackendFirstByte: µs(130), StageReplyOut: µs(200)}
	c := NewCollector(true)
	for st := StageArrival; st < numStages; st++ {
		if ts, ok := call[st]; ok {
			c.Add(1, st, ts)
		}
	}
	c.Add(1, StageBackendArrived, µs(300))
	s := c.Total()
	if s.Calls != 1 || s.Unbound != 1 || s.WithoutArrival != 1 || len(c.open) != 0 {
		t.Fatalf("calls %d, unbound %d, without arrival %d, open %d; want 1, 1, 1, 0", s.Calls, s.Unbound, s.WithoutArrival, len(c.open))
	}
	call[StageBackendArrived] = µs(100)
	for st := StageArrival; st < numStages; st++ {
		if ts, ok := call[st]; ok {
			c.Add(2, st, ts)
		}
	}
	if s := c.Total(); s.Calls != 2 || s.WithoutArrival != 1 || s.Backend.Max > 100.1 {
		t.Fatalf("calls %d, without arrival %d, backend max %.1f µs; want 2, 1 and the second call's 70 µs", s.Calls, s.WithoutArrival, s.Backend.Max)
	}
}
