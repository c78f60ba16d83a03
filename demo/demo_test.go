package demo

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// hint is the expected annotation triple of a tool.
type hint struct{ readOnly, destructive, idempotent bool }

var (
	ro      = hint{readOnly: true, idempotent: true}
	add     = hint{}                                    // additive write
	addIdem = hint{idempotent: true}                    // additive, idempotent write
	destr   = hint{destructive: true}                   // destructive write
	dIdem   = hint{destructive: true, idempotent: true} // destructive, idempotent write
)

var wantTools = map[string]map[string]hint{
	"drive":   {"list_files": ro, "search_files": ro, "read_file": ro, "write_file": dIdem, "share_file": addIdem},
	"jira":    {"search_issues": ro, "get_issue": ro, "create_issue": add, "add_comment": add, "transition_issue": dIdem},
	"slack":   {"list_channels": ro, "read_history": ro, "post_message": add},
	"jenkins": {"list_jobs": ro, "get_build_log": ro, "trigger_build": add, "trigger_deploy": destr, "delete_job": dIdem},
	"gitlab": {"list_merge_requests": ro, "get_merge_request": ro, "get_diff": ro,
		"create_merge_request": add, "approve_merge_request": addIdem, "merge_merge_request": destr},
	"database": {"query": ro, "execute_ddl": destr},
}

// step is one tool call and what it must return.
type step struct {
	name    string
	tool    string
	args    map[string]any
	wantErr bool
	want    []string                                    // substrings of the text content
	check   func(t *testing.T, res *mcp.CallToolResult) // optional further checks
}

func TestNames(t *testing.T) {
	want := []string{"database", "drive", "gitlab", "jenkins", "jira", "slack"}
	if got := Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for _, n := range want {
		if _, err := NewServer(n); err != nil {
			t.Errorf("NewServer(%q): %v", n, err)
		}
	}
	if _, err := NewServer("nope"); err == nil {
		t.Error("NewServer(nope): want error")
	}
	if _, err := Handler("nope"); err == nil {
		t.Error("Handler(nope): want error")
	}
	if _, err := Start(context.Background(), "nope", "127.0.0.1:0"); err == nil {
		t.Error("Start(nope): want error")
	}
}

func startAll(t *testing.T) map[string]*Running {
	t.Helper()
	ctx := context.Background()
	all, err := StartAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*Running{}
	for _, r := range all {
		byName[r.Name] = r
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := r.Close(ctx); err != nil {
				t.Errorf("close %s: %v", r.Name, err)
			}
		})
	}
	if len(all) != 6 {
		t.Fatalf("StartAll started %d backends, want 6", len(all))
	}
	return byName
}

func openSession(t *testing.T, url, version string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "demo-test", Version: "1"}, nil)
	var opts *mcp.ClientSessionOptions
	if version != "" {
		opts = &mcp.ClientSessionOptions{ProtocolVersion: version}
	}
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, opts)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func textOf(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// decode re-decodes the structured content into out.
func decode(t *testing.T, res *mcp.CallToolResult, out any) {
	t.Helper()
	if res.StructuredContent == nil {
		t.Fatalf("no structured content; text: %s", textOf(res))
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decode structured content %s: %v", b, err)
	}
}

func runSteps(t *testing.T, cs *mcp.ClientSession, steps []step) {
	t.Helper()
	for _, s := range steps {
		ok := t.Run(s.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: s.tool, Arguments: s.args})
			if err != nil {
				t.Fatalf("%s: protocol error: %v", s.tool, err)
			}
			text := textOf(res)
			if res.IsError != s.wantErr {
				t.Fatalf("%s(%v): IsError = %v, want %v; text: %s", s.tool, s.args, res.IsError, s.wantErr, text)
			}
			if s.wantErr {
				t.Logf("%s error: %s", s.tool, strings.TrimSpace(text))
			}
			if !s.wantErr && res.StructuredContent == nil {
				t.Errorf("%s: no structured content", s.tool)
			}
			for _, w := range s.want {
				if !strings.Contains(text, w) {
					t.Errorf("%s(%v): text does not contain %q:\n%s", s.tool, s.args, w, text)
				}
			}
			if s.check != nil {
				s.check(t, res)
			}
		})
		if !ok {
			t.FailNow() // later steps depend on the earlier ones
		}
	}
}

