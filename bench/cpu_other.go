//go:build !unix

package bench

import "time"

func processCPU() time.Duration { return 0 }

// ProcessCPU is not available on this platform.
func ProcessCPU(int) (time.Duration, bool) { return 0, false }

// ProcessTreeCPU is not available on this platform.
func ProcessTreeCPU(int) (time.Duration, bool) { return 0, false }
