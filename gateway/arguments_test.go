package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/demo"
)

// agentCall makes one stateless tools/call on the aggregated /mcp, as the
// demo agents do, and returns what the gateway answered.
func (s *stack) agentCall(token, tool string, args map[string]any) demo.CallResult {
	s.t.Helper()
	res, err := (&demo.AgentClient{BaseURL: s.base}).CallTool(context.Background(), token, tool, args)
	if err != nil {
		s.t.Fatal(err)
	}
	return res
}

// directCall calls a demo backend itself, not through the gateway.
func (s *stack) directCall(backend, tool string, args map[string]any) *mcp.CallToolResult {
	s.t.Helper()
	ctx := context.Background()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: s.direct[backend], MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		s.t.Fatal(err)
	}
	return res
}

const dbEnv = "/prod/secrets/db.env"

// TestIssue14SecretsBypassSpellingsRefused is issue 14 High #2's repro and
// its class: read_file and write_file with every spelling a backend might
// read as /prod/secrets/db.env are refused before policy with invalid
// params (400), on /mcp/<backend> and on the aggregated /mcp; no secret is
// returned and the file is not overwritten.
func TestIssue14SecretsBypassSpellingsRefused(t *testing.T) {
	s := newStack(t)
	token := s.humanAgent("claude-code-trusted", "alice", "drive:read", "drive:write")
	spellings := []string{" " + dbEnv, "\t" + dbEnv, "\n" + dbEnv, "\r\n" + dbEnv, dbEnv + " ", dbEnv + "\n", dbEnv + "\x00",
		"\u00a0" + dbEnv, "\u3000" + dbEnv, "\ufeff" + dbEnv, "\u202e" + dbEnv, "/prod/secr\u200bets/db.env",
		"/prod\uff0fsecrets/db.env", "/prod\u2215secrets/db.env", "/prod\u2044secrets/db.env", "/prod/\u017fecrets/db.env",
		"/\uff50rod/secrets/db.env", "/prod/secrets/db\uff0eenv", "\\prod\\secrets\\db.env", "/prod%2Fsecrets/db.env",
		"/prod%252Fsecrets/db.env", "/prod/%73ecrets/db.env", "//prod/secrets/db.env", "/prod/./secrets/db.env",
		"/public/../prod/secrets/db.env", "/prod/secrets/db.env/", "/prod/secrets./db.env", "/prod /secrets/db.env"}
	for _, p := range spellings {
		for _, c := range []struct {
			tool string
			args map[string]any
		}{
			{"read_file", map[string]any{"path": p}},
			{"write_file", map[string]any{"path": p, "content": "overwritten"}},
		} {
			body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
				"params": map[string]any{"name": c.tool, "arguments": c.args}})
			status, _, out := s.raw(http.MethodPost, "/mcp/drive", string(body), map[string]string{"Authorization": "Bearer " + token})
			if status != http.StatusBadRequest || !strings.Contains(out, `"code":-32602`) || strings.Contains(out, "FAKE") {
				t.Errorf("/mcp/drive %s %q: %d %s", c.tool, p, status, out)
			}
			res := s.agentCall(token, "drive."+c.tool, c.args)
			if res.Status != http.StatusBadRequest || res.Result != nil || !strings.Contains(res.Error, "not a canonical path") {
				t.Errorf("/mcp drive.%s %q: %+v", c.tool, p, res)
			}
		}
	}
	if got := demo.ResultText(s.directCall("drive", "read_file", map[string]any{"path": dbEnv})); !strings.Contains(got, "FAKE-demo-password") ||
		strings.Contains(got, "overwritten") {
		t.Fatalf("the secret changed: %s", got)
	}
	// The canonical spelling is denied by policy, which tells the agent no
	// rule (Low #16).
	res := s.agentCall(token, "drive.read_file", map[string]any{"path": dbEnv})
	if !res.Denied || res.Result != nil || strings.Contains(res.Error, "prod-secrets") ||
		len(res.Reasons) != 1 || res.Reasons[0] != "the arguments name data protected by policy" {
		t.Fatalf("canonical read of the secret: %+v", res)
	}
	recs, err := s.waitAudit(audit.Filter{Tool: "drive.read_file", Decision: "deny", Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, r := range recs {
		if r.Status == http.StatusBadRequest && strings.Contains(strings.Join(r.Reasons, ";"), "refused before policy") {
			refused++
		}
	}
	if refused == 0 {
		t.Fatalf("refusals before policy are not audited: %+v", recs[0])
	}
}

// TestArgumentNameSpellingsRefused: an argument spelled like one policy
// checks ("Path"), which a case-insensitive decoder would read as it, is
// refused before policy.
func TestArgumentNameSpellingsRefused(t *testing.T) {
	s := newStack(t)
	token := s.humanAgent("claude-code-trusted", "alice", "drive:read", "database:read")
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"drive.read_file", map[string]any{"Path": dbEnv}},
		{"drive.read_file", map[string]any{"path": "/public/handbook.md", "PATH": dbEnv}},
		{"drive.read_file", map[string]any{"pa\u200bth": dbEnv}},
		{"database.query", map[string]any{"\u017fql": "SELECT * FROM pg_shadow"}},
	} {
		if res := s.agentCall(token, c.tool, c.args); res.Status != http.StatusBadRequest || res.Result != nil {
			t.Errorf("%s %v: %+v", c.tool, c.args, res)
		}
	}
}