func TestToolLists(t *testing.T) {
	backends := startAll(t)
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			cs := openSession(t, backends[name].URL, "")
			res, err := cs.ListTools(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			want := wantTools[name]
			var got []string
			for _, tool := range res.Tools {
				got = append(got, tool.Name)
				h, ok := want[tool.Name]
				if !ok {
					continue
				}
				a := tool.Annotations
				if a == nil {
					t.Errorf("%s: no annotations", tool.Name)
					continue
				}
				if a.ReadOnlyHint != h.readOnly || a.IdempotentHint != h.idempotent ||
					a.DestructiveHint == nil || *a.DestructiveHint != h.destructive {
					t.Errorf("%s: annotations readOnly=%v destructive=%v idempotent=%v, want %+v",
						tool.Name, a.ReadOnlyHint, a.DestructiveHint != nil && *a.DestructiveHint, a.IdempotentHint, h)
				}
				if tool.Description == "" || tool.InputSchema == nil || tool.OutputSchema == nil {
					t.Errorf("%s: want description, input and output schema", tool.Name)
				}
			}
			slices.Sort(got)
			var wantNames []string
			for n := range want {
				wantNames = append(wantNames, n)
			}
			slices.Sort(wantNames)
			if !slices.Equal(got, wantNames) {
				t.Errorf("tools = %v, want %v", got, wantNames)
			}
		})
	}
}

func TestDrive(t *testing.T) {
	cs := openSession(t, startAll(t)["drive"].URL, "")
	runSteps(t, cs, []step{
		{name: "list all", tool: "list_files", args: map[string]any{},
			want: []string{"/public/handbook.md", "/prod/secrets/db.env", "/finance/q3-forecast.xlsx"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out ListFilesOutput
				decode(t, res, &out)
				if len(out.Files) != 7 {
					t.Errorf("got %d files, want 7", len(out.Files))
				}
			}},
		{name: "list prefix", tool: "list_files", args: map[string]any{"path": "/team"},
			want: []string{"2 file(s)", "/team/roadmap.md", "/team/notes.txt"}},
		{name: "search", tool: "search_files", args: map[string]any{"query": "PBAC gateway"},
			want: []string{"/team/roadmap.md"}},
		{name: "read", tool: "read_file", args: map[string]any{"path": "/public/handbook.md"},
			want: []string{"Engineering Handbook"}},
		{name: "secrets are fake", tool: "read_file", args: map[string]any{"path": "/prod/secrets/aws-credentials"},
			want: []string{"FAKE"}},
		{name: "write", tool: "write_file", args: map[string]any{"path": "/team/plan.md", "content": "ship it"},
			want: []string{"Created /team/plan.md"}},
		{name: "read back", tool: "read_file", args: map[string]any{"path": "/team/plan.md"},
			want: []string{"ship it"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out ReadFileOutput
				decode(t, res, &out)
				if out.Content != "ship it" || out.Path != "/team/plan.md" {
					t.Errorf("read back %+v", out)
				}
			}},
		{name: "share", tool: "share_file", args: map[string]any{"path": "/team/plan.md", "with": "bob@example.com"},
			want: []string{"Shared /team/plan.md with bob@example.com"}},
		{name: "shared visible", tool: "list_files", args: map[string]any{"path": "/team/plan.md"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out ListFilesOutput
				decode(t, res, &out)
				if len(out.Files) != 1 || !slices.Contains(out.Files[0].SharedWith, "bob@example.com") {
					t.Errorf("files %+v", out.Files)
				}
			}},
		// A folder is read segment by segment, as policy compares a list's
		// reach: "/pro" is not a folder of /prod/secrets.
		{name: "list is by folder, not by prefix", tool: "list_files", args: map[string]any{"path": "/pro"},
			want: []string{"0 file(s)"}},
		{name: "search in a folder", tool: "search_files", args: map[string]any{"query": "a", "path": "/public"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out SearchFilesOutput
				decode(t, res, &out)
				for _, m := range out.Matches {
					if !strings.HasPrefix(m.Path, "/public/") {
						t.Errorf("a search in /public found %s", m.Path)
					}
				}
				if len(out.Matches) == 0 {
					t.Error("a search in /public found nothing")
				}
			}},
		{name: "missing file", tool: "read_file", args: map[string]any{"path": "/nope.txt"}, wantErr: true, want: []string{"not found"}},
		{name: "relative path", tool: "read_file", args: map[string]any{"path": "team/notes.txt"}, wantErr: true, want: []string{"absolute"}},
		{name: "dotdot", tool: "read_file", args: map[string]any{"path": "/public/../prod/secrets/db.env"}, wantErr: true},
		// The drive never reads a path otherwise than policy does (issue 14,
		// High #2): no trimming, cleaning or decoding.
		{name: "leading space", tool: "read_file", args: map[string]any{"path": " /prod/secrets/db.env"}, wantErr: true, want: []string{"must be absolute"}},
		{name: "inner traversal", tool: "read_file", args: map[string]any{"path": "/public/./handbook.md"}, wantErr: true, want: []string{"canonical"}},
		{name: "leading tab", tool: "read_file", args: map[string]any{"path": "\t/prod/secrets/db.env"}, wantErr: true},
		{name: "leading newline", tool: "read_file", args: map[string]any{"path": "\n/prod/secrets/db.env"}, wantErr: true},
		{name: "trailing slash", tool: "read_file", args: map[string]any{"path": "/prod/secrets/db.env/"}, wantErr: true},
		{name: "double slash", tool: "read_file", args: map[string]any{"path": "//prod/secrets/db.env"}, wantErr: true},
		{name: "fullwidth solidus", tool: "read_file", args: map[string]any{"path": "/prod\uff0fsecrets/db.env"}, wantErr: true},
		{name: "write with a leading space", tool: "write_file", args: map[string]any{"path": " /prod/secrets/db.env", "content": "x"}, wantErr: true},
		{name: "the secret is untouched", tool: "read_file", args: map[string]any{"path": "/prod/secrets/db.env"}, want: []string{"FAKE"}},
		{name: "list with a leading space", tool: "list_files", args: map[string]any{"path": " /prod"}, wantErr: true},
		{name: "share with a padded name", tool: "share_file", args: map[string]any{"path": "/team/plan.md", "with": " bob"}, wantErr: true},
		{name: "missing arg", tool: "read_file", args: map[string]any{}, wantErr: true},
		{name: "unknown arg", tool: "read_file", args: map[string]any{"path": "/public/handbook.md", "x": 1}, wantErr: true},
		{name: "empty query", tool: "search_files", args: map[string]any{"query": " "}, wantErr: true},
		{name: "share missing", tool: "share_file", args: map[string]any{"path": "/nope", "with": "bob"}, wantErr: true},
	})
}

