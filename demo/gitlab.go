package demo

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/internal/canon"
)

// MergeRequest is a GitLab merge request.
type MergeRequest struct {
	Project           string   `json:"project" jsonschema:"project path, e.g. platform/api"`
	IID               int      `json:"iid" jsonschema:"merge request number within the project"`
	Title             string   `json:"title"`
	Description       string   `json:"description"`
	SourceBranch      string   `json:"source_branch"`
	TargetBranch      string   `json:"target_branch"`
	Author            string   `json:"author"`
	State             string   `json:"state" jsonschema:"opened, merged or closed"`
	Approvals         []string `json:"approvals" jsonschema:"who approved"`
	ApprovalsRequired int      `json:"approvals_required"`
	MergedBy          string   `json:"merged_by"`
	Created           string   `json:"created"`
	Updated           string   `json:"updated"`
}

type gitlabMR struct {
	MergeRequest
	diff string
}

type gitlabProject struct {
	path     string
	branches []string
	mrs      []*gitlabMR
}

type gitlab struct {
	mu       sync.Mutex
	projects map[string]*gitlabProject
}

type ListMergeRequestsArgs struct {
	Project string `json:"project" jsonschema:"project path: platform/api, platform/web or security/policies"`
	State   string `json:"state,omitempty" jsonschema:"opened (default), merged, closed or all"`
}

type ListMergeRequestsOutput struct {
	Project       string         `json:"project"`
	State         string         `json:"state"`
	MergeRequests []MergeRequest `json:"merge_requests"`
}

type MergeRequestRef struct {
	Project string `json:"project" jsonschema:"project path, e.g. platform/api"`
	IID     int    `json:"iid" jsonschema:"merge request number within the project"`
}

type GetDiffOutput struct {
	Project string   `json:"project"`
	IID     int      `json:"iid"`
	Files   []string `json:"files" jsonschema:"changed files"`
	Diff    string   `json:"diff" jsonschema:"unified diff"`
}

type CreateMergeRequestArgs struct {
	Project      string `json:"project" jsonschema:"project path, e.g. platform/api"`
	SourceBranch string `json:"source_branch" jsonschema:"branch with the change"`
	TargetBranch string `json:"target_branch" jsonschema:"branch to merge into, usually main"`
	Title        string `json:"title"`
	Author       string `json:"author,omitempty" jsonschema:"who opens the merge request; through the PBAC gateway the caller, filled in when left out"`
	Description  string `json:"description,omitempty"`
}

type ActOnMergeRequestArgs struct {
	Project string `json:"project" jsonschema:"project path, e.g. platform/api"`
	IID     int    `json:"iid" jsonschema:"merge request number within the project"`
	Author  string `json:"author,omitempty" jsonschema:"who performs the action (the approver or the merger); through the PBAC gateway the caller, filled in when left out"`
}

type MergeRequestOutput struct {
	MergeRequest
	Message string `json:"message"`
}

var mrStates = []string{"opened", "merged", "closed", "all"}

func newGitlabServer() *mcp.Server {
	g := &gitlab{projects: map[string]*gitlabProject{}}
	for _, p := range seedGitlab() {
		g.projects[p.path] = p
	}
	s := newServer("gitlab", "Demo GitLab",
		"A code host with projects platform/api, platform/web and security/policies. "+
			"A merge request needs one approval before it can be merged.")
	mcp.AddTool(s, &mcp.Tool{
		Name:        "list_merge_requests",
		Description: "List a project's merge requests by state (opened by default).",
		Annotations: readOnly("List merge requests"),
	}, g.listMergeRequests)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "get_merge_request",
		Description: "Get one merge request with its approvals and state.",
		Annotations: readOnly("Get merge request"),
	}, g.getMergeRequest)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "get_diff",
		Description: "Get the unified diff of a merge request.",
		Annotations: readOnly("Get merge request diff"),
	}, g.getDiff)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "create_merge_request",
		Description: "Open a merge request from a source branch into a target branch.",
		Annotations: writes("Create merge request", false, false),
	}, g.createMergeRequest)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "approve_merge_request",
		Description: "Approve an open merge request as author (the approver).",
		Annotations: writes("Approve merge request", false, true),
	}, g.approveMergeRequest)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "merge_merge_request",
		Description: "Merge an approved, open merge request as author (the merger). Refused while approvals are missing.",
		Annotations: writes("Merge merge request", true, false),
	}, g.mergeMergeRequest)
	return s
}

