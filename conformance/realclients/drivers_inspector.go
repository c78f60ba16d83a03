package realclients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
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
	if p := e.probe; p != nil {
		// A probe's run: signed in by the tools/list run, one call — for
		// the refresh, once that token has expired (e.calls waits for
		// it); for the step-up, a write, which a person may call by name
		// though the list (of what drive:read allows) does not show it.
		tool, marker, args := gatewayTool, markerRefresh, []string{"--tool-arg", "path=" + allowedPath}
		if p.kind == probeStepUp {
			tool, marker, args = stepUpGateway, markerStepUp, []string{"--tool-arg", "path=" + stepUpPath, "--tool-arg", "content=" + stepUpContent}
		}
		for range e.calls(ctx) {
			out, _ := e.onPTY(ctx, env, inspectorLine(bin, base, append([]string{"--method", "tools/call", "--tool-name", tool}, args...)...))
			shown, _, err := printedResult(out)
			if err != nil {
				fmt.Fprintf(e.Log, "inspector (%s call): %v\n", p.kind, err)
				if p.kind != probeStepUp {
					continue
				}
				// A refused call prints no result: what the person read
				// is the terminal's last line, the error.
				shown = lastLines(plain(out), 1)
			}
			p.shown = &modelapi.ToolResult{Marker: marker, Tool: tool, Content: shown}
		}
		return row, nil
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

// lastLines are the last n non-empty lines of out, joined by " / ".
func lastLines(out string, n int) string {
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], " / ")
}

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

// DriveInspectorWeb drives the MCP Inspector's web UI as a person does, in
// headless Chromium (inspector_web.mjs, Playwright): `mcp-inspector --web`
// (its own writable catalog under HOME, the token kept in a file), the
// page it prints opened in the browser; the person adds the gateway's /mcp
// as a Streamable HTTP server, types the demo agent's pre-registered id in
// the server's OAuth settings (its redirect URI is the page's origin,
// http://127.0.0.1:6274/oauth/callback), switches the server on, signs in
// as alice on the authorization server's own page in the same tab, and on
// the Tools tab runs drive.read_file on the roadmap and on prod secrets.
// Inspector makes the OAuth requests and the MCP connection from its own
// server (the page's /api/fetch). What the person saw is the page's
// results panel.
func DriveInspectorWeb(ctx context.Context, e Env, t Target) (Row, error) {
	ctx, cancel := context.WithTimeout(ctx, inspectorBudget)
	defer cancel()
	row := Row{Client: "MCP Inspector (web UI, headless Chromium)", Version: Version(e.Dir, inspectorPackage)}
	browser := os.Getenv("CHROMIUM")
	if browser == "" {
		browser = "/usr/bin/chromium"
	}
	if _, err := os.Stat(browser); err != nil {
		return row, fmt.Errorf("the web UI is driven in Chromium (CHROMIUM, default /usr/bin/chromium): %w", err)
	}
	preset, ok := connect.Lookup("inspector")
	if !ok {
		return row, errors.New("connect has no inspector preset")
	}
	row.Snippet = preset.Snippet(connect.Target{ClientID: t.ClientID, MCPURL: t.Base + "/mcp"})
	env := append(e.baseEnv(), "MCP_INSPECTOR_SECRET_STORE=file",
		// The person opens the page in the browser the script drives.
		"MCP_AUTO_OPEN_ENABLED=false")
	web, err := startInspectorWeb(ctx, e, env)
	if err != nil {
		return row, err
	}
	defer web.stop()

	artifacts := filepath.Join(e.Work, "screenshots")
	if dir := os.Getenv("PBAC_ARTIFACTS"); dir != "" {
		artifacts = filepath.Join(dir, "inspector-web")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		return row, fmt.Errorf("make the screenshot dir: %w", err)
	}
	var planned []map[string]string
	for _, c := range coreCalls() {
		planned = append(planned, map[string]string{"marker": c.Marker, "tool": gatewayTool, "path": c.Args["path"].(string)})
	}
	callsJSON, _ := json.Marshal(planned)
	outFile := filepath.Join(e.Work, "inspector-web.json")
	from := len(t.Observer.Events())
	_, runErr := e.run(ctx, append(env,
		"CHROMIUM="+browser,
		"PBAC_INSPECTOR_URL="+web.url,
		"PBAC_MCP_URL="+t.Base+"/mcp",
		"PBAC_CLIENT_ID="+t.ClientID,
		"PBAC_USER=alice",
		"PBAC_PASSWORD="+asrv.DemoPassword,
		"PBAC_CALLS="+string(callsJSON),
		"PBAC_OUT="+outFile,
		"PBAC_ARTIFACTS="+artifacts,
	), "node", filepath.Join(e.Dir, "inspector_web.mjs"))
	page, err := readWebRun(outFile)
	if err != nil {
		return row, fmt.Errorf("%w (the script: %v)", err, runErr)
	}
	if page.Error != "" {
		fmt.Fprintf(e.Log, "inspector web UI: %s (steps %+v; screenshots in %s)\n", page.Error, page.Steps, artifacts)
	}
	judgeSight(ctx, &row, t, t.Observer.Events()[from:], page.sight())
	return row, nil
}

