//go:build !linux

package wasm

import "time"

// threadCPU has no per-thread CPU clock to read here: an evaluation's time
// is then its wall-clock time.
func threadCPU() (time.Duration, bool) { return 0, false }