func (m *gitlabMR) public() MergeRequest {
	c := m.MergeRequest
	c.Approvals = slices.Clone(m.Approvals)
	if c.Approvals == nil {
		c.Approvals = []string{}
	}
	return c
}

func (m *gitlabMR) ref() string { return fmt.Sprintf("%s!%d", m.Project, m.IID) }

// project finds a project; g.mu must be held.
func (g *gitlab) project(path string) (*gitlabProject, error) {
	if err := required("project", path); err != nil {
		return nil, err
	}
	p, ok := g.projects[strings.Trim(strings.ToLower(strings.TrimSpace(path)), "/")]
	if !ok {
		return nil, fmt.Errorf("project %q does not exist (projects: %s)", path, strings.Join(slices.Sorted(maps.Keys(g.projects)), ", "))
	}
	return p, nil
}

// mr finds a merge request; g.mu must be held.
func (g *gitlab) mr(project string, iid int) (*gitlabMR, error) {
	p, err := g.project(project)
	if err != nil {
		return nil, err
	}
	for _, m := range p.mrs {
		if m.IID == iid {
			return m, nil
		}
	}
	return nil, fmt.Errorf("merge request %s!%d does not exist", p.path, iid)
}

func renderMR(m *gitlabMR) string {
	return fmt.Sprintf("%s %q [%s]\n%s -> %s, author %s, approvals %d/%d (%s)%s\n%s",
		m.ref(), m.Title, m.State, m.SourceBranch, m.TargetBranch, m.Author,
		len(m.Approvals), m.ApprovalsRequired, cmp.Or(strings.Join(m.Approvals, ", "), "none"),
		func() string {
			if m.MergedBy != "" {
				return ", merged by " + m.MergedBy
			}
			return ""
		}(), m.Description)
}

