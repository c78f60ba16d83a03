//go:build !linux

package bench

import "time"

// lockPreciseSleep is time.Sleep where no more precise sleep is known.
func lockPreciseSleep() func(time.Duration) { return time.Sleep }
