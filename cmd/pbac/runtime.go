package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// policyRuntime is the Wasm engine and the registry with the shipped policy
// active, as every serving command needs them.
type policyRuntime struct {
	engine   *wasm.Engine
	registry *plugins.Registry
}

// policyLimits bound policy decisions: one evaluation (the engine's
// deadline) and one whole decision, the wait for a policy instance
// included (the registry's). Zero keeps a default.
type policyLimits struct {
	evalTimeout, decisionTimeout time.Duration
}

// check refuses an evaluation deadline the decision timeout would cut
// short: it would never be reached.
func (l policyLimits) check() error {
	eval, decision := l.evalTimeout, l.decisionTimeout
	if eval == 0 {
		eval = wasm.NewConfig().EvalTimeout()
	}
	if decision == 0 {
		decision = plugins.DefaultDecisionTimeout
	}
	if eval > decision {
		return fmt.Errorf("policy evaluation timeout %s (--policy-eval-timeout, policy.eval_timeout) is longer than the decision timeout %s (--policy-decision-timeout, policy.decision_timeout), which bounds the whole decision", eval, decision)
	}
	return nil
}

func newPolicyRuntime(ctx context.Context, dataDir string, limits policyLimits, log *slog.Logger) (*policyRuntime, error) {
	if err := limits.check(); err != nil {
		return nil, err
	}
	cfg := wasm.NewConfig().WithLogger(log).WithEvalTimeout(limits.evalTimeout)
	if dataDir != "" {
		cfg = cfg.WithCacheDir(filepath.Join(dataDir, "wasm-cache"))
	}
	engine, err := wasm.NewEngine(ctx, cfg)
	if err != nil {
		return nil, err
	}
	reg := plugins.New(engine, plugins.WithLogger(log), plugins.WithDecisionTimeout(limits.decisionTimeout))
	b, err := rego.BuildShipped(ctx)
	if err == nil {
		_, err = reg.Activate(ctx, b, "shipped")
	}
	if err != nil {
		_ = reg.Close(ctx)
		_ = engine.Close(ctx)
		return nil, fmt.Errorf("activate the shipped policy: %w", err)
	}
	return &policyRuntime{engine: engine, registry: reg}, nil
}

func (p *policyRuntime) Close(ctx context.Context) {
	_ = p.registry.Close(ctx)
	_ = p.engine.Close(ctx)
}

// shippedData is the typed view of the shipped policy's data.
func shippedData() (*contract.Data, error) {
	raw, err := fs.ReadFile(rego.Sources(), "data.json")
	if err != nil {
		return nil, err
	}
	return contract.ParseData(raw)
}

// activeScopes are the scopes the active policy version's data names
// (contract.Data.Scopes): the scopes the AS advertises and clients may ask
// for; policy decides which are granted.
func activeScopes(reg *plugins.Registry) []string {
	if _, data, err := reg.ActivePolicy(); err == nil && data != nil {
		return data.Scopes()
	}
	return nil
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
