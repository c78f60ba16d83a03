package demo

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// jiraStatuses are the workflow states, in order.
var jiraStatuses = []string{"To Do", "In Progress", "Done"}

// Comment is one comment on an issue.
type Comment struct {
	Author  string `json:"author"`
	Body    string `json:"body"`
	Created string `json:"created"`
}

// Issue is a Jira issue.
type Issue struct {
	Key         string    `json:"key" jsonschema:"issue key, e.g. SEC-12"`
	Project     string    `json:"project"`
	Summary     string    `json:"summary"`
	Description string    `json:"description"`
	Status      string    `json:"status" jsonschema:"one of To Do, In Progress, Done"`
	Priority    string    `json:"priority"`
	Assignee    string    `json:"assignee"`
	Reporter    string    `json:"reporter"`
	Created     string    `json:"created"`
	Updated     string    `json:"updated"`
	Comments    []Comment `json:"comments"`
}

func (i *Issue) clone() Issue {
	c := *i
	c.Comments = slices.Clone(i.Comments)
	if c.Comments == nil {
		c.Comments = []Comment{}
	}
	return c
}

type jira struct {
	// srv is the server the issues are served by: a change to an issue is
	// announced to its resource's subscribers.
	srv      *mcp.Server
	mu       sync.Mutex
	issues   map[string]*Issue
	projects map[string]string // key -> name
	next     map[string]int    // project -> next issue number
}

type SearchIssuesArgs struct {
	JQL   string `json:"jql,omitempty" jsonschema:"simple JQL: clauses joined by AND, each 'field = value', 'field != value' or 'field ~ text'; fields project, status, assignee, reporter, priority, key, summary, description, text"`
	Query string `json:"query,omitempty" jsonschema:"plain text matched (case-insensitive) against key, summary and description"`
}

type SearchIssuesOutput struct {
	Total  int     `json:"total"`
	Issues []Issue `json:"issues"`
}

type GetIssueArgs struct {
	Key string `json:"key" jsonschema:"issue key, e.g. SEC-12"`
}

type CreateIssueArgs struct {
	Project     string `json:"project" jsonschema:"project key: SEC or PLAT"`
	Summary     string `json:"summary" jsonschema:"one-line summary"`
	Description string `json:"description,omitempty" jsonschema:"longer description"`
}

type AddCommentArgs struct {
	Key  string `json:"key" jsonschema:"issue key"`
	Body string `json:"body" jsonschema:"comment text"`
}

type AddCommentOutput struct {
	Key      string  `json:"key"`
	Comment  Comment `json:"comment"`
	Comments int     `json:"comments" jsonschema:"number of comments on the issue now"`
}

type TransitionIssueArgs struct {
	Key    string `json:"key" jsonschema:"issue key"`
	Status string `json:"status" jsonschema:"target status: To Do, In Progress or Done"`
}

type TransitionIssueOutput struct {
	Key  string `json:"key"`
	From string `json:"from"`
	To   string `json:"to"`
}

// agentUser is who the demo records as the actor of writes that carry no
// actor argument (the gateway knows the real agent identity).
const agentUser = "mcp-agent"

func newJiraServer() *mcp.Server {
	j := &jira{
		issues:   map[string]*Issue{},
		projects: map[string]string{"SEC": "Security", "PLAT": "Platform"},
		next:     map[string]int{},
	}
	for _, is := range seedJira() {
		j.issues[is.Key] = is
		n, _ := strconv.Atoi(strings.TrimPrefix(is.Key, is.Project+"-"))
		j.next[is.Project] = max(j.next[is.Project], n+1)
	}
	// An issue's resource may be subscribed to (resources/subscribe, or
	// subscriptions/listen from 2026-07-28): a comment or a transition
	// announces notifications/resources/updated to its subscribers.
	s := newServerWith("jira", "Demo Jira",
		"An issue tracker with projects SEC (Security) and PLAT (Platform). "+
			"Statuses: To Do, In Progress, Done.", &mcp.ServerOptions{
			SubscribeHandler:   j.subscribable,
			UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
		})
	j.srv = s
	mcp.AddTool(s, &mcp.Tool{
		Name:        "search_issues",
		Description: "Search issues with simple JQL (e.g. project = SEC AND status = \"To Do\") or a plain text query. No arguments lists every issue.",
		Annotations: readOnly("Search issues"),
	}, j.searchIssues)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "get_issue",
		Description: "Get one issue, with its comments.",
		Annotations: readOnly("Get issue"),
	}, j.getIssue)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "create_issue",
		Description: "Create an issue in a project (status To Do).",
		Annotations: writes("Create issue", false, false),
	}, j.createIssue)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "add_comment",
		Description: "Add a comment to an issue.",
		Annotations: writes("Add comment", false, false),
	}, j.addComment)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "transition_issue",
		Description: "Move an issue to another status: To Do, In Progress or Done.",
		Annotations: writes("Transition issue", true, true),
	}, j.transitionIssue)
	// Each issue is a resource too (jira://issue/<key>, listed and by
	// template), and a prompt drafts an issue's triage: what the gateway's
	// catalogue decides like the tools (jira.resource:jira://issue/,
	// jira.prompt:triage_issue).
	s.AddPrompt(&mcp.Prompt{
		Name:        "triage_issue",
		Description: "Draft the triage of one issue: its priority, owner and next step.",
		Arguments:   []*mcp.PromptArgument{{Name: "key", Description: "issue key, e.g. SEC-12", Required: true}},
	}, j.triagePrompt)
	s.AddResourceTemplate(&mcp.ResourceTemplate{
		Name: "issue", URITemplate: issueURI + "{key}", MIMEType: "text/plain",
		Description: "One issue, with its comments.",
	}, j.readIssue)
	for _, key := range slices.Sorted(maps.Keys(j.issues)) {
		s.AddResource(&mcp.Resource{Name: key, URI: issueURI + key, MIMEType: "text/plain", Title: j.issues[key].Summary}, j.readIssue)
	}
	return s
}

