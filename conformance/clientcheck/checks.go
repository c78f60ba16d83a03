package clientcheck

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

func contextWith(ctx context.Context, idx int) context.Context {
	return context.WithValue(ctx, eventKey{}, pending{idx: idx})
}

func indexFrom(ctx context.Context) (int, bool) {
	p, ok := ctx.Value(eventKey{}).(pending)
	return p.idx, ok
}

// Phase is one run of the client against a fresh tenant; each exercises
// different checks.
type Phase string

// The phases: the whole authorization flow with a step-up, a token that
// expires mid-run, a session that ends mid-run.
const (
	PhaseFlow    Phase = "flow"
	PhaseExpiry  Phase = "expiry"
	PhaseSession Phase = "session"
)

// Result is one check's outcome.
type Result struct {
	Name    string `json:"name"`
	Ref     string `json:"ref"`
	Phase   Phase  `json:"phase"`
	Pass    bool   `json:"pass"`
	Message string `json:"message"`
}

// Run is a run's recording, what the client was given and how it ended.
type Run struct {
	Phase Phase `json:"phase"`
	// MCPPath is the path of the MCP endpoint the client was given.
	MCPPath string `json:"mcp_path"`
	// Resource is the canonical resource identifier (the MCP URL).
	Resource string `json:"resource"`
	// StepUpScope is the scope the tenant's 403 asks for (flow phase).
	StepUpScope string  `json:"step_up_scope,omitempty"`
	Events      []Event `json:"events"`
	ExitCode    int     `json:"exit_code"`
}

const mcpAuth = "MCP 2025-11-25 Authorization"

type rule struct {
	name, ref string
	phase     Phase
	eval      func(run Run) (bool, string)
}

func rules() []rule {
	return []rule{
		{"reads protected resource metadata after the 401", mcpAuth + " §Protected Resource Metadata Discovery Requirements; RFC 9728 §5.1", PhaseFlow, prmAfter401},
		{"finds the authorization server (RFC 8414 metadata)", mcpAuth + " §Authorization Server Metadata Discovery; RFC 8414 §3", PhaseFlow, asDiscovery},
		{"registers (DCR) or uses a pre-registered client", mcpAuth + " §Client Registration Approaches; RFC 7591 §3", PhaseFlow, registers},
		{"PKCE with S256", mcpAuth + " §Authorization Code Protection; RFC 7636 §4.2", PhaseFlow, pkceS256},
		{"sends resource (the MCP server's URL) in authorization and token requests", mcpAuth + " §Resource Parameter Implementation; RFC 8707 §2", PhaseFlow, sendsResource},
		{"uses the token in the Authorization header", mcpAuth + " §Access Token Usage", PhaseFlow, usesToken},
		{"steps up on 403 insufficient_scope", mcpAuth + " §Scope Challenge Handling", PhaseFlow, stepsUp},
		{"never sends the token elsewhere", mcpAuth + " §Token Handling; MCP Security Best Practices §Token Passthrough", PhaseFlow, tokenStaysHome},
		{"refreshes an expired token", mcpAuth + " §Token Handling; OAuth 2.1 §4.3", PhaseExpiry, refreshes},
		{"starts a new session after 404 on an expired session", "MCP 2025-11-25 Transports §Session Management", PhaseSession, reinitializes},
		{"completes the run (exit status 0)", "—", "", exitsCleanly},
	}
}

// Evaluate checks the runs; a rule without a phase applies to every run.
func Evaluate(runs []Run) []Result {
	var out []Result
	for _, rl := range rules() {
		for _, run := range runs {
			if rl.phase != "" && rl.phase != run.Phase {
				continue
			}
			ok, msg := rl.eval(run)
			name := rl.name
			if rl.phase == "" {
				name = fmt.Sprintf("%s [%s]", rl.name, run.Phase)
			}
			out = append(out, Result{Name: name, Ref: rl.ref, Phase: run.Phase, Pass: ok, Message: msg})
		}
	}
	return out
}

