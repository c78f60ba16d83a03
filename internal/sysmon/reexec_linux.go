//go:build linux

package sysmon

import (
	"fmt"
	"os"
	"syscall"
)

// Reexec replaces the process with its own executable, run again with env
// and the same arguments: the same process id and standard streams (Go
// opens every other file close-on-exec). It returns only when the exec
// failed; the process then runs on as it is. The executable is named by
// its path (os.Executable), not /proc/self/exe, so that the process keeps
// its name ("pbac", not "exe") for ps, pgrep and the journal.
func Reexec(env []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("run again with GODEBUG set: find the executable: %w", err)
	}
	if err := syscall.Exec(exe, os.Args, env); err != nil {
		return fmt.Errorf("run again with GODEBUG set: exec %s: %w", exe, err)
	}
	return nil
}

// Supported reports whether Reexec can run here.
const Supported = true
