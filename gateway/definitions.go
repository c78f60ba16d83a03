package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/tooldefs"
)

// ToolDefinitions keeps the tool definitions backends serve in tools/list
// (package tooldefs/store; the composition root passes one): Observe
// records the tools of one answer of backend (read by tooldefs.Read, at
// most one per name); Hash is the newest hash seen for a backend's tool. Both must be
// safe for concurrent use; Hash is on every call's path.
type ToolDefinitions interface {
	ObserveRead(ctx context.Context, backend string, tools []tooldefs.Tool)
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

// readTools reads the tool objects of one tools/list answer of backend
// strictly (tooldefs.Canonical). An object it cannot read is dropped, and
// so is every object of a name listed more than once: which of them a
// client keeps is the client's guess, and policy decides per name. Each
// object is judged on its own definition: nothing rides on another
// object's name.
func (g *Gateway) readTools(backend string, tools []json.RawMessage) []tooldefs.Tool {
	out := make([]tooldefs.Tool, 0, len(tools))
	count := make(map[string]int, len(tools))
	unread, twice := 0, 0
	var first error
	for _, t := range tools {
		lt, err := tooldefs.Read(t)
		if err != nil {
			if unread++; first == nil {
				first = err
			}
			continue
		}
		count[lt.Name]++
		out = append(out, lt)
	}
	kept := out[:0]
	for _, lt := range out {
		if count[lt.Name] > 1 {
			twice++
			continue
		}
		kept = append(kept, lt)
	}
	if unread > 0 || twice > 0 {
		// One line per answer, however many objects a backend sends.
		g.log.Warn("tools of a tools/list answer are not passed on", "backend", backend,
			"unreadable", unread, "first_error", first, "listed_more_than_once", twice)
	}
	g.params.observe(backend, kept)
	return kept
}

// listedDefinitions records the tools of one tools/list answer of backend
// (read by readTools) and returns their definitions by catalogue name
// ("<backend>.<name>").
func (g *Gateway) listedDefinitions(ctx context.Context, backend string, tools []tooldefs.Tool) map[string]contract.ToolDefinition {
	if g.cfg.ToolDefinitions != nil {
		g.cfg.ToolDefinitions.ObserveRead(ctx, backend, tools)
	}
	out := make(map[string]contract.ToolDefinition, len(tools))
	for _, lt := range tools {
		full := backend + "." + lt.Name
		out[full] = g.definition(full, lt.Hash)
	}
	return out
}

// discoveryOwner is the quota key of the gateway's own discovery sessions
// on backends that share themselves per agent.
const discoveryOwner = "pbac-gateway/tool-discovery"

// Discovery is what DiscoverTools saw: the tools each backend listed, and
// why a backend could not be listed.
type Discovery struct {
	Tools  map[string]int    `json:"tools"`
	Errors map[string]string `json:"errors,omitempty"`
}

// DiscoverTools lists every backend's tools on a session of the gateway's
// own and records them in the tool definitions, so an operator reviews a
// new backend's tools before any agent can see them (an agent is shown
// only catalogued tools, and a backend's methods follow its resource).
// Each backend's session is ended after. It is a no-op without
// ToolDefinitions.
func (g *Gateway) DiscoverTools(ctx context.Context) Discovery {
	out := Discovery{Tools: map[string]int{}}
	if g.cfg.ToolDefinitions == nil {
		return out
	}
	for _, name := range slices.Sorted(maps.Keys(g.backends)) {
		n, err := g.discover(ctx, g.backends[name])
		if err != nil {
			if out.Errors == nil {
				out.Errors = map[string]string{}
			}
			out.Errors[name] = err.Error()
			g.log.Warn("tool discovery: a backend could not be listed", "backend", name, "err", err)
			continue
		}
		out.Tools[name] = n
	}
	return out
}

func (g *Gateway) discover(ctx context.Context, b *Backend) (int, error) {
	sess := &aggSession{backends: map[string]string{}, owner: discoveryOwner}
	defer g.endDiscovery(b, sess)
	seen, cursor := 0, ""
	for range maxToolPages {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		res, err := g.backendCall(ctx, b, sess, "tools/list", params)
		if err != nil {
			return seen, fmt.Errorf("tools/list: %w", err)
		}
		var page struct {
			Tools      []json.RawMessage `json:"tools"`
			NextCursor string            `json:"nextCursor"`
		}
		if err := json.Unmarshal(res, &page); err != nil {
			return seen, fmt.Errorf("tools/list result: %w", err)
		}
		listed := g.readTools(b.Name, page.Tools)
		g.cfg.ToolDefinitions.ObserveRead(ctx, b.Name, listed)
		seen += len(listed)
		if cursor = page.NextCursor; cursor == "" {
			return seen, nil
		}
	}
	return seen, fmt.Errorf("more than %d pages of tools", maxToolPages)
}

// endDiscovery ends a discovery's backend session (bounded by
// sessionEndTimeout).
func (g *Gateway) endDiscovery(b *Backend, sess *aggSession) {
	sid := sess.backends[b.Name]
	if sid == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sessionEndTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, b.URL, nil)
	if err != nil {
		return
	}
	req.Header.Set(hdrSession, sid)
	for k, v := range b.Headers {
		req.Header.Set(k, v)
	}
	setOwner(req.Header.Set, b, discoveryOwner)
	if resp, err := g.client.Do(req); err == nil {
		resp.Body.Close()
	}
}