func isMCP(run Run, e Event) bool { return e.Path == run.MCPPath }

func isPRM(e Event) bool {
	return e.Method == "GET" && strings.HasPrefix(e.Path, "/.well-known/oauth-protected-resource")
}

func isASMeta(e Event) bool {
	return e.Method == "GET" && (strings.HasPrefix(e.Path, "/.well-known/oauth-authorization-server") ||
		strings.HasPrefix(e.Path, "/.well-known/openid-configuration") || strings.HasSuffix(e.Path, "/.well-known/openid-configuration"))
}

func isAuthorize(e Event) bool {
	return strings.HasSuffix(e.Path, "/oauth2/authorize") && e.Method == "GET"
}

func isToken(e Event) bool { return strings.HasSuffix(e.Path, "/oauth2/token") && e.Method == "POST" }

func grant(e Event) string { return e.Form.Get("grant_type") }

func first(events []Event, from int, f func(Event) bool) int {
	for i := from; i < len(events); i++ {
		if f(events[i]) {
			return i
		}
	}
	return -1
}

func prmAfter401(run Run) (bool, string) {
	ev := run.Events
	i := first(ev, 0, func(e Event) bool { return isMCP(run, e) && e.Status == 401 })
	if i < 0 {
		return false, "the client never got the 401 challenge"
	}
	j := first(ev, i+1, isPRM)
	if j < 0 {
		return false, "after the 401 the client did not fetch the protected resource metadata"
	}
	return true, "GET " + ev[j].Path
}

func asDiscovery(run Run) (bool, string) {
	ev := run.Events
	p := first(ev, 0, isPRM)
	a := first(ev, max(p, 0), isASMeta)
	if p < 0 || a < 0 {
		return false, "no authorization server metadata fetched after the resource metadata"
	}
	return true, "GET " + ev[a].Path
}

func registers(run Run) (bool, string) {
	ev := run.Events
	if i := first(ev, 0, func(e Event) bool { return e.Method == "POST" && strings.HasSuffix(e.Path, "/oauth2/register") }); i >= 0 {
		if ev[i].Status != 201 {
			return false, fmt.Sprintf("registration answered %d", ev[i].Status)
		}
		return true, "dynamic client registration"
	}
	if i := first(ev, 0, isAuthorize); i >= 0 && ev[i].Query.Get("client_id") != "" {
		return true, "pre-registered client " + ev[i].Query.Get("client_id")
	}
	return false, "no registration and no authorization request"
}

func pkceS256(run Run) (bool, string) {
	ev := run.Events
	n := 0
	for _, e := range ev {
		if isAuthorize(e) {
			n++
			if e.Query.Get("code_challenge") == "" || e.Query.Get("code_challenge_method") != "S256" {
				return false, fmt.Sprintf("authorization request with code_challenge_method %q", e.Query.Get("code_challenge_method"))
			}
		}
		if isToken(e) && grant(e) == "authorization_code" && e.Form.Get("code_verifier") == "" {
			return false, "code redeemed without code_verifier"
		}
	}
	if n == 0 {
		return false, "no authorization request"
	}
	return true, fmt.Sprintf("%d authorization requests, all S256", n)
}

func sendsResource(run Run) (bool, string) {
	n := 0
	for _, e := range run.Events {
		var got string
		switch {
		case isAuthorize(e):
			got = e.Query.Get("resource")
		case isToken(e) && (grant(e) == "authorization_code" || grant(e) == "refresh_token"):
			got = e.Form.Get("resource")
		default:
			continue
		}
		n++
		if strings.TrimSuffix(got, "/") != strings.TrimSuffix(run.Resource, "/") {
			where := "authorization request"
			if isToken(e) {
				where = grant(e) + " token request"
			}
			if got == "" {
				return false, where + " without resource"
			}
			return false, fmt.Sprintf("%s with resource %q, want %q", where, got, run.Resource)
		}
	}
	if n == 0 {
		return false, "no authorization or token request"
	}
	return true, fmt.Sprintf("resource=%s in %d requests", run.Resource, n)
}

