package realclients

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pbac-gateway/pbac/connect"
)

// codexConfig is Codex's config.toml: the stand-in as a Responses API
// provider, and the gateway as an MCP server with the demo agent's
// pre-registered id and a fixed callback (connect's Codex snippet, at the
// gateway this run serves). OAuth credentials go to a file in CODEX_HOME
// (there is no keyring here).
func codexConfig(e Env, t Target) (cfg, snippet string, err error) {
	preset, ok := connect.Lookup("codex")
	if !ok {
		return "", "", errors.New("connect has no codex preset")
	}
	snippet = preset.Snippet(connect.Target{ClientID: t.ClientID, MCPURL: t.Base + "/mcp"})
	server := snippet
	if len(e.probe.tools()) > 0 {
		// The probe's call is one Codex asks a person to approve (a tool
		// not marked read-only), which approval_policy "never" refuses:
		// the server's tools are approved in advance, as Claude Code's
		// --allowedTools does.
		oauth := "[mcp_servers." + serverName + ".oauth]"
		if !strings.Contains(server, oauth) {
			return "", "", fmt.Errorf("the Codex snippet has no %s table:\n%s", oauth, snippet)
		}
		server = strings.Replace(server, oauth, "default_tools_approval_mode = \"approve\"\n\n"+oauth, 1)
	}
	cfg = strings.Join([]string{
		`model = "standin-model"`,
		`model_provider = "standin"`,
		`approval_policy = "never"`,
		`sandbox_mode = "read-only"`,
		`mcp_oauth_credentials_store = "file"`,
		`check_for_update_on_startup = false`,
		``,
		`[analytics]`,
		`enabled = false`,
		``,
		`[model_providers.standin]`,
		`name = "Stand-in model API"`,
		`base_url = ` + strconv.Quote(e.Model.URL()+"/v1"),
		`wire_api = "responses"`,
		`env_key = "STANDIN_API_KEY"`,
		``,
		server,
		``,
	}, "\n")
	return cfg, snippet, nil
}

// DriveCodex drives Codex: a config.toml in a throwaway CODEX_HOME with
// the stand-in as a Responses API provider and the gateway as an MCP
// server with the demo agent's id and a fixed callback_url (connect's
// Codex snippet), `codex mcp login` (no pty needed), then `codex exec`
// once per call.
func DriveCodex(ctx context.Context, e Env, t Target) (Row, error) {
	bin := filepath.Join(e.Dir, "node_modules", ".bin", "codex")
	row := Row{Client: "Codex", Version: Version(e.Dir, "@openai/codex")}
	home := filepath.Join(e.Work, ".codex")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return row, fmt.Errorf("make CODEX_HOME: %w", err)
	}
	cfg, snippet, err := codexConfig(e, t)
	if err != nil {
		return row, err
	}
	row.Snippet = snippet
	if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte(cfg), 0o600); err != nil {
		return row, fmt.Errorf("write config.toml: %w", err)
	}
	env := append(e.baseEnv(),
		"CODEX_HOME="+home,
		"STANDIN_API_KEY=standin-not-a-key",
	)
	from := len(t.Observer.Events())
	if out, err := e.run(ctx, env, bin, "mcp", "login", serverName); err != nil {
		return row, fmt.Errorf("%w: %v\n%s", errNotSignedIn, err, plain(out))
	}
	for p := range e.calls(ctx) {
		_, _ = e.run(ctx, env, bin, "exec", "--skip-git-repo-check", p)
	}
	e.judge(ctx, &row, t, from)
	return row, nil
}
