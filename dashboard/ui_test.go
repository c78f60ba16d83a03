package dashboard

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store/badger"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/identity/usersfile"
	"github.com/pbac-gateway/pbac/internal/logtest"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
)

const testAdminToken = "test-admin-token-0123456789"

// dash is a dashboard on the shipped policy and the demo users, without an
// authorization server's clients (those run in the end-to-end tests).
type dash struct {
	t    *testing.T
	srv  *httptest.Server
	http *http.Client
	csrf string
}

// newDash is the dashboard of a loopback listener: in the demo tenant its
// users operate the demo.
func newDash(t *testing.T, demoTenant bool) *dash {
	t.Helper()
	return newDashWith(t, demoTenant, func(c *Config) { c.DemoOperators = demoTenant })
}

func newDashWith(t *testing.T, demoTenant bool, adjust func(*Config)) *dash {
	t.Helper()
	cfg := Config{
		GatewayURL: "http://127.0.0.1:9", Issuer: "http://127.0.0.1:9", Backends: []string{"drive", "jira"},
		Registry: policytest.Registry(t), Users: asrv.DemoUsers{}, AdminToken: testAdminToken,
		Latency: func() gateway.LatencyReport { return gateway.LatencyReport{Window: 1024} },
	}
	if demoTenant {
		cfg.Demo = &Demo{Users: asrv.DemoUsers{}.List(), Password: asrv.DemoPassword}
	}
	adjust(&cfg)
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return serveDash(t, h)
}

// serveDash serves h and is a browser on it.
func serveDash(t *testing.T, h *Handler) *dash {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return &dash{t: t, srv: srv, http: &http.Client{Jar: jar}}
}

// do sends a request; body may be nil, a string or a value to encode.
func (d *dash) do(method, path string, body any, hdr ...string) (int, map[string]any) {
	d.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, d.srv.URL+path, r)
	if d.csrf != "" {
		req.Header.Set(csrfHeader, d.csrf)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := d.http.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out); err != nil {
			d.t.Fatalf("%s %s: not JSON: %s", method, path, raw)
		}
	}
	return resp.StatusCode, out
}

// signInForm loads a sign-in form: its token goes in the CSRF header of the
// next request.
func (d *dash) signInForm() {
	d.t.Helper()
	d.csrf = ""
	status, out := d.do("GET", "/ui/api/session/form", nil)
	if status != 200 || out["csrf"] == "" {
		d.t.Fatalf("sign-in form: %d %v", status, out)
	}
	d.csrf = out["csrf"].(string)
}

// postSignIn loads a sign-in form and posts body with its token.
func (d *dash) postSignIn(body any) (int, map[string]any) {
	d.t.Helper()
	d.signInForm()
	return d.do("POST", "/ui/api/session", body)
}

func (d *dash) signIn(user string) {
	d.t.Helper()
	d.signInAs(user, asrv.DemoPassword)
}

func (d *dash) signInAs(user, password string) {
	d.t.Helper()
	status, out := d.postSignIn(map[string]string{"username": user, "password": password})
	if status != 200 {
		d.t.Fatalf("sign in as %s: %d %v", user, status, out)
	}
	d.csrf = out["csrf"].(string)
}

