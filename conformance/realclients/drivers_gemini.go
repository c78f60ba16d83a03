package realclients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pbac-gateway/pbac/connect"
)

// DriveGemini drives Gemini CLI: ~/.gemini/settings.json with connect's
// Gemini snippet (the demo agent's id and its localhost redirect URI,
// whose port Gemini CLI listens on), the stand-in as the Gemini API
// (GOOGLE_GEMINI_BASE_URL), `gemini -p "/mcp auth pbac"` on a pty
// answering its confirmation, then `gemini -p` once per call. Gemini CLI
// opens the browser with xdg-open, not $BROWSER: an xdg-open first on PATH
// runs the browser helper.
func DriveGemini(ctx context.Context, e Env, t Target) (Row, error) {
	bin := filepath.Join(e.Dir, "node_modules", ".bin", "gemini")
	row := Row{Client: "Gemini CLI", Version: Version(e.Dir, "@google/gemini-cli")}
	preset, ok := connect.Lookup("gemini-cli")
	if !ok {
		return row, errors.New("connect has no gemini-cli preset")
	}
	row.Snippet = preset.Snippet(connect.Target{ClientID: t.ClientID, MCPURL: t.Base + "/mcp"})
	var settings map[string]any
	if err := json.Unmarshal([]byte(row.Snippet), &settings); err != nil {
		return row, fmt.Errorf("read connect's Gemini snippet: %w", err)
	}
	settings["security"] = map[string]any{"auth": map[string]any{"selectedType": "gemini-api-key"}}
	settings["general"] = map[string]any{"disableAutoUpdate": true, "disableUpdateNag": true}
	settings["privacy"] = map[string]any{"usageStatisticsEnabled": false}
	settings["telemetry"] = map[string]any{"enabled": false}
	raw, _ := json.MarshalIndent(settings, "", "  ")
	dir := filepath.Join(e.Work, ".gemini")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return row, fmt.Errorf("make ~/.gemini: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "settings.json"), raw, 0o600); err != nil {
		return row, fmt.Errorf("write settings.json: %w", err)
	}
	shims := filepath.Join(e.Work, "bin")
	if err := os.MkdirAll(shims, 0o700); err != nil {
		return row, fmt.Errorf("make the shim dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(shims, "xdg-open"), []byte("#!/bin/sh\nexec "+shellQuote(e.Browser)+" \"$1\"\n"), 0o700); err != nil {
		return row, fmt.Errorf("write the xdg-open shim: %w", err)
	}
	env := append(e.baseEnv(),
		"GOOGLE_GEMINI_BASE_URL="+e.Model.URL(),
		"GEMINI_API_KEY=standin-not-a-key",
	)
	for i, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			env[i] = "PATH=" + shims + string(os.PathListSeparator) + p
		}
	}
	from := len(t.Observer.Events())
	out, err := e.onPTYAnswering(ctx, env, shellQuote(bin)+" --skip-trust -p "+shellQuote("/mcp auth "+serverName),
		answer{prompt: "Do you want to continue? [Y/n]", input: "y\r"})
	// It signs in, then exits 42: "Exiting due to command result that is
	// not supported in non-interactive mode" (the server's restart).
	if err != nil && !strings.Contains(out, "Successfully authenticated with MCP server '"+serverName+"'") {
		return row, fmt.Errorf("%w: %v\n%s", errNotSignedIn, err, plain(out))
	}
	for p := range e.calls(ctx) {
		_, _ = e.run(ctx, env, bin, "--skip-trust", "--approval-mode", "yolo", "-p", p)
	}
	e.judge(ctx, &row, t, from)
	return row, nil
}
