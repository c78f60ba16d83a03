package realclients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/conformance/modelapi"
	"github.com/pbac-gateway/pbac/connect"
)

// inspectorPackage is the MCP Inspector's npm package.
const inspectorPackage = "@modelcontextprotocol/inspector"

// DriveInspector drives the MCP Inspector, a person's tool with no model,
// in its CLI mode as a person runs it in a terminal (on a pty): the
// command line of connect's Inspector snippet (the gateway's /mcp over
// Streamable HTTP, the demo agent's pre-registered id typed as
// --client-id), once per method. The first run (tools/list) finds no
// stored token: Inspector discovers the authorization server, prints the
// authorization URL and opens the browser — the helper, through $BROWSER,
// which the `open` package's bundled xdg-open honours — which signs in as
// alice; Inspector takes the code on its loopback callback
// (127.0.0.1:6276, its default) and keeps the token in its secret store,
// a file under HOME (MCP_INSPECTOR_SECRET_STORE=file: there is no keychain
// here, and its fallback, memory, would sign in again on every run). The
// two tools/call runs use the stored token. What the person saw is the
// result each run printed on the terminal, which is what the row is
// judged on besides the gateway's record.
func DriveInspector(ctx context.Context, e Env, t Target) (Row, error) {
	ctx, cancel := context.WithTimeout(ctx, inspectorBudget)
	defer cancel()
	if e.Timeout > inspectorStep {
		e.Timeout = inspectorStep
	}
	bin := filepath.Join(e.Dir, "node_modules", ".bin", "mcp-inspector")
	row := Row{Client: "MCP Inspector (CLI)", Version: Version(e.Dir, inspectorPackage)}
	preset, ok := connect.Lookup("inspector")
	if !ok {
		return row, errors.New("connect has no inspector preset")
	}
	row.Snippet = preset.Snippet(connect.Target{ClientID: t.ClientID, MCPURL: t.Base + "/mcp"})
	base := inspectorCLI(row.Snippet)
	if base == nil {
		return row, fmt.Errorf("connect's Inspector snippet has no `npx %s --cli …` line:\n%s", inspectorPackage, row.Snippet)
	}
	env := append(e.baseEnv(), "MCP_INSPECTOR_SECRET_STORE=file")
	from := len(t.Observer.Events())
	out, err := e.onPTY(ctx, env, inspectorLine(bin, base, "--method", "tools/list"))
	if err != nil {
		return row, fmt.Errorf("%w: %v\n%s", errNotSignedIn, err, plain(out))
	}
	s := sight{who: "the person"}
	if s.offered, err = listedTool(out); err != nil {
		return row, err
	}
	for _, c := range []struct {
		marker, path string
		into         **modelapi.ToolResult
	}{{markerAllowed, allowedPath, &s.allowed}, {markerDenied, deniedPath, &s.denied}} {
		// Inspector ends a run whose tool result is an error with exit
		// status 5: what counts is what it showed and what the gateway
		// recorded.
		out, _ := e.onPTY(ctx, env, inspectorLine(bin, base, "--method", "tools/call", "--tool-name", gatewayTool,
			"--tool-arg", "path="+c.path))
		shown, res, err := printedResult(out)
		if err != nil {
			fmt.Fprintf(e.Log, "%s: %v\n", c.marker, err)
			continue
		}
		var r callResult
		if err := json.Unmarshal(res, &r); err != nil {
			fmt.Fprintf(e.Log, "%s: Inspector printed no tool result: %v\n", c.marker, err)
			continue
		}
		*c.into = &modelapi.ToolResult{Marker: c.marker, Tool: gatewayTool, Content: shown, IsError: r.IsError}
	}
	judgeSight(ctx, &row, t, t.Observer.Events()[from:], s)
	return row, nil
}

// The Inspector driver's bounds: the whole drive, and each run of the
// CLI (a sign-in included).
const (
	inspectorBudget = 90 * time.Second
	inspectorStep   = 30 * time.Second
)

// inspectorCLI is the arguments after the command of the snippet's
// `npx @modelcontextprotocol/inspector --cli …` line, up to its --method
// (which a person changes from run to run); nil when there is none.
func inspectorCLI(snippet string) []string {
	for _, line := range strings.Split(snippet, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[0] == "npx" && f[1] == inspectorPackage && f[2] == "--cli" {
			if i := slices.Index(f, "--method"); i > 0 {
				f = f[:i]
			}
			return f[2:]
		}
	}
	return nil
}

// inspectorLine is the shell line running bin with the snippet's
// arguments and more.
func inspectorLine(bin string, base []string, more ...string) string {
	q := []string{shellQuote(bin)}
	for _, a := range append(append([]string(nil), base...), more...) {
		q = append(q, shellQuote(a))
	}
	return strings.Join(q, " ")
}

// printedResult finds the result a run of Inspector's CLI printed on the
// terminal (pretty-printed JSON on lines of its own, after its notices and
// any sign-in prompt): it returns the text from the result on, as the
// person read it (the result and what followed it, such as the error
// envelope of a tool error), and the result itself.
func printedResult(out string) (shown string, result json.RawMessage, err error) {
	text := strings.ReplaceAll(plain(out), "\r\n", "\n")
	i := strings.Index("\n"+text, "\n{\n")
	if i < 0 {
		return "", nil, fmt.Errorf("no result printed:\n%s", clip(text))
	}
	shown = strings.TrimSpace(text[i:])
	if err := json.NewDecoder(strings.NewReader(shown)).Decode(&result); err != nil {
		return "", nil, fmt.Errorf("read the result Inspector printed: %w", err)
	}
	return shown, result, nil
}

// listedTool is the name under which the tools/list result Inspector
// printed holds the gateway's drive.read_file, "" when it does not.
func listedTool(out string) (string, error) {
	_, raw, err := printedResult(out)
	if err != nil {
		return "", err
	}
	var res struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return "", fmt.Errorf("read Inspector's tools/list result: %w", err)
	}
	for _, tool := range res.Tools {
		if tool.Name == gatewayTool {
			return tool.Name, nil
		}
	}
	return "", nil
}

// callResult is the part of a CallToolResult the driver reads.
type callResult struct {
	IsError bool `json:"isError"`
}
