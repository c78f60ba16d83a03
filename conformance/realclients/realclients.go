// Package realclients drives real agent CLIs — Claude Code, OpenCode,
// Codex and Gemini CLI, unpatched, at the versions package-lock.json pins — end to end through a
// running gateway, headless (and the MCP Inspector, which has no model: its
// CLI and its web UI, driven as a person uses them, drivers_inspector.go): the CLI discovers the authorization server,
// signs in as the demo user through a $BROWSER helper, lists the gateway's
// tools and calls one allowed and one denied tool because a stand-in model
// API (conformance/modelapi) asks it to. What the CLI sent back as the
// tool results is what a model would have seen; the gateway's requests
// (recorded by a clientcheck.Observer in front of it) and its audit trail
// show the rest without taking the client's word.
package realclients

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/modelapi"
)

// The calls the stand-in model makes: the demo's drive.read_file, allowed
// for alice's coding agent on the team roadmap and denied on production
// secrets (the prod-secrets scenario of demo/scenarios.json).
const (
	markerAllowed = "pbac-allowed-call"
	markerDenied  = "pbac-denied-call"
	toolSuffix    = "drive_read_file"
	gatewayTool   = "drive.read_file"
	allowedPath   = "/team/roadmap.md"
	deniedPath    = "/prod/secrets/db.env"
	// deniedByPolicy opens the gateway's public text of a denial, whether
	// it answers a tool result or a JSON-RPC error.
	deniedByPolicy = "denied by policy"
	// allowedText is in the allowed file's content.
	allowedText = "Platform roadmap"
)

// Calls are the stand-in model's planned calls: the core run's and the
// probes'.
func Calls() []modelapi.Call { return append(coreCalls(), probeCalls()...) }

// coreCalls are the core run's calls: the allowed and the denied one.
func coreCalls() []modelapi.Call {
	return []modelapi.Call{
		{Marker: markerAllowed, Tool: toolSuffix, Args: map[string]any{"path": allowedPath}},
		{Marker: markerDenied, Tool: toolSuffix, Args: map[string]any{"path": deniedPath}},
	}
}

// Target is the running gateway the CLIs are pointed at.
type Target struct {
	// Base is the gateway's public URL (the observer's address), also the
	// issuer.
	Base string
	// ClientID is the demo's pre-registered claude-code agent.
	ClientID string
	// Observer records every request the CLIs make to the gateway.
	Observer *clientcheck.Observer
	// AuditFile is the gateway's audit trail (JSON Lines).
	AuditFile string
	// ClaudeAdd is the `claude mcp add` line for /mcp that pbac up
	// printed ("" when it printed none).
	ClaudeAdd string
	// AdminURL is the admin listener's base URL, and AdminToken its
	// bearer token (the data dir's admin-token).
	AdminURL, AdminToken string
}

// Env is what a driver runs in.
type Env struct {
	// Dir is conformance/realclients with node_modules installed.
	Dir string
	// Work is a throwaway directory: HOME, configuration and the CLI's
	// state live there, so nothing leaks between runs or into the user's.
	Work string
	// Browser is the $BROWSER helper (see BrowserHelper).
	Browser string
	// Model is the stand-in model API.
	Model *modelapi.Server
	// Timeout bounds each process the driver runs.
	Timeout time.Duration
	// Log receives every command and its output.
	Log io.Writer

	// refresh times the refresh call (Env.calls); nil: none is made.
	probe *probe
}

// Row is one client's result: each step "pass", or what went wrong.
type Row struct {
	// Driver is the driver's name (Drivers), Client the CLI's.
	Driver       string `json:"driver"`
	Client       string `json:"client"`
	Version      string `json:"version"`
	Discovery    string `json:"discovery"`
	Registration string `json:"registration"`
	SignIn       string `json:"sign_in"`
	Token        string `json:"token"`
	ToolsList    string `json:"tools_list"`
	Allowed      string `json:"allowed"`
	Denied       string `json:"denied"`
	// ModelSawDenied is the tool result the CLI gave the model for the
	// denied call, verbatim; for a client without a model (the MCP
	// Inspector), what it showed the person.
	ModelSawDenied string `json:"model_saw_denied"`
	// DeniedHTTP is how the gateway answered the denied tools/call on the
	// wire (status and challenge), from the observer.
	DeniedHTTP string `json:"denied_http"`
	// Audit is what the gateway's audit trail recorded for the two calls.
	Audit string `json:"audit"`
	// Refresh is what the CLI did when its access token had expired
	// before its last call (refreshed, signed in again, or failed).
	Refresh string `json:"refresh"`
	// StepUp is what the CLI did when a call met 403 insufficient_scope
	// (re-authorized with the union of scopes and retried, or what else),
	// or why it was not measured.
	StepUp string `json:"step_up"`
	// NewSession is what the CLI did when the gateway had ended its
	// session between two calls of one invocation (404): initialized a new
	// one and went on, or what else; or why it was not measured.
	NewSession string `json:"new_session"`
	// Snippet is the configuration that worked.
	Snippet string `json:"snippet"`
}