func issued(run Run) []string {
	var out []string
	for _, e := range run.Events {
		if e.AccessToken != "" {
			out = append(out, e.AccessToken)
		}
	}
	return out
}

func usesToken(run Run) (bool, string) {
	toks := issued(run)
	if len(toks) == 0 {
		return false, "no token was issued"
	}
	for _, e := range run.Events {
		if isMCP(run, e) && e.Query.Get("access_token") != "" {
			return false, "a token in the query string"
		}
	}
	i := first(run.Events, 0, func(e Event) bool {
		return isMCP(run, e) && slices.Contains(toks, e.Bearer) && e.Status/100 == 2
	})
	if i < 0 {
		return false, "no MCP request succeeded with an issued token"
	}
	return true, "Bearer on " + run.Events[i].RPC
}

func stepsUp(run Run) (bool, string) {
	ev := run.Events
	i := first(ev, 0, func(e Event) bool {
		return isMCP(run, e) && e.Status == 403 && strings.Contains(e.WWWAuthenticate, "insufficient_scope")
	})
	if i < 0 {
		return false, "the client never met a 403 insufficient_scope (it did not make the call that needs " + run.StepUpScope + ")"
	}
	call := ev[i].RPC
	a := first(ev, i+1, isAuthorize)
	if a < 0 {
		if r := first(ev, i+1, func(e Event) bool { return isToken(e) && grant(e) == "refresh_token" }); r >= 0 {
			sc := ev[r].Form.Get("scope")
			if sc == "" {
				sc = "none"
			}
			return false, fmt.Sprintf("no new authorization after the 403: the client refreshed its token instead (scope parameter: %s; granted %q), and a refresh cannot add %s", sc, ev[r].Scope, run.StepUpScope)
		}
		return false, "no new authorization after the 403"
	}
	if sc := strings.Fields(ev[a].Query.Get("scope")); run.StepUpScope != "" && !slices.Contains(sc, run.StepUpScope) {
		return false, fmt.Sprintf("re-authorized with scope %q, without the challenged %q", ev[a].Query.Get("scope"), run.StepUpScope)
	}
	if ev[a].AuthorizeError != "" {
		return false, fmt.Sprintf("the re-authorization with scope %q was refused: %s", ev[a].Query.Get("scope"), ev[a].AuthorizeError)
	}
	toks := issued(Run{Events: ev[a:]})
	if first(ev, a, func(e Event) bool {
		return isMCP(run, e) && e.RPC == call && e.Status/100 == 2 && slices.Contains(toks, e.Bearer)
	}) < 0 {
		msg := "the call was not retried successfully with the new token"
		if k := first(ev, a, func(e Event) bool { return isMCP(run, e) && e.RPC == call }); k >= 0 {
			msg = fmt.Sprintf("the retried %s answered %d", call, ev[k].Status)
		}
		if first(ev[i:a], 0, func(e Event) bool { return strings.HasSuffix(e.Path, "/oauth2/register") }) >= 0 {
			msg += " (the client registered again as a new client id before re-authorizing, and kept the session opened by the old one)"
		}
		return false, msg
	}
	return true, fmt.Sprintf("re-authorized with scope %q and retried %s", ev[a].Query.Get("scope"), call)
}

func tokenStaysHome(run Run) (bool, string) {
	toks := issued(run)
	for _, e := range run.Events {
		if e.Bearer != "" && slices.Contains(toks, e.Bearer) && !isMCP(run, e) {
			return false, fmt.Sprintf("the access token was sent to %s %s", e.Method, e.Path)
		}
		for _, v := range e.Form {
			for _, x := range v {
				if slices.Contains(toks, x) && !(strings.HasSuffix(e.Path, "/oauth2/revoke") || grant(e) == "urn:ietf:params:oauth:grant-type:token-exchange") {
					return false, "the access token was sent in a form to " + e.Path
				}
			}
		}
	}
	if len(toks) == 0 {
		return false, "no token was issued"
	}
	return true, "the access token went only to the MCP endpoint"
}