// issueURI is the prefix of an issue's resource URI.
const issueURI = "jira://issue/"

// subscribable accepts a subscription to an existing issue's resource.
func (j *jira) subscribable(_ context.Context, req *mcp.SubscribeRequest) error {
	key, ok := strings.CutPrefix(req.Params.URI, issueURI)
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, exists := j.issues[key]; !ok || !exists {
		return mcp.ResourceNotFoundError(req.Params.URI)
	}
	return nil
}

// updated announces a change to issue key (when not "") to its resource's
// subscribers; it is deferred before j.mu is taken, so it runs unlocked.
func (j *jira) updated(ctx context.Context, key *string) {
	if *key != "" {
		_ = j.srv.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: issueURI + *key})
	}
}

// readIssue reads the resource of one issue (jira://issue/<key>).
func (j *jira) readIssue(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	key, ok := strings.CutPrefix(req.Params.URI, issueURI)
	if !ok {
		return nil, mcp.ResourceNotFoundError(req.Params.URI)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	is, ok := j.issues[key]
	if !ok {
		return nil, mcp.ResourceNotFoundError(req.Params.URI)
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: renderIssue(is)}}}, nil
}

// triagePrompt is the triage_issue prompt for one issue.
func (j *jira) triagePrompt(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	is, err := j.lookup(req.Params.Arguments["key"])
	if err != nil {
		return nil, err
	}
	return &mcp.GetPromptResult{
		Description: "Triage " + is.Key,
		Messages:    []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "Triage this issue: say its priority, who should own it and the next step.\n\n" + renderIssue(is)}}},
	}, nil
}

// issueCmp orders issues by project, then number.
func issueCmp(a, b *Issue) int {
	if c := strings.Compare(a.Project, b.Project); c != 0 {
		return c
	}
	na, _ := strconv.Atoi(strings.TrimPrefix(a.Key, a.Project+"-"))
	nb, _ := strconv.Atoi(strings.TrimPrefix(b.Key, b.Project+"-"))
	return cmp.Compare(na, nb)
}

// jqlClause is one "field op value" condition.
type jqlClause struct{ field, op, value string }

var (
	jqlAnd       = regexp.MustCompile(`(?i)\s+AND\s+`)
	jqlClauseRe  = regexp.MustCompile(`^\s*([A-Za-z]+)\s*(!=|=|~)\s*(.+?)\s*$`)
	jqlOrderByRe = regexp.MustCompile(`(?i)\s+ORDER\s+BY\s+.*$`)
	jqlFields    = []string{"project", "status", "assignee", "reporter", "priority", "key", "summary", "description", "text"}
)

func parseJQL(q string) ([]jqlClause, error) {
	q = jqlOrderByRe.ReplaceAllString(strings.TrimSpace(q), "")
	var out []jqlClause
	for _, part := range jqlAnd.Split(q, -1) {
		m := jqlClauseRe.FindStringSubmatch(part)
		if m == nil {
			return nil, fmt.Errorf("cannot parse JQL clause %q: want field = value, field != value or field ~ text (joined by AND)", part)
		}
		field := strings.ToLower(m[1])
		if !slices.Contains(jqlFields, field) {
			return nil, fmt.Errorf("unknown JQL field %q (known: %s)", m[1], strings.Join(jqlFields, ", "))
		}
		v := m[3]
		if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
			v = v[1 : len(v)-1]
		}
		out = append(out, jqlClause{field: field, op: m[2], value: v})
	}
	return out, nil
}

