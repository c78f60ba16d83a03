//go:build unix

package stdio

import "syscall"

// processGroups: every session's process runs in a group of its own, so
// that ending the session reaches whatever the command spawned.
const processGroups = true

// groupSignal is a signal the bridge sends a session's process group.
type groupSignal = syscall.Signal

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// newGroupAttr starts a process as the leader of a new process group.
func newGroupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// signalGroup signals the process group whose leader is pid.
func signalGroup(pid int, sig groupSignal) error { return syscall.Kill(-pid, sig) }
