package wasm

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time the calling OS thread has used; the caller
// holds its goroutine on the thread (runtime.LockOSThread). The clock is
// read with a raw system call, which never blocks: through unix.ClockGettime
// (a system call the scheduler is told of) on a locked thread,
// BenchmarkToolCall's p99 went from about 85 µs to 1.1–1.8 ms.
func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	_, _, errno := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_THREAD_CPUTIME_ID, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
