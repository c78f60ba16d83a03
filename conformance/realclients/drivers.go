package realclients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/pbac-gateway/pbac/connect"
	"github.com/pbac-gateway/pbac/demo"
)

// serverName is the MCP server's name in every CLI's configuration.
const serverName = "pbac"

// prompts ask the stand-in model for the allowed and the denied call.
var prompts = []string{
	markerAllowed + ": read " + allowedPath + " from the drive",
	markerDenied + ": read " + deniedPath + " from the drive",
}

// DriveClaudeCode drives Claude Code: `claude mcp add` with the demo
// agent's pre-registered id and Claude Code's fixed callback port (the
// line `pbac up` prints), `claude mcp login` on a pty (the browser helper
// signs in), then `claude -p` once per call with only the gateway's tool
// allowed. The model is the stand-in, through ANTHROPIC_BASE_URL.
func DriveClaudeCode(ctx context.Context, e Env, t Target) (Row, error) {
	bin := filepath.Join(e.Dir, "node_modules", ".bin", "claude")
	row := Row{Client: "Claude Code", Version: Version(e.Dir, "@anthropic-ai/claude-code")}
	// The line pbac up printed, as a user pastes it (local scope: every
	// command runs in e.Work).
	add := t.ClaudeAdd
	if add == "" {
		return row, errors.New("pbac up printed no `claude mcp add` line for /mcp")
	}
	if !strings.Contains(add, "--client-id "+t.ClientID+" ") || !strings.Contains(add, fmt.Sprintf("--callback-port %d ", demo.ClaudeCodeCallbackPort)) ||
		!strings.HasSuffix(add, " "+serverName+" "+t.Base+"/mcp") {
		return row, fmt.Errorf("pbac up printed %q, not the demo agent's id, callback port and server %s at %s/mcp", add, serverName, t.Base)
	}
	row.Snippet = add
	env := claudeEnv(e)
	from := len(t.Observer.Events())
	if _, err := e.run(ctx, env, bin, strings.Fields(add)[1:]...); err != nil {
		return row, err
	}
	out, err := e.onPTYFixedPort(ctx, env, shellQuote(bin)+" mcp login "+serverName)
	if err != nil {
		return row, fmt.Errorf("%w: %v\n%s", errNotSignedIn, err, plain(out))
	}
	tool := "mcp__" + serverName + "__" + toolSuffix
	for _, more := range e.probe.tools() {
		tool += ",mcp__" + serverName + "__" + more
	}
	for p := range e.calls(ctx) {
		// A refused call is no failure of the run: the check is what the
		// model saw, from the stand-in's record.
		_, _ = e.run(ctx, env, bin, "-p", p, "--allowedTools", tool, "--output-format", "text")
	}
	e.judge(ctx, &row, t, from)
	return row, nil
}

// claudeEnv is Claude Code's environment: its configuration in the
// throwaway work dir, the stand-in as its model API, nothing else
// reached.
func claudeEnv(e Env) []string {
	return append(e.baseEnv(),
		"CLAUDE_CONFIG_DIR="+filepath.Join(e.Work, ".claude"),
		"ANTHROPIC_BASE_URL="+e.Model.URL(),
		"ANTHROPIC_API_KEY=sk-ant-standin-not-a-key",
		"DISABLE_AUTOUPDATER=1",
		"DISABLE_TELEMETRY=1",
		"DISABLE_ERROR_REPORTING=1",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		// Offer the MCP tools to the model directly, not behind ToolSearch.
		"ENABLE_TOOL_SEARCH=false",
	)
}

// DriveOpenCode drives OpenCode: an opencode.json with the stand-in as an
// OpenAI-compatible provider and, as the user pastes it, the snippet the
// dashboard offers for OpenCode (connect.Clients: the gateway as a remote
// MCP server whose oauth block names the demo agent's pre-registered id
// and OpenCode's own redirect URI, /mcp/oauth/callback on its default
// port), then `opencode mcp auth` on a pty and `opencode run` once per
// call.
func DriveOpenCode(ctx context.Context, e Env, t Target) (Row, error) {
	bin := filepath.Join(e.Dir, "node_modules", ".bin", "opencode")
	row := Row{Client: "OpenCode", Version: Version(e.Dir, "opencode-ai")}
	// The snippet the dashboard and connect.Clients offer for OpenCode,
	// as a user pastes it (the demo agent registered its redirect URI).
	oc, ok := connect.Lookup("opencode")
	if !ok {
		return row, errors.New("connect.Clients has no opencode preset")
	}
	row.Snippet = oc.Snippet(connect.Target{MCPURL: t.Base + "/mcp", ClientID: t.ClientID})
	var pasted struct {
		MCP map[string]any `json:"mcp"`
	}
	if err := json.Unmarshal([]byte(row.Snippet), &pasted); err != nil || pasted.MCP[serverName] == nil {
		return row, fmt.Errorf("the OpenCode snippet is not an opencode.json with mcp.%s: %v\n%s", serverName, err, row.Snippet)
	}
	mcp := pasted.MCP[serverName]
	cfg := map[string]any{
		"$schema":     "https://opencode.ai/config.json",
		"model":       "standin/standin-model",
		"small_model": "standin/standin-model",
		"autoupdate":  false,
		"share":       "disabled",
		"provider": map[string]any{"standin": map[string]any{
			"npm": "@ai-sdk/openai-compatible", "name": "Stand-in model API",
			"options": map[string]any{"baseURL": e.Model.URL() + "/v1", "apiKey": "standin-not-a-key"},
			"models":  map[string]any{"standin-model": map[string]any{"name": "Stand-in", "tool_call": true}},
		}},
		"mcp": map[string]any{serverName: mcp},
	}
	raw, _ := json.MarshalIndent(cfg, "", "  ")
	path := filepath.Join(e.Work, "opencode.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return row, fmt.Errorf("write opencode.json: %w", err)
	}
	env := append(e.baseEnv(),
		"OPENCODE_CONFIG="+path,
		"OPENCODE_DISABLE_AUTOUPDATE=1",
		"OPENCODE_DISABLE_MODELS_FETCH=1",
		"OPENCODE_DISABLE_DEFAULT_PLUGINS=1",
		"OPENCODE_DISABLE_LSP_DOWNLOAD=1",
		"OPENCODE_DISABLE_SHARE=1",
	)
	from := len(t.Observer.Events())
	out, err := e.onPTY(ctx, env, shellQuote(bin)+" mcp auth "+serverName)
	if err != nil {
		return row, fmt.Errorf("%w: %v\n%s", errNotSignedIn, err, plain(out))
	}
	for p := range e.calls(ctx) {
		_, _ = e.run(ctx, env, bin, "run", p)
	}
	e.judge(ctx, &row, t, from)
	return row, nil
}

// freePort is a loopback port free now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// shellQuote quotes s for sh -c.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