func (c jqlClause) match(is *Issue) bool {
	var fieldVal string
	switch c.field {
	case "project":
		fieldVal = is.Project
	case "status":
		fieldVal = is.Status
	case "assignee":
		fieldVal = is.Assignee
	case "reporter":
		fieldVal = is.Reporter
	case "priority":
		fieldVal = is.Priority
	case "key":
		fieldVal = is.Key
	case "summary":
		fieldVal = is.Summary
	case "description":
		fieldVal = is.Description
	case "text":
		fieldVal = is.Summary + "\n" + is.Description
	}
	switch c.op {
	case "=":
		return strings.EqualFold(fieldVal, c.value)
	case "!=":
		return !strings.EqualFold(fieldVal, c.value)
	default: // "~"
		return strings.Contains(strings.ToLower(fieldVal), strings.ToLower(c.value))
	}
}

func (j *jira) searchIssues(_ context.Context, _ *mcp.CallToolRequest, in SearchIssuesArgs) (*mcp.CallToolResult, SearchIssuesOutput, error) {
	var clauses []jqlClause
	if strings.TrimSpace(in.JQL) != "" {
		var err error
		if clauses, err = parseJQL(in.JQL); err != nil {
			return nil, SearchIssuesOutput{}, err
		}
	}
	text := strings.ToLower(strings.TrimSpace(in.Query))
	j.mu.Lock()
	defer j.mu.Unlock()
	var hits []*Issue
	for _, is := range j.issues {
		ok := true
		for _, c := range clauses {
			ok = ok && c.match(is)
		}
		if text != "" {
			ok = ok && strings.Contains(strings.ToLower(is.Key+"\n"+is.Summary+"\n"+is.Description), text)
		}
		if ok {
			hits = append(hits, is)
		}
	}
	slices.SortFunc(hits, issueCmp)
	out := SearchIssuesOutput{Total: len(hits), Issues: []Issue{}}
	lines := []string{fmt.Sprintf("%d issue(s) found:", len(hits))}
	for _, is := range hits {
		out.Issues = append(out.Issues, is.clone())
		lines = append(lines, fmt.Sprintf("  %s [%s] %s (assignee: %s)", is.Key, is.Status, is.Summary, cmp.Or(is.Assignee, "unassigned")))
	}
	return textLines(lines), out, nil
}

// lookup finds an issue by key; j.mu must be held.
func (j *jira) lookup(key string) (*Issue, error) {
	if err := required("key", key); err != nil {
		return nil, err
	}
	is, ok := j.issues[strings.ToUpper(strings.TrimSpace(key))]
	if !ok {
		return nil, fmt.Errorf("issue %s does not exist", key)
	}
	return is, nil
}

func renderIssue(is *Issue) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\nProject: %s  Status: %s  Priority: %s\nAssignee: %s  Reporter: %s\nCreated: %s  Updated: %s\n\n%s\n",
		is.Key, is.Summary, is.Project, is.Status, is.Priority, cmp.Or(is.Assignee, "unassigned"), is.Reporter, is.Created, is.Updated, is.Description)
	if len(is.Comments) > 0 {
		fmt.Fprintf(&b, "\nComments (%d):\n", len(is.Comments))
		for _, c := range is.Comments {
			fmt.Fprintf(&b, "  %s (%s): %s\n", c.Author, c.Created, c.Body)
		}
	}
	return b.String()
}

func (j *jira) getIssue(_ context.Context, _ *mcp.CallToolRequest, in GetIssueArgs) (*mcp.CallToolResult, Issue, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	is, err := j.lookup(in.Key)
	if err != nil {
		return nil, Issue{}, err
	}
	return textResult("%s", renderIssue(is)), is.clone(), nil
}

func (j *jira) createIssue(_ context.Context, _ *mcp.CallToolRequest, in CreateIssueArgs) (*mcp.CallToolResult, Issue, error) {
	if err := required("project", in.Project); err != nil {
		return nil, Issue{}, err
	}
	if err := required("summary", in.Summary); err != nil {
		return nil, Issue{}, err
	}
	proj := strings.ToUpper(strings.TrimSpace(in.Project))
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.projects[proj]; !ok {
		return nil, Issue{}, fmt.Errorf("project %q does not exist (projects: SEC, PLAT)", in.Project)
	}
	n := max(j.next[proj], 1)
	j.next[proj] = n + 1
	ts := now()
	is := &Issue{
		Key: fmt.Sprintf("%s-%d", proj, n), Project: proj,
		Summary: strings.TrimSpace(in.Summary), Description: in.Description,
		Status: "To Do", Priority: "Medium", Reporter: agentUser,
		Created: ts, Updated: ts, Comments: []Comment{},
	}
	j.issues[is.Key] = is
	return textResult("Created %s: %s (status To Do).", is.Key, is.Summary), is.clone(), nil
}