// sight is what the page showed the person: the tool in the Tools tab's
// list, and the results panel of each call without its heading; a tool
// error is the panel's red "Tool Error" box.
func (w webRun) sight() sight {
	s := sight{who: "the person"}
	if slices.Contains(w.Tools, gatewayTool) {
		s.offered = gatewayTool
	}
	for _, c := range w.Calls {
		shown := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(c.Shown), "Results"))
		r := &modelapi.ToolResult{Marker: c.Marker, Tool: gatewayTool, Content: shown,
			IsError: strings.HasPrefix(shown, "Tool Error")}
		switch c.Marker {
		case markerAllowed:
			s.allowed = r
		case markerDenied:
			s.denied = r
		}
	}
	return s
}

// webRun is what inspector_web.mjs wrote: each step a person took, the
// tools the Tools tab listed and what the results panel showed for each
// call.
type webRun struct {
	Steps []struct {
		Name  string `json:"name"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	} `json:"steps"`
	Tools []string `json:"tools"`
	Calls []struct {
		Marker string `json:"marker"`
		Shown  string `json:"shown"`
	} `json:"calls"`
	RedirectURI string `json:"redirect_uri"`
	Error       string `json:"error"`
}

func readWebRun(path string) (webRun, error) {
	var w webRun
	raw, err := os.ReadFile(path)
	if err != nil {
		return w, fmt.Errorf("read what the browser script saw: %w", err)
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return w, fmt.Errorf("read what the browser script saw: %w", err)
	}
	return w, nil
}

// inspectorWeb is a running `mcp-inspector --web`.
type inspectorWeb struct {
	url    string
	cmd    *exec.Cmd
	out    *watched
	exited chan struct{}
	log    io.Writer
}

// inspectorURL is the line the web UI prints with its address and API
// token.
var inspectorURL = regexp.MustCompile(`http://\S+\?MCP_INSPECTOR_API_TOKEN=[0-9a-f]+`)

// startInspectorWeb runs `mcp-inspector --web` in its own process group
// and waits (up to inspectorStep) for the address it prints.
func startInspectorWeb(ctx context.Context, e Env, env []string) (*inspectorWeb, error) {
	c := exec.CommandContext(ctx, filepath.Join(e.Dir, "node_modules", ".bin", "mcp-inspector"), "--web")
	c.Dir, c.Env = e.Work, env
	setProcessGroup(c)
	c.WaitDelay = 5 * time.Second
	web := &inspectorWeb{cmd: c, out: &watched{}, exited: make(chan struct{}), log: e.Log}
	c.Stdout, c.Stderr = web.out, web.out
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start mcp-inspector --web: %w", err)
	}
	go func() {
		defer close(web.exited)
		_ = c.Wait()
	}()
	deadline := time.After(inspectorStep)
	for {
		if web.url = inspectorURL.FindString(web.out.String()); web.url != "" {
			return web, nil
		}
		select {
		case <-web.exited:
			web.stop()
			return nil, errors.New("mcp-inspector --web exited before it printed its address")
		case <-deadline:
			web.stop()
			return nil, fmt.Errorf("mcp-inspector --web printed no address within %s", inspectorStep)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop ends the web UI's process group, waits for it and logs its output.
func (w *inspectorWeb) stop() {
	select {
	case <-w.exited:
	default:
		_ = w.cmd.Cancel()
		<-w.exited
	}
	fmt.Fprintf(w.log, "$ mcp-inspector --web\n%s\n", w.out.String())
}
