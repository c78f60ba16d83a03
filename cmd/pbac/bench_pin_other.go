//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

// pinning is pbac bench external --pin's layout; CPUs are pinned on Linux
// only.
type pinning struct{}

func planPinning() (*pinning, error) {
	return nil, errors.New("--pin: CPUs can be pinned on Linux only")
}

func (p *pinning) start(string) func(*exec.Cmd) error { return (*exec.Cmd).Start }

func (p *pinning) pinLoadGenerator() error { return nil }

func (p *pinning) describe() string { return "" }