func TestJira(t *testing.T) {
	cs := openSession(t, startAll(t)["jira"].URL, "2025-06-18")
	runSteps(t, cs, []step{
		{name: "all", tool: "search_issues", args: map[string]any{}, want: []string{"6 issue(s)", "SEC-12", "PLAT-101"}},
		{name: "jql", tool: "search_issues", args: map[string]any{"jql": `project = SEC AND status = "To Do"`},
			want: []string{"2 issue(s)", "SEC-13", "SEC-14"}},
		{name: "query", tool: "search_issues", args: map[string]any{"query": "gateway"}, want: []string{"PLAT-101"}},
		{name: "get", tool: "get_issue", args: map[string]any{"key": "SEC-12"}, want: []string{"Rotate production AWS credentials", "alice"}},
		{name: "create", tool: "create_issue", args: map[string]any{"project": "PLAT", "summary": "Add audit export", "description": "CSV export of decisions"},
			want: []string{"Created PLAT-104"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out Issue
				decode(t, res, &out)
				if out.Key != "PLAT-104" || out.Status != "To Do" {
					t.Errorf("created %+v", out)
				}
			}},
		{name: "get created", tool: "get_issue", args: map[string]any{"key": "PLAT-104"}, want: []string{"Add audit export", "CSV export of decisions", "To Do"}},
		{name: "comment", tool: "add_comment", args: map[string]any{"key": "PLAT-104", "body": "Starting now"}, want: []string{"1 comment(s)"}},
		{name: "transition", tool: "transition_issue", args: map[string]any{"key": "PLAT-104", "status": "in progress"},
			want: []string{"To Do to In Progress"}},
		{name: "get after", tool: "get_issue", args: map[string]any{"key": "PLAT-104"}, want: []string{"In Progress", "Starting now"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out Issue
				decode(t, res, &out)
				if out.Status != "In Progress" || len(out.Comments) != 1 {
					t.Errorf("issue %+v", out)
				}
			}},
		{name: "search created", tool: "search_issues", args: map[string]any{"jql": "status = 'In Progress' AND project = PLAT"}, want: []string{"PLAT-104", "PLAT-101"}},
		{name: "bad status", tool: "transition_issue", args: map[string]any{"key": "SEC-12", "status": "Closed"}, wantErr: true, want: []string{"To Do, In Progress or Done"}},
		{name: "unknown key", tool: "get_issue", args: map[string]any{"key": "SEC-999"}, wantErr: true, want: []string{"does not exist"}},
		{name: "unknown project", tool: "create_issue", args: map[string]any{"project": "HR", "summary": "x"}, wantErr: true},
		{name: "bad jql", tool: "search_issues", args: map[string]any{"jql": "colour = red"}, wantErr: true, want: []string{"unknown JQL field"}},
		{name: "empty comment", tool: "add_comment", args: map[string]any{"key": "SEC-12", "body": ""}, wantErr: true},
		{name: "missing summary", tool: "create_issue", args: map[string]any{"project": "SEC"}, wantErr: true},
	})
}

