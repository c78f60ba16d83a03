//go:build !unix

package stdio

import "syscall"

// processGroups: this system has no process groups the bridge can signal,
// so Start refuses (ErrUnsupported) and nothing below is ever called.
const processGroups = false

type groupSignal int

const (
	sigTerm groupSignal = iota
	sigKill
)

func newGroupAttr() *syscall.SysProcAttr { return nil }

func signalGroup(int, groupSignal) error { return ErrUnsupported }