func (g *gitlab) listMergeRequests(_ context.Context, _ *mcp.CallToolRequest, in ListMergeRequestsArgs) (*mcp.CallToolResult, ListMergeRequestsOutput, error) {
	state := cmp.Or(strings.ToLower(strings.TrimSpace(in.State)), "opened")
	if state == "open" {
		state = "opened"
	}
	if !slices.Contains(mrStates, state) {
		return nil, ListMergeRequestsOutput{}, fmt.Errorf("state %q is not valid: use opened, merged, closed or all", in.State)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	p, err := g.project(in.Project)
	if err != nil {
		return nil, ListMergeRequestsOutput{}, err
	}
	out := ListMergeRequestsOutput{Project: p.path, State: state, MergeRequests: []MergeRequest{}}
	lines := []string{}
	for _, m := range p.mrs {
		if state == "all" || m.State == state {
			out.MergeRequests = append(out.MergeRequests, m.public())
			lines = append(lines, fmt.Sprintf("  !%d [%s] %s (%s -> %s, author %s, approvals %d/%d)",
				m.IID, m.State, m.Title, m.SourceBranch, m.TargetBranch, m.Author, len(m.Approvals), m.ApprovalsRequired))
		}
	}
	lines = append([]string{fmt.Sprintf("%d %s merge request(s) in %s:", len(out.MergeRequests), state, p.path)}, lines...)
	return textLines(lines), out, nil
}

func (g *gitlab) getMergeRequest(_ context.Context, _ *mcp.CallToolRequest, in MergeRequestRef) (*mcp.CallToolResult, MergeRequest, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, err := g.mr(in.Project, in.IID)
	if err != nil {
		return nil, MergeRequest{}, err
	}
	return textResult("%s", renderMR(m)), m.public(), nil
}

func diffFiles(diff string) []string {
	files := []string{}
	for line := range strings.SplitSeq(diff, "\n") {
		if f, ok := strings.CutPrefix(line, "+++ b/"); ok {
			files = append(files, f)
		}
	}
	return files
}

func (g *gitlab) getDiff(_ context.Context, _ *mcp.CallToolRequest, in MergeRequestRef) (*mcp.CallToolResult, GetDiffOutput, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, err := g.mr(in.Project, in.IID)
	if err != nil {
		return nil, GetDiffOutput{}, err
	}
	out := GetDiffOutput{Project: m.Project, IID: m.IID, Files: diffFiles(m.diff), Diff: m.diff}
	return textResult("Diff of %s (%d file(s)):\n\n%s", m.ref(), len(out.Files), m.diff), out, nil
}

func (g *gitlab) createMergeRequest(_ context.Context, _ *mcp.CallToolRequest, in CreateMergeRequestArgs) (*mcp.CallToolResult, MergeRequestOutput, error) {
	for _, a := range [][2]string{{"source_branch", in.SourceBranch}, {"target_branch", in.TargetBranch}, {"title", in.Title}, {"author", in.Author}} {
		if err := required(a[0], a[1]); err != nil {
			return nil, MergeRequestOutput{}, err
		}
	}
	// Who is recorded as the author is who approvals are checked against:
	// it is taken as sent (the gateway sets it to the caller), never
	// trimmed into someone else's name.
	if err := canon.Check(canon.KindName, in.Author); err != nil {
		return nil, MergeRequestOutput{}, fmt.Errorf("author %q is %w", in.Author, err)
	}
	src, dst := strings.TrimSpace(in.SourceBranch), strings.TrimSpace(in.TargetBranch)
	if src == dst {
		return nil, MergeRequestOutput{}, fmt.Errorf("source and target branch are both %q", src)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	p, err := g.project(in.Project)
	if err != nil {
		return nil, MergeRequestOutput{}, err
	}
	if !slices.Contains(p.branches, dst) {
		return nil, MergeRequestOutput{}, fmt.Errorf("target branch %q does not exist in %s (branches: %s)", dst, p.path, strings.Join(p.branches, ", "))
	}
	for _, m := range p.mrs {
		if m.State == "opened" && m.SourceBranch == src && m.TargetBranch == dst {
			return nil, MergeRequestOutput{}, fmt.Errorf("%s is already open for %s -> %s", m.ref(), src, dst)
		}
	}
	if !slices.Contains(p.branches, src) {
		p.branches = append(p.branches, src) // the agent pushed it
	}
	iid := 1
	if n := len(p.mrs); n > 0 {
		iid = p.mrs[n-1].IID + 1
	}
	ts := now()
	m := &gitlabMR{MergeRequest: MergeRequest{
		Project: p.path, IID: iid, Title: strings.TrimSpace(in.Title), Description: in.Description,
		SourceBranch: src, TargetBranch: dst, Author: in.Author, State: "opened",
		Approvals: []string{}, ApprovalsRequired: 1, Created: ts, Updated: ts,
	}}
	slug := strings.NewReplacer("/", "-", " ", "-").Replace(src)
	m.diff = fmt.Sprintf("diff --git a/CHANGES/%s.md b/CHANGES/%s.md\nnew file mode 100644\n--- /dev/null\n+++ b/CHANGES/%s.md\n@@ -0,0 +1,2 @@\n+# %s\n+%s\n",
		slug, slug, slug, m.Title, cmp.Or(in.Description, "(no description)"))
	p.mrs = append(p.mrs, m)
	out := MergeRequestOutput{MergeRequest: m.public(), Message: fmt.Sprintf("Opened %s", m.ref())}
	return textResult("Opened %s %q (%s -> %s) by %s; it needs %d approval(s) before merge.", m.ref(), m.Title, src, dst, m.Author, m.ApprovalsRequired), out, nil
}

// openMR finds the open merge request an approver or merger acts on, and
// who acts. The caller holds g.mu.
func (g *gitlab) openMR(in ActOnMergeRequestArgs, verb string) (*gitlabMR, string, error) {
	if err := required("author", in.Author); err != nil {
		return nil, "", err
	}
	m, err := g.mr(in.Project, in.IID)
	if err != nil {
		return nil, "", err
	}
	if m.State != "opened" {
		return nil, "", fmt.Errorf("%s is %s; only open merge requests can be %s", m.ref(), m.State, verb)
	}
	if err := canon.Check(canon.KindName, in.Author); err != nil {
		return nil, "", fmt.Errorf("author %q is %w", in.Author, err)
	}
	return m, in.Author, nil
}

func (g *gitlab) approveMergeRequest(_ context.Context, _ *mcp.CallToolRequest, in ActOnMergeRequestArgs) (*mcp.CallToolResult, MergeRequestOutput, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, who, err := g.openMR(in, "approved")
	if err != nil {
		return nil, MergeRequestOutput{}, err
	}
	msg := fmt.Sprintf("%s already approved %s", who, m.ref())
	if !slices.Contains(m.Approvals, who) {
		m.Approvals = append(m.Approvals, who)
		m.Updated = now()
		msg = fmt.Sprintf("%s approved %s", who, m.ref())
	}
	out := MergeRequestOutput{MergeRequest: m.public(), Message: msg}
	return textResult("%s (approvals %d/%d).", msg, len(m.Approvals), m.ApprovalsRequired), out, nil
}

func (g *gitlab) mergeMergeRequest(_ context.Context, _ *mcp.CallToolRequest, in ActOnMergeRequestArgs) (*mcp.CallToolResult, MergeRequestOutput, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, who, err := g.openMR(in, "merged")
	if err != nil {
		return nil, MergeRequestOutput{}, err
	}
	if len(m.Approvals) < m.ApprovalsRequired {
		return nil, MergeRequestOutput{}, fmt.Errorf("%s cannot be merged: it has %d of %d required approval(s)", m.ref(), len(m.Approvals), m.ApprovalsRequired)
	}
	m.State, m.MergedBy, m.Updated = "merged", who, now()
	msg := fmt.Sprintf("%s merged %s into %s", who, m.ref(), m.TargetBranch)
	out := MergeRequestOutput{MergeRequest: m.public(), Message: msg}
	return textResult("%s.", msg), out, nil
}

func seedGitlab() []*gitlabProject {
	mr := func(project string, iid int, title, src, author, state string, approvals []string, mergedBy, created, desc, diff string) *gitlabMR {
		return &gitlabMR{MergeRequest: MergeRequest{
			Project: project, IID: iid, Title: title, Description: desc, SourceBranch: src, TargetBranch: "main",
			Author: author, State: state, Approvals: approvals, ApprovalsRequired: 1, MergedBy: mergedBy,
			Created: created, Updated: created,
		}, diff: diff}
	}
	return []*gitlabProject{
		{path: "platform/api", branches: []string{"main", "feature/rate-limit", "fix/timeout", "release/2.13"}, mrs: []*gitlabMR{
			mr("platform/api", 5, "Release 2.13.0", "release/2.13", "alice", "merged", []string{"bob"}, "alice", "2025-09-08T10:00:00Z",
				"Bump version and changelog.",
				"diff --git a/VERSION b/VERSION\n--- a/VERSION\n+++ b/VERSION\n@@ -1 +1 @@\n-2.12.4\n+2.13.0\n"),
			mr("platform/api", 6, "Fix upstream timeout handling", "fix/timeout", "bob", "opened", []string{"alice"}, "", "2025-09-09T15:00:00Z",
				"Return 504 instead of hanging when the upstream times out.",
				"diff --git a/internal/proxy/proxy.go b/internal/proxy/proxy.go\n--- a/internal/proxy/proxy.go\n+++ b/internal/proxy/proxy.go\n@@ -88,7 +88,9 @@ func (p *Proxy) forward(w http.ResponseWriter, r *http.Request) {\n-\tresp, err := p.client.Do(r)\n+\tctx, cancel := context.WithTimeout(r.Context(), p.timeout)\n+\tdefer cancel()\n+\tresp, err := p.client.Do(r.WithContext(ctx))\n"),
			mr("platform/api", 7, "Add per-client rate limiting", "feature/rate-limit", "ci-bot", "opened", []string{}, "", "2025-09-10T10:00:00Z",
				"Automated change proposed by the CI bot.",
				"diff --git a/internal/limiter/limiter.go b/internal/limiter/limiter.go\nnew file mode 100644\n--- /dev/null\n+++ b/internal/limiter/limiter.go\n@@ -0,0 +1,5 @@\n+package limiter\n+\n+// Limiter allows N requests per client per second.\n+type Limiter struct{ perSecond int }\n"),
		}},
		{path: "platform/web", branches: []string{"main", "fix/typo"}, mrs: []*gitlabMR{
			mr("platform/web", 3, "Fix typo in onboarding", "fix/typo", "carol", "merged", []string{"alice"}, "alice", "2025-06-03T09:00:00Z",
				"PLAT-103", "diff --git a/docs/onboarding.md b/docs/onboarding.md\n--- a/docs/onboarding.md\n+++ b/docs/onboarding.md\n@@ -3 +3 @@\n-recieve\n+receive\n"),
		}},
		{path: "security/policies", branches: []string{"main"}, mrs: []*gitlabMR{}},
	}
}
