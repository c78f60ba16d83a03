// Package connect knows how each MCP client people use connects to the
// gateway as a registered agent: the redirect URIs the client sends to the
// authorization endpoint, the ones to register so the authorization server
// accepts them, and the configuration that makes the client use the
// agent's client id. It is the one table the dashboard's presets and
// snippets, pbac up's Claude Code line and the demo agents' redirect URIs
// are made from.
//
// Where each client's redirect URI comes from (read in the client itself
// where it could be installed here; "not run here" for GUI clients):
//
//	client        sends                                        source
//	Claude Code   http://localhost:P/callback, P=--callback-port @anthropic-ai/claude-code 2.1.197: `claude mcp add --help` (--client-id, --callback-port); the binary builds `http://localhost:${port}/callback`
//	OpenCode      http://127.0.0.1:19876/mcp/oauth/callback    opencode-ai 1.18.33: McpOAuthConfig (clientId, callbackPort, redirectUri, "default: http://127.0.0.1:19876/mcp/oauth/callback"); a set redirectUri is sent as written (issue 18)
//	Codex         http://127.0.0.1:P/callback with oauth.callback_url and callback_port; else …/callback/<hash>   @openai/codex 0.171.0: McpServerOAuthConfig (client_id, callback_port, callback_url); issue 18; run by conformance/realclients
//	Gemini CLI    oauth.redirectUri as written (listening on its port, path /oauth/callback only); else http://localhost:P/oauth/callback    @google/gemini-cli 0.61.0: core/utils/oauth-flow.js getRedirectUri, getPortFromUrl, startCallbackServer; run by conformance/realclients
//	VS Code       http://127.0.0.1:33418/ (or another free port)   microsoft/vscode src/vs/base/common/oauth.ts fetchDynamicRegistration (DEFAULT_AUTH_FLOW_PORT = 33418); not run here
//	Cursor        http://localhost:8787/callback (older builds: cursor://anysphere.cursor-mcp/oauth/callback, refused here: not a reverse-domain scheme)   cursor.com/docs/mcp (static OAuth: auth.CLIENT_ID), as quoted by providers' setup guides; not run here
//	mcp-remote    http://127.0.0.1:P/oauth/callback with --host 127.0.0.1   mcp-remote 0.15.1: buildRedirectUrl(host, port, "/oauth/callback"), --static-oauth-client-info; also what Claude Desktop, Cline and Windsurf run for a remote server
//	Inspector     web UI: http://localhost:6274/oauth/callback (its origin); --cli: http://127.0.0.1:6276/oauth/callback   @modelcontextprotocol/inspector 2.12.0: web `${window.location.origin}/oauth/callback`; CLI --callback-url, default http://127.0.0.1:6276/oauth/callback (MCP_OAUTH_CALLBACK_URL); both run by conformance/realclients
//
// The authorization server matches a redirect URI exactly, except http to a
// loopback IP literal (127.0.0.1, [::1]), which matches on any port (RFC 8252
// §7.3). "localhost" is a host name, so its port must match: a preset for a
// client that sends localhost fixes the port in its snippet.
package connect

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Ports the snippets fix, so that what the client sends is what was
// registered (a localhost redirect URI matches only on its own port).
const (
	// ClaudeCodeCallbackPort: claude mcp add --callback-port.
	ClaudeCodeCallbackPort = 33418
	// OpenCodeCallbackPort is OpenCode's default callback port.
	OpenCodeCallbackPort = 19876
	// CodexCallbackPort: Codex's per-server oauth.callback_port.
	CodexCallbackPort = 33421
	// GeminiCallbackPort: the port of Gemini CLI's oauth.redirectUri.
	GeminiCallbackPort = 7777
	// VSCodeCallbackPort is the port VS Code tries first.
	VSCodeCallbackPort = 33418
	// MCPRemoteCallbackPort: mcp-remote's port argument.
	MCPRemoteCallbackPort = 33422
	// InspectorPort is the MCP Inspector web UI's default port.
	InspectorPort = 6274
	// InspectorCLICallbackPort is the port of the Inspector CLI's default
	// callback URL (--callback-url).
	InspectorCLICallbackPort = 6276
	// CursorCallbackPort is Cursor desktop's loopback callback port.
	CursorCallbackPort = 8787
)