// TestArgumentLimitsRefuseBeforePolicy: issue 14 High #1's argument, and
// arguments over the limits, are refused with invalid params before any
// policy evaluation.
func TestArgumentLimitsRefuseBeforePolicy(t *testing.T) {
	s := newStack(t)
	token := s.humanAgent("claude-code-trusted", "alice", "drive:read", "drive:write")
	deep := map[string]any{"x": 1}
	for range 20 {
		deep = map[string]any{"x": deep}
	}
	wide := map[string]any{"path": "/team/a.md", "content": "x"}
	for i := range 600 {
		wide[strings.Repeat("k", 1+i%7)+string(rune('a'+i%26))+strings.Repeat("z", i/182)] = i
	}
	for _, c := range []struct {
		name, tool string
		args       map[string]any
		want       string
	}{
		{"the pathological path", "drive.read_file", map[string]any{"path": strings.Repeat("/a", 1000) + "/%"}, "more than"},
		{"too many segments", "drive.read_file", map[string]any{"path": strings.Repeat("/a", 65)}, "segments"},
		{"a path too long", "drive.read_file", map[string]any{"path": "/" + strings.Repeat("a", 2000)}, "more than"},
		{"a string too long", "drive.write_file", map[string]any{"path": "/team/a.md", "content": strings.Repeat("x", 65<<10)}, "string"},
		{"too deep", "drive.write_file", map[string]any{"path": "/team/a.md", "content": "x", "meta": deep}, "nested"},
		{"too many names", "drive.write_file", wide, "names"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := s.agentCall(token, c.tool, c.args)
			if res.Status != http.StatusBadRequest || !strings.Contains(res.Error, c.want) {
				t.Fatalf("%+v", res)
			}
		})
	}
}

// TestActorArgumentComesFromTheToken: issue 14 High #3 — the approver (and
// the author of a new merge request) of record is the caller: any other
// spelling is refused, and a missing one is filled in with the caller,
// which the backend records.
func TestActorArgumentComesFromTheToken(t *testing.T) {
	s := newStack(t)
	ci := s.machineAgentReg("ci-bot")
	ciToken := s.tokenFor(ci, "gitlab:read", "gitlab:write")
	for _, author := range []string{" " + ci[0], strings.ToUpper(ci[0]), "ci-bot", "alice", ci[0] + "\t"} {
		res := s.agentCall(ciToken, "gitlab.create_merge_request", map[string]any{"project": "platform/api",
			"source_branch": "a", "target_branch": "main", "title": "t", "author": author})
		if res.Status != http.StatusBadRequest || !strings.Contains(res.Error, "must be the caller") {
			t.Errorf("author %q: %+v", author, res)
		}
	}
	res := s.agentCall(ciToken, "gitlab.create_merge_request", map[string]any{"project": "platform/api",
		"source_branch": "ci/actor", "target_branch": "main", "title": "t"})
	var mr struct {
		IID    int    `json:"iid"`
		Author string `json:"author"`
	}
	if res.Status != http.StatusOK || res.Result == nil {
		t.Fatalf("create without an author: %+v", res)
	}
	raw, _ := json.Marshal(res.Result.StructuredContent)
	_ = json.Unmarshal(raw, &mr)
	if mr.Author != ci[0] {
		t.Fatalf("the merge request's author is %q, want the caller %q", mr.Author, ci[0])
	}
}

