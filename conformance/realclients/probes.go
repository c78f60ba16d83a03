package realclients

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/modelapi"
)

// probeKind is what a probe's run shows.
type probeKind int

const (
	// probeRefresh: access tokens live a few seconds, and the one call
	// comes after the sign-in's expired (refresh.go).
	probeRefresh probeKind = iota
	// probeStepUp: the protected resource metadata advertises only
	// stepUpGranted, so the sign-in gets no more, and the one call needs
	// stepUpScope: the gateway answers 403 insufficient_scope.
	probeStepUp
	// probeSession: sessions end after sessionIdle unused, and the one
	// prompt makes two calls in one CLI invocation, the second after
	// sessionDelay: it meets the 404 of the ended session.
	probeSession
	// probeHeld: the one call is held for a DBA's approval, which an
	// approver gives through the admin API; the stand-in calls again
	// (held.go). Run by RunHeld, not by Run.
	probeHeld
)

func (k probeKind) String() string {
	return [...]string{"refresh", "step-up", "session", "held"}[k]
}

// prompt is the probe's one prompt.
func (k probeKind) prompt() string {
	switch k {
	case probeStepUp:
		return stepUpPrompt
	case probeSession:
		return sessionPrompt
	case probeHeld:
		return heldPrompt
	}
	return refreshPrompt
}

// gatewayEnv is the environment of the probe's `pbac up`.
func (p *probe) gatewayEnv() []string {
	switch p.kind {
	case probeStepUp:
		return []string{"PBAC_SCOPES_SUPPORTED=" + stepUpGranted}
	case probeSession:
		return []string{"PBAC_SESSION_IDLE=" + sessionIdle.String()}
	case probeHeld:
		return nil
	}
	return []string{"PBAC_ACCESS_TOKEN_TTL=" + p.ttl.String()}
}

// judge says what the CLI did in the probe's run.
func (p *probe) judge(events []clientcheck.Event, requests []modelapi.Request, results []modelapi.ToolResult) string {
	switch p.kind {
	case probeStepUp:
		return judgeStepUp(p, events, requests, results)
	case probeSession:
		return judgeSession(p, events, results)
	}
	return judgeRefresh(p, events, results)
}

// The step-up probe: alice's coding agent may write the drive (the
// developer tier and her role grant drive write), but the metadata
// advertises drive:read alone, so a CLI that asks for the advertised
// scopes holds drive:read, and writing a file under /team needs
// drive:write.
const (
	markerStepUp  = "pbac-stepup-call"
	stepUpTool    = "drive_write_file"
	stepUpGateway = "drive.write_file"
	stepUpGranted = "drive:read"
	stepUpScope   = "drive:write"
	stepUpPath    = "/team/pbac-stepup.md"
	stepUpContent = "written after a step-up"
	// stepUpWritten opens the drive's answer to the write.
	stepUpWritten = "Created " + stepUpPath
)

var stepUpPrompt = markerStepUp + ": write " + stepUpPath + " on the drive"

// The session probe: the gateway ends a session unused sessionIdle (its
// sweep runs every second), and the stand-in asks for the second read
// sessionDelay after the first one's result.
const (
	markerSession       = "pbac-session-call"
	markerSessionSecond = "pbac-session-second-call"
	sessionIdle         = 2 * time.Second
	sessionDelay        = sessionIdle + 3*time.Second
)

var sessionPrompt = markerSession + ": read " + allowedPath + " from the drive, twice"

// probeCalls are the stand-in's planned calls of the probes.
func probeCalls() []modelapi.Call {
	return append([]modelapi.Call{
		{Marker: markerRefresh, Tool: toolSuffix, Args: map[string]any{"path": allowedPath}},
		{Marker: markerStepUp, Tool: stepUpTool, Args: map[string]any{"path": stepUpPath, "content": stepUpContent}},
		{Marker: markerSession, Tool: toolSuffix, Args: map[string]any{"path": allowedPath},
			Then: &modelapi.Call{Marker: markerSessionSecond, Tool: toolSuffix, Args: map[string]any{"path": allowedPath}, Delay: sessionDelay}},
	}, heldCalls()...)
}