// ServerName is the name the snippets give the gateway in each client.
const ServerName = "pbac"

// Target is what a snippet connects: the gateway's MCP endpoint and the
// agent's client id.
type Target struct {
	MCPURL   string
	ClientID string
}

// Client is one MCP client: what to register for it and how to configure
// it.
type Client struct {
	// ID names the client in the dashboard's API ("claude-code").
	ID    string `json:"id"`
	Label string `json:"label"`
	// RedirectURIs are registered for an agent this client runs as.
	RedirectURIs []string `json:"redirect_uris"`
	// Sends are redirect URIs the client sends when configured with the
	// snippet, port included (what a test drives the authorization
	// endpoint with).
	Sends []string `json:"sends"`
	// File is where the snippet goes; "" for a command to run.
	File string `json:"file,omitempty"`
	// Note says what the person does after pasting the snippet.
	Note string `json:"note"`
	// Source is where the redirect URI was learnt.
	Source string `json:"source"`
	// RunHere tells whether the project drives this client for real (a
	// CLI), or only documents it from its public docs (a GUI).
	RunHere bool `json:"run_here"`
	// SelfRegisters: the client has no setting for a client id, so its
	// snippet carries none; it registers itself (RFC 7591) and is known
	// as this agent only where it asks for an id.
	SelfRegisters bool `json:"self_registers"`

	snippet func(Target) string
}

// Snippet is the client's configuration for t, as the person pastes it.
func (c Client) Snippet(t Target) string {
	if c.snippet == nil {
		return ""
	}
	return c.snippet(t)
}

// Custom is the preset without a client: the operator types the redirect
// URIs, and no snippet is offered.
const Custom = "custom"

