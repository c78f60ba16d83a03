package demo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/internal/canon"
)

// driveFile is one document in the demo drive.
type driveFile struct {
	Path       string
	Content    string
	Owner      string
	Modified   string
	SharedWith []string
}

type drive struct {
	mu    sync.Mutex
	files map[string]*driveFile
}

// FileInfo describes a drive file without its content.
type FileInfo struct {
	Path       string   `json:"path" jsonschema:"absolute path of the file"`
	Size       int      `json:"size" jsonschema:"size in bytes"`
	Owner      string   `json:"owner"`
	Modified   string   `json:"modified" jsonschema:"last modification time, RFC 3339"`
	SharedWith []string `json:"shared_with" jsonschema:"users or groups the file is shared with"`
}

func (f *driveFile) info() FileInfo {
	return FileInfo{Path: f.Path, Size: len(f.Content), Owner: f.Owner, Modified: f.Modified, SharedWith: slices.Clone(f.SharedWith)}
}

type ListFilesArgs struct {
	Path string `json:"path,omitempty" jsonschema:"folder to list, e.g. /team (its files and those of its subfolders); the whole drive when left out"`
}

type ListFilesOutput struct {
	Path  string     `json:"path"`
	Files []FileInfo `json:"files"`
}

type SearchFilesArgs struct {
	Query string `json:"query" jsonschema:"text to look for (case-insensitive) in file paths and contents"`
	Path  string `json:"path,omitempty" jsonschema:"folder to search below, e.g. /team; the whole drive when left out"`
}

type SearchHit struct {
	FileInfo
	Snippet string `json:"snippet" jsonschema:"the matching line, or the path when only the path matched"`
}

type SearchFilesOutput struct {
	Query   string      `json:"query"`
	Matches []SearchHit `json:"matches"`
}

type ReadFileArgs struct {
	Path string `json:"path" jsonschema:"absolute path of the file, e.g. /public/handbook.md"`
}

type ReadFileOutput struct {
	FileInfo
	Content string `json:"content"`
}

type WriteFileArgs struct {
	Path    string `json:"path" jsonschema:"absolute path of the file to create or overwrite"`
	Content string `json:"content" jsonschema:"the new content of the file"`
}

type WriteFileOutput struct {
	FileInfo
	Created bool `json:"created" jsonschema:"true when the file did not exist before"`
}

type ShareFileArgs struct {
	Path string `json:"path" jsonschema:"absolute path of the file to share"`
	With string `json:"with" jsonschema:"user or group to share with, e.g. bob@example.com or team-platform"`
}

type ShareFileOutput struct {
	FileInfo
	Added bool `json:"added" jsonschema:"false when the file was already shared with that principal"`
}

// checkPath refuses a drive path that is not canonical (internal/canon):
// the drive reads a path exactly as the gateway's policy decided on it, so
// it never trims, cleans or decodes one — " /prod/secrets/db.env" is not
// a name of /prod/secrets/db.env here, as it is not for policy.
func checkPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("argument %q is required and must not be empty", "path")
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("path %q must be absolute (start with /)", p)
	}
	if err := canon.Check(canon.KindPath, p); err != nil {
		return "", fmt.Errorf("path %q is %w", p, err)
	}
	return p, nil
}

// under tells whether path p is folder dir or inside it, segment by
// segment (as policy compares a list or search tool's reach).
func under(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// folder is the folder a list or search reads below: the canonical path
// argument, or the whole drive when it is left out.
func folder(p string) (string, error) {
	if p == "" {
		return "/", nil
	}
	return checkPath(p)
}

func newDriveServer() *mcp.Server {
	d := &drive{files: map[string]*driveFile{}}
	for _, f := range seedDrive() {
		d.files[f.Path] = f
	}
	s := newServer("drive", "Demo Drive",
		"A shared document drive. Paths are absolute (/public, /team, /finance, /prod). "+
			"Use list_files or search_files to find documents, read_file to read one.")

	mcp.AddTool(s, &mcp.Tool{
		Name:        "list_files",
		Description: "List the files in the drive, optionally only those in a folder (and its subfolders).",
		Annotations: readOnly("List files"),
	}, d.listFiles)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "search_files",
		Description: "Search file paths and contents for a text (case-insensitive), optionally only in a folder.",
		Annotations: readOnly("Search files"),
	}, d.searchFiles)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "read_file",
		Description: "Read the content of one file.",
		Annotations: readOnly("Read file"),
	}, d.readFile)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "write_file",
		Description: "Create a file or overwrite an existing file's content.",
		Annotations: writes("Write file", true, true),
	}, d.writeFile)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "share_file",
		Description: "Share a file with a user or group.",
		Annotations: writes("Share file", false, true),
	}, d.shareFile)
	return s
}

