package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pbac-gateway/pbac/bench"
)

// pinning is pbac bench external --pin's layout: the load generator (this
// process) and the backend on the first CPU this process may use, the
// reference proxies (nginx, Caddy) and the gateway on the others, so the proxy under test has its CPUs to
// itself and does not share caches with what drives it.
type pinning struct {
	front, proxies unix.CPUSet
	text           string
}

// planPinning lays the processes out over the CPUs this process may use;
// it needs two at least.
func planPinning() (*pinning, error) {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return nil, fmt.Errorf("--pin: read the CPUs this process may use: %w", err)
	}
	var cpus []int
	for c := 0; c < len(allowed)*64 && len(cpus) < allowed.Count(); c++ {
		if allowed.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		return nil, fmt.Errorf("--pin: this process may use %d CPU, it needs 2 at least", len(cpus))
	}
	p := &pinning{}
	p.front.Set(cpus[0])
	names := make([]string, 0, len(cpus)-1)
	for _, c := range cpus[1:] {
		p.proxies.Set(c)
		names = append(names, strconv.Itoa(c))
	}
	p.text = fmt.Sprintf("load generator and backend on CPU %d, nginx, Caddy and the gateway on CPU %s", cpus[0], strings.Join(names, ","))
	return p, nil
}

// pinSelf holds every thread of this process to set; threads made later
// inherit it from the thread that makes them. A thread made while the
// list is read is caught by a later pass: it ends when a pass finds no
// thread it has not pinned.
func pinSelf(set unix.CPUSet) error {
	done := map[int]bool{}
	for pass := 0; pass < pinPasses; pass++ {
		tids, err := selfThreads()
		if err != nil {
			return fmt.Errorf("--pin: %w", err)
		}
		fresh := 0
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("--pin: pin thread %d: %w", tid, err)
			}
			done[tid], fresh = true, fresh+1
		}
		if fresh == 0 {
			return nil
		}
	}
	return fmt.Errorf("--pin: this process kept making threads through %d passes", pinPasses)
}

// selfThreads lists the ids of this process's threads.
func selfThreads() ([]int, error) {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("list this process's threads: %w", err)
	}
	tids := make([]int, 0, len(entries))
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// pinPasses bounds pinSelf's passes over the threads.
const pinPasses = 64

// startOn starts cmd on set: the process is forked from a thread held to
// set, whose mask it inherits before it runs anything. The thread then
// gets its own mask back, and is never let go: it ends with its goroutine
// (the main thread, which cannot end, is parked for good), so no other
// goroutine runs on it. (Threads the runtime makes while a goroutine holds
// its thread come from its template thread, not from this one.)
func startOn(cmd *exec.Cmd, set unix.CPUSet) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var own unix.CPUSet
		if err := unix.SchedGetaffinity(0, &own); err != nil {
			errc <- fmt.Errorf("--pin: read the CPUs of the thread that starts %s: %w", cmd.Path, err)
			return
		}
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- fmt.Errorf("--pin: pin the thread that starts %s: %w", cmd.Path, err)
			return
		}
		err := cmd.Start()
		_ = unix.SchedSetaffinity(0, &own) // should it fail, the thread still ends here
		errc <- err
	}()
	return <-errc
}

// start is how a process of role (a bench.Proc*) is started: on its CPUs
// when pinned.
func (p *pinning) start(role string) func(*exec.Cmd) error {
	if p == nil {
		return (*exec.Cmd).Start
	}
	set := p.proxies
	if role == bench.ProcBackend {
		set = p.front
	}
	return func(cmd *exec.Cmd) error { return startOn(cmd, set) }
}

// pinLoadGenerator holds this process to the front CPU.
func (p *pinning) pinLoadGenerator() error {
	if p == nil {
		return nil
	}
	return pinSelf(p.front)
}

// describe is the layout as the report says it, "" when not pinned.
func (p *pinning) describe() string {
	if p == nil {
		return ""
	}
	return p.text
}
