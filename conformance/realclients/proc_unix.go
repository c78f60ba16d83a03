//go:build unix

package realclients

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts c in a process group of its own and kills the
// whole group when its context ends: the CLIs start helpers (script's
// shell, MCP connections) that must not outlive them.
func setProcessGroup(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
}