// sorted returns the files in path order; d.mu must be held.
func (d *drive) sorted() []*driveFile {
	out := make([]*driveFile, 0, len(d.files))
	for _, f := range d.files {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *driveFile) int { return strings.Compare(a.Path, b.Path) })
	return out
}

func (d *drive) listFiles(_ context.Context, _ *mcp.CallToolRequest, in ListFilesArgs) (*mcp.CallToolResult, ListFilesOutput, error) {
	prefix, err := folder(in.Path)
	if err != nil {
		return nil, ListFilesOutput{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := ListFilesOutput{Path: prefix, Files: []FileInfo{}}
	for _, f := range d.sorted() {
		if under(f.Path, prefix) {
			out.Files = append(out.Files, f.info())
		}
	}
	lines := []string{fmt.Sprintf("%d file(s) under %s:", len(out.Files), prefix)}
	for _, f := range out.Files {
		lines = append(lines, fmt.Sprintf("  %s  (%d bytes, owner %s, modified %s)", f.Path, f.Size, f.Owner, f.Modified))
	}
	return textLines(lines), out, nil
}

func (d *drive) searchFiles(_ context.Context, _ *mcp.CallToolRequest, in SearchFilesArgs) (*mcp.CallToolResult, SearchFilesOutput, error) {
	if err := required("query", in.Query); err != nil {
		return nil, SearchFilesOutput{}, err
	}
	dir, err := folder(in.Path)
	if err != nil {
		return nil, SearchFilesOutput{}, err
	}
	q := strings.ToLower(strings.TrimSpace(in.Query))
	d.mu.Lock()
	defer d.mu.Unlock()
	out := SearchFilesOutput{Query: in.Query, Matches: []SearchHit{}}
	for _, f := range d.sorted() {
		if !under(f.Path, dir) {
			continue
		}
		hit := SearchHit{FileInfo: f.info()}
		found := false
		for line := range strings.SplitSeq(f.Content, "\n") {
			if strings.Contains(strings.ToLower(line), q) {
				hit.Snippet, found = strings.TrimSpace(line), true
				break
			}
		}
		if !found && strings.Contains(strings.ToLower(f.Path), q) {
			hit.Snippet, found = f.Path, true
		}
		if found {
			out.Matches = append(out.Matches, hit)
		}
	}
	lines := []string{fmt.Sprintf("%d file(s) match %q:", len(out.Matches), in.Query)}
	for _, m := range out.Matches {
		lines = append(lines, fmt.Sprintf("  %s: %s", m.Path, m.Snippet))
	}
	return textLines(lines), out, nil
}

func (d *drive) readFile(_ context.Context, _ *mcp.CallToolRequest, in ReadFileArgs) (*mcp.CallToolResult, ReadFileOutput, error) {
	p, err := checkPath(in.Path)
	if err != nil {
		return nil, ReadFileOutput{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.files[p]
	if !ok {
		return nil, ReadFileOutput{}, fmt.Errorf("file %s not found", p)
	}
	out := ReadFileOutput{FileInfo: f.info(), Content: f.Content}
	return textResult("%s (%d bytes, owner %s)\n\n%s", f.Path, len(f.Content), f.Owner, f.Content), out, nil
}

func (d *drive) writeFile(_ context.Context, _ *mcp.CallToolRequest, in WriteFileArgs) (*mcp.CallToolResult, WriteFileOutput, error) {
	p, err := checkPath(in.Path)
	if err != nil {
		return nil, WriteFileOutput{}, err
	}
	if p == "/" {
		return nil, WriteFileOutput{}, fmt.Errorf("path %q names a folder, not a file", in.Path)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f, exists := d.files[p]
	if !exists {
		f = &driveFile{Path: p, Owner: "agent", SharedWith: []string{}}
		d.files[p] = f
	}
	f.Content = in.Content
	f.Modified = now()
	out := WriteFileOutput{FileInfo: f.info(), Created: !exists}
	verb := "Updated"
	if !exists {
		verb = "Created"
	}
	return textResult("%s %s (%d bytes).", verb, p, len(in.Content)), out, nil
}

func (d *drive) shareFile(_ context.Context, _ *mcp.CallToolRequest, in ShareFileArgs) (*mcp.CallToolResult, ShareFileOutput, error) {
	p, err := checkPath(in.Path)
	if err != nil {
		return nil, ShareFileOutput{}, err
	}
	if err := required("with", in.With); err != nil {
		return nil, ShareFileOutput{}, err
	}
	with := in.With
	if err := canon.Check(canon.KindName, with); err != nil {
		return nil, ShareFileOutput{}, fmt.Errorf("with %q is %w", with, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.files[p]
	if !ok {
		return nil, ShareFileOutput{}, fmt.Errorf("file %s not found", p)
	}
	added := !slices.Contains(f.SharedWith, with)
	if added {
		f.SharedWith = append(f.SharedWith, with)
		f.Modified = now()
	}
	out := ShareFileOutput{FileInfo: f.info(), Added: added}
	if !added {
		return textResult("%s was already shared with %s.", p, with), out, nil
	}
	return textResult("Shared %s with %s (now shared with: %s).", p, with, strings.Join(f.SharedWith, ", ")), out, nil
}

func seedDrive() []*driveFile {
	return []*driveFile{
		{Path: "/public/handbook.md", Owner: "people-ops", Modified: "2025-01-15T09:00:00Z", SharedWith: []string{"everyone"}, Content: `# Acme Engineering Handbook

## Working hours
Core hours are 10:00-16:00 in your local time zone.

## Code review
Every merge request needs one approval from someone other than its author.
Nobody approves their own change; bots included.

## Production access
Production is reached only through the deploy pipeline (Jenkins deploy-prod).
Secrets live under /prod/secrets and are read by the pipeline, never by people or agents.

## AI agents
Agents act with their own identity through the PBAC gateway. Ask #security before
connecting a new agent.
`},
		{Path: "/public/onboarding.md", Owner: "people-ops", Modified: "2025-02-03T11:30:00Z", SharedWith: []string{"everyone"}, Content: `# Onboarding checklist

1. Get your laptop and SSO account from IT.
2. Join #general, #deploys and your team channel in Slack.
3. Read the handbook (/public/handbook.md).
4. Pick a "good first issue" in Jira project PLAT.
5. Open your first merge request in GitLab (platform/api) and ask for a review.
`},
		{Path: "/team/roadmap.md", Owner: "alice", Modified: "2025-09-01T08:15:00Z", SharedWith: []string{"team-platform"}, Content: `# Platform roadmap (H2)

- Q3: move the API behind the PBAC gateway (PLAT-101)
- Q3: rotate AWS credentials automatically (SEC-12)
- Q4: self-service deploys for staging
- Q4: retire the shared CI service account (SEC-14)
`},
		{Path: "/team/notes.txt", Owner: "bob", Modified: "2025-09-10T16:40:00Z", SharedWith: []string{"team-platform"}, Content: `Standup notes 2025-09-10
- alice: gateway policy for CI bot almost done
- bob: dashboard latency panel, p99 regressed after the cache change
- carol: contractor access review pending (ask security)
`},
		{Path: "/finance/q3-forecast.xlsx", Owner: "finance", Modified: "2025-07-01T12:00:00Z", SharedWith: []string{"finance-team"}, Content: `[spreadsheet stub: q3-forecast.xlsx]
Sheet "Summary"
Quarter,Revenue (USD),Costs (USD),Headcount
Q3-2025,4,200,000,3,100,000,58
Q3-2025 (stretch),4,650,000,3,250,000,61
CONFIDENTIAL - finance only
`},
		{Path: "/prod/secrets/db.env", Owner: "sre", Modified: "2025-06-20T07:00:00Z", SharedWith: []string{"deploy-pipeline"}, Content: `# FAKE demo credentials - not real, for the PBAC demo only
DB_HOST=prod-db.internal.example
DB_USER=app_prod
DB_PASSWORD=FAKE-demo-password-do-not-use
`},
		{Path: "/prod/secrets/aws-credentials", Owner: "sre", Modified: "2025-06-20T07:00:00Z", SharedWith: []string{"deploy-pipeline"}, Content: `# FAKE demo credentials - not real, for the PBAC demo only
[production]
aws_access_key_id = FAKE-ACCESS-KEY-ID-DEMO
aws_secret_access_key = FAKE-secret-access-key-demo-only
region = eu-west-1
`},
	}
}
