//go:build !linux

package bench

// EstablishedTo is not available on this platform.
func EstablishedTo(pid, port int) (int, bool) { return 0, false }
