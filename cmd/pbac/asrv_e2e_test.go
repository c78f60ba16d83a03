package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// upAgent finds a demo agent's credentials in pbac up's output.
func upAgent(t *testing.T, out, name string) (id, secret string) {
	t.Helper()
	m := regexp.MustCompile(name + `\s+\S+\s+client_id=(\S+)(?: client_secret=(\S+))?`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s in the output", name)
	}
	return m[1], m[2]
}

// gatewayInitialize opens an MCP session at the gateway's backend with
// token and returns the HTTP status: 200 when the token is accepted, 401
// when not.
func gatewayInitialize(t *testing.T, base, backend, token string) int {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp/"+backend, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// exchangeAt runs an RFC 8693 exchange at the binary for a public actor.
func exchangeAt(t *testing.T, base, actor, subject, audience, scope string) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(base+asrv.PathToken, url.Values{"grant_type": {asrv.GrantTypeExchange}, "client_id": {actor},
		"subject_token": {subject}, "subject_token_type": {asrv.TokenTypeAccess}, "audience": {audience}, "scope": {scope}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestUpDelegationLifecycle: against the real `pbac up`, a sub-agent's
// delegated token stops working at the gateway as soon as the planner's
// token it came from is revoked; and a single-use token is exchanged once
// only, for a token that itself works once.
func TestUpDelegationLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dataDir := t.TempDir()
	base, out := startUp(t, dataDir)
	ctx := t.Context()
	resource := base + "/mcp"
	plannerID, _ := upAgent(t, out.String(), "autonomous-planner")
	subID, _ := upAgent(t, out.String(), "claude-code")

	t.Run("revoking the parent token ends the delegated one", func(t *testing.T) {
		tok, err := oauthtest.CodeFlow(ctx, base, plannerID, "http://127.0.0.1:48001/callback", "alice", "demo", resource, "jira:read")
		if err != nil {
			t.Fatal(err)
		}
		status, ex := exchangeAt(t, base, plannerID, tok.AccessToken, subID, "jira:read")
		if status != http.StatusOK {
			t.Fatalf("exchange: %d %v", status, ex)
		}
		sub := ex["access_token"].(string)
		if got := gatewayInitialize(t, base, "jira", sub); got != http.StatusOK {
			t.Fatalf("the delegated token before the revocation: %d", got)
		}
		resp, err := http.PostForm(base+asrv.PathRevoke, url.Values{"token": {tok.AccessToken}, "client_id": {plannerID}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke: %d", resp.StatusCode)
		}
		if got := gatewayInitialize(t, base, "jira", sub); got != http.StatusUnauthorized {
			t.Fatalf("the delegated token after its parent was revoked: %d, want 401", got)
		}
	})

	t.Run("a single-use token is exchanged once, for a single-use token", func(t *testing.T) {
		bin, _ := buildBinary()
		jws, err := exec.Command(bin, "statement", "sign", "--data-dir", dataDir, "--audience", base, "--provider", "claude-code", "--single-use").Output()
		if err != nil {
			t.Fatalf("pbac statement sign: %v", err)
		}
		redirect := "http://127.0.0.1:48002/callback"
		reg, err := oauthtest.Register(ctx, base, map[string]any{"client_name": "single-use agent", "redirect_uris": []string{redirect},
			"grant_types":                []string{"authorization_code", "refresh_token", asrv.GrantTypeExchange},
			"token_endpoint_auth_method": "none", "software_statement": strings.TrimSpace(string(jws))})
		if err != nil {
			t.Fatal(err)
		}
		id := reg["client_id"].(string)
		tok, err := oauthtest.CodeFlow(ctx, base, id, redirect, "alice", "demo", resource, "jira:read")
		if err != nil {
			t.Fatal(err)
		}
		status, ex := exchangeAt(t, base, id, tok.AccessToken, subID, "jira:read")
		if status != http.StatusOK {
			t.Fatalf("exchange: %d %v", status, ex)
		}
		if status, again := exchangeAt(t, base, id, tok.AccessToken, subID, "jira:read"); status != http.StatusBadRequest {
			t.Fatalf("second exchange of a single-use token: %d %v, want 400", status, again)
		}
		if got := gatewayInitialize(t, base, "jira", tok.AccessToken); got != http.StatusUnauthorized {
			t.Fatalf("the single-use subject after its exchange: %d, want 401", got)
		}
		sub := ex["access_token"].(string)
		if got := gatewayInitialize(t, base, "jira", sub); got != http.StatusOK {
			t.Fatalf("the derived token's first use: %d", got)
		}
		if got := gatewayInitialize(t, base, "jira", sub); got != http.StatusUnauthorized {
			t.Fatalf("the derived token's second use: %d, want 401 (single-use)", got)
		}
	})
}

var csrfFieldE2E = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// TestUpSignInThrottled: against the real `pbac up`, the password
// guessing. After 5 wrong passwords for alice on the authorization
// server's sign-in page it answers 429 with Retry-After (for the right
// password too), and so does the dashboard's sign-in for alice: one guard
// for both. Bob, from the same address, still signs in. A forged
// double-submitted CSRF pair (cookie x, field x) is refused.
func TestUpSignInThrottled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dataDir := t.TempDir()
	base, out := startUp(t, dataDir)
	clientID, _ := upAgent(t, out.String(), "claude-code")
	authURL := base + asrv.PathAuthorize + "?" + url.Values{"response_type": {"code"}, "client_id": {clientID},
		"redirect_uri": {"http://127.0.0.1:48003/callback"}, "state": {"state-12345678"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}, "resource": {base + "/mcp"}}.Encode()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page := func(resp *http.Response) (int, string) {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrfFieldE2E.FindSubmatch(body)
		if m == nil {
			t.Fatalf("%d without a sign-in form:\n%s", resp.StatusCode, body)
		}
		return resp.StatusCode, string(m[1])
	}
	resp, err := browser.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	_, token := page(resp)
	var got []int
	for i := range 7 {
		pw := "guess"
		if i == 6 {
			pw = "demo"
		}
		resp, err := browser.PostForm(authURL, url.Values{"username": {"alice"}, "password": {pw}, "csrf_token": {token}, "decision": {"approve"}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
		var status int
		status, token = page(resp)
		got = append(got, status)
	}
	if want := []int{401, 401, 401, 401, 401, 429, 429}; !slices.Equal(got, want) {
		t.Fatalf("sign-in answers %v, want %v", got, want)
	}

	m := dashboardLine.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no dashboard in the output:\n%s", out)
	}
	djar, _ := cookiejar.New(nil)
	d := &dashboardClient{t: t, base: m[1], http: &http.Client{Jar: djar}}
	d.loadSignInForm()
	if status, body := d.do("POST", "/ui/api/session", map[string]string{"username": "alice", "password": "demo"}); status != http.StatusTooManyRequests {
		t.Fatalf("the dashboard's sign-in for alice after the AS page's failures: %d %s, want 429", status, body)
	}
	signInDashboard(t, out.String(), "bob")

	forged := &http.Client{CheckRedirect: browser.CheckRedirect}
	req, _ := http.NewRequest(http.MethodPost, authURL, strings.NewReader(url.Values{"username": {"bob"}, "password": {"demo"},
		"csrf_token": {"x"}, "decision": {"approve"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "pbac_authz_csrf", Value: "x"})
	resp, err = forged.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
		t.Fatalf("a double-submitted made-up CSRF pair: %d %q, want 403 and no code", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Every attempt is in the audit trail: alice's five failures and two
	// throttled attempts on the AS's page, her throttled attempt and bob's
	// success on the dashboard.
	adminBase := adminLine.FindStringSubmatch(out.String())
	adminToken, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if adminBase == nil || err != nil {
		t.Fatalf("no admin API: %v", err)
	}
	want := map[string]int{
		"alice sign-in/authorize deny 401": 5, "alice sign-in/authorize deny 429": 2,
		"alice sign-in/dashboard deny 429": 1, "bob sign-in/dashboard allow 200": 1,
	}
	var seen map[string]int
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, body := rawHTTP(t, http.DefaultClient, "GET", adminBase[1]+"/admin/audit?limit=100&client_id="+url.QueryEscape("(sign-in)"), "",
			map[string]string{"Authorization": "Bearer " + strings.TrimSpace(string(adminToken))})
		var res struct {
			Records []struct {
				Subject  string `json:"sub"`
				Method   string `json:"method"`
				Decision string `json:"decision"`
				Status   int    `json:"status"`
				Remote   string `json:"remote"`
			} `json:"records"`
		}
		if err := json.Unmarshal([]byte(body), &res); err != nil {
			t.Fatalf("the audit trail: %v: %s", err, body)
		}
		seen = map[string]int{}
		for _, r := range res.Records {
			if r.Remote != "127.0.0.1" {
				t.Fatalf("a sign-in record without the client's address: %+v", r)
			}
			seen[fmt.Sprintf("%s %s %s %d", r.Subject, r.Method, r.Decision, r.Status)]++
		}
		if maps.Equal(seen, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sign-in attempts in the audit trail: %v, want %v", seen, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUpRegistrationLimits: against the real `pbac up` with the
// asrv.registration settings of its config file, one address gets its
// burst of registrations, then 429 with Retry-After; and unverified
// registrations stop at their cap with 503 (the cap one address may hold
// raised to the whole cap, so that one address reaches it).
func TestUpRegistrationLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	conf := filepath.Join(t.TempDir(), "pbac.yaml")
	if err := os.WriteFile(conf, []byte("asrv:\n  registration:\n    per_address: 4\n    per_address_interval: 1h\n    max_unverified: 2\n    max_unverified_per_address: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, _ := startUp(t, t.TempDir(), "--config", conf)
	register := func() (int, string) {
		resp, err := http.Post(base+asrv.PathRegister, "application/json",
			strings.NewReader(`{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	var got []int
	for range 5 {
		status, wait := register()
		if status/100 != 2 && wait == "" {
			t.Fatalf("%d without Retry-After", status)
		}
		got = append(got, status)
	}
	if want := []int{201, 201, 503, 503, 429}; !slices.Equal(got, want) {
		t.Fatalf("registrations answered %v, want %v (2 unverified at most, 4 attempts per address)", got, want)
	}
}

// TestUpStatementRevocation: against the real `pbac up`, statements from
// `pbac statement sign` are for one authorization server and revocable: a
// statement whose id (from `pbac statement inspect`) the config file's
// asrv.statements.revoked_ids lists no longer registers, another one from
// the same key does, and one for another authorization server does not.
func TestUpStatementRevocation(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dataDir, addr := t.TempDir(), freeAddr(t)
	base := "http://" + addr
	bin, _ := buildBinary()
	sign := func(audience string) string {
		out, err := exec.Command(bin, "statement", "sign", "--data-dir", dataDir, "--audience", audience, "--provider", "ci-bot", "--ttl", "1h").Output()
		if err != nil {
			t.Fatalf("pbac statement sign: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	revoked, kept, elsewhere := sign(base), sign(base), sign("https://other-as.example")
	inspect := exec.Command(bin, "statement", "inspect", "-")
	inspect.Stdin = strings.NewReader(revoked)
	raw, err := inspect.Output()
	if err != nil {
		t.Fatalf("pbac statement inspect: %v", err)
	}
	var shown struct{ Claims struct{ Jti string } }
	if err := json.Unmarshal(raw, &shown); err != nil || shown.Claims.Jti == "" {
		t.Fatalf("inspect: %v %s", err, raw)
	}
	conf := filepath.Join(t.TempDir(), "pbac.yaml")
	if err := os.WriteFile(conf, []byte("asrv:\n  statements:\n    revoked_ids: ["+shown.Claims.Jti+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startUp(t, dataDir, "--listen", addr, "--config", conf)
	for _, tc := range []struct {
		name, jws, wantError string
	}{
		{"revoked", revoked, "unapproved_software_statement"},
		{"for another authorization server", elsewhere, "invalid_software_statement"},
		{"another statement of the same key", kept, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := oauthtest.Register(t.Context(), base, map[string]any{"client_name": "ci", "grant_types": []string{"client_credentials"},
				"token_endpoint_auth_method": "client_secret_basic", "software_statement": tc.jws})
			if tc.wantError == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || out["error"] != tc.wantError {
				t.Fatalf("registration: %v %v, want %s", err, out, tc.wantError)
			}
		})
	}
}