// tools are the gateway tools (their names' ends, as the stand-in
// matches them) a probe's call needs beyond drive.read_file, for a CLI
// that allows tools by name (Claude Code's --allowedTools). The step-up
// probe's write is not among them: that run measures what Claude Code
// does with drive.read_file allowed alone.
func (p *probe) tools() []string {
	if p != nil && p.kind == probeHeld {
		return []string{heldTool}
	}
	return nil
}

// saw is what the model (or, with p.shown, the person) saw for the call
// of marker: "… saw the file" (success is allowedText) or "… saw the call
// succeed (<text>)", "… saw: <text>", or that it got nothing.
func saw(p *probe, results []modelapi.ToolResult, marker, success string) (string, bool) {
	who, none := "the model", "the model got no result for the call"
	if p.shown != nil {
		results = []modelapi.ToolResult{*p.shown}
		who, none = "the person", "the person was shown no result for the call"
	}
	for _, r := range results {
		if r.Marker != marker {
			continue
		}
		switch {
		case strings.Contains(r.Content, success) && !r.IsError && success == allowedText:
			return who + " saw the file", true
		case strings.Contains(r.Content, success) && !r.IsError:
			return who + " saw the call succeed (" + clip(r.Content) + ")", true
		}
		return who + " saw: " + clip(r.Content), false
	}
	return none, false
}

// mcpSeen lists the MCP requests among events: method, session or not,
// status.
func mcpSeen(events []clientcheck.Event) []string {
	var seen []string
	for _, ev := range events {
		if !strings.HasPrefix(ev.Path, "/mcp") {
			continue
		}
		what := ev.RPC
		if what == "" {
			what = ev.Method
		}
		seen = append(seen, fmt.Sprintf("%s %d", what, ev.Status))
	}
	return seen
}

// signInScope is the scope parameter of the first authorization request
// among events and its client id.
func signInScope(events []clientcheck.Event) (scope, clientID string, ok bool) {
	for _, ev := range events {
		if ev.Method == http.MethodGet && strings.HasSuffix(ev.Path, "/oauth2/authorize") {
			return ev.Query.Get("scope"), ev.Query.Get("client_id"), true
		}
	}
	return "", "", false
}

// judgeStepUp says whether, on the 403 insufficient_scope of the call that
// needs stepUpScope, the CLI re-authorized (same client id) with a scope
// that has it and retried the call, which succeeded (clientcheck's
// step-up check on the requests from the call on); else what it did, and
// what the model saw.
func judgeStepUp(p *probe, events []clientcheck.Event, requests []modelapi.Request, results []modelapi.ToolResult) string {
	if !p.started {
		return "— (not measured: the driver made no call in the step-up run)"
	}
	scope, clientID, signedIn := signInScope(events[:p.from])
	after := events[p.from:]
	metOn := -1
	for i, ev := range after {
		if strings.HasPrefix(ev.Path, "/mcp") && ev.Status == http.StatusForbidden && strings.Contains(ev.WWWAuthenticate, "insufficient_scope") {
			metOn = i
			break
		}
	}
	sawIt, succeeded := saw(p, results, markerStepUp, stepUpWritten)
	advertised := fmt.Sprintf("metadata advertising %s; the sign-in asked for scope %q", stepUpGranted, scope)
	if !signedIn {
		advertised = fmt.Sprintf("metadata advertising %s; no sign-in was seen", stepUpGranted)
	}
	if metOn < 0 && slices.Contains(strings.Fields(scope), stepUpScope) {
		return fmt.Sprintf("— (not measured: at sign-in the CLI asked for scope %q, %s among them, though the protected resource metadata advertised %s alone, so no call needed more; %s)",
			scope, stepUpScope, stepUpGranted, sawIt)
	}
	called := slices.ContainsFunc(after, func(ev clientcheck.Event) bool { return strings.HasPrefix(ev.Path, "/mcp") && ev.RPC == "tools/call" })
	if metOn < 0 && !called {
		hidden := fmt.Sprintf("the gateway lists only the tools the token's scopes allow, and the CLI held what it asked for at sign-in (%s)", advertised)
		if p.shown != nil {
			return fmt.Sprintf("— (not measured: the CLI refused the call of %s itself, before any request — it reads the tools list first, and %s; the person saw: %s)",
				stepUpGateway, hidden, clip(p.shown.Content))
		}
		offered := slices.ContainsFunc(requests, func(r modelapi.Request) bool {
			return slices.ContainsFunc(r.Tools, func(t string) bool { return strings.HasSuffix(notWord.ReplaceAllString(t, "_"), stepUpTool) })
		})
		if !offered {
			return fmt.Sprintf("— (not measured: the model was never offered %s, so no call met the 403: %s)", stepUpGateway, hidden)
		}
		return fmt.Sprintf("the model was offered %s, but no tools/call reached the gateway; %s (%s)", stepUpGateway, sawIt, advertised)
	}
	if metOn < 0 {
		return fmt.Sprintf("the call that needs %s never met a 403 insufficient_scope (requests to /mcp: %s); %s (%s)",
			stepUpScope, strings.Join(mcpSeen(after), ", "), sawIt, advertised)
	}
	ok, msg := clientcheck.StepsUp(clientcheck.Run{Phase: clientcheck.PhaseFlow, MCPPath: "/mcp", StepUpScope: stepUpScope, Events: after})
	if ok {
		for _, ev := range after[metOn:] {
			if ev.Method == http.MethodGet && strings.HasSuffix(ev.Path, "/oauth2/authorize") && ev.Query.Get("client_id") != clientID {
				ok, msg = false, fmt.Sprintf("%s, but as client %s, not %s", msg, ev.Query.Get("client_id"), clientID)
				break
			}
		}
	}
	switch {
	case ok && succeeded:
		return fmt.Sprintf("pass (%s, same client id; %s; %s)", msg, sawIt, advertised)
	case ok:
		return fmt.Sprintf("stepped up (%s), but %s (%s)", msg, sawIt, advertised)
	}
	return fmt.Sprintf("%s; %s (%s)", msg, sawIt, advertised)
}

