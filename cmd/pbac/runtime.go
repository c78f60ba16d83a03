package main

import (
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/stack"
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