// Step is one step of a row: its name and its result ("pass …", or what
// went wrong, or "— …" where it was not measured).
type Step struct{ Name, Result string }

// Passed tells whether the step passed.
func (s Step) Passed() bool { return strings.HasPrefix(s.Result, "pass") }

// CoreSteps are the steps every driver is judged on, in order.
func (r Row) CoreSteps() []Step {
	return []Step{{"discovery", r.Discovery}, {"registration", r.Registration}, {"sign-in", r.SignIn}, {"token", r.Token},
		{"tools/list", r.ToolsList}, {"allowed", r.Allowed}, {"denied", r.Denied}}
}

// Steps are the core steps and the probes': the refresh, the step-up and
// a new session after a 404.
func (r Row) Steps() []Step {
	return append(r.CoreSteps(), Step{"refresh", r.Refresh}, Step{"step-up", r.StepUp}, Step{"session", r.NewSession})
}

// Failed lists the core steps that did not pass.
func (r Row) Failed() []string {
	var out []string
	for _, s := range r.CoreSteps() {
		if !s.Passed() {
			out = append(out, s.Name+": "+s.Result)
		}
	}
	return out
}

// run runs one command of a driver, bounded by env.Timeout, and returns
// its combined output. The process group is killed when the time is up.
func (e Env) run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	return e.runAnswering(ctx, env, nil, name, args...)
}

// answer is what to type on a command's stdin once its output shows a
// prompt.
type answer struct{ prompt, input string }

// runAnswering is run with a stdin that stays open until the command ends,
// on which a.input is typed once the output shows a.prompt (nil: no stdin).
func (e Env) runAnswering(ctx context.Context, env []string, a *answer, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Dir = e.Work
	c.Env = env
	out := &watched{}
	c.Stdout, c.Stderr = out, out
	c.Stdin = nil
	if a != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return "", fmt.Errorf("make a pipe for %s's input: %w", filepath.Base(name), err)
		}
		defer r.Close()
		defer w.Close()
		c.Stdin = r
		out.prompt, out.input, out.stdin = a.prompt, a.input, w
	}
	setProcessGroup(c)
	c.WaitDelay = 5 * time.Second
	err := c.Run()
	if e.Log != nil {
		fmt.Fprintf(e.Log, "$ %s %s\n%s\n(%s)\n", name, strings.Join(args, " "), out.String(), exitOf(err))
	}
	if err != nil {
		return out.String(), fmt.Errorf("run %s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return out.String(), nil
}

// onPTY runs command line on a pseudo-terminal (script(1)): the sign-in
// subcommands of Claude Code and OpenCode need one.
func (e Env) onPTY(ctx context.Context, env []string, line string) (string, error) {
	return e.run(ctx, env, "script", "-qec", line, "/dev/null")
}

// portTaken is what Claude Code says when its fixed callback port is held.
const portTaken = "is already in use"

// onPTYFixedPort is onPTY for a sign-in that listens on a fixed callback
// port (Claude Code's --callback-port 33418): that port lies in Linux's
// ephemeral range, so any loopback connection of the machine (the other
// test packages') may hold it for a moment; a sign-in refused for that is
// tried again, up to five times, 3 s apart.
func (e Env) onPTYFixedPort(ctx context.Context, env []string, line string) (string, error) {
	for attempt := 1; ; attempt++ {
		out, err := e.onPTY(ctx, env, line)
		if err == nil || attempt == 5 || !strings.Contains(plain(out), portTaken) {
			return out, err
		}
		if e.Log != nil {
			fmt.Fprintf(e.Log, "the callback port is held (attempt %d); again in 3 s\n", attempt)
		}
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(3 * time.Second):
		}
	}
}

// onPTYAnswering is onPTY answering a prompt on the terminal.
func (e Env) onPTYAnswering(ctx context.Context, env []string, line string, a answer) (string, error) {
	return e.runAnswering(ctx, env, &a, "script", "-qec", line, "/dev/null")
}

// watched is a command's output that types input on stdin once prompt
// has been written.
type watched struct {
	mu            sync.Mutex
	buf           bytes.Buffer
	prompt, input string
	stdin         io.Writer
	answered      bool
}