func (j *jira) addComment(ctx context.Context, _ *mcp.CallToolRequest, in AddCommentArgs) (*mcp.CallToolResult, AddCommentOutput, error) {
	if err := required("body", in.Body); err != nil {
		return nil, AddCommentOutput{}, err
	}
	var changed string
	defer j.updated(ctx, &changed)
	j.mu.Lock()
	defer j.mu.Unlock()
	is, err := j.lookup(in.Key)
	if err != nil {
		return nil, AddCommentOutput{}, err
	}
	c := Comment{Author: agentUser, Body: in.Body, Created: now()}
	is.Comments = append(is.Comments, c)
	is.Updated = c.Created
	out := AddCommentOutput{Key: is.Key, Comment: c, Comments: len(is.Comments)}
	changed = is.Key
	return textResult("Comment added to %s (%d comment(s) now).", is.Key, len(is.Comments)), out, nil
}

func (j *jira) transitionIssue(ctx context.Context, _ *mcp.CallToolRequest, in TransitionIssueArgs) (*mcp.CallToolResult, TransitionIssueOutput, error) {
	idx := slices.IndexFunc(jiraStatuses, func(s string) bool { return strings.EqualFold(s, strings.TrimSpace(in.Status)) })
	if idx < 0 {
		return nil, TransitionIssueOutput{}, fmt.Errorf("status %q is not valid: use To Do, In Progress or Done", in.Status)
	}
	var changed string
	defer j.updated(ctx, &changed)
	j.mu.Lock()
	defer j.mu.Unlock()
	is, err := j.lookup(in.Key)
	if err != nil {
		return nil, TransitionIssueOutput{}, err
	}
	out := TransitionIssueOutput{Key: is.Key, From: is.Status, To: jiraStatuses[idx]}
	if is.Status == out.To {
		return textResult("%s is already %s.", is.Key, out.To), out, nil
	}
	is.Status = out.To
	is.Updated = now()
	changed = is.Key
	return textResult("%s moved from %s to %s.", is.Key, out.From, out.To), out, nil
}

func seedJira() []*Issue {
	c := func(author, body, ts string) Comment { return Comment{Author: author, Body: body, Created: ts} }
	return []*Issue{
		{Key: "SEC-12", Project: "SEC", Summary: "Rotate production AWS credentials automatically", Status: "In Progress", Priority: "High",
			Assignee: "alice", Reporter: "security-team", Created: "2025-08-04T10:00:00Z", Updated: "2025-09-08T14:20:00Z",
			Description: "The credentials/aws-rotate Jenkins job should run weekly. Nobody, human or agent, should read /prod/secrets by hand.",
			Comments:    []Comment{c("alice", "Job exists; scheduling it next.", "2025-09-08T14:20:00Z")}},
		{Key: "SEC-13", Project: "SEC", Summary: "Security scanner token must be short-lived", Status: "To Do", Priority: "High",
			Assignee: "", Reporter: "security-team", Created: "2025-08-20T09:30:00Z", Updated: "2025-08-20T09:30:00Z",
			Description: "Scanner tokens live for days today. Use single-use tokens with a short TTL.", Comments: []Comment{}},
		{Key: "SEC-14", Project: "SEC", Summary: "Retire the shared CI service account", Status: "To Do", Priority: "Medium",
			Assignee: "carol", Reporter: "alice", Created: "2025-09-01T08:00:00Z", Updated: "2025-09-01T08:00:00Z",
			Description: "CI and deploys share one account. The CI bot must not be able to approve or deploy its own changes.", Comments: []Comment{}},
		{Key: "PLAT-101", Project: "PLAT", Summary: "Put the API behind the PBAC gateway", Status: "In Progress", Priority: "High",
			Assignee: "alice", Reporter: "bob", Created: "2025-07-14T13:00:00Z", Updated: "2025-09-10T16:00:00Z",
			Description: "Route every agent tool call through the gateway; per-call policy and audit.",
			Comments:    []Comment{c("bob", "Dashboard shows decisions per agent now.", "2025-09-10T16:00:00Z")}},
		{Key: "PLAT-102", Project: "PLAT", Summary: "Dashboard p99 latency regressed after cache change", Status: "To Do", Priority: "Medium",
			Assignee: "bob", Reporter: "bob", Created: "2025-09-10T17:00:00Z", Updated: "2025-09-10T17:00:00Z",
			Description: "p99 went from 12ms to 40ms on the decisions panel.", Comments: []Comment{}},
		{Key: "PLAT-103", Project: "PLAT", Summary: "Good first issue: fix typo in onboarding doc", Status: "Done", Priority: "Low",
			Assignee: "carol", Reporter: "alice", Created: "2025-06-02T10:00:00Z", Updated: "2025-06-03T11:00:00Z",
			Description: "'recieve' -> 'receive' in /public/onboarding.md.",
			Comments:    []Comment{c("carol", "Fixed in platform/web!3.", "2025-06-03T11:00:00Z")}},
	}
}
