package stack_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/internal/stack"
)

// TestASEventsInTheAuditTrail: a client that registers itself, unverified,
// is a registration record; its authorization requests, refused by policy
// before anyone signs in and refused for a redirect URI it did not
// register, are authorization records with the reason and the policy
// version; a policy data change through the admin API is a policy record
// with its author and the versions before and after; the operator's
// revocation of the client is a revocation record; the admin API finds
// each by event=, and refuses a kind it does not know.
func TestASEventsInTheAuditTrail(t *testing.T) {
	cfg := baseConfig(t, t.TempDir())
	cfg.Ephemeral, cfg.Demo.Backends = true, true
	cfg.Admin = &stack.Admin{Listen: "127.0.0.1:0"}
	st, err := stack.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(t.Context()) })
	token, err := os.ReadFile(filepath.Join(st.DataDir(), stack.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}

	const redirect = "http://127.0.0.1:47131/cb"
	raw, _ := json.Marshal(map[string]any{"client_name": "self-registered", "redirect_uris": []string{redirect},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code"}})
	resp, err := http.Post(st.URL()+asrv.PathRegister, "application/json", strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		ClientID string `json:"client_id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || reg.ClientID == "" {
		t.Fatalf("register: %d %+v", resp.StatusCode, reg)
	}
	authorize := func(redirectURI string) int {
		t.Helper()
		q := url.Values{"response_type": {"code"}, "client_id": {reg.ClientID}, "redirect_uri": {redirectURI}, "state": {"state-of-the-test"},
			"scope": {"jira:read"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
			"code_challenge_method": {"S256"}, "resource": {st.URL() + "/mcp"}}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(st.URL() + asrv.PathAuthorize + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := authorize(redirect); status != http.StatusForbidden {
		t.Fatalf("authorize as an unverified client: %d, want 403 (policy refuses it whoever signs in)", status)
	}
	if status := authorize("http://127.0.0.1:47131/elsewhere"); status != http.StatusBadRequest {
		t.Fatalf("authorize to an unregistered redirect URI: %d, want 400", status)
	}

	query := func(q string) (int, []audit.Record, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, st.AdminURL()+"/admin/audit?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Records []audit.Record `json:"records"`
			Error   string         `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Records, out.Error
	}
	// The trail writes to the index on its own goroutine: wait for both
	// refusals.
	var refused []audit.Record
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, refused, _ = query("event=authorization&decision=deny&client_id=" + url.QueryEscape(reg.ClientID))
		if len(refused) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(refused) != 2 {
		t.Fatalf("authorization refusals in the trail: %+v, want 2", refused)
	}
	// Newest first: the redirect URI, then policy's refusal.
	for i, reason := range []string{"invalid_request: ", "access_denied: "} {
		r := refused[i]
		if r.Event != audit.EventAuthorization || r.Method != "oauth/authorize" || len(r.Reasons) != 1 || !strings.HasPrefix(r.Reasons[0], reason) {
			t.Errorf("refusal %d: %+v, want a reason starting %q", i, r, reason)
		}
	}
	if !strings.Contains(refused[0].Reasons[0], "redirect") {
		t.Errorf("the redirect URI's refusal does not say so: %q", refused[0].Reasons[0])
	}
	if refused[1].PolicyVersion == "" || refused[1].Tier == "" {
		t.Errorf("policy's refusal without its policy version or tier: %+v", refused[1])
	}

	status, regs, _ := query("event=registration&client_id=" + url.QueryEscape(reg.ClientID))
	if status != http.StatusOK || len(regs) != 1 || regs[0].Decision != audit.DecisionAllow || regs[0].Method != "oauth/register" ||
		regs[0].Attestation != "" || len(regs[0].Reasons) != 1 || !strings.Contains(regs[0].Reasons[0], "unverified") {
		t.Errorf("registration in the trail: %d %+v", status, regs)
	}
	// A decision query does not see them.
	if _, recs, _ := query("event=decision&client_id=" + url.QueryEscape(reg.ClientID)); len(recs) != 0 {
		t.Errorf("event=decision found the AS's records: %+v", recs)
	}
	// A policy data change through the admin API: who, from which version
	// to which.
	before, _ := st.Registry().Active()
	active, _ := st.Registry().ActiveBundle()
	var data map[string]any
	if err := json.Unmarshal(active.Data, &data); err != nil {
		t.Fatal(err)
	}
	data["agents"].(map[string]any)["cimd_providers"] = map[string]any{"https://agent.example/client.json": "claude-code"}
	body, _ := json.Marshal(data)
	req, _ := http.NewRequest(http.MethodPut, st.AdminURL()+"/admin/policy/data", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /admin/policy/data: %d", resp.StatusCode)
	}
	after, _ := st.Registry().Active()
	var changes []audit.Record
	for deadline := time.Now().Add(10 * time.Second); len(changes) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, changes, _ = query("event=policy")
	}
	if len(changes) != 1 || changes[0].Method != "policy/data_updated" || changes[0].Subject != "admin token" ||
		changes[0].PolicyVersion != after.Version || len(changes[0].Reasons) != 1 ||
		!strings.Contains(changes[0].Reasons[0], "(before: "+before.Version+")") || !strings.Contains(changes[0].Reasons[0], "admin data update") {
		t.Errorf("the data change in the trail: %+v, want one from %s to %s by the admin token", changes, before.Version, after.Version)
	}

	// The operator revokes the client: a revocation record, by the admin.
	req, _ = http.NewRequest(http.MethodDelete, st.AdminURL()+"/admin/clients/"+reg.ClientID, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /admin/clients/%s: %d", reg.ClientID, resp.StatusCode)
	}
	var revoked []audit.Record
	for deadline := time.Now().Add(10 * time.Second); len(revoked) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, revoked, _ = query("event=revocation&client_id=" + url.QueryEscape(reg.ClientID))
	}
	if len(revoked) != 1 || revoked[0].Method != "admin/revoke-client" || revoked[0].Subject != "admin" {
		t.Errorf("the client's revocation in the trail: %+v", revoked)
	}

	if status, _, msg := query("event=tool_call"); status != http.StatusBadRequest || !strings.Contains(msg, "event must be one of decision, sign_in") {
		t.Errorf("an unknown kind: %d %q, want 400 naming the kinds", status, msg)
	}
}