func (w *watched) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, _ := w.buf.Write(p)
	if w.stdin != nil && !w.answered && strings.Contains(plain(w.buf.String()), w.prompt) {
		w.answered = true
		_, _ = io.WriteString(w.stdin, w.input)
	}
	return n, nil
}

func (w *watched) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Version is the version of the npm package pkg installed in dir.
func Version(dir, pkg string) string {
	raw, err := os.ReadFile(filepath.Join(dir, "node_modules", filepath.FromSlash(pkg), "package.json"))
	if err != nil {
		return "?"
	}
	var p struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(raw, &p) != nil || p.Version == "" {
		return "?"
	}
	return p.Version
}

// commands are the CLIs' commands npm ci installs in node_modules/.bin.
var commands = []string{"claude", "opencode", "codex", "gemini", "mcp-inspector"}

// Installed tells whether npm ci has installed the CLIs in dir.
func Installed(dir string) error {
	for _, b := range commands {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", b)); err != nil {
			return fmt.Errorf("%s is not installed (cd %s && npm ci): %w", b, dir, err)
		}
	}
	return nil
}

// Runnable runs each CLI's --version: Claude Code and OpenCode put their
// native binary in place in a postinstall script, and without it (npm ci
// --ignore-scripts) the command is a stub that says so.
func Runnable(ctx context.Context, dir string) error {
	for _, b := range commands {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(ctx, filepath.Join(dir, "node_modules", ".bin", b), "--version").CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("%s --version: %w\n%s", b, err, out)
		}
	}
	return nil
}

// BrowserHelper writes the $BROWSER the CLIs get into dir: it fetches the
// authorization URL as a client would (no text/html in Accept), so the
// observer signs in on the AS's own page as the demo user, and follows the
// AS's redirect to the CLI's loopback callback, retrying while the
// callback is not listening yet. It needs curl.
func BrowserHelper(dir string) (string, error) {
	const script = `#!/bin/sh
# pbac realclients: a "browser" that signs in through the harness and follows
# the redirect back to the CLI's loopback callback.
echo "$1" >> "$(dirname "$0")/browser.log"
loc=$(curl -sS -o /dev/null -w '%{redirect_url}' -H 'Accept: */*' "$1") || exit 1
[ -n "$loc" ] || exit 1
exec curl -sS -L -o /dev/null --retry 15 --retry-connrefused --retry-delay 1 --retry-max-time 15 "$loc"
`
	p := filepath.Join(dir, "browser.sh")
	if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
		return "", fmt.Errorf("write the browser helper: %w", err)
	}
	return p, nil
}

// baseEnv is a clean environment: PATH, a throwaway HOME and the
// $BROWSER helper, nothing of the caller's configuration.
func (e Env) baseEnv() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + e.Work,
		"XDG_CONFIG_HOME=" + filepath.Join(e.Work, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(e.Work, ".local", "share"),
		"XDG_CACHE_HOME=" + filepath.Join(e.Work, ".cache"),
		"XDG_STATE_HOME=" + filepath.Join(e.Work, ".local", "state"),
		"BROWSER=" + e.Browser,
		"TERM=dumb",
		"NO_COLOR=1",
		"LANG=C.UTF-8",
	}
}

// AuditRecord is the part of an audit record the drivers read.
type AuditRecord struct {
	ClientID string   `json:"client_id"`
	Subject  string   `json:"sub"`
	Method   string   `json:"method"`
	Tool     string   `json:"tool"`
	Decision string   `json:"decision"`
	Reasons  []string `json:"reasons"`
	Status   int      `json:"status"`
}

// readAudit reads the audit trail's records.
func readAudit(path string) ([]AuditRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open the audit trail: %w", err)
	}
	defer f.Close()
	var out []AuditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r AuditRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	return out, sc.Err()
}