// Clients is the table, in the order the dashboard offers them.
func Clients() []Client {
	return []Client{
		{
			ID: "claude-code", Label: "Claude Code",
			RedirectURIs: []string{loopback("localhost", ClaudeCodeCallbackPort, "/callback")},
			Sends:        []string{loopback("localhost", ClaudeCodeCallbackPort, "/callback")},
			Note:         "Claude Code opens the gateway's sign-in page in your browser when a tool is first used (or run claude mcp login " + ServerName + ").",
			Source:       "@anthropic-ai/claude-code 2.1.197: claude mcp add --client-id --callback-port; it listens on http://localhost:PORT/callback",
			RunHere:      true,
			snippet: func(t Target) string {
				return ClaudeAddLine(t.ClientID, ClaudeCodeCallbackPort, ServerName, t.MCPURL)
			},
		},
		{
			ID: "opencode", Label: "OpenCode",
			RedirectURIs: []string{"http://127.0.0.1/mcp/oauth/callback"},
			Sends:        []string{loopback("127.0.0.1", OpenCodeCallbackPort, "/mcp/oauth/callback"), loopback("127.0.0.1", 40123, "/mcp/oauth/callback")},
			File:         "opencode.json",
			Note:         "Then opencode mcp auth " + ServerName + " opens the sign-in page.",
			Source:       "opencode-ai 1.18.33: mcp.<name>.oauth {clientId, callbackPort, redirectUri}; default redirect http://127.0.0.1:19876/mcp/oauth/callback",
			RunHere:      true,
			snippet: func(t Target) string {
				return jsonText(map[string]any{
					"$schema": "https://opencode.ai/config.json",
					"mcp": map[string]any{ServerName: map[string]any{
						"type": "remote", "url": t.MCPURL,
						"oauth": map[string]any{"clientId": t.ClientID, "redirectUri": loopback("127.0.0.1", OpenCodeCallbackPort, "/mcp/oauth/callback")},
					}},
				})
			},
		},
		{
			ID: "codex", Label: "Codex",
			RedirectURIs: []string{"http://127.0.0.1/callback"},
			Sends:        []string{loopback("127.0.0.1", CodexCallbackPort, "/callback")},
			File:         "~/.codex/config.toml",
			Note:         "Then codex mcp login " + ServerName + " opens the sign-in page. Without callback_url Codex sends …/callback/<hash>, which is not registered.",
			Source:       "@openai/codex 0.171.0: [mcp_servers.<name>.oauth] client_id, callback_port, callback_url",
			RunHere:      true,
			snippet: func(t Target) string {
				return strings.Join([]string{
					"[mcp_servers." + ServerName + "]",
					"url = " + strconv.Quote(t.MCPURL),
					"",
					"[mcp_servers." + ServerName + ".oauth]",
					"client_id = " + strconv.Quote(t.ClientID),
					"callback_port = " + strconv.Itoa(CodexCallbackPort),
					"callback_url = " + strconv.Quote(loopback("127.0.0.1", CodexCallbackPort, "/callback")),
				}, "\n")
			},
		},
		{
			ID: "gemini-cli", Label: "Gemini CLI",
			RedirectURIs: []string{loopback("localhost", GeminiCallbackPort, "/oauth/callback")},
			Sends:        []string{loopback("localhost", GeminiCallbackPort, "/oauth/callback")},
			File:         "~/.gemini/settings.json",
			Note:         "Then /mcp auth " + ServerName + " in Gemini CLI opens the sign-in page.",
			Source:       "@google/gemini-cli 0.61.0: http://localhost:PORT/oauth/callback, the port taken from oauth.redirectUri",
			RunHere:      true,
			snippet: func(t Target) string {
				return jsonText(map[string]any{"mcpServers": map[string]any{ServerName: map[string]any{
					"httpUrl": t.MCPURL,
					"oauth": map[string]any{"enabled": true, "clientId": t.ClientID,
						"redirectUri": loopback("localhost", GeminiCallbackPort, "/oauth/callback")},
				}}})
			},
		},
		{
			ID: "vscode", Label: "VS Code",
			RedirectURIs:  []string{"http://127.0.0.1/"},
			Sends:         []string{loopback("127.0.0.1", VSCodeCallbackPort, "/"), loopback("127.0.0.1", 51234, "/")},
			File:          ".vscode/mcp.json",
			Note:          "VS Code has no setting for a client id: it registers itself (an unverified agent until an operator knows it), and asks for an id only where a server offers no registration — then give this agent's. Not run here.",
			SelfRegisters: true,
			Source:        "microsoft/vscode src/vs/base/common/oauth.ts: redirect http://127.0.0.1:33418/ (another port when taken); vscode.dev/redirect only for remote windows, not registered here",
			snippet: func(t Target) string {
				return jsonText(map[string]any{"servers": map[string]any{ServerName: map[string]any{"type": "http", "url": t.MCPURL}}})
			},
		},
		{
			ID: "cursor", Label: "Cursor",
			// Older Cursor builds send cursor://anysphere.cursor-mcp/oauth/callback:
			// a private-use scheme that is not in reverse domain notation,
			// which the authorization server refuses (RFC 8252 §7.1).
			RedirectURIs: []string{loopback("localhost", CursorCallbackPort, "/callback")},
			Sends:        []string{loopback("localhost", CursorCallbackPort, "/callback")},
			File:         "~/.cursor/mcp.json",
			Note:         "Cursor opens the sign-in page from its MCP settings. Older builds send cursor://anysphere.cursor-mcp/oauth/callback, which this server refuses (not a reverse-domain scheme, RFC 8252 §7.1). Not run here.",
			Source:       "cursor.com/docs/mcp: static OAuth (auth.CLIENT_ID); desktop redirect http://localhost:8787/callback (formerly cursor://anysphere.cursor-mcp/oauth/callback)",
			snippet: func(t Target) string {
				return jsonText(map[string]any{"mcpServers": map[string]any{ServerName: map[string]any{
					"url": t.MCPURL, "auth": map[string]any{"CLIENT_ID": t.ClientID},
				}}})
			},
		},
		{
			ID: "mcp-remote", Label: "mcp-remote (Claude Desktop, Cline, Windsurf)",
			RedirectURIs: []string{"http://127.0.0.1/oauth/callback"},
			Sends:        []string{loopback("127.0.0.1", MCPRemoteCallbackPort, "/oauth/callback")},
			File:         "the client's MCP settings (claude_desktop_config.json, cline_mcp_settings.json, mcp_config.json)",
			Note:         "mcp-remote opens the sign-in page on first start; it listens on 127.0.0.1.",
			Source:       "mcp-remote 0.15.1: http://<--host>:<port>/oauth/callback, --static-oauth-client-info",
			RunHere:      true,
			snippet: func(t Target) string {
				args := []string{"-y", "mcp-remote", t.MCPURL, strconv.Itoa(MCPRemoteCallbackPort), "--host", "127.0.0.1",
					"--static-oauth-client-info", jsonCompact(map[string]string{"client_id": t.ClientID})}
				if needsAllowHTTP(t.MCPURL) {
					args = append(args, "--allow-http")
				}
				return jsonText(map[string]any{"mcpServers": map[string]any{ServerName: map[string]any{"command": "npx", "args": args}}})
			},
		},
		{
			ID: "inspector", Label: "MCP Inspector",
			RedirectURIs: []string{loopback("localhost", InspectorPort, "/oauth/callback"), "http://127.0.0.1/oauth/callback"},
			Sends: []string{loopback("localhost", InspectorPort, "/oauth/callback"), loopback("127.0.0.1", InspectorPort, "/oauth/callback"),
				loopback("127.0.0.1", InspectorCLICallbackPort, "/oauth/callback")},
			Note: "In the Inspector: Add Servers, Add manually, transport streamable-http and this URL; then the server's Settings, " +
				"OAuth Settings, Client ID; switch the server on and sign in. Its CLI (the last line) signs in on the first run and keeps the token for the next.",
			Source:  "@modelcontextprotocol/inspector 2.12.0: the web UI redirects to ${window.location.origin}/oauth/callback (port 6274); the CLI to --callback-url, default http://127.0.0.1:6276/oauth/callback",
			RunHere: true,
			snippet: func(t Target) string {
				return "npx @modelcontextprotocol/inspector\n# Streamable HTTP: " + t.MCPURL + "\n# client id: " + t.ClientID +
					"\n# or in a terminal:\nnpx @modelcontextprotocol/inspector --cli " + t.MCPURL + " --transport http --client-id " + t.ClientID + " --method tools/list"
			},
		},
	}
}