func TestSlack(t *testing.T) {
	cs := openSession(t, startAll(t)["slack"].URL, "2025-03-26")
	runSteps(t, cs, []step{
		{name: "channels", tool: "list_channels", args: map[string]any{}, want: []string{"#general", "#security", "#deploys"}},
		{name: "history", tool: "read_history", args: map[string]any{"channel": "#deploys", "limit": 2},
			want: []string{"Fixed the lint error"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out ReadHistoryOutput
				decode(t, res, &out)
				if len(out.Messages) != 2 {
					t.Errorf("got %d messages, want 2", len(out.Messages))
				}
			}},
		{name: "post", tool: "post_message", args: map[string]any{"channel": "general", "text": "hello from the agent"}, want: []string{"Posted to #general"}},
		{name: "read back", tool: "read_history", args: map[string]any{"channel": "#general", "limit": 1},
			want: []string{"hello from the agent"}},
		{name: "unknown channel", tool: "read_history", args: map[string]any{"channel": "#random"}, wantErr: true, want: []string{"does not exist"}},
		{name: "bad limit", tool: "read_history", args: map[string]any{"channel": "#general", "limit": 1000}, wantErr: true},
		{name: "empty text", tool: "post_message", args: map[string]any{"channel": "#general", "text": ""}, wantErr: true},
		{name: "wrong type", tool: "read_history", args: map[string]any{"channel": "#general", "limit": "ten"}, wantErr: true},
	})
}

