//go:build !linux

package sysmon

import "errors"

// Reexec is Linux only: elsewhere the runtime's default stays.
func Reexec([]string) error { return errors.New("run again with GODEBUG set: Linux only") }

// Supported reports whether Reexec can run here.
const Supported = false
