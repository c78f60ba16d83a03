//go:build unix

package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processCPU is this process's user + system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcessCPU is the user + system CPU time another process has used so
// far, from /proc/<pid>/stat (Linux); ok is false where that is not
// readable.
func ProcessCPU(pid int) (time.Duration, bool) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	cpu, _, ok := parseStat(raw)
	return cpu, ok
}

// parseStat reads a /proc/<pid>/stat line: the process's user + system CPU
// time and its parent's pid.
func parseStat(raw []byte) (cpu time.Duration, ppid int, ok bool) {
	// The command name (field 2) may hold spaces; fields count from the
	// closing parenthesis. ppid is field 4; utime and stime are fields 14
	// and 15, in clock ticks of USER_HZ, which is 100 on Linux.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, 0, false
	}
	pp, err0 := strconv.Atoi(f[1])
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err0 != nil || err1 != nil || err2 != nil {
		return 0, 0, false
	}
	const userHZ = 100
	return time.Duration(ut+st) * time.Second / userHZ, pp, true
}

// ProcessTreeCPU is ProcessCPU of pid plus that of its living children
// (nginx's master and its workers, say), from /proc (Linux). A child that
// already exited is not counted.
func ProcessTreeCPU(pid int) (time.Duration, bool) {
	total, ok := ProcessCPU(pid)
	if !ok {
		return 0, false
	}
	for _, child := range childrenOf(pid) {
		if cpu, ok := ProcessCPU(child); ok {
			total += cpu
		}
	}
	return total, true
}

// childrenOf lists the living processes whose parent is pid (from /proc;
// none where there is no /proc).
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if _, ppid, ok := parseStat(raw); ok && ppid == pid {
			out = append(out, child)
		}
	}
	return out
}