func TestJenkins(t *testing.T) {
	cs := openSession(t, startAll(t)["jenkins"].URL, "")
	runSteps(t, cs, []step{
		{name: "jobs", tool: "list_jobs", args: map[string]any{},
			want: []string{"build-api", "build-web", "deploy-prod", "credentials/aws-rotate", "nightly-tests"}},
		{name: "log latest", tool: "get_build_log", args: map[string]any{"job": "build-api"}, want: []string{"#132", "TestRateLimit"}},
		{name: "log numbered", tool: "get_build_log", args: map[string]any{"job": "build-api", "build": 131}, want: []string{"#131 SUCCESS"}},
		{name: "trigger", tool: "trigger_build", args: map[string]any{"job": "build-web", "parameters": map[string]any{"BRANCH": "feature/x"}},
			want: []string{"Started build-web #90"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out TriggerOutput
				decode(t, res, &out)
				if out.Build.Number != 90 || out.Build.Parameters["BRANCH"] != "feature/x" {
					t.Errorf("build %+v", out.Build)
				}
			}},
		{name: "listed", tool: "list_jobs", args: map[string]any{},
			want: []string{"build-web (build): last build #90 SUCCESS"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out ListJobsOutput
				decode(t, res, &out)
				i := slices.IndexFunc(out.Jobs, func(j JobInfo) bool { return j.Name == "build-web" })
				if i < 0 || out.Jobs[i].LastBuild != 90 || out.Jobs[i].RecentBuilds[0].Parameters["BRANCH"] != "feature/x" {
					t.Errorf("jobs %+v", out.Jobs)
				}
			}},
		{name: "new log", tool: "get_build_log", args: map[string]any{"job": "build-web", "build": 90}, want: []string{"BRANCH=feature/x"}},
		{name: "deploy", tool: "trigger_deploy", args: map[string]any{"job": "deploy-prod", "environment": "production"},
			want: []string{"Started deploy-prod #42 to production"}},
		{name: "deploy log", tool: "get_build_log", args: map[string]any{"job": "deploy-prod"}, want: []string{"ENVIRONMENT=production"}},
		{name: "rotate", tool: "trigger_build", args: map[string]any{"job": "credentials/aws-rotate"}, want: []string{"#8"}},
		{name: "deploy via build", tool: "trigger_build", args: map[string]any{"job": "deploy-prod"}, wantErr: true, want: []string{"trigger_deploy"}},
		{name: "build via deploy", tool: "trigger_deploy", args: map[string]any{"job": "build-api", "environment": "staging"}, wantErr: true},
		{name: "bad env", tool: "trigger_deploy", args: map[string]any{"job": "deploy-prod", "environment": "moon"}, wantErr: true},
		{name: "unknown job", tool: "get_build_log", args: map[string]any{"job": "nope"}, wantErr: true},
		{name: "unknown build", tool: "get_build_log", args: map[string]any{"job": "build-api", "build": 5}, wantErr: true},
		{name: "bad params", tool: "trigger_build", args: map[string]any{"job": "build-api", "parameters": map[string]any{"N": 1}}, wantErr: true},
		{name: "delete", tool: "delete_job", args: map[string]any{"job": "nightly-tests"}, want: []string{"Deleted nightly-tests and 2 build(s)"}},
		{name: "deleted", tool: "get_build_log", args: map[string]any{"job": "nightly-tests"}, wantErr: true},
		{name: "delete unknown", tool: "delete_job", args: map[string]any{"job": "nightly-tests"}, wantErr: true},
	})
}

func TestGitlab(t *testing.T) {
	cs := openSession(t, startAll(t)["gitlab"].URL, "2025-11-25")
	runSteps(t, cs, []step{
		{name: "list", tool: "list_merge_requests", args: map[string]any{"project": "platform/api"},
			want: []string{"2 opened", "!6", "!7"}},
		{name: "list all", tool: "list_merge_requests", args: map[string]any{"project": "platform/api", "state": "all"}, want: []string{"!5 [merged]"}},
		{name: "get", tool: "get_merge_request", args: map[string]any{"project": "platform/api", "iid": 7}, want: []string{"ci-bot", "approvals 0/1"}},
		{name: "diff", tool: "get_diff", args: map[string]any{"project": "platform/api", "iid": 6}, want: []string{"internal/proxy/proxy.go", "WithTimeout"}},
		{name: "create", tool: "create_merge_request", args: map[string]any{"project": "platform/api", "source_branch": "ci/bump-deps",
			"target_branch": "main", "title": "Bump dependencies", "author": "ci-bot"},
			want: []string{"Opened platform/api!8"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out MergeRequestOutput
				decode(t, res, &out)
				if out.IID != 8 || out.Author != "ci-bot" || out.State != "opened" {
					t.Errorf("created %+v", out)
				}
			}},
		{name: "merge unapproved", tool: "merge_merge_request", args: map[string]any{"project": "platform/api", "iid": 8, "author": "ci-bot"},
			wantErr: true, want: []string{"0 of 1 required approval"}},
		{name: "approve", tool: "approve_merge_request", args: map[string]any{"project": "platform/api", "iid": 8, "author": "alice"},
			want: []string{"alice approved platform/api!8", "1/1"}},
		{name: "approve again", tool: "approve_merge_request", args: map[string]any{"project": "platform/api", "iid": 8, "author": "alice"},
			want: []string{"already approved", "1/1"}},
		{name: "merge", tool: "merge_merge_request", args: map[string]any{"project": "platform/api", "iid": 8, "author": "alice"},
			want: []string{"alice merged platform/api!8 into main"}},
		{name: "merged state", tool: "get_merge_request", args: map[string]any{"project": "platform/api", "iid": 8},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out MergeRequest
				decode(t, res, &out)
				if out.State != "merged" || out.MergedBy != "alice" || !slices.Equal(out.Approvals, []string{"alice"}) {
					t.Errorf("merged MR %+v", out)
				}
			}},
		{name: "merge twice", tool: "merge_merge_request", args: map[string]any{"project": "platform/api", "iid": 8, "author": "alice"}, wantErr: true},
		{name: "new diff", tool: "get_diff", args: map[string]any{"project": "platform/api", "iid": 8}, want: []string{"Bump dependencies"}},
		{name: "unknown project", tool: "list_merge_requests", args: map[string]any{"project": "x/y"}, wantErr: true},
		{name: "bad state", tool: "list_merge_requests", args: map[string]any{"project": "platform/api", "state": "draft"}, wantErr: true},
		{name: "unknown mr", tool: "get_merge_request", args: map[string]any{"project": "platform/api", "iid": 99}, wantErr: true},
		{name: "missing iid", tool: "get_diff", args: map[string]any{"project": "platform/api"}, wantErr: true},
		{name: "same branches", tool: "create_merge_request", args: map[string]any{"project": "platform/api", "source_branch": "main",
			"target_branch": "main", "title": "x", "author": "bob"}, wantErr: true},
		{name: "approve without author", tool: "approve_merge_request", args: map[string]any{"project": "platform/api", "iid": 6, "author": ""}, wantErr: true},
		// An author is recorded as sent, never trimmed into another name.
		{name: "approve as a padded name", tool: "approve_merge_request", args: map[string]any{"project": "platform/api", "iid": 6, "author": " bob"}, wantErr: true},
		{name: "open as a padded name", tool: "create_merge_request", args: map[string]any{"project": "platform/api", "source_branch": "x2",
			"target_branch": "main", "title": "x", "author": "ci-bot "}, wantErr: true},
	})
}

