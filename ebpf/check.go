// Package ebpf is the optional latency probe: it measures each gateway
// call's overhead from outside the gateway's code, with eBPF programs the
// kernel runs at entry uprobes on the gateway's marker functions
// (gateway/probe_markers.go) and at kprobes on the TCP socket calls of the
// gateway's connections. It needs Linux on amd64, root or CAP_BPF +
// CAP_PERFMON, and kernel BTF; Check says exactly what is missing.
package ebpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Capability bits (linux/capability.h).
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// BTFPath is where the kernel publishes its BTF.
const BTFPath = "/sys/kernel/btf/vmlinux"

// UnavailableError says why the probe cannot run on this machine: every
// missing requirement, each with what would provide it.
type UnavailableError struct {
	Missing []string
}

func (e *UnavailableError) Error() string {
	return "the eBPF probe cannot run: " + strings.Join(e.Missing, "; ")
}

// Check reports whether this process can run the probe: Linux on amd64,
// root or CAP_BPF + CAP_PERFMON in its effective capabilities, and kernel
// BTF. It returns an *UnavailableError naming everything missing.
func Check() error {
	capEff, capErr := effectiveCaps("/proc/self/status")
	_, btfErr := os.Stat(BTFPath)
	return check(runtime.GOOS, runtime.GOARCH, os.Geteuid(), capEff, capErr, btfErr)
}

func check(goos, goarch string, euid int, capEff uint64, capErr, btfErr error) error {
	var missing []string
	if goos != "linux" || goarch != "amd64" {
		missing = append(missing, fmt.Sprintf("needs Linux on amd64 (this is %s/%s: the probe reads call ids from the amd64 Go register ABI)", goos, goarch))
		return &UnavailableError{Missing: missing}
	}
	has := func(bit uint) bool { return capEff&(1<<bit) != 0 }
	switch {
	case capErr != nil:
		missing = append(missing, fmt.Sprintf("unknown capabilities (cannot read them: %v)", capErr))
	case has(capSysAdmin) || (has(capBPF) && has(capPerfmon)):
		// root's capabilities, or the two the probe needs
	default:
		var caps []string
		if !has(capBPF) {
			caps = append(caps, "CAP_BPF")
		}
		if !has(capPerfmon) {
			caps = append(caps, "CAP_PERFMON")
		}
		who := "not root"
		if euid == 0 {
			who = "root without them"
		}
		missing = append(missing, fmt.Sprintf("missing %s (%s; run as root or grant them: sudo setcap cap_bpf,cap_perfmon+ep $(command -v pbac))",
			strings.Join(caps, " and "), who))
	}
	if btfErr != nil {
		why := "missing"
		if !errors.Is(btfErr, os.ErrNotExist) {
			why = btfErr.Error()
		}
		missing = append(missing, fmt.Sprintf("missing kernel BTF at %s (%s; a kernel built with CONFIG_DEBUG_INFO_BTF=y has it)", BTFPath, why))
	}
	if len(missing) > 0 {
		return &UnavailableError{Missing: missing}
	}
	return nil
}

// effectiveCaps reads CapEff from a /proc/<pid>/status file.
func effectiveCaps(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: CapEff: %w", path, err)
			}
			return caps, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no CapEff line", path)
}