// TestSelfApprovalUsesTheBackendsAuthor: issue 14 High #3 — whatever the
// caller says, the gateway asks the backend who authored the merge request,
// and policy refuses its author's approval (the agent, or another agent of
// the same human); another's merge request may be approved.
func TestSelfApprovalUsesTheBackendsAuthor(t *testing.T) {
	s := newStack(t)
	scopes := []string{"gitlab:read", "gitlab:write", "gitlab:approve"}
	dev := s.humanAgent("claude-code", "alice", scopes...)
	planner := s.humanAgent("claude-code-trusted", "alice", scopes...)
	res := s.agentCall(dev, "gitlab.create_merge_request", map[string]any{"project": "platform/api",
		"source_branch": "feature/self", "target_branch": "main", "title": "mine"})
	if res.Status != http.StatusOK || res.Result == nil {
		t.Fatalf("create: %+v", res)
	}
	iid := res.Result.StructuredContent.(map[string]any)["iid"]
	for name, token := range map[string]string{"the author's agent": dev, "another agent of the same human": planner} {
		res := s.agentCall(token, "gitlab.approve_merge_request", map[string]any{"project": "platform/api", "iid": iid})
		if !res.Denied || !strings.Contains(strings.Join(res.Reasons, ";"), "self-approval") {
			t.Errorf("%s approves alice's merge request: %+v", name, res)
		}
	}
	// !7 is the CI bot's (seeded); alice's agent may approve it.
	if res := s.agentCall(dev, "gitlab.approve_merge_request", map[string]any{"project": "platform/api", "iid": 7}); res.Status != http.StatusOK || res.Result == nil || res.Result.IsError {
		t.Fatalf("approve another's merge request: %+v", res)
	}
	approvals := s.directCall("gitlab", "get_merge_request", map[string]any{"project": "platform/api", "iid": 7})
	if !strings.Contains(demo.ResultText(approvals), "alice") {
		t.Fatalf("the approver of record is not alice: %s", demo.ResultText(approvals))
	}
	// A merge request that does not exist has no author: policy denies.
	if res := s.agentCall(dev, "gitlab.approve_merge_request", map[string]any{"project": "platform/api", "iid": 999}); !res.Denied {
		t.Fatalf("approve a merge request without an author: %+v", res)
	}
}

// TestSearchAndListOverProtectedDataDenied: issue 14 Medium #4 — a search
// or list whose reach covers the protected /prod/secrets is denied, so no
// secret's content or name comes back; one narrowed elsewhere works.
func TestSearchAndListOverProtectedDataDenied(t *testing.T) {
	s := newStack(t)
	token := s.humanAgent("claude-code-trusted", "alice", "drive:read")
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"drive.search_files", map[string]any{"query": "password"}},
		{"drive.search_files", map[string]any{"query": "FAKE", "path": "/prod"}},
		{"drive.list_files", map[string]any{"path": "/prod"}},
		{"drive.list_files", map[string]any{}},
		{"drive.list_files", map[string]any{"path": "/prod/secrets"}},
	} {
		res := s.agentCall(token, c.tool, c.args)
		if !res.Denied || res.Result != nil || !strings.Contains(strings.Join(res.Reasons, ";"), "would reach protected data") {
			t.Errorf("%s %v: %+v", c.tool, c.args, res)
		}
	}
	res := s.agentCall(token, "drive.search_files", map[string]any{"query": "a", "path": "/team"})
	if res.Status != http.StatusOK || res.Result == nil || strings.Contains(demo.ResultText(res.Result), "/prod") {
		t.Fatalf("a search in /team: %+v", res)
	}
}