func TestDatabase(t *testing.T) {
	cs := openSession(t, startAll(t)["database"].URL, "")
	runSteps(t, cs, []step{
		{name: "select all", tool: "query", args: map[string]any{"sql": "SELECT * FROM users"}, want: []string{"alice@example.com", "(5 row(s) from users)"}},
		{name: "where", tool: "query", args: map[string]any{"sql": "select * from users where role = 'contractor'"},
			want: []string{"carol", "(1 row(s)"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out QueryOutput
				decode(t, res, &out)
				if out.Count != 1 || out.Rows[0]["username"] != "carol" {
					t.Errorf("rows %+v", out.Rows)
				}
			}},
		{name: "numeric where and limit", tool: "query", args: map[string]any{"sql": "select id, item from orders where user_id = 1 limit 1;"},
			want: []string{"id | item", "Team plan", "(1 row(s)"}},
		{name: "audit", tool: "query", args: map[string]any{"sql": "SELECT * FROM audit_log LIMIT 2"}, want: []string{"(2 row(s)"}},
		{name: "schema", tool: "query", args: map[string]any{"sql": "select * from information_schema.tables"}, want: []string{"audit_log", "orders", "users"}},
		{name: "create table", tool: "execute_ddl", args: map[string]any{"sql": "CREATE TABLE invoices (id integer, amount decimal(10,2), PRIMARY KEY (id))"},
			want: []string{"created table invoices with 2 column(s)", "invoices"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out ExecuteDDLOutput
				decode(t, res, &out)
				i := slices.IndexFunc(out.Tables, func(ti TableInfo) bool { return ti.Name == "invoices" })
				if i < 0 || len(out.Tables[i].Columns) != 2 || out.Tables[i].Columns[1].Type != "decimal(10,2)" {
					t.Errorf("schema %+v", out.Tables)
				}
			}},
		{name: "query new table", tool: "query", args: map[string]any{"sql": "select * from invoices"}, want: []string{"(0 row(s) from invoices)"}},
		{name: "alter add", tool: "execute_ddl", args: map[string]any{"sql": "ALTER TABLE users ADD COLUMN phone text"}, want: []string{"added column phone"}},
		{name: "new column", tool: "query", args: map[string]any{"sql": "select username, phone from users limit 1"}, want: []string{"alice | NULL"}},
		{name: "alter rename", tool: "execute_ddl", args: map[string]any{"sql": "alter table invoices rename to bills"}, want: []string{"renamed table invoices to bills"}},
		{name: "drop", tool: "execute_ddl", args: map[string]any{"sql": "DROP TABLE bills"},
			want: []string{"dropped table bills"},
			check: func(t *testing.T, res *mcp.CallToolResult) {
				var out ExecuteDDLOutput
				decode(t, res, &out)
				if slices.ContainsFunc(out.Tables, func(ti TableInfo) bool { return ti.Name == "bills" }) {
					t.Errorf("bills still in schema %+v", out.Tables)
				}
			}},
		{name: "dropped gone", tool: "query", args: map[string]any{"sql": "select * from bills"}, wantErr: true, want: []string{"does not exist"}},
		{name: "write refused", tool: "query", args: map[string]any{"sql": "DELETE FROM users"}, wantErr: true, want: []string{"read-only"}},
		{name: "update refused", tool: "query", args: map[string]any{"sql": "update users set role = 'admin'"}, wantErr: true},
		{name: "unknown column", tool: "query", args: map[string]any{"sql": "select * from users where salary = '1'"}, wantErr: true},
		{name: "dml in ddl", tool: "execute_ddl", args: map[string]any{"sql": "INSERT INTO users VALUES (9)"}, wantErr: true, want: []string{"only CREATE TABLE"}},
		{name: "two statements", tool: "execute_ddl", args: map[string]any{"sql": "drop table users; drop table orders"}, wantErr: true},
		{name: "create existing", tool: "execute_ddl", args: map[string]any{"sql": "create table users (id int)"}, wantErr: true},
		{name: "missing sql", tool: "query", args: map[string]any{}, wantErr: true},
	})
}

