package main

import (
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pbac-gateway/pbac/bench"
)

// TestStartOnPinsTheChild: a process started for a role runs on that
// role's CPUs from its start, and no thread of the starting process is
// left on them.
func TestStartOnPinsTheChild(t *testing.T) {
	p, err := planPinning()
	if err != nil {
		t.Skip(err)
	}
	if p.front.Count() != 1 || p.proxies.Count() < 1 || p.describe() == "" {
		t.Fatalf("layout %+v", p)
	}
	var before unix.CPUSet
	if err := unix.SchedGetaffinity(0, &before); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		role string
		want unix.CPUSet
	}{{bench.ProcBackend, p.front}, {bench.ProcGateway, p.proxies}, {bench.ProcNginx, p.proxies}} {
		cmd := exec.Command("sleep", "5")
		if err := p.start(c.role)(cmd); err != nil {
			t.Fatalf("start %s: %v", c.role, err)
		}
		var got unix.CPUSet
		err := unix.SchedGetaffinity(cmd.Process.Pid, &got)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s runs on %v, want %v", c.role, got, c.want)
		}
	}
	// The threads that started them got their own CPUs back and end with
	// their goroutines (the main thread, if it was one, is parked): soon
	// no thread of this process is left pinned.
	deadline := time.Now().Add(5 * time.Second)
	for {
		pinned := pinnedThreads(t, before)
		if len(pinned) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads of this process still pinned: %v", pinned)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Not pinned: the kernel places the process.
	var none *pinning
	cmd := exec.Command("true")
	if err := none.start(bench.ProcGateway)(cmd); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// pinnedThreads lists the threads of this process whose CPUs are not all.
func pinnedThreads(t *testing.T, all unix.CPUSet) []int {
	t.Helper()
	tids, err := selfThreads()
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, tid := range tids {
		var set unix.CPUSet
		if unix.SchedGetaffinity(tid, &set) == nil && set != all {
			out = append(out, tid)
		}
	}
	return out
}
