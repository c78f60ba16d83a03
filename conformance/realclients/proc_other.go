//go:build !unix

package realclients

import "os/exec"

func setProcessGroup(*exec.Cmd) {}