func TestSignInAndSession(t *testing.T) {
	d := newDash(t, true)
	for _, tc := range []struct {
		name   string
		body   any
		status int
	}{
		{"wrong password", map[string]string{"username": "alice", "password": "nope"}, 401},
		{"unknown user", map[string]string{"username": "mallory", "password": "demo"}, 401},
		{"wrong admin token", map[string]string{"admin_token": "x"}, 401},
		{"empty", map[string]string{}, 400},
		{"not JSON", "username=alice", 400},
		{"unknown field", map[string]string{"username": "alice", "password": "demo", "role": "admin"}, 400},
		{"two objects", `{"username":"alice","password":"demo"}{}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, out := d.postSignIn(tc.body); status != tc.status || out["error"] == "" {
				t.Fatalf("got %d %v, want %d with an error", status, out, tc.status)
			}
		})
	}
	if status, _ := d.do("GET", "/ui/api/session", nil); status != 401 {
		t.Fatalf("session before sign-in: %d", status)
	}
	d.csrf = ""
	d.signIn("bob")
	status, out := d.do("GET", "/ui/api/session", nil)
	if status != 200 || out["user"].(map[string]any)["sub"] != "bob" || out["operator"] != true {
		t.Fatalf("session: %d %v", status, out)
	}
	if status, _ := d.do("DELETE", "/ui/api/session", nil); status != 204 {
		t.Fatalf("sign out: %d", status)
	}
	if status, _ := d.do("GET", "/ui/api/matrix", nil); status != 401 {
		t.Fatalf("after sign-out: %d", status)
	}
}

func TestCSRFAndOperator(t *testing.T) {
	d := newDash(t, false) // outside the demo tenant users are not operators
	d.signIn("alice")
	csrf := d.csrf
	d.csrf = ""
	if status, out := d.do("POST", "/ui/api/policy/rollback", nil); status != 403 || !strings.Contains(out["error"].(string), csrfHeader) {
		t.Fatalf("change without CSRF header: %d %v", status, out)
	}
	d.csrf = "wrong"
	if status, _ := d.do("POST", "/ui/api/policy/rollback", nil); status != 403 {
		t.Fatalf("change with a wrong CSRF header: %d", status)
	}
	d.csrf = csrf
	if status, out := d.do("PUT", "/ui/api/policy/data", "{}"); status != 403 || !strings.Contains(out["error"].(string), "operator") {
		t.Fatalf("a user changes policy outside the demo: %d %v", status, out)
	}
	// The admin token makes an operator.
	status, out := d.postSignIn(map[string]string{"admin_token": testAdminToken})
	if status != 200 || out["operator"] != true || out["user"] != nil {
		t.Fatalf("operator sign-in: %d %v", status, out)
	}
	d.csrf = out["csrf"].(string)
	if status, out := d.do("POST", "/ui/api/policy/rollback", nil); status != 409 {
		t.Fatalf("rollback with one version: %d %v", status, out)
	}
}

func TestStaticAndHeaders(t *testing.T) {
	d := newDash(t, true)
	resp, err := http.Get(d.srv.URL + "/ui/robots.txt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") ||
		resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("static: %d %v", resp.StatusCode, resp.Header)
	}
	if status, out := d.do("POST", "/ui/robots.txt", nil); status != 405 || out["error"] == nil {
		t.Fatalf("POST a page: %d %v", status, out)
	}
	if status, out := d.do("GET", "/ui/api/nope", nil); status != 404 || out["error"] == nil {
		t.Fatalf("unknown endpoint: %d %v", status, out)
	}
	status, out := d.do("GET", "/ui/api/config", nil)
	if status != 200 || out["demo"] != true || out["mcp_url"] != "http://127.0.0.1:9/mcp" || len(out["users"].([]any)) != 3 {
		t.Fatalf("config: %d %v", status, out)
	}
}

// cellLabels flattens a matrix to provider -> resource -> label.
func cellLabels(t *testing.T, m map[string]any) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, r := range m["rows"].([]any) {
		row := r.(map[string]any)
		cells := map[string]string{}
		for res, c := range row["cells"].(map[string]any) {
			cells[res] = c.(map[string]any)["label"].(string)
		}
		out[row["provider"].(string)] = cells
	}
	return out
}

// cellReason is the matrix's reason for denying provider access on
// resource ("" when it is allowed).
func cellReason(t *testing.T, m map[string]any, provider, resource, access string) string {
	t.Helper()
	for _, r := range m["rows"].([]any) {
		row := r.(map[string]any)
		if row["provider"] != provider {
			continue
		}
		cell := row["cells"].(map[string]any)[resource].(map[string]any)
		for _, a := range cell["allowed"].([]any) {
			if a == access {
				return ""
			}
		}
		why, ok := cell["reasons"].(map[string]any)[access].(string)
		if !ok {
			t.Fatalf("%s %s:%s is neither allowed nor denied with a reason: %v", provider, resource, access, cell)
		}
		return why
	}
	t.Fatalf("no matrix row for %s", provider)
	return ""
}

// TestMatrixIsTheSeedMatrix: evaluating the shipped policy gives DESIGN.md's
// seed trust-tier matrix, for an agent acting for alice and acting alone.
func TestMatrixIsTheSeedMatrix(t *testing.T) {
	d := newDash(t, true)
	d.signIn("alice")
	want := map[string][4]string{ // drive, jira, slack, ddl
		"claude-code":         {"r/w", "r/w", "r/w", "denied"},
		"ci-bot":              {"read", "r/w", "denied", "denied"},
		"security-scanner":    {"read", "read", "denied", "denied"},
		"claude-code-trusted": {"r/w", "r/w", "r/w", "denied"},
	}
	for _, user := range []string{"alice", ""} {
		status, m := d.do("GET", "/ui/api/matrix?user="+user, nil)
		if status != 200 {
			t.Fatalf("matrix: %d %v", status, m)
		}
		labels := cellLabels(t, m)
		rows := m["rows"].([]any)
		for _, r := range rows {
			row := r.(map[string]any)
			w, ok := want[row["provider"].(string)]
			if !ok {
				continue
			}
			db := row["cells"].(map[string]any)["database"].(map[string]any)
			ddl := "denied"
			for _, a := range db["allowed"].([]any) {
				if a == "ddl" {
					ddl = "allowed"
				}
			}
			got := [4]string{labels[row["provider"].(string)]["drive"], labels[row["provider"].(string)]["jira"],
				labels[row["provider"].(string)]["slack"], ddl}
			if got != w {
				t.Errorf("user %q, %s: got %v, want %v", user, row["provider"], got, w)
			}
		}
		// What waits for a person's approval is denied here, with that
		// reason; the planner deploys without asking.
		for _, held := range []struct{ provider, resource, access string }{
			{"claude-code", "database", "ddl"}, {"ci-bot", "jenkins", "deploy"},
		} {
			if why := cellReason(t, m, held.provider, held.resource, held.access); !strings.HasPrefix(why, "approval required: ") {
				t.Errorf("user %q, %s %s:%s: reason %q, want an approval required", user, held.provider, held.resource, held.access, why)
			}
		}
		if why := cellReason(t, m, "claude-code-trusted", "jenkins", "deploy"); why != "" {
			t.Errorf("user %q: the planner's deploy is denied: %q", user, why)
		}
		if len(labels[unverifiedRow]) == 0 || labels[unverifiedRow]["drive"] != "denied" {
			t.Errorf("the unverified row: %v", labels[unverifiedRow])
		}
	}
	// The user's role narrows the tier: carol (contractor) reads Drive only
	// under /public and has no Slack.
	_, m := d.do("GET", "/ui/api/matrix?user=carol", nil)
	labels := cellLabels(t, m)
	if labels["claude-code"]["drive"] != "read" || labels["claude-code"]["slack"] != "denied" || labels["claude-code"]["jira"] != "r/w" {
		t.Fatalf("carol's matrix: %v", labels["claude-code"])
	}
	if status, _ := d.do("GET", "/ui/api/matrix?user=mallory", nil); status != 400 {
		t.Fatalf("unknown user: %d", status)
	}
}

// TestDataChangeChangesTheMatrix: moving a provider to another tier in the
// policy data changes the matrix on the next read; a bad change is refused
// and the active version stays.
func TestDataChangeChangesTheMatrix(t *testing.T) {
	d := newDash(t, true)
	d.signIn("alice")
	_, pol := d.do("GET", "/ui/api/policy", nil)
	before := pol["active"].(map[string]any)["version"].(string)
	data := pol["data"].(map[string]any)
	tiers := data["agents"].(map[string]any)["trust_tiers"].(map[string]any)
	tiers["read_only"] = append(tiers["read_only"].([]any), "ci-bot")
	tiers["ci_agent"] = []any{}
	status, info := d.do("PUT", "/ui/api/policy/data", data)
	if status != 200 || info["version"] == before {
		t.Fatalf("set data: %d %v", status, info)
	}
	_, m := d.do("GET", "/ui/api/matrix?user=alice", nil)
	if got := cellLabels(t, m)["ci-bot"]["jira"]; got != "read" {
		t.Fatalf("ci-bot in read_only still has jira %q", got)
	}
	_, pol = d.do("GET", "/ui/api/policy", nil)
	if pol["can_rollback"] != true {
		t.Fatalf("can_rollback after a change: %v", pol["can_rollback"])
	}

	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"not JSON", "{", 400},
		{"not an object", "[1,2]", 400},
		{"drops keys", `{"catalogue": {}}`, 422},
		{"changes a kind", strings.Replace(string(mustJSON(data)), `"catalogue":{`, `"catalogue":[],"x":{`, 1), 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, out := d.do("PUT", "/ui/api/policy/data", tc.body); status != tc.status || out["error"] == nil {
				t.Fatalf("got %d %v, want %d", status, out, tc.status)
			}
		})
	}
	if _, pol := d.do("GET", "/ui/api/policy", nil); pol["active"].(map[string]any)["version"] != info["version"] {
		t.Fatalf("a refused change replaced the active version: %v, want %v", pol["active"], info["version"])
	}
	// Shadow, then stop it.
	if status, out := d.do("PUT", "/ui/api/policy/data?shadow=true", data); status != 200 {
		t.Fatalf("shadow: %d %v", status, out)
	}
	if status, out := d.do("DELETE", "/ui/api/policy/shadow", nil); status != 200 {
		t.Fatalf("clear shadow: %d %v", status, out)
	}
	if status, _ := d.do("DELETE", "/ui/api/policy/shadow", nil); status != 404 {
		t.Fatalf("clear a missing shadow: %d", status)
	}
	if status, out := d.do("POST", "/ui/api/policy/rollback", nil); status != 200 || out["version"] != before {
		t.Fatalf("rollback: %d %v", status, out)
	}
	if status, out := d.do("POST", "/ui/api/policy/bundles", "not a tarball"); status != 400 {
		t.Fatalf("bad bundle: %d %v", status, out)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestScenariosOutsideTheDemo: outside the demo tenant the narrative demo
// and the agents are a 503, and the server's log names each such request.
func TestScenariosOutsideTheDemo(t *testing.T) {
	var logged logtest.Buffer
	d := newDashWith(t, false, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logged, nil)) })
	d.signIn("alice")
	if status, out := d.do("GET", "/ui/api/scenarios", nil); status != 200 || len(out["scenarios"].([]any)) != 0 {
		t.Fatalf("scenarios: %d %v", status, out)
	}
	if status, _ := d.do("POST", "/ui/api/scenarios/live-test/run", "{}"); status != 503 {
		t.Fatalf("run outside the demo: %d", status)
	}
	if status, _ := d.do("GET", "/ui/api/agents", nil); status != 503 {
		t.Fatalf("agents without an authorization server: %d", status)
	}
	if status, out := d.do("GET", "/ui/api/latency", nil); status != 200 || out["window"] != float64(1024) {
		t.Fatalf("latency: %d %v", status, out)
	}
	log := logged.String()
	for _, want := range []string{"method=POST path=/ui/api/scenarios/live-test/run status=503", "method=GET path=/ui/api/agents status=503",
		`msg="dashboard: the agents could not be listed"`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "/ui/api/latency") || strings.Contains(log, "/ui/api/scenarios ") {
		t.Errorf("the log names a request that did not fail:\n%s", log)
	}
}

func TestLabel(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, "denied"},
		{[]string{"read"}, "read"},
		{[]string{"read", "write"}, "r/w"},
		{[]string{"read", "write", "approve", "merge"}, "r/w + approve, merge"},
		{[]string{"read", "build"}, "read, build"},
	} {
		if got := label(tc.in); got != tc.want {
			t.Errorf("label(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestDemoUsersOperateOnlyOnLoopback: the demo tenant's users operate the
// demo (policy data, the scenarios that change it) only when the dashboard
// is on a loopback listener (DemoOperators); elsewhere only the admin token
// operates, even in the demo tenant.
func TestDemoUsersOperateOnlyOnLoopback(t *testing.T) {
	local := newDash(t, true)
	local.signIn("alice")
	if status, out := local.do("GET", "/ui/api/session", nil); status != 200 || out["operator"] != true {
		t.Fatalf("a demo user on a loopback listener: %d %v", status, out)
	}

	remote := newDashWith(t, true, func(c *Config) {
		c.DemoOperators = false
		c.Demo.Runner = &demo.Runner{}
	})
	remote.signIn("alice")
	if status, out := remote.do("GET", "/ui/api/session", nil); status != 200 || out["operator"] != false {
		t.Fatalf("a demo user on a listener others reach: %d %v", status, out)
	}
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/ui/api/policy/data", "{}"},
		{"POST", "/ui/api/policy/rollback", ""},
		{"DELETE", "/ui/api/policy/shadow", ""},
		{"POST", "/ui/api/scenarios/broad-scope/run", "{}"},
	} {
		status, out := remote.do(tc.method, tc.path, tc.body)
		if status != 403 || !strings.Contains(out["error"].(string), "operator") {
			t.Errorf("%s %s by a demo user: %d %v", tc.method, tc.path, status, out)
		}
	}
}

// TestMatrixRolesFromGroups: a person of a users file has no role of their
// own; the matrix evaluates them with their groups, which the shipped
// data's identity.group_roles maps to roles — the contractor group's role
// constraint included — and a group the data does not name gives nothing.
func TestMatrixRolesFromGroups(t *testing.T) {
	users := usersFileUsers(t, map[string][]string{"dana": {"contractor"}, "erin": {"engineering"}, "frank": {"visitors"}})
	d := newDashWith(t, false, func(c *Config) { c.Users = users })
	d.signInAs("dana", filePassword)
	_, out := d.do("GET", "/ui/api/session", nil)
	if u := out["user"].(map[string]any); u["sub"] != "dana" || fmt.Sprint(u["groups"]) != "[contractor]" || len(u["roles"].([]any)) != 0 {
		t.Fatalf("dana's session: %v", out)
	}
	// Another person's matrix is an operator's to see (TestWhoSeesWhat).
	if status, out := d.postSignIn(map[string]string{"admin_token": testAdminToken}); status != 200 {
		t.Fatalf("operator sign-in: %d %v", status, out)
	}
	for _, tc := range []struct {
		user                     string
		drive, jira, slack, note string
	}{
		{"dana", "read", "r/w", "denied", "only path under /public"},
		{"erin", "r/w", "r/w", "r/w", ""},
		{"frank", "denied", "denied", "denied", ""},
	} {
		status, m := d.do("GET", "/ui/api/matrix?user="+tc.user, nil)
		if status != 200 {
			t.Fatalf("%s's matrix: %d %v", tc.user, status, m)
		}
		labels := cellLabels(t, m)["claude-code"]
		if labels["drive"] != tc.drive || labels["jira"] != tc.jira || labels["slack"] != tc.slack {
			t.Errorf("%s (claude-code): drive %q jira %q slack %q, want %q %q %q", tc.user,
				labels["drive"], labels["jira"], labels["slack"], tc.drive, tc.jira, tc.slack)
		}
		for _, r := range m["rows"].([]any) {
			row := r.(map[string]any)
			if row["provider"] != "claude-code" {
				continue
			}
			if note, _ := row["cells"].(map[string]any)["drive"].(map[string]any)["note"].(string); note != tc.note {
				t.Errorf("%s's drive note %q, want %q", tc.user, note, tc.note)
			}
		}
	}
}

// filePassword is the password of the people of usersFileUsers.
const filePassword = "correct horse battery staple"

// usersFileUsers writes a users file of people (name -> groups) and opens
// it as a user source.
func usersFileUsers(t *testing.T, people map[string][]string) asrv.UserSource {
	t.Helper()
	return newUsersFile(t, people).users
}

// usersFile is a users file the test rewrites, and the user source that
// reads it, seeing each rewrite at its next use.
type usersFile struct {
	t     *testing.T
	path  string
	users asrv.UserSource
}

func newUsersFile(t *testing.T, people map[string][]string) *usersFile {
	t.Helper()
	f := &usersFile{t: t, path: filepath.Join(t.TempDir(), "users.yaml")}
	f.write(people)
	src, err := usersfile.Open(f.path, usersfile.Options{CheckEvery: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	f.users = asrv.PasswordUsers(src)
	return f
}

// write replaces the file with one of people (name -> groups), each with
// filePassword, as an administrator's edit would (a new file renamed over
// the old one).
func (f *usersFile) write(people map[string][]string) {
	f.t.Helper()
	next := filepath.Join(f.t.TempDir(), "users.yaml")
	cheap := usersfile.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	for name, groups := range people {
		e, err := usersfile.NewEntry(name, groups, []byte(filePassword), cheap)
		if err != nil {
			f.t.Fatal(err)
		}
		if err := usersfile.Append(next, e); err != nil {
			f.t.Fatal(err)
		}
	}
	if err := os.Rename(next, f.path); err != nil {
		f.t.Fatal(err)
	}
}

// TestRevokePerson: an operator revokes everything acting for a person from
// the dashboard — the authorization server's tokens and the dashboard
// sessions of that person end, another person's stay, the audit trail says
// who did it and why — and a user who is not an operator may not.
func TestRevokePerson(t *testing.T) {
	ctx := t.Context()
	store, err := badger.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	as, err := asrv.New(asrv.Config{Issuer: "http://127.0.0.1:9", Resources: []string{"http://127.0.0.1:9/mcp"},
		Secret: bytes.Repeat([]byte("k"), 32), Store: store, Policy: policytest.Registry(t)})
	if err != nil {
		t.Fatal(err)
	}
	client := &asrv.Client{ID: "agent-1", GrantTypes: []string{"authorization_code"}, TokenEndpointAuthMethod: asrv.AuthMethodNone}
	if err := store.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	token := func(sub string) string {
		sess := &asrv.Session{Subject: sub, ClientID: client.ID, AuthTime: time.Now().Add(-time.Minute)}
		sess.SetExpiresAt(fosite.AccessToken, time.Now().Add(time.Hour))
		sig := rand.Text()
		if err := store.CreateAccessTokenSession(ctx, sig, &fosite.Request{ID: rand.Text(), RequestedAt: time.Now(), Client: client, Session: sess}); err != nil {
			t.Fatal(err)
		}
		return sig
	}
	alice, bob := token("alice"), token("bob")
	trail := audit.NewTrail(nil)
	t.Cleanup(func() { _ = trail.Close(context.Background()) })
	records, stop := trail.Subscribe(8)
	defer stop()

	d := newDashWith(t, false, func(c *Config) {
		c.Audit = trail
		c.RevokePerson = func(r *http.Request, sub string) (admin.PersonRevocation, error) {
			got, err := as.RevokeSubject(r.Context(), sub)
			return admin.PersonRevocation{AccessTokens: got.AccessTokens, RefreshTokens: got.RefreshTokens, Codes: got.Codes}, err
		}
	})
	h := d.srv.Config.Handler.(*Handler)
	aliceBrowser, bobBrowser := serveDash(t, h), serveDash(t, h)
	aliceBrowser.signIn("alice")
	bobBrowser.signIn("bob")
	d.signIn("bob")
	if status, out := d.do("POST", "/ui/api/people/alice/revoke", map[string]string{}); status != 403 {
		t.Fatalf("a user who is not an operator revokes a person: %d %v", status, out)
	}
	status, out := d.postSignIn(map[string]string{"admin_token": testAdminToken})
	if status != 200 {
		t.Fatalf("operator sign-in: %d %v", status, out)
	}
	d.csrf = out["csrf"].(string)
	if status, out := d.do("GET", "/ui/api/config", nil); status != 200 || out["revoke_people"] != true {
		t.Fatalf("config does not offer revoking people: %d %v", status, out)
	}
	for _, bad := range []string{`{"reason": 1}`, `{"why": "x"}`, `{"reason": "two\nlines"}`} {
		if status, out := d.do("POST", "/ui/api/people/alice/revoke", bad); status != 400 {
			t.Fatalf("body %s: %d %v", bad, status, out)
		}
	}
	status, out = d.do("POST", "/ui/api/people/alice/revoke", map[string]string{"reason": "left the company"})
	if status != 200 || out["sub"] != "alice" || out["revoked"].(map[string]any)["access_tokens"] != float64(1) {
		t.Fatalf("revoke alice: %d %v", status, out)
	}
	if _, err := store.GetAccessTokenSession(ctx, alice, nil); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("alice's token after the revocation: %v", err)
	}
	if _, err := store.GetAccessTokenSession(ctx, bob, nil); err != nil {
		t.Errorf("bob's token after alice's revocation: %v", err)
	}
	if status, _ := aliceBrowser.do("GET", "/ui/api/session", nil); status != 401 {
		t.Errorf("alice's dashboard session after the revocation: %d, want 401", status)
	}
	if status, _ := bobBrowser.do("GET", "/ui/api/session", nil); status != 200 {
		t.Errorf("bob's dashboard session after alice's revocation: %d, want 200", status)
	}
	select {
	case rec := <-records:
		if rec.Method != admin.MethodRevokePerson || rec.Subject != "alice" || rec.ClientID != admin.OperatorClientID ||
			len(rec.Reasons) != 2 || !strings.Contains(rec.Reasons[0], "admin token") || rec.Reasons[1] != "reason: left the company" {
			t.Fatalf("audit record %+v", rec)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no audit record of the revocation")
	}
}

// TestOperatorGroups: outside the demo a person of the users file operates
// the dashboard when the active policy data names one of their groups as
// operators (identity.operator_groups), checked at each request: naming
// the group lets the next change through, taking it out refuses the one
// after, with the same session. A person of another group never operates,
// and the shipped data names no group.
func TestOperatorGroups(t *testing.T) {
	users := usersFileUsers(t, map[string][]string{"olga": {"engineering", "pbac-operators"}, "erin": {"engineering"}})
	var reg *plugins.Registry
	olga := newDashWith(t, false, func(c *Config) { c.Users, reg = users, c.Registry })
	erin := serveDash(t, olga.srv.Config.Handler.(*Handler))
	olga.signInAs("olga", filePassword)
	erin.signInAs("erin", filePassword)
	operator := func(d *dash) bool {
		t.Helper()
		_, out := d.do("GET", "/ui/api/session", nil)
		return out["operator"] == true
	}
	rollback := func(d *dash) int {
		t.Helper()
		status, _ := d.do("POST", "/ui/api/policy/rollback", nil)
		return status
	}
	if operator(olga) || rollback(olga) != http.StatusForbidden {
		t.Fatal("olga operates under the shipped data, which names no operator group")
	}
	setOperators := func(groups ...string) {
		t.Helper()
		b, ok := reg.ActiveBundle()
		if !ok {
			t.Fatal("no active bundle")
		}
		var data map[string]any
		if err := json.Unmarshal(b.Data, &data); err != nil {
			t.Fatal(err)
		}
		data["identity"].(map[string]any)["operator_groups"] = groups
		raw, _ := json.Marshal(data)
		if _, err := reg.SetData(t.Context(), raw, "test"); err != nil {
			t.Fatal(err)
		}
	}
	setOperators("pbac-operators")
	// Two versions now: a rollback is possible (200) for an operator.
	if !operator(olga) || rollback(olga) != http.StatusOK {
		t.Fatal("olga of the operator group does not operate")
	}
	if operator(erin) || rollback(erin) != http.StatusForbidden {
		t.Fatal("erin, of no operator group, operates")
	}
	// The rollback took the data back: olga's group is no longer named.
	if operator(olga) || rollback(olga) != http.StatusForbidden {
		t.Fatal("olga still operates once the data no longer names her group")
	}
}

// TestPageHasTheElementsItsScriptsName: every element a script looks up
// by id ($('#…')) is in the page, so that a renamed or forgotten element
// fails here rather than as a null in a browser.
func TestPageHasTheElementsItsScriptsName(t *testing.T) {
	page, err := static.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bid="([A-Za-z0-9_-]+)"`).FindAllSubmatch(page, -1) {
		ids[string(m[1])] = true
	}
	lookup := regexp.MustCompile(`\$\('#([A-Za-z0-9_-]+)`)
	checked := 0
	err = fs.WalkDir(static, "static", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(path, ".js") {
			return err
		}
		src, err := static.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range lookup.FindAllSubmatch(src, -1) {
			checked++
			if !ids[string(m[1])] {
				t.Errorf("%s looks up #%s, which index.html does not have", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"nav-approvals", "approvals-badge", "approvals-list", "approvals-closed", "approvals-message", "audit-approval", "audit-story"} {
		if !ids[id] {
			t.Errorf("index.html has no #%s", id)
		}
	}
	if checked < 100 {
		t.Fatalf("only %d lookups found: the pattern no longer matches the scripts", checked)
	}
}

// TestPasswordSessionFollowsTheUsersFile: a person signed in with a
// password of the users file is looked up again at each request, as the
// file is everywhere else: taken out of the operator group they no longer
// read the policy or roll it back, taken out of the approver group they no
// longer approve, and removed from the file their session ends (401) —
// with the session they signed in with before the change.
func TestPasswordSessionFollowsTheUsersFile(t *testing.T) {
	before := map[string][]string{"olga": {"pbac-operators", "release-managers"}, "erin": {"engineering"}}
	for _, tc := range []struct {
		name    string
		after   map[string][]string
		session int // GET /ui/api/session
		policy  int // GET /ui/api/policy: operators only
		approve int // POST /ui/api/approvals/{id}/approve: release managers only
		change  int // POST /ui/api/policy/rollback: operators only
	}{
		{"unchanged", before, 200, 200, 200, 200},
		{"out of the operator group", map[string][]string{"olga": {"release-managers"}, "erin": {"engineering"}}, 200, 403, 200, 403},
		{"out of the approver group", map[string][]string{"olga": {"pbac-operators"}, "erin": {"engineering"}}, 200, 200, 403, 200},
		{"removed from the file", map[string][]string{"erin": {"engineering"}}, 401, 401, 401, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := newUsersFile(t, before)
			desk := newApprovalDesk(t)
			var reg *plugins.Registry
			olga := newDashWith(t, false, func(c *Config) { c.Users, c.Approvals, reg = file.users, desk.svc, c.Registry })
			setOperatorGroups(t, reg, "pbac-operators")
			olga.signInAs("olga", filePassword)
			if status, out := olga.do("GET", "/ui/api/session", nil); status != 200 || out["operator"] != true {
				t.Fatalf("olga before the change: %d %v", status, out)
			}
			id := desk.ask("erin", `{"n":1}`, "release-managers").ID

			file.write(tc.after)
			status, out := olga.do("GET", "/ui/api/session", nil)
			if status != tc.session {
				t.Fatalf("session: %d %v, want %d", status, out, tc.session)
			}
			if status == 200 {
				groups := fmt.Sprint(out["user"].(map[string]any)["groups"])
				if want := fmt.Sprint(tc.after["olga"]); groups != want || out["operator"] != (tc.policy == 200) {
					t.Fatalf("session: groups %s operator %v, want the file's now: %s", groups, out["operator"], want)
				}
			}
			if status, out := olga.do("GET", "/ui/api/policy", nil); status != tc.policy {
				t.Errorf("policy: %d %v, want %d", status, out, tc.policy)
			}
			if status, out := olga.do("POST", "/ui/api/approvals/"+id+"/approve", map[string]string{}); status != tc.approve {
				t.Errorf("approve: %d %v, want %d", status, out, tc.approve)
			}
			if status, out := olga.do("POST", "/ui/api/policy/rollback", nil); status != tc.change {
				t.Errorf("rollback: %d %v, want %d", status, out, tc.change)
			}
		})
	}
}

// TestSessionBounds: a person holds at most maxSessionsPerPerson sessions,
// a sign-in beyond that ending their own least recently used one, so no
// person signs anyone else out however often they sign in; when many
// people together hold maxSessions, a new sign-in ends the least recently
// used session of whoever holds the most, if that is at least two more
// than the newcomer, and is refused otherwise.
func TestSessionBounds(t *testing.T) {
	type holding struct {
		who string // "" the admin token
		n   int
	}
	many := func(people, each int, also ...holding) []holding {
		var out []holding
		for i := range people {
			out = append(out, holding{fmt.Sprintf("p%03d", i), each})
		}
		return append(out, also...)
	}
	for _, tc := range []struct {
		name     string
		held     []holding // created in this order
		newcomer string
		err      error
		ended    string // whose first session the sign-in ended; "-" nobody's
	}{
		{"a person at their cap ends their own", []holding{{"", 1}, {"erin", maxSessionsPerPerson}, {"olga", 1}}, "erin", nil, "erin"},
		{"the admin token at its cap ends its own", []holding{{"", maxSessionsPerPerson}, {"erin", 1}}, "", nil, ""},
		{"room left: nobody's ends", []holding{{"", 1}, {"erin", maxSessionsPerPerson - 1}}, "erin", nil, "-"},
		{"full: the newcomer takes from whoever holds the most", many(maxSessions/maxSessionsPerPerson-1, maxSessionsPerPerson, holding{"olga", 1}, holding{"", maxSessionsPerPerson - 1}), "dana", nil, "p000"},
		{"full of pairs: a newcomer takes one", many(maxSessions/2, 2), "dana", nil, "p000"},
		{"full of pairs: one of them is refused", many(maxSessions/2, 2), "p001", errSessionsFull, "-"},
		{"full of ones: refused", many(maxSessions, 1), "dana", errSessionsFull, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSessions()
			open := func(who string) (string, error) {
				sess := &session{}
				if who != "" {
					sess.user = &asrv.User{Subject: who}
				}
				return s.create(sess)
			}
			ids := map[string][]string{}
			for _, h := range tc.held {
				for range h.n {
					id, err := open(h.who)
					if err != nil {
						t.Fatalf("filling: %v", err)
					}
					ids[h.who] = append(ids[h.who], id)
				}
			}
			if _, err := open(tc.newcomer); !errors.Is(err, tc.err) {
				t.Fatalf("the newcomer's sign-in: %v, want %v", err, tc.err)
			}
			for who, list := range ids {
				for i, id := range list {
					_, kept := s.get(id)
					if ended := who == tc.ended && i == 0; kept == ended {
						t.Fatalf("%q's session %d: kept %v", who, i, kept)
					}
				}
			}
		})
	}
}

// TestSigningInAgainSignsNobodyElseOut: a person who signs in more than
// maxSessionsPerPerson times ends only their own oldest session; the
// operator signed in before keeps theirs.
func TestSigningInAgainSignsNobodyElseOut(t *testing.T) {
	d := newDash(t, false)
	h := d.srv.Config.Handler.(*Handler)
	if status, out := d.postSignIn(map[string]string{"admin_token": testAdminToken}); status != 200 {
		t.Fatalf("operator sign-in: %d %v", status, out)
	}
	first, again := serveDash(t, h), serveDash(t, h)
	first.signIn("alice")
	for range maxSessionsPerPerson {
		again.signIn("alice")
	}
	for _, tc := range []struct {
		name string
		d    *dash
		want int
	}{
		{"the operator", d, 200},
		{"alice's first session", first, 401},
		{"alice's last session", again, 200},
	} {
		if status, _ := tc.d.do("GET", "/ui/api/session", nil); status != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, status, tc.want)
		}
	}
}
