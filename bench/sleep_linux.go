package bench

import (
	"runtime"
	"syscall"
	"time"
)

// prSetTimerSlack is prctl's PR_SET_TIMERSLACK.
const prSetTimerSlack = 29

// lockPreciseSleep dedicates the calling goroutine's OS thread to the
// schedule: the thread's timer slack goes down to 1 ns and sleeps are
// nanosleep calls, which wake within tens of microseconds, where the Go
// runtime's timers on an idle process wake up to a millisecond late. The
// goroutine must exit without unlocking, so the thread is discarded.
func lockPreciseSleep() func(time.Duration) {
	runtime.LockOSThread()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0); errno != 0 {
		return time.Sleep
	}
	return func(d time.Duration) {
		ts := syscall.NsecToTimespec(d.Nanoseconds())
		_ = syscall.Nanosleep(&ts, nil)
	}
}