// Lookup returns the client with id.
func Lookup(id string) (Client, bool) {
	cs := Clients()
	i := slices.IndexFunc(cs, func(c Client) bool { return c.ID == id })
	if i < 0 {
		return Client{}, false
	}
	return cs[i], true
}

// AllRedirectURIs is every client's redirect URIs, once each: what an agent
// registered for any of them (the demo agents) carries.
func AllRedirectURIs() []string {
	var out []string
	for _, c := range Clients() {
		for _, u := range c.RedirectURIs {
			if !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return out
}

// ClaudeAddLine is the claude mcp add command for a pre-registered client
// id, listening on the callback port its redirect URI names.
func ClaudeAddLine(clientID string, callbackPort int, name, mcpURL string) string {
	return fmt.Sprintf("claude mcp add --transport http --client-id %s --callback-port %d %s %s", clientID, callbackPort, name, mcpURL)
}

func loopback(host string, port int, path string) string {
	return "http://" + host + ":" + strconv.Itoa(port) + path
}

// needsAllowHTTP: mcp-remote refuses http to a host other than localhost
// and 127.0.0.1 unless told.
func needsAllowHTTP(mcpURL string) bool {
	u, err := url.Parse(mcpURL)
	return err == nil && u.Scheme == "http" && u.Hostname() != "localhost" && u.Hostname() != "127.0.0.1"
}

// jsonText is v as indented JSON, with no HTML escaping (a URL's & stays
// as typed).
func jsonText(v any) string { return encodeJSON(v, "  ") }

func jsonCompact(v any) string { return encodeJSON(v, "") }

func encodeJSON(v any, indent string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		panic(err) // maps of strings and bools: cannot fail
	}
	return strings.TrimSuffix(b.String(), "\n")
}
