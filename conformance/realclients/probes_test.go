package realclients

import (
	"net/url"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/modelapi"
)

// TestJudgeStepUp: the step-up passes only when, on the 403
// insufficient_scope, the CLI re-authorized with the same client id and a
// scope with drive:write, retried the call with the new token, and the
// model saw the write succeed; a CLI never offered the write tool is not
// measured, with why; everything else says what happened.
func TestJudgeStepUp(t *testing.T) {
	authorize := func(client, scope string) clientcheck.Event {
		return clientcheck.Event{Method: "GET", Path: "/oauth2/authorize", Query: url.Values{"client_id": {client}, "scope": {scope}}, SignedIn: true}
	}
	grant := func(g, tok, scope string) clientcheck.Event {
		return clientcheck.Event{Method: "POST", Path: "/oauth2/token", Status: 200, Form: url.Values{"grant_type": {g}}, AccessToken: tok, Scope: scope}
	}
	call := func(tok string, status int) clientcheck.Event {
		ev := clientcheck.Event{Method: "POST", Path: "/mcp", RPC: "tools/call", Bearer: tok, Status: status}
		if status == 403 {
			ev.WWWAuthenticate = `Bearer error="insufficient_scope", scope="drive:read drive:write"`
		}
		return ev
	}
	signIn := []clientcheck.Event{authorize("C", "drive:read"), grant("authorization_code", "T", "drive:read")}
	wrote := []modelapi.ToolResult{{Marker: markerStepUp, Content: stepUpWritten + " (23 bytes)."}}
	offered := []modelapi.Request{{Tools: []string{"mcp__pbac__drive_write_file"}}}
	for _, tc := range []struct {
		name     string
		signIn   []clientcheck.Event
		after    []clientcheck.Event
		requests []modelapi.Request
		results  []modelapi.ToolResult
		noCall   bool
		person   *modelapi.ToolResult // what the person was shown (the Inspector)
		want     string               // the start of the result
		has      string
	}{
		{name: "stepped up", after: []clientcheck.Event{call("T", 403), authorize("C", "drive:read drive:write"), grant("authorization_code", "T2", "drive:read drive:write"), call("T2", 200)},
			requests: offered, results: wrote, want: "pass", has: "same client id; the model saw the call succeed"},
		{name: "stepped up as another client", after: []clientcheck.Event{call("T", 403), authorize("D", "drive:read drive:write"), grant("authorization_code", "T2", ""), call("T2", 200)},
			requests: offered, results: wrote, want: "re-authorized with scope", has: "but as client D, not C"},
		{name: "stepped up, the model saw an error", after: []clientcheck.Event{call("T", 403), authorize("C", "drive:write"), grant("authorization_code", "T2", "drive:write"), call("T2", 200)},
			requests: offered, results: []modelapi.ToolResult{{Marker: markerStepUp, Content: "boom", IsError: true}}, want: "stepped up", has: "the model saw: boom"},
		{name: "refreshed instead", after: []clientcheck.Event{call("T", 403), grant("refresh_token", "T2", "drive:read"), call("T2", 403)},
			requests: offered, results: []modelapi.ToolResult{{Marker: markerStepUp, Content: "insufficient scope"}}, want: "no new authorization after the 403: the client refreshed", has: "the model saw: insufficient scope"},
		{name: "gave up", after: []clientcheck.Event{call("T", 403)}, requests: offered, want: "no new authorization after the 403", has: "the model got no result"},
		{name: "re-authorized without the scope", after: []clientcheck.Event{call("T", 403), authorize("C", "drive:read")}, requests: offered, want: "re-authorized with scope \"drive:read\", without"},
		{name: "never offered the tool", want: "— (not measured: the model was never offered drive.write_file", has: `asked for scope "drive:read"`},
		{name: "asked for drive:write at sign-in", signIn: []clientcheck.Event{authorize("C", "drive:read drive:write"), grant("authorization_code", "T", "drive:read drive:write")},
			after: []clientcheck.Event{call("T", 200)}, requests: offered, results: wrote, want: "— (not measured: at sign-in the CLI asked for scope \"drive:read drive:write\", drive:write among them"},
		{name: "the person's CLI refused the call itself", person: &modelapi.ToolResult{Marker: markerStepUp, Content: `{"error":{"code":"tool_not_found"}}`},
			want: "— (not measured: the CLI refused the call of drive.write_file itself", has: "the person saw: {\"error\""},
		{name: "offered, never called", requests: offered, want: "the model was offered drive.write_file, but no tools/call reached the gateway"},
		{name: "offered but never refused", after: []clientcheck.Event{call("T", 200)}, requests: offered, results: wrote, want: "the call that needs drive:write never met a 403", has: "tools/call 200"},
		{name: "no call", noCall: true, want: "— (not measured: the driver made no call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := signIn
			if tc.signIn != nil {
				before = tc.signIn
			}
			events := append(append([]clientcheck.Event{}, before...), tc.after...)
			p := &probe{kind: probeStepUp, from: len(before), started: !tc.noCall, shown: tc.person}
			got := p.judge(events, tc.requests, tc.results)
			if !strings.HasPrefix(got, tc.want) || !strings.Contains(got, tc.has) {
				t.Fatalf("judge = %q, want it to start with %q and say %q", got, tc.want, tc.has)
			}
			if (tc.want == "pass") != (Step{Result: got}).Passed() {
				t.Fatalf("Passed() disagrees with %q", got)
			}
		})
	}
}

