// Package latency summarises benchmark samples as percentiles.
package latency

import (
	"slices"
	"testing"
	"time"
)

// Report adds the p50 and p99 of samples, in microseconds, to b's results.
func Report(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	q := func(p float64) float64 {
		return float64(samples[int(p*float64(len(samples)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// EvictCaches returns a function that writes over 32 MiB, so the next
// timed operation finds its code and memory out of the CPU's caches, as a
// gateway taking a call every millisecond beside other processes finds
// them. Call it with the iteration's number, outside the timed part.
func EvictCaches() func(int) {
	evict := make([]byte, 32<<20)
	return func(i int) {
		for j := 0; j < len(evict); j += 64 {
			evict[j] = byte(i)
		}
	}
}
