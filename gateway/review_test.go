package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	system "github.com/pbac-gateway/pbac/internal/stack"
)

// TestOperatorReviewEndToEnd: issue 17, operator approval, over real HTTP
// on the stack's listeners. A client registers itself without a
// statement; the sign-in page refuses it at once and says an operator can
// approve it, under its client id; the admin API lists it as pending; the
// operator approves it as claude-code; the same client id then gets alice's
// token, calls what a developer agent may and is denied what it may not;
// the operator rejects it; its token's next call is refused (introspection
// inactive), and the authorization endpoint shows the rejection. Both
// reviews are audited with the operator.
func TestOperatorReviewEndToEnd(t *testing.T) {
	s, adminDo := newReviewStack(t)
	listed := func(status string) []string {
		t.Helper()
		code, out := adminDo("GET", "/admin/clients?status="+status, "")
		if code != http.StatusOK {
			t.Fatalf("list %s: %d %v", status, code, out)
		}
		var ids []string
		for _, c := range out["clients"].([]any) {
			ids = append(ids, c.(map[string]any)["client_id"].(string))
		}
		return ids
	}

	ctx := context.Background()
	const redirect = "http://127.0.0.1:45002/callback"
	reg, err := oauthtest.Register(ctx, s.base, map[string]any{
		"client_name": "Claude Code", "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "software_id": "claude-code",
	})
	if err != nil {
		t.Fatal(err)
	}
	id := reg["client_id"].(string)

	page := authorizePage(t, s.base, id, redirect, s.resource)
	for _, w := range []string{`id="awaits-review"`, `Start here → Pending review`, `<code>` + id + `</code>`} {
		if !strings.Contains(page, w) {
			t.Fatalf("the first page lacks %s:\n%s", w, page)
		}
	}
	if _, err := oauthtest.CodeFlow(ctx, s.base, id, redirect, "alice", "demo", s.resource, "jira:read"); err == nil {
		t.Fatal("an unreviewed client got a token")
	}

	if ids := listed("pending"); !slices.Contains(ids, id) {
		t.Fatalf("pending clients %v lack %s", ids, id)
	}
	_, out := adminDo("GET", "/admin/clients?status=pending", "")
	var entry map[string]any
	for _, c := range out["clients"].([]any) {
		if c.(map[string]any)["client_id"] == id {
			entry = c.(map[string]any)
		}
	}
	if entry["claimed_software_id"] != "claude-code" || entry["no_token_yet"] != true || entry["client_name"] != "Claude Code" ||
		!slices.Equal(toStrings(entry["redirect_uris"]), []string{redirect}) {
		t.Fatalf("the pending entry: %v", entry)
	}

	for _, tc := range []struct {
		name, path, body string
		want             int
	}{
		{"an unknown status", "/admin/clients?status=maybe", "", http.StatusBadRequest},
		{"a provider no tier names", "/admin/clients/" + id + "/approve", `{"provider": "no-such-provider"}`, http.StatusUnprocessableEntity},
		{"an approval without a provider", "/admin/clients/" + id + "/approve", `{"comment": "x"}`, http.StatusBadRequest},
		{"a malformed body", "/admin/clients/" + id + "/approve", `{"provider": `, http.StatusBadRequest},
		{"an unknown field", "/admin/clients/" + id + "/reject", `{"why": "x"}`, http.StatusBadRequest},
		{"an unknown client", "/admin/clients/no-such-client/approve", `{"provider": "claude-code"}`, http.StatusNotFound},
	} {
		method := "POST"
		if tc.body == "" {
			method = "GET"
		}
		if code, out := adminDo(method, tc.path, tc.body); code != tc.want {
			t.Fatalf("%s: %d %v; want %d", tc.name, code, out, tc.want)
		}
	}

	code, out := adminDo("POST", "/admin/clients/"+id+"/approve", `{"provider": "claude-code", "comment": "our Claude Code"}`)
	if c, _ := out["client"].(map[string]any); code != http.StatusOK || c["status"] != admin.ClientApproved {
		t.Fatalf("approve: %d %v", code, out)
	}
	if ids := listed("pending"); slices.Contains(ids, id) {
		t.Fatalf("an approved client is still pending: %v", ids)
	}
	if ids := listed("approved"); !slices.Contains(ids, id) {
		t.Fatalf("approved clients %v lack %s", ids, id)
	}

	tok, err := oauthtest.CodeFlow(ctx, s.base, id, redirect, "alice", "demo", s.resource, "jira:read", "gitlab:read")
	if err != nil {
		t.Fatalf("the approved client's code flow: %v", err)
	}
	if ok, why := s.call(tok.AccessToken, "jira", "search_issues", map[string]any{"query": "SEC"}); !ok {
		t.Fatalf("an allowed call of the approved client: %s", why)
	}
	if ok, why := s.call(tok.AccessToken, "gitlab", "merge_merge_request", map[string]any{"project": "platform/api", "iid": 1}); ok {
		t.Fatal("the approved client (a developer agent) merged a merge request")
	} else {
		t.Logf("denied as it should be: %s", why)
	}

	if code, out := adminDo("POST", "/admin/clients/"+id+"/reject", `{"comment": "not ours after all"}`); code != http.StatusOK {
		t.Fatalf("reject: %d %v", code, out)
	}
	if ok, why := s.call(tok.AccessToken, "jira", "search_issues", map[string]any{"query": "SEC"}); ok || !strings.Contains(why, "Unauthorized") {
		t.Fatalf("the rejected client's token still calls (%v, %s)", ok, why)
	}
	_, err = (&oauth2.Config{ClientID: id, Endpoint: oauth2.Endpoint{TokenURL: s.base + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}).
		TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err == nil || !strings.Contains(err.Error(), "access_denied") {
		t.Fatalf("the rejected client's refresh: %v; want access_denied", err)
	}
	if page := authorizePage(t, s.base, id, redirect, s.resource); !strings.Contains(page, "rejected this agent (client id "+id+")") {
		t.Fatalf("authorize for the rejected client:\n%s", page)
	}
	if ids := listed("rejected"); !slices.Contains(ids, id) {
		t.Fatalf("rejected clients %v lack %s", ids, id)
	}

	// Both reviews, however the trail batches them into the index.
	var methods []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		recs, err := s.waitAudit(audit.Filter{ClientID: id, Subject: admin.OperatorAdmin})
		methods = methods[:0]
		for _, r := range recs {
			methods = append(methods, r.Method)
		}
		slices.Sort(methods)
		if err != nil || len(methods) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if !slices.Equal(methods, []string{admin.MethodApproveClient, admin.MethodRejectClient}) {
		t.Fatalf("audit of the reviews: %v", methods)
	}
}

// newReviewStack builds the system with its admin listener and returns
// it with a request to the admin API under the admin token, answering the
// status and the decoded JSON object.
func newReviewStack(t *testing.T) (*stack, func(method, path, body string) (int, map[string]any)) {
	t.Helper()
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
	return s, func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, s.adminURL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
}

// TestOperatorReviewOfAMachineClient: anyone may register a client with
// the client_credentials grant and a secret, calling it "alice's Claude
// Code". The admin API lists its grant types and authentication method
// and says it would act for no person; an approval that does not confirm
// machine use is a 400 saying why and how; confirmed, the client gets a
// machine token of the provider's tier, and the audit record of the
// approval says machine use.
func TestOperatorReviewOfAMachineClient(t *testing.T) {
	s, adminDo := newReviewStack(t)
	ctx := context.Background()
	reg, err := oauthtest.Register(ctx, s.base, map[string]any{"client_name": "alice's Claude Code",
		"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "client_secret_basic"})
	if err != nil {
		t.Fatal(err)
	}
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)

	_, out := adminDo("GET", "/admin/clients?status=pending", "")
	var entry map[string]any
	for _, c := range out["clients"].([]any) {
		if c.(map[string]any)["client_id"] == id {
			entry = c.(map[string]any)
		}
	}
	if entry["acts_for_no_person"] != true || !slices.Equal(toStrings(entry["grant_types"]), []string{"client_credentials"}) ||
		entry["token_endpoint_auth_method"] != "client_secret_basic" {
		t.Fatalf("the pending machine client: %v", entry)
	}

	code, out := adminDo("POST", "/admin/clients/"+id+"/approve", `{"provider": "claude-code"}`)
	if msg, _ := out["error"].(string); code != http.StatusBadRequest || !strings.Contains(msg, "act for no person") || !strings.Contains(msg, `"machine": true`) {
		t.Fatalf("approval without machine use: %d %v; want 400 saying why and how", code, out)
	}
	if _, err := oauthtest.ClientCredentials(ctx, s.base, id, secret, s.resource, "jira:read"); err == nil {
		t.Fatal("a machine client got a token before any approval")
	}

	code, out = adminDo("POST", "/admin/clients/"+id+"/approve", `{"provider": "claude-code", "machine": true, "comment": "our nightly job"}`)
	c, _ := out["client"].(map[string]any)
	if r, _ := c["review"].(map[string]any); code != http.StatusOK || r["machine"] != true {
		t.Fatalf("approval with machine use: %d %v", code, out)
	}
	tok, err := oauthtest.ClientCredentials(ctx, s.base, id, secret, s.resource, "jira:read")
	if err != nil {
		t.Fatalf("the approved machine client's token: %v", err)
	}
	if ok, why := s.call(tok.AccessToken, "jira", "search_issues", map[string]any{"query": "SEC"}); !ok {
		t.Fatalf("the approved machine client's call: %s", why)
	}
	recs, err := s.waitAudit(audit.Filter{ClientID: id, Subject: admin.OperatorAdmin})
	if err != nil || len(recs) != 1 || recs[0].Method != admin.MethodApproveClient || !strings.Contains(strings.Join(recs[0].Reasons, " "), "including machine use") {
		t.Fatalf("audit of the machine approval: %+v %v", recs, err)
	}
}

// authorizePage GETs the authorization endpoint for clientID (PKCE S256)
// and returns the page it answers with, which must be a 403 and no
// redirect.
func authorizePage(t *testing.T, base, clientID, redirect, resource string) string {
	t.Helper()
	cfg := &oauth2.Config{ClientID: clientID, RedirectURL: redirect, Scopes: []string{"jira:read"},
		Endpoint: oauth2.Endpoint{AuthURL: base + "/oauth2/authorize"}}
	u := cfg.AuthCodeURL("state-of-the-test", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", resource))
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
		t.Fatalf("authorize: %d, Location %q; want 403 and a page:\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	return string(body)
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
