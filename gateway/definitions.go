package gateway

import (
	"context"
	"encoding/json"

	"github.com/pbac-gateway/pbac/contract"
)

// ToolDefinitions keeps the tool definitions backends serve in tools/list
// (package tooldefs; the composition root passes one): Observe records
// the tools of one answer of backend and returns each one's hash by its
// name; Hash is the newest hash seen for a backend's tool. Both must be
// safe for concurrent use; Hash is on every call's path.
type ToolDefinitions interface {
	Observe(ctx context.Context, backend string, tools []json.RawMessage) map[string]string
	Hash(backend, name string) (string, bool)
}

// definition is what policy is told of tool ("<backend>.<name>") whose
// backend serves the definition of hash now ("" when not seen): whether
// the active catalogue pins it, and to this hash. Policy decides on its
// own version's pin (definitions.rego); Pinned and Matches are this
// gateway's reading, for an organisation's own rules.
func (g *Gateway) definition(tool, hash string) contract.ToolDefinition {
	d := contract.ToolDefinition{Hash: hash}
	if r, _ := g.catalogues.rules(g.cfg.Policy, tool); r != nil && r.pin != "" {
		d.Pinned, d.Matches = true, hash == r.pin
	}
	return d
}

// calledDefinition is the definition of backend's tool name as last seen
// listed.
func (g *Gateway) calledDefinition(backend, name string) *contract.ToolDefinition {
	hash := ""
	if g.cfg.ToolDefinitions != nil {
		hash, _ = g.cfg.ToolDefinitions.Hash(backend, name)
	}
	d := g.definition(backend+"."+name, hash)
	return &d
}

// listedDefinitions records the tools of one tools/list answer of backend
// and returns their definitions by catalogue name ("<backend>.<name>").
func (g *Gateway) listedDefinitions(ctx context.Context, backend string, tools []json.RawMessage) map[string]contract.ToolDefinition {
	var hashes map[string]string
	if g.cfg.ToolDefinitions != nil {
		hashes = g.cfg.ToolDefinitions.Observe(ctx, backend, tools)
	}
	out := make(map[string]contract.ToolDefinition, len(tools))
	for _, t := range tools {
		var tn struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(t, &tn) != nil || tn.Name == "" {
			continue
		}
		full := backend + "." + tn.Name
		out[full] = g.definition(full, hashes[tn.Name])
	}
	return out
}
