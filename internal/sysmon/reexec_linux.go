//go:build linux

package sysmon

import (
	"fmt"
	"os"
	"syscall"
)

// Reexec replaces the process with its own executable, run again with env
// and the same arguments: the same process id and open files (standard
// input, output and error; Go opens everything else close-on-exec). It
// returns only when the exec failed; the process then runs on as it is.
func Reexec(env []string) error {
	// /proc/self/exe is the file this process runs, even when its path has
	// since been replaced (an upgrade in place).
	if err := syscall.Exec("/proc/self/exe", os.Args, env); err != nil {
		return fmt.Errorf("run again with GODEBUG set: %w", err)
	}
	return nil
}

// Supported reports whether Reexec can run here.
const Supported = true