// TestSharedState checks that all sessions of one backend share its state,
// and that the liveness probe answers.
func TestSharedState(t *testing.T) {
	r := startAll(t)["slack"]
	a := openSession(t, r.URL, "")
	b := openSession(t, r.URL, "2025-03-26")
	runSteps(t, a, []step{{name: "post", tool: "post_message", args: map[string]any{"channel": "#security", "text": "cross-session"}}})
	runSteps(t, b, []step{{name: "read", tool: "read_history", args: map[string]any{"channel": "#security", "limit": 1}, want: []string{"cross-session"}}})

	resp, err := http.Get(strings.TrimSuffix(r.URL, "/mcp") + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "ok slack") {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
}

// TestFreshState checks that each NewServer has its own state.
func TestFreshState(t *testing.T) {
	ctx := context.Background()
	var urls []string
	for range 2 {
		r, err := Start(ctx, "jira", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close(context.Background()) })
		urls = append(urls, r.URL)
	}
	runSteps(t, openSession(t, urls[0], ""), []step{{name: "create", tool: "create_issue", args: map[string]any{"project": "SEC", "summary": "only here"}, want: []string{"SEC-15"}}})
	runSteps(t, openSession(t, urls[1], ""), []step{{name: "absent", tool: "get_issue", args: map[string]any{"key": "SEC-15"}, wantErr: true}})
}

// TestCloseWithOpenSession checks that Close returns promptly while a client
// still holds a session (and its standalone SSE stream) open.
func TestCloseWithOpenSession(t *testing.T) {
	r, err := Start(context.Background(), "drive", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs := openSession(t, r.URL, "2025-06-18")
	runSteps(t, cs, []step{{name: "read", tool: "list_files", args: map[string]any{}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	if err := r.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := r.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := http.Get(r.URL); err == nil {
		t.Error("backend still answers after Close")
	}
}

// TestJSONResponseHandler serves a backend with plain JSON responses.
func TestJSONResponseHandler(t *testing.T) {
	h, err := NewHandler("database", &mcp.StreamableHTTPOptions{JSONResponse: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close) // after the session's cleanup (LIFO)
	cs := openSession(t, srv.URL, "2025-03-26")
	runSteps(t, cs, []step{{name: "query", tool: "query", args: map[string]any{"sql": "select email from users where username = 'bob'"}, want: []string{"bob@example.com"}}})
}
