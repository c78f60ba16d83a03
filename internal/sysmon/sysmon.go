// Package sysmon sets how the Go runtime's monitor thread (sysmon) waits
// in a server that takes calls a millisecond or more apart.
//
// By default the monitor sleeps until woken when every P is idle; the
// first system call after that wakes it and resets it to polling every
// 20 µs, so between calls a millisecond apart it is woken once per call
// and then sleeps and wakes half a dozen times while the call runs. On
// `pbac bench external` that was about 16% of the gateway's CPU samples, a
// known cost of the runtime (golang/go#18236). While GODEBUG's schedtrace
// is set the monitor never sleeps that deeply (runtime/proc.go: "sysmon
// should not enter deep sleep if schedtrace is enabled"): it polls, and
// backs off from 20 µs to 10 ms while it finds nothing to do, as it does
// in a busy process. With schedtrace at its largest value, 2^31−1 ms
// (24.8 days), the trace itself is rare.
//
// It is opt-in (PBAC_GO_SYSMON=backoff), because schedtrace changes more
// than the monitor's sleep:
//   - a P held by a goroutine in a blocking system call (a file write, an
//     fsync) is handed to another thread when the monitor has seen it there
//     twice: up to about 20 ms later, where a process that had gone idle
//     would have had its monitor woken by that call and polling every 20 µs
//     (a busy one backs off either way). With GOMAXPROCS=1 (one CPU, or a
//     pinned process) nothing else runs meanwhile;
//   - a fatal error, an unrecovered panic included, prints the scheduler's
//     whole state (one line per P, M and goroutine) before the panic
//     itself, which can push the panic out of a log's limits; and a fatal
//     error raised while the scheduler's lock is held (thread exhaustion)
//     waits on that lock forever instead of ending the process, so a
//     supervisor does not restart it;
//   - on a host up longer than 24.8 days a "SCHED" line goes to standard
//     error when the process starts, and every 24.8 days after;
//   - an idle process wakes about 100 times a second.
//
// The runtime reads GODEBUG once, when the process starts, so a process
// that wants it runs itself again with it set (Reexec, Linux only: same
// process id, arguments and standard streams; package initialisers run
// again in the new image).
//
// The tests check that the process runs again with the setting, not that
// the runtime still honours it: a Go release that changed sysmon's
// condition would leave them green, and pbac bench external --go-sysmon is
// how to see the difference.
package sysmon

import (
	"fmt"
	"strings"
)

// Env is the environment variable that chooses: "backoff", or "default"
// (the runtime's own; also when unset).
const Env = "PBAC_GO_SYSMON"

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

// ParseMode reads a chosen mode: backoff or default ("" is default).
func ParseMode(v string) (Mode, error) {
	switch Mode(v) {
	case Default, "":
		return Default, nil
	case Backoff:
		return Backoff, nil
	}
	return "", fmt.Errorf("%s=%q: want %q or %q", Env, v, Backoff, Default)
}

// Wanted is the mode the environment (as os.Environ gives it) asks for;
// of two settings the first, as os.Getenv reads it.
func Wanted(environ []string) (Mode, error) {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, Env+"="); ok {
			return ParseMode(v)
		}
	}
	return Default, nil
}

// Plan says which mode a process that wants want runs in, given its
// environment, whether it must run itself again for it, and the
// environment to run with: its own with schedtrace added to GODEBUG. A
// GODEBUG that sets schedtrace already is left as it is: the operator's,
// or this process run again.
func Plan(want Mode, environ []string) (mode Mode, reexec bool, env []string) {
	// The runtime reads the first GODEBUG, as os.Getenv does.
	godebug, hasGodebug := "", false
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug, hasGodebug = v, true
			break
		}
	}
	if set, ok := setting(godebug); ok {
		if set == godebugValue && want == Backoff {
			return Backoff, false, nil
		}
		return Operator, false, nil
	}
	if want != Backoff {
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

// InEffect is the mode a running process with environment environ (as
// /proc/<pid>/environ gives it) waits in.
func InEffect(environ []string) Mode {
	mode, again, _ := Plan(Backoff, environ)
	if again {
		return Default
	}
	return mode
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
