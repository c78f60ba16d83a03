package main

import (
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pbac-gateway/pbac/bench"
)

// TestStartOnPinsTheChild: a process started for a role runs on that
// role's CPUs from its start, and the starting process's own threads keep
// their CPUs.
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
	var after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("this thread's CPUs changed: %v, were %v", after, before)
	}
	// Not pinned: the kernel places the process.
	var none *pinning
	cmd := exec.Command("true")
	if err := none.start(bench.ProcGateway)(cmd); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}
