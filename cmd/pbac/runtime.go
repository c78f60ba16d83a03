package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pbac-gateway/pbac/asrv"
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

func newPolicyRuntime(ctx context.Context, dataDir string, log *slog.Logger) (*policyRuntime, error) {
	cfg := wasm.NewConfig().WithLogger(log)
	if dataDir != "" {
		cfg = cfg.WithCacheDir(filepath.Join(dataDir, "wasm-cache"))
	}
	engine, err := wasm.NewEngine(ctx, cfg)
	if err != nil {
		return nil, err
	}
	reg := plugins.New(engine, plugins.WithLogger(log))
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

// decider adapts the registry to the authorization server's interface.
func (p *policyRuntime) decider() asrv.Decider {
	return asrv.DeciderFunc(func(ctx context.Context, ep string, input []byte) (asrv.Decision, error) {
		d, err := p.registry.Decide(ctx, ep, input)
		if err != nil {
			return asrv.Decision{}, err
		}
		return asrv.Decision{Allow: d.Allow, Reasons: d.Reasons, Result: d.Result}, nil
	})
}

// scopesOf lists every "<resource>:<access>" scope the policy data's tier
// grants mention: the scopes the AS advertises and clients may ask for.
func scopesOf(data []byte) []string {
	var d struct {
		Tiers map[string]struct {
			Grants map[string][]string `json:"grants"`
		} `json:"tiers"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, t := range d.Tiers {
		for res, accs := range t.Grants {
			for _, a := range accs {
				if sc := res + ":" + a; !seen[sc] {
					seen[sc] = true
					out = append(out, sc)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
