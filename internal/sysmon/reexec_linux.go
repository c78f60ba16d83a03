//go:build linux

package sysmon

import (
	"fmt"
	"os"
	"syscall"
)

// Reexec replaces the process with its own executable, run again with env
// and the same arguments: the same process id, and every open file that is
// not close-on-exec (the standard streams; Go opens its own files
// close-on-exec). It returns only when the exec failed; the process then
// runs on as it is. The executable is named by its path (os.Executable),
// not /proc/self/exe, so that the process is named after its executable
// file ("pbac", not "exe"; a symlink's target's name where it was started
// through one) for ps, pgrep and the journal; when the file at that path
// is no longer the one running (replaced on disk since the start) it does
// not run it.
func Reexec(env []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("run again with GODEBUG set: find the executable: %w", err)
	}
	running, err := os.Stat("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("run again with GODEBUG set: %w", err)
	}
	onDisk, err := os.Stat(exe)
	if err != nil {
		return fmt.Errorf("run again with GODEBUG set: %w", err)
	}
	if !os.SameFile(running, onDisk) {
		return fmt.Errorf("run again with GODEBUG set: %s is no longer the executable running (replaced since the start)", exe)
	}
	if err := syscall.Exec(exe, os.Args, env); err != nil {
		return fmt.Errorf("run again with GODEBUG set: exec %s: %w", exe, err)
	}
	return nil
}

// Supported reports whether Reexec can run here.
const Supported = true
