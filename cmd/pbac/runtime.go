package main

import (
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

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

// goMonitor runs the process again with Go's monitor thread set to back
// off (internal/sysmon) when args are a serving command's (pbac up, pbac
// asrv) and PBAC_GO_SYSMON=backoff asks for it; main calls it first, before
// anything is read or started. reexec returns only when the exec failed,
// which is said on stderr, and the process runs on with the runtime's
// default. err is a PBAC_GO_SYSMON the process must not start with.
func goMonitor(root *cobra.Command, args, environ []string, reexec func([]string) error, stderr io.Writer) error {
	if !servingCommand(root, args) {
		return nil
	}
	want, err := sysmon.Wanted(environ)
	if err != nil {
		return err
	}
	if _, again, env := sysmon.Plan(want, environ); again && sysmon.Supported {
		if err := reexec(env); err != nil {
			fmt.Fprintf(stderr, "pbac: %s=%s not in effect: %v\n", sysmon.Env, want, err)
		}
	}
	return nil
}

// servingCommand reports whether args (os.Args) run pbac up or pbac asrv,
// flags before the command's name included, as root, the command line,
// finds it (nothing is parsed or read).
func servingCommand(root *cobra.Command, args []string) bool {
	if len(args) < 2 {
		return false
	}
	cmd, _, err := root.Find(args[1:])
	return err == nil && cmd.Parent() != nil && cmd.Parent().Parent() == nil && (cmd.Name() == "up" || cmd.Name() == "asrv")
}

// logMonitor says how Go's monitor thread waits in this process, and warns
// where what was asked is not in effect or costs the most.
func logMonitor(log *slog.Logger, environ []string) {
	want, err := sysmon.Wanted(environ)
	if err != nil {
		log.Warn("go runtime monitor: the runtime's default", "err", err)
		return
	}
	mode, again, _ := sysmon.Plan(want, environ)
	switch {
	case again:
		log.Warn("go runtime monitor: the runtime's default; backoff was asked but is not in effect (the exec failed and said why on stderr, or this is not Linux)", "env", sysmon.Env)
	case mode == sysmon.Backoff && runtime.GOMAXPROCS(0) == 1:
		log.Warn("go runtime monitor: backoff with GOMAXPROCS=1: a goroutine in a blocking system call holds up every other for up to about 20 ms", "env", sysmon.Env)
	default:
		log.Info("go runtime monitor", "mode", string(mode), "env", sysmon.Env)
	}
}