func refreshes(run Run) (bool, string) {
	ev := run.Events
	r := first(ev, 0, func(e Event) bool { return isToken(e) && grant(e) == "refresh_token" })
	if r < 0 {
		n := 0
		for _, e := range ev {
			if isAuthorize(e) {
				n++
			}
		}
		gotRefresh := first(ev, 0, func(e Event) bool { return e.RefreshToken != "" }) >= 0
		return false, fmt.Sprintf("no refresh_token grant (refresh token issued: %t; authorizations: %d)", gotRefresh, n)
	}
	if ev[r].Status != 200 {
		return false, fmt.Sprintf("the refresh answered %d", ev[r].Status)
	}
	u := first(ev, r+1, func(e Event) bool { return isMCP(run, e) && e.Bearer == ev[r].AccessToken })
	if u < 0 {
		return false, "the refreshed token was not used"
	}
	if !accepted(ev[u]) {
		return false, fmt.Sprintf("the refreshed token was used, and %s answered %d", ev[u].RPC, ev[u].Status)
	}
	return true, fmt.Sprintf("refresh_token grant, then the new token (%s answered %d)", ev[u].RPC, ev[u].Status)
}

func reinitializes(run Run) (bool, string) {
	ev := run.Events
	i := first(ev, 0, func(e Event) bool { return isMCP(run, e) && e.Session != "" && e.Status == 404 })
	if i < 0 {
		return false, "the client never met the 404 of an ended session"
	}
	j := first(ev, i+1, func(e Event) bool {
		return isMCP(run, e) && e.RPC == "initialize" && e.Session == "" && e.Status/100 == 2
	})
	if j < 0 {
		return false, "after the 404 the client did not initialize a new session"
	}
	k := first(ev, j+1, func(e Event) bool {
		return isMCP(run, e) && e.Session != "" && e.RPC != "" && e.RPC != "notifications/initialized"
	})
	if k < 0 {
		return false, "the new session was not used"
	}
	if !accepted(ev[k]) {
		return false, fmt.Sprintf("in the new session %s answered %d", ev[k].RPC, ev[k].Status)
	}
	return true, fmt.Sprintf("initialized again and continued (%s answered %d)", ev[k].RPC, ev[k].Status)
}

// accepted tells whether the gateway took an MCP request's token and
// session: it answered 2xx, or 403 insufficient_scope. In the expiry and
// session phases the call that meets the expired token or session is
// test-tool, so a client that has not stepped up yet meets that 403 next,
// which is the step-up check's business, not the refresh's or the
// session's.
func accepted(e Event) bool {
	return e.Status/100 == 2 || (e.Status == 403 && strings.Contains(e.WWWAuthenticate, "insufficient_scope"))
}

func exitsCleanly(run Run) (bool, string) {
	if run.ExitCode != 0 {
		return false, fmt.Sprintf("exit status %d", run.ExitCode)
	}
	return true, "exit status 0"
}

// StepsUp is the flow phase's step-up check alone (run.StepUpScope is the
// scope the 403 asks for): after a 403 insufficient_scope on run.MCPPath,
// a new authorization whose scope has it and the call retried with the new
// token, answered 2xx. For drivers that record their own runs
// (conformance/realclients).
func StepsUp(run Run) (bool, string) { return stepsUp(run) }

// Reinitializes is the session phase's check alone: after a 404 of an
// ended session, an initialize without a session and the new session
// used, its request taken.
func Reinitializes(run Run) (bool, string) { return reinitializes(run) }
