// Package sysmon sets how the Go runtime's monitor thread (sysmon) waits
// in a server that takes calls a millisecond or more apart.
//
// By default the monitor sleeps until woken when every P is idle, and the
// first system call after that wakes it and resets it to polling every
// 20 µs, so between calls a millisecond apart it is woken once per call
// and then sleeps and wakes half a dozen times while the call runs: on
// `pbac bench external` that was 16% of the gateway's CPU samples, and a
// known cost of the runtime (golang/go#18236). While GODEBUG's schedtrace
// is set the monitor never sleeps that deeply (proc.go: "sysmon should not
// enter deep sleep if schedtrace is enabled"): it polls, and backs off
// from 20 µs to 10 ms while it finds nothing to do, as it does in a busy
// process. schedtrace set to its largest value, 2^31−1 ms (24.8 days),
// prints the scheduler's one-line summary once that long after boot and
// then every 24.8 days, and the whole scheduler's state after a fatal
// error.
//
// What it costs: a P left in a blocking system call (a file write, an
// fsync) is handed to another thread when the monitor next looks, up to
// 10 ms later instead of within tens of µs; with GOMAXPROCS of 2 or more
// the other Ps go on meanwhile.
//
// The runtime reads GODEBUG once, when the process starts, so a process
// that wants it runs itself again with it set (Reexec, Linux only; same
// process id, arguments and open files).
package sysmon

import (
	"fmt"
	"strings"
)

// The GODEBUG setting that keeps the monitor from sleeping deeply.
const (
	godebugKey   = "schedtrace"
	godebugValue = "2147483647"
)

// Mode is how the monitor waits.
type Mode string

// The modes.
const (
	// Backoff: polling, backing off to 10 ms while idle (GODEBUG
	// schedtrace set).
	Backoff Mode = "backoff"
	// Default: the runtime's own, sleeping until woken when idle.
	Default Mode = "default"
	// Operator: GODEBUG already sets schedtrace; it is left as it is.
	Operator Mode = "operator"
)

// ParseMode reads a chosen mode: backoff or default ("" is backoff).
func ParseMode(v string) (Mode, error) {
	switch Mode(v) {
	case Backoff, "":
		return Backoff, nil
	case Default:
		return Default, nil
	}
	return "", fmt.Errorf("%q: want %q or %q", v, Backoff, Default)
}

// Plan says which mode a process that wants want runs in, given its
// environment (as os.Environ gives it), whether it must run itself again
// for it, and the environment to run with: its own with schedtrace added
// to GODEBUG. A GODEBUG that sets schedtrace already is left as it is:
// the operator's, or this process run again.
func Plan(want Mode, environ []string) (mode Mode, reexec bool, env []string) {
	godebug, hasGodebug := "", false
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug, hasGodebug = v, true
		}
	}
	if set, ok := setting(godebug); ok {
		if set == godebugValue && want == Backoff {
			return Backoff, false, nil
		}
		return Operator, false, nil
	}
	if want == Default {
		return Default, false, nil
	}
	entry := godebugKey + "=" + godebugValue
	if hasGodebug && godebug != "" {
		entry = godebug + "," + entry
	}
	env = make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	return Backoff, true, append(env, "GODEBUG="+entry)
}

// setting is the value GODEBUG gives schedtrace, the last one as the
// runtime reads it at start-up, and whether it gives one.
func setting(godebug string) (string, bool) {
	value, ok := "", false
	for field := range strings.SplitSeq(godebug, ",") {
		if k, v, found := strings.Cut(field, "="); found && k == godebugKey {
			value, ok = v, true
		}
	}
	return value, ok
}
