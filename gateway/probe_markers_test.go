package gateway

import "testing"

// BenchmarkProbeMarker is what a marker costs the hot path when no probe is
// attached: a call to an empty function that is never inlined.
func BenchmarkProbeMarker(b *testing.B) {
	for i := range b.N {
		probeRequestStart(uint64(i))
	}
}