// toolCalls waits (up to 5 s: the trail writes in the background) until
// the audit trail holds n calls of the gateway tool by clientID, and
// returns them in order.
func toolCalls(ctx context.Context, path, clientID string, n int) ([]AuditRecord, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, err := readAudit(path)
		if err != nil {
			return nil, err
		}
		var calls []AuditRecord
		for _, r := range recs {
			if r.Method == "tools/call" && r.Tool == gatewayTool && r.ClientID == clientID {
				calls = append(calls, r)
			}
		}
		if len(calls) >= n || time.Now().After(deadline) {
			return calls, nil
		}
		select {
		case <-ctx.Done():
			return calls, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sight is what the far end of a client saw of the gateway's tools: the
// model, through the stand-in's record, or, for a client without one (the
// MCP Inspector), the person, through what the client showed.
type sight struct {
	// who saw: "the model" or "the person".
	who string
	// offered is the name under which the gateway's drive.read_file was
	// offered ("" when it was not).
	offered string
	// allowed and denied are the results seen for the two calls (nil:
	// none).
	allowed, denied *modelapi.ToolResult
}

// modelSight is what the model saw, from the stand-in's records.
func modelSight(requests []modelapi.Request, results []modelapi.ToolResult) sight {
	s := sight{who: "the model"}
	// The CLIs name the gateway's drive.read_file each its own way
	// (mcp__pbac__drive_read_file, pbac_drive_read_file,
	// mcp__pbac.drive_read_file, mcp_pbac_drive.read_file): compared with
	// every character but letters and digits read as "_", as the stand-in
	// does.
	for _, r := range requests {
		for _, name := range r.Tools {
			if strings.HasSuffix(notWord.ReplaceAllString(name, "_"), toolSuffix) {
				s.offered = name
			}
		}
	}
	for _, r := range results {
		switch r.Marker {
		case markerAllowed:
			s.allowed = &r
		case markerDenied:
			s.denied = &r
		}
	}
	return s
}

// judge fills the row's steps from the observer's events since from, the
// stand-in's records and the audit trail. A probe run's row is not kept
// (the probe judges its own step), so it is not judged: its calls are not
// the allowed and the denied one the audit trail would be searched for.
func (e Env) judge(ctx context.Context, row *Row, t Target, from int) {
	if e.probe != nil {
		return
	}
	judgeSight(ctx, row, t, t.Observer.Events()[from:], modelSight(e.Model.Requests(), e.Model.Results()))
}

// judgeSight fills the row's steps from the observer's events, what the
// far end saw and the audit trail.
func judgeSight(ctx context.Context, row *Row, t Target, events []clientcheck.Event, s sight) {
	has := func(pred func(clientcheck.Event) bool) (clientcheck.Event, bool) {
		for _, ev := range events {
			if pred(ev) {
				return ev, true
			}
		}
		return clientcheck.Event{}, false
	}
	_, prm := has(func(ev clientcheck.Event) bool {
		return ev.Method == "GET" && strings.HasPrefix(ev.Path, "/.well-known/oauth-protected-resource") && ev.Status == 200
	})
	_, asm := has(func(ev clientcheck.Event) bool {
		return ev.Method == "GET" && (strings.HasPrefix(ev.Path, "/.well-known/oauth-authorization-server") ||
			strings.HasPrefix(ev.Path, "/.well-known/openid-configuration")) && ev.Status == 200
	})
	switch {
	case prm && asm:
		row.Discovery = "pass (protected resource metadata, then authorization server metadata)"
	case asm:
		row.Discovery = "partial: authorization server metadata without the protected resource metadata"
	default:
		row.Discovery = "no metadata fetched"
	}

	authz, authorized := has(func(ev clientcheck.Event) bool {
		return ev.Method == "GET" && strings.HasSuffix(ev.Path, "/oauth2/authorize")
	})
	_, registered := has(func(ev clientcheck.Event) bool {
		return ev.Method == "POST" && strings.HasSuffix(ev.Path, "/register")
	})
	switch {
	case !authorized:
		row.Registration = "no authorization request"
	case registered:
		row.Registration = "registered itself (DCR) instead of using the pre-registered id"
	case authz.Query.Get("client_id") == t.ClientID:
		row.Registration = "pass (pre-registered id)"
	default:
		row.Registration = fmt.Sprintf("authorized as client %q, not the pre-registered id", authz.Query.Get("client_id"))
	}

	// The harness signs in for a browser helper that fetches the
	// authorization URL; in a real browser the person posts the sign-in
	// page's form.
	si, harness := has(func(ev clientcheck.Event) bool { return ev.SignedIn })
	byPerson := false
	if !harness {
		si, byPerson = has(func(ev clientcheck.Event) bool {
			return ev.Method == "POST" && strings.HasSuffix(ev.Path, "/oauth2/authorize") && ev.Form.Get("username") != ""
		})
	}
	switch {
	case !harness && !byPerson:
		row.SignIn = "the browser never reached the sign-in page"
	case si.AuthorizeError != "":
		row.SignIn = "refused: " + si.AuthorizeError
	case byPerson && si.Form.Get("username") != "alice":
		row.SignIn = fmt.Sprintf("signed in as %q, not alice", si.Form.Get("username"))
	case byPerson && si.Status/100 != 3:
		row.SignIn = fmt.Sprintf("the sign-in form was answered %d, not a redirect back", si.Status)
	case byPerson:
		row.SignIn = fmt.Sprintf("pass (alice, on the sign-in page in the browser; redirect_uri %s)", si.Query.Get("redirect_uri"))
	default:
		row.SignIn = fmt.Sprintf("pass (alice, redirect_uri %s)", si.Query.Get("redirect_uri"))
	}

	tok, ok := has(func(ev clientcheck.Event) bool {
		return ev.Method == "POST" && strings.HasSuffix(ev.Path, "/oauth2/token") && ev.Form.Get("grant_type") == "authorization_code"
	})
	switch {
	case !ok:
		row.Token = "no token request"
	case tok.AccessToken == "":
		row.Token = fmt.Sprintf("token request answered %d", tok.Status)
	default:
		_, used := has(func(ev clientcheck.Event) bool {
			return ev.Bearer == tok.AccessToken && strings.HasPrefix(ev.Path, "/mcp")
		})
		if used {
			row.Token = "pass (code + PKCE, used as Bearer on /mcp; scope " + tok.Scope + ")"
		} else {
			row.Token = "issued, never used on /mcp"
		}
	}

	_, listed := has(func(ev clientcheck.Event) bool { return ev.RPC == "tools/list" && ev.Status == 200 })
	switch {
	case !listed:
		row.ToolsList = "no successful tools/list through the gateway"
	case s.offered == "":
		row.ToolsList = "tools/list answered, but " + s.who + " was never offered " + gatewayTool
	default:
		row.ToolsList = "pass (" + s.who + " was offered " + s.offered + ")"
	}

	allowed, denied := s.allowed, s.denied
	calls, err := toolCalls(ctx, t.AuditFile, t.ClientID, 2)
	var audit []string
	for _, c := range calls {
		audit = append(audit, fmt.Sprintf("%s %d %s", c.Decision, c.Status, strings.Join(c.Reasons, "; ")))
	}
	if err != nil {
		audit = append(audit, err.Error())
	}
	row.Audit = strings.Join(audit, " / ")
	auditHas := func(decision string) bool {
		for _, c := range calls {
			if c.Decision == decision && c.Subject == "alice" {
				return true
			}
		}
		return false
	}
	switch {
	case allowed == nil:
		row.Allowed = s.who + " never got a result for the allowed call"
	case !strings.Contains(allowed.Content, allowedText):
		row.Allowed = s.who + " saw: " + clip(allowed.Content)
	case !auditHas("allow"):
		row.Allowed = s.who + " saw the file, but the audit trail has no allow of " + gatewayTool + " for alice"
	default:
		row.Allowed = "pass (" + s.who + " saw the file; audit: allow)"
	}
	switch {
	case denied == nil:
		row.Denied = s.who + " never got a result for the denied call"
	case strings.Contains(denied.Content, "DB_HOST="):
		row.Denied = s.who + " saw the secret file"
	case !auditHas("deny"):
		row.Denied = "the audit trail has no deny of " + gatewayTool + " for alice"
	case !strings.Contains(denied.Content, deniedByPolicy):
		row.Denied = s.who + " was not told the policy denied the call: " + clip(denied.Content)
	default:
		row.Denied = "pass (audit: deny)"
		if denied.IsError {
			row.Denied = "pass (a tool error; audit: deny)"
		}
	}
	if denied != nil {
		row.ModelSawDenied = denied.Content
	}
	row.DeniedHTTP = deniedHTTP(calls, events)
}

// deniedHTTP says how the gateway answered the denied call: the status
// its audit record holds (denials: tool_error answers 200 with a tool
// result, http_403 a 403), and the challenge of a 403 the observer saw.
func deniedHTTP(calls []AuditRecord, events []clientcheck.Event) string {
	for _, c := range calls {
		if c.Decision != "deny" {
			continue
		}
		if c.Status == 200 {
			return "HTTP 200, a tool result with isError"
		}
		out := fmt.Sprintf("HTTP %d", c.Status)
		for _, ev := range events {
			if ev.RPC == "tools/call" && ev.Status == c.Status && ev.WWWAuthenticate != "" {
				out += ", WWW-Authenticate: " + ev.WWWAuthenticate
			}
		}
		return out
	}
	return ""
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

var notWord = regexp.MustCompile(`[^A-Za-z0-9]`)

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// plain strips terminal escapes from a pty's output.
func plain(s string) string { return ansi.ReplaceAllString(s, "") }

var errNotSignedIn = errors.New("the CLI did not sign in")

// exitOf says how a command ended, for the log.
func exitOf(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