// TestJudgeSession: a new session after a 404 passes only when the CLI
// met the 404 of its ended session, initialized a new one, used it, and
// the model saw the file for the second call.
func TestJudgeSession(t *testing.T) {
	mcp := func(rpc, session string, status int) clientcheck.Event {
		return clientcheck.Event{Method: "POST", Path: "/mcp", RPC: rpc, Session: session, Bearer: "T", Status: status}
	}
	first := mcp("tools/call", "S1", 200)
	both := []modelapi.ToolResult{{Marker: markerSession, Content: allowedText}, {Marker: markerSessionSecond, Content: "# " + allowedText}}
	for _, tc := range []struct {
		name    string
		after   []clientcheck.Event
		results []modelapi.ToolResult
		noCall  bool
		want    string
		has     string
	}{
		{name: "initialized again", after: []clientcheck.Event{first, mcp("tools/call", "S1", 404), mcp("initialize", "", 200), mcp("notifications/initialized", "S2", 202), mcp("tools/call", "S2", 200)},
			results: both, want: "pass", has: "second call: the model saw the file"},
		{name: "initialized again, the second call failed", after: []clientcheck.Event{first, mcp("tools/call", "S1", 404), mcp("initialize", "", 200), mcp("tools/list", "S2", 200)},
			results: both[:1], want: "initialized a new session", has: "the model got no result"},
		{name: "gave up after the 404", after: []clientcheck.Event{first, mcp("tools/call", "S1", 404)},
			results: append(both[:1:1], modelapi.ToolResult{Marker: markerSessionSecond, Content: "Session not found", IsError: true}), want: "after the 404 the client did not initialize", has: "second call: the model saw: Session not found"},
		{name: "never met a 404", after: []clientcheck.Event{first, mcp("tools/call", "S1", 200)}, results: both,
			want: "the client never met the 404", has: "tools/call 200, tools/call 200"},
		{name: "no sessions (the stateless revision)", after: []clientcheck.Event{mcp("server/discover", "", 200), mcp("tools/call", "", 200), mcp("tools/call", "", 200)}, results: both,
			want: "— (not measured: the CLI speaks MCP without sessions", has: "server/discover 200, tools/call 200, tools/call 200"},
		{name: "no call", noCall: true, want: "— (not measured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &probe{kind: probeSession, started: !tc.noCall}
			got := p.judge(tc.after, nil, tc.results)
			if !strings.HasPrefix(got, tc.want) || !strings.Contains(got, tc.has) {
				t.Fatalf("judge = %q, want it to start with %q and say %q", got, tc.want, tc.has)
			}
			if (tc.want == "pass") != (Step{Result: got}).Passed() {
				t.Fatalf("Passed() disagrees with %q", got)
			}
		})
	}
}