// judgeSession says whether, when the session its first call opened had
// ended (404), the CLI initialized a new one and the second call of the
// same invocation succeeded (clientcheck's session check on the requests
// from the call on); else what it did, and what the model saw.
func judgeSession(p *probe, events []clientcheck.Event, results []modelapi.ToolResult) string {
	if !p.started {
		return "— (not measured: the driver made no call in the session run)"
	}
	after := events[p.from:]
	first, _ := saw(p, results, markerSession, allowedText)
	second, succeeded := saw(p, results, markerSessionSecond, allowedText)
	idle := fmt.Sprintf("session idle %s, the second call %s after the first's result", sessionIdle, sessionDelay)
	sessions := slices.ContainsFunc(events, func(ev clientcheck.Event) bool {
		return strings.HasPrefix(ev.Path, "/mcp") && (ev.Session != "" || ev.RPC == "initialize")
	})
	if !sessions {
		return fmt.Sprintf("— (not measured: the CLI speaks MCP without sessions — no initialize, no Mcp-Session-Id (requests to /mcp: %s) — so the gateway has none to end; first call: %s; second call: %s, %s)",
			strings.Join(mcpSeen(after), ", "), first, second, idle)
	}
	ok, msg := clientcheck.Reinitializes(clientcheck.Run{Phase: clientcheck.PhaseSession, MCPPath: "/mcp", Events: after})
	switch {
	case ok && succeeded:
		return fmt.Sprintf("pass (%s; second call: %s; %s)", msg, second, idle)
	case ok:
		return fmt.Sprintf("initialized a new session (%s), but for the second call %s (%s)", msg, second, idle)
	}
	met404 := slices.ContainsFunc(after, func(ev clientcheck.Event) bool {
		return strings.HasPrefix(ev.Path, "/mcp") && ev.Session != "" && ev.Status == http.StatusNotFound
	})
	if !met404 {
		return fmt.Sprintf("%s (requests to /mcp: %s); first call: %s; second call: %s (%s)", msg, strings.Join(mcpSeen(after), ", "), first, second, idle)
	}
	return fmt.Sprintf("%s (requests to /mcp: %s); second call: %s (%s)", msg, strings.Join(mcpSeen(after), ", "), second, idle)
}
