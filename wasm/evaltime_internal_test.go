package wasm

import (
	"runtime"
	"testing"
	"time"
)

// TestEvalTimeIsTheThreadsCPU: the fuel check stops an evaluation past its
// evaluation time limit only once its thread has used that much CPU (a
// busy machine that held it up is not its doing), and past its deadline
// whatever held it up; without a thread clock, the wall clock decides.
func TestEvalTimeIsTheThreadsCPU(t *testing.T) {
	if _, ok := threadCPU(); !ok {
		t.Skip("no per-thread CPU clock on this system")
	}
	const limit = 20 * time.Millisecond
	e := &Engine{cfg: NewConfig().WithEvalTimeout(limit)}
	tests := []struct {
		name string
		// since is how long ago the evaluation started; burn is the CPU
		// its thread uses before the check; untimed drops the thread clock.
		since, burn time.Duration
		untimed     bool
		pastDeadln  bool
		stopped     bool
	}{
		{name: "within the limit", since: time.Millisecond, stopped: false},
		{name: "held up past the limit, little CPU", since: 5 * limit, stopped: false},
		{name: "past the limit with its CPU used", since: 5 * limit, burn: 2 * limit, stopped: true},
		{name: "past its deadline", since: 5 * limit, pastDeadln: true, stopped: true},
		{name: "no thread clock: the wall clock", since: 5 * limit, untimed: true, stopped: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := &instance{policy: &Policy{engine: e}}
			now := time.Now()
			in.callTime = now.Add(-tc.since)
			in.soft = in.callTime.Add(limit)
			in.deadline = in.callTime.Add(starvedFactor * limit)
			if tc.pastDeadln {
				in.deadline = now.Add(-time.Millisecond)
			}
			in.cpu.start()
			defer in.cpu.stop()
			if tc.untimed {
				in.cpu.ok = false
			}
			burnCPU(tc.burn)
			got := stops(in)
			if (got != nil) != tc.stopped {
				t.Fatalf("stopped: %v, want stopped %v", got, tc.stopped)
			}
		})
	}
}

// stops runs the fuel check and returns the timeout it stopped with.
func stops(in *instance) (err error) {
	defer func() {
		if r := recover(); r != nil {
			te, ok := r.(timeoutError)
			if !ok {
				panic(r)
			}
			err = te
		}
	}()
	in.yield()
	return nil
}

// burnCPU keeps the thread busy until it has used d of CPU.
func burnCPU(d time.Duration) {
	start, _ := threadCPU()
	for x := 0; ; x++ {
		if x%1024 == 0 {
			if now, _ := threadCPU(); now-start >= d {
				runtime.KeepAlive(x)
				return
			}
		}
	}
}

// TestEvaluationsLetGoOfTheirThread: an evaluation holds its goroutine on
// its thread only while it runs.
func TestEvaluationsLetGoOfTheirThread(t *testing.T) {
	var w cpuWatch
	w.start()
	if !w.held {
		t.Fatal("the evaluation does not hold its thread")
	}
	w.stop()
	if w != (cpuWatch{}) {
		t.Fatalf("after the evaluation: %+v", w)
	}
}
