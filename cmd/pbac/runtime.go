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
