package main

import (
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/stack"
	"github.com/pbac-gateway/pbac/internal/sysmon"
	"github.com/pbac-gateway/pbac/rego"
)

// policyLimits bound policy decisions: one evaluation (the engine's
// deadline) and one whole decision, the wait for a policy instance
// included (the registry's). Zero keeps a default.
type policyLimits struct {
	evalTimeout, decisionTimeout time.Duration
}

// stack is the limits as the stack takes them.
func (l policyLimits) stack() stack.PolicyLimits {
	return stack.PolicyLimits{EvalTimeout: l.evalTimeout, DecisionTimeout: l.decisionTimeout}
}

// check refuses an evaluation deadline the decision timeout would cut
// short: it would never be reached.
func (l policyLimits) check() error { return l.stack().Check() }

// shippedData is the typed view of the shipped policy's data.
func shippedData() (*contract.Data, error) {
	raw, err := fs.ReadFile(rego.Sources(), "data.json")
	if err != nil {
		return nil, err
	}
	return contract.ParseData(raw)
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// goMonitor sets how the Go runtime's monitor thread waits (package
// sysmon, the go_sysmon setting): unless want is the runtime's default or
// GODEBUG sets it already, the process runs itself again with it set to
// back off, and reexec returns only when that failed (reexecErr; the
// process then runs on with the runtime's default).
func goMonitor(want sysmon.Mode, environ []string, reexec func([]string) error) (mode sysmon.Mode, reexecErr error) {
	mode, again, env := sysmon.Plan(want, environ)
	if !again {
		return mode, nil
	}
	if !sysmon.Supported {
		return sysmon.Default, nil
	}
	if err := reexec(env); err != nil {
		return sysmon.Default, err
	}
	return mode, nil
}

// logMonitor says how the runtime's monitor thread waits in this process.
func logMonitor(log *slog.Logger, mode sysmon.Mode, reexecErr error) {
	if reexecErr != nil {
		log.Warn("go runtime monitor: the runtime's default (could not run again with GODEBUG set)", "err", reexecErr)
		return
	}
	log.Info("go runtime monitor", "mode", string(mode), "setting", "go_sysmon")
}
