package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

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

// scopesOf lists every "<resource>:<access>" scope the policy data knows:
// each catalogued tool's, and each tier and role grant's. They are the
// scopes the AS advertises and clients may ask for; policy decides which
// are granted.
func scopesOf(data []byte) []string {
	type grants struct {
		Grants map[string][]string `json:"grants"`
	}
	var d struct {
		Tiers     map[string]grants `json:"tiers"`
		Roles     map[string]grants `json:"roles"`
		Catalogue map[string]struct {
			Resource string `json:"resource"`
			Access   string `json:"access"`
		} `json:"catalogue"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil
	}
	seen := map[string]bool{}
	add := func(res, acc string) {
		if res != "" && acc != "" {
			seen[res+":"+acc] = true
		}
	}
	for _, t := range d.Catalogue {
		add(t.Resource, t.Access)
	}
	for _, set := range []map[string]grants{d.Tiers, d.Roles} {
		for _, g := range set {
			for res, accs := range g.Grants {
				for _, a := range accs {
					add(res, a)
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
