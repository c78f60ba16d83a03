package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/demo"
)

// TestUpIssue14PolicyRepros replays issue 14's policy findings against the
// real `pbac up`, as its demo agents over real HTTP: every repro of the
// issue is now refused or denied.
func TestUpIssue14PolicyRepros(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dataDir := t.TempDir()
	base, out := startUp(t, dataDir)
	ctx := t.Context()
	agentID := func(name string) (id, secret string) {
		m := regexp.MustCompile(name + `\s+\S+\s+client_id=(\S+)(?: client_secret=(\S+))?`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no %s in the output:\n%s", name, out)
		}
		return m[1], m[2]
	}
	client := &demo.AgentClient{BaseURL: base}
	ccID, _ := agentID("claude-code")
	tok, err := client.GetToken(ctx, demo.AgentIdentity{ClientID: ccID, RedirectURI: demo.HumanRedirectURIs()[0]}, "alice", "demo")
	if err != nil {
		t.Fatal(err)
	}
	alice := tok.AccessToken // alice's Claude Code: developer tier, drive r/w, gitlab approve
	call := func(token, tool string, args map[string]any) demo.CallResult {
		t.Helper()
		res, err := client.CallTool(ctx, token, tool, args)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// denied: policy denied the call, answered by default (denials:
	// tool_error) as a tool result with isError whose _meta carries the
	// public reasons and the request id.
	denied := func(res demo.CallResult) bool {
		return res.Denied && res.Status == http.StatusOK && res.Result == nil && len(res.Reasons) > 0 &&
			strings.HasPrefix(res.Error, "denied by policy")
	}
	leaks := func(res demo.CallResult) bool {
		return res.Result != nil && strings.Contains(demo.ResultText(res.Result), "FAKE")
	}

	t.Run("High 1: the pathological path is refused before policy", func(t *testing.T) {
		res := call(alice, "drive.read_file", map[string]any{"path": strings.Repeat("/a", 1000) + "/%"})
		if res.Status != http.StatusBadRequest || !strings.Contains(res.Error, "more than") {
			t.Fatalf("%+v", res)
		}
	})

	t.Run("High 2: no spelling of a protected path reaches the drive", func(t *testing.T) {
		for _, p := range []string{" /prod/secrets/db.env", "\t/prod/secrets/db.env", "\n/prod/secrets/db.env",
			"/prod/secrets/db.env ", "/prod\uff0fsecrets/db.env", "/prod/secr\u200bets/db.env", "/public/../prod/secrets/db.env",
			"/prod%2Fsecrets/db.env", "\\prod\\secrets\\db.env"} {
			for _, c := range []struct {
				tool string
				args map[string]any
			}{
				{"drive.read_file", map[string]any{"path": p}},
				{"drive.write_file", map[string]any{"path": p, "content": "overwritten by the e2e test"}},
			} {
				if res := call(alice, c.tool, c.args); res.Status != http.StatusBadRequest || leaks(res) || res.Result != nil {
					t.Errorf("%s %q: %+v", c.tool, p, res)
				}
			}
		}
		if res := call(alice, "drive.read_file", map[string]any{"Path": "/prod/secrets/db.env"}); res.Status != http.StatusBadRequest {
			t.Errorf("an argument spelled Path: %+v", res)
		}
		// The canonical spelling is decided by policy: denied.
		if res := call(alice, "drive.read_file", map[string]any{"path": "/prod/secrets/db.env"}); !denied(res) || leaks(res) {
			t.Errorf("canonical read: %+v", res)
		}
	})

	t.Run("High 3: the approver is the caller and the author comes from the backend", func(t *testing.T) {
		created := call(alice, "gitlab.create_merge_request", map[string]any{"project": "platform/api",
			"source_branch": "e2e/self-approval", "target_branch": "main", "title": "mine"})
		if created.Status != http.StatusOK || created.Result == nil || created.Result.IsError {
			t.Fatalf("create: %+v", created)
		}
		mr, _ := created.Result.StructuredContent.(map[string]any)
		if mr["author"] != "alice" {
			t.Fatalf("the author of record is %v, want alice (the caller)", mr["author"])
		}
		iid := mr["iid"]
		// The issue's spellings of the author argument: refused.
		for _, author := range []string{" " + ccID, strings.ToUpper(ccID), ccID, "someone-else", " alice", "ALICE"} {
			res := call(alice, "gitlab.approve_merge_request", map[string]any{"project": "platform/api", "iid": iid, "author": author})
			if res.Status != http.StatusBadRequest || res.Result != nil {
				t.Errorf("author %q: %+v", author, res)
			}
		}
		// Left out, it is the caller, and the backend says alice authored
		// the merge request: denied as self-approval.
		res := call(alice, "gitlab.approve_merge_request", map[string]any{"project": "platform/api", "iid": iid})
		if !denied(res) || !strings.Contains(strings.Join(res.Reasons, ";"), "self-approval") {
			t.Errorf("self-approval: %+v", res)
		}
		// The CI bot's !7 is someone else's.
		if res := call(alice, "gitlab.approve_merge_request", map[string]any{"project": "platform/api", "iid": 7}); res.Status != http.StatusOK || res.Result == nil || res.Result.IsError {
			t.Errorf("approve another's merge request: %+v", res)
		}
	})

	t.Run("Medium 4: search and list do not reach protected data", func(t *testing.T) {
		for _, c := range []struct {
			tool string
			args map[string]any
		}{
			{"drive.search_files", map[string]any{"query": "password"}},
			{"drive.search_files", map[string]any{"query": "DB_PASSWORD", "path": "/prod"}},
			{"drive.list_files", map[string]any{"path": "/prod"}},
		} {
			if res := call(alice, c.tool, c.args); !denied(res) || leaks(res) {
				t.Errorf("%s %v: %+v", c.tool, c.args, res)
			}
		}
		if res := call(alice, "drive.search_files", map[string]any{"query": "roadmap", "path": "/team"}); res.Status != http.StatusOK || res.Result == nil || res.Result.IsError || leaks(res) {
			t.Errorf("a search in /team: %+v", res)
		}
	})

	t.Run("Low 16: the agent is told no rule; the audit trail has it", func(t *testing.T) {
		res := call(alice, "drive.read_file", map[string]any{"path": "/prod/secrets/db.env"})
		if !denied(res) || res.RequestID == "" || strings.Contains(res.Error, "prod-secrets") ||
			strings.Contains(strings.Join(res.Reasons, ";"), "rule") {
			t.Fatalf("%+v", res)
		}
		adminBase := adminLine.FindStringSubmatch(out.String())
		adminToken, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
		if adminBase == nil || err != nil {
			t.Fatalf("no admin API: %v", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			req, _ := http.NewRequest(http.MethodGet, adminBase[1]+"/admin/audit?decision=deny&tool=drive.read_file&limit=100", nil)
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(adminToken)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var recs struct {
				Records []struct {
					RequestID string   `json:"request_id"`
					Reasons   []string `json:"reasons"`
				} `json:"records"`
			}
			_ = json.NewDecoder(bytes.NewReader(body)).Decode(&recs)
			for _, r := range recs.Records {
				if r.RequestID == res.RequestID {
					if !strings.Contains(strings.Join(r.Reasons, ";"), "protected by rule prod-secrets") {
						t.Fatalf("the audit record lacks the full reason: %+v", r)
					}
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("request %s is not in the audit trail: %s", res.RequestID, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
