package gateway_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/audit"
	system "github.com/pbac-gateway/pbac/internal/stack"
)

// TestRevokePersonThroughTheAdminAPI: POST /admin/people/{sub}/revoke on
// the admin listener the stack builds ends every token acting for that
// person — of every agent — so their next call is refused, leaves other
// people's tokens working, and is audited; the person can sign in again.
func TestRevokePersonThroughTheAdminAPI(t *testing.T) {
	var dataDir string
	s := newStackWith(t, stackOptions{config: func(c *system.Config) {
		c.Admin = &system.Admin{Listen: "127.0.0.1:0"}
		dataDir = c.DataDir
	}})
	raw, err := os.ReadFile(filepath.Join(dataDir, system.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(raw))
	adminBase := s.adminURL
	revoke := func(sub, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, adminBase+"/admin/people/"+sub+"/revoke", bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}

	alice1 := s.humanAgent("claude-code", "alice", "jira:read")
	alice2 := s.humanAgent("claude-code", "alice", "jira:read")
	bob := s.humanAgent("claude-code", "bob", "jira:read")
	search := map[string]any{"query": "SEC"}
	for _, tok := range []string{alice1, alice2, bob} {
		if ok, why := s.call(tok, "jira", "search_issues", search); !ok {
			t.Fatalf("a call before the revocation: %s", why)
		}
	}
	if status, out := revoke("alice", `{"reason": 7}`); status != http.StatusBadRequest {
		t.Fatalf("a bad body: %d %v", status, out)
	}
	status, out := revoke("alice", `{"reason": "left the company"}`)
	if got, _ := out["revoked"].(map[string]any); status != http.StatusOK || got["access_tokens"] != float64(2) || got["refresh_tokens"] != float64(2) {
		t.Fatalf("revoke alice: %d %v", status, out)
	}
	for _, tok := range []string{alice1, alice2} {
		if ok, why := s.call(tok, "jira", "search_issues", search); ok || !strings.Contains(why, "Unauthorized") {
			t.Fatalf("alice's agent still calls after the revocation (%v, %s)", ok, why)
		}
	}
	if ok, why := s.call(bob, "jira", "search_issues", search); !ok {
		t.Fatalf("bob's agent was refused after alice's revocation: %s", why)
	}
	recs, err := s.waitAudit(audit.Filter{Subject: "alice", ClientID: admin.OperatorClientID})
	if err != nil || len(recs) != 1 || recs[0].Method != admin.MethodRevokePerson ||
		!strings.Contains(strings.Join(recs[0].Reasons, "|"), "reason: left the company") {
		t.Fatalf("audit of the revocation: %+v %v", recs, err)
	}
	again := s.humanAgent("claude-code", "alice", "jira:read")
	if ok, why := s.call(again, "jira", "search_issues", search); !ok {
		t.Fatalf("alice signed in again and was refused: %s", why)
	}
}
