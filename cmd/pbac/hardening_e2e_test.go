package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/rego"
)

// mcpInit is a 2025-06-18 initialize.
const mcpInit = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`

// mcpAnswer is one answer of the gateway to a raw MCP request.
type mcpAnswer struct {
	status int
	sid    string
	header http.Header
	body   string
}

// mcpPost sends one JSON-RPC message to base+path with a token (none when
// empty) and a session (none when empty).
func mcpPost(t *testing.T, base, path, token, sid, body string) mcpAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return mcpAnswer{status: resp.StatusCode, sid: resp.Header.Get("Mcp-Session-Id"), header: resp.Header, body: string(raw)}
}

// rawHTTP sends one request with the given headers and returns the status
// and body.
func rawHTTP(t *testing.T, client *http.Client, method, u, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// mapBackends changes the running tenant's policy data (the shipped data)
// so that each named backend's sessions are decided by the grants of a
// resource (data "backends": {name: {"resource": r}}), through the admin
// API of the `pbac up` whose output and data dir are given.
func mapBackends(t *testing.T, out, dataDir string, resources map[string]string) {
	t.Helper()
	m := adminLine.FindStringSubmatch(out)
	token, err := os.ReadFile(filepath.Join(dataDir, adminTokenFile))
	if m == nil || err != nil {
		t.Fatalf("no admin API in the output (%v):\n%s", err, out)
	}
	raw, err := fs.ReadFile(rego.Sources(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	backends := map[string]any{}
	for b, r := range resources {
		backends[b] = map[string]any{"resource": r}
	}
	data["backends"] = backends
	raw, _ = json.Marshal(data)
	status, body := rawHTTP(t, http.DefaultClient, http.MethodPut, m[1]+"/admin/policy/data", string(raw),
		map[string]string{"Authorization": "Bearer " + strings.TrimSpace(string(token)), "Content-Type": "application/json"})
	if status != http.StatusOK {
		t.Fatalf("PUT /admin/policy/data: %d %s", status, body)
	}
}

var ciCreds = regexp.MustCompile(`ci-bot\s+ci-bot\s+client_id=(\S+) client_secret=(\S+)`)

// TestUpHostileReview replays, against the real `pbac up`, what the hostile
// review of issue 14 did on the gateway side, and checks each is refused:
// methods reaching backends undecided (#7), metric labels from the client
// (#8), the admin listener open to a DNS-rebinding page (#9), /metrics on
// the agents' listener (#14), bad tokens not audited (#18).
func TestUpHostileReview(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dataDir := t.TempDir()
	base, out := startUp(t, dataDir)
	adminBase := adminLine.FindStringSubmatch(out.String())
	ci := ciCreds.FindStringSubmatch(out.String())
	adminToken, err := os.ReadFile(filepath.Join(dataDir, adminTokenFile))
	if adminBase == nil || ci == nil || err != nil {
		t.Fatalf("unexpected output (%v):\n%s", err, out)
	}
	admin := adminBase[1]
	adminHostPort := strings.TrimPrefix(admin, "http://")
	token := strings.TrimSpace(string(adminToken))
	p := &proc{base: base}
	ciToken := p.postForm(t, asrv.PathToken, ci[1], ci[2], url.Values{"grant_type": {"client_credentials"},
		"scope": {"jira:read jira:write"}, "resource": {base + "/mcp"}})["access_token"].(string)

	t.Run("#7 a CI token opens no session on slack and sends it nothing", func(t *testing.T) {
		for _, body := range []string{
			mcpInit,
			`{"jsonrpc":"2.0","id":1,"method":"ping"}`,
			`{"jsonrpc":"2.0","id":1,"method":"resources/list","params":{}}`,
			`{"jsonrpc":"2.0","id":1,"method":"prompts/list","params":{}}`,
			`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"a","value":"x"}}}`,
			`{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"debug"}}`,
			`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		} {
			// A completion is decided by what it completes (a prompt slack
			// has none catalogued); everything else by its method.
			want := "holds no"
			if strings.Contains(body, "completion/complete") {
				want = "slack.prompt:p is not in the catalogue"
			}
			a := mcpPost(t, base, "/mcp/slack", ciToken, "", body)
			if a.status != http.StatusForbidden || a.sid != "" || !strings.Contains(a.body, want) {
				t.Errorf("%s on slack: %d %q %s", body, a.status, a.sid, a.body)
			}
		}
		if a := mcpPost(t, base, "/mcp/jira", ciToken, "", mcpInit); a.status != http.StatusOK || a.sid == "" {
			t.Fatalf("initialize on jira: %d %s", a.status, a.body)
		} else if b := mcpPost(t, base, "/mcp/jira", ciToken, a.sid, `{"jsonrpc":"2.0","id":2,"method":"tasks/list","params":{}}`); b.status != http.StatusForbidden ||
			!strings.Contains(b.body, "method tasks/list is not allowed") {
			t.Fatalf("an unknown method on jira: %d %s", b.status, b.body)
		}
	})

	t.Run("#14 metrics are on the admin listener only", func(t *testing.T) {
		if status, _ := rawHTTP(t, http.DefaultClient, http.MethodGet, base+"/metrics", "", nil); status != http.StatusNotFound {
			t.Fatalf("GET /metrics on the agents' listener: %d", status)
		}
		status, body := rawHTTP(t, http.DefaultClient, http.MethodGet, admin+"/metrics", "", nil)
		if status != http.StatusOK || !strings.Contains(body, "pbac_decisions_total") || !strings.Contains(body, "pbac_policy_version_info") {
			t.Fatalf("GET /metrics on the admin listener: %d", status)
		}
		if !strings.Contains(out.String(), "metrics               "+admin+"/metrics") {
			t.Fatalf("pbac up does not print the metrics address on the admin listener:\n%s", out)
		}
	})

	t.Run("#8 a method flood adds no metric series", func(t *testing.T) {
		a := mcpPost(t, base, "/mcp/jira", ciToken, "", mcpInit)
		_, before := rawHTTP(t, http.DefaultClient, http.MethodGet, admin+"/metrics", "", nil)
		const flood = 500
		for i := range flood {
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"x/%s-%d","params":{}}`, i, strings.Repeat("m", 200), i)
			if b := mcpPost(t, base, "/mcp/jira", ciToken, a.sid, body); b.status != http.StatusForbidden {
				t.Fatalf("made-up method: %d %s", b.status, b.body)
			}
		}
		_, after := rawHTTP(t, http.DefaultClient, http.MethodGet, admin+"/metrics", "", nil)
		t.Logf("/metrics: %d bytes before %d made-up methods of 200+ bytes, %d after", len(before), flood, len(after))
		if strings.Contains(after, `method="x/`) || !strings.Contains(after, `method="other"`) || len(after) > len(before)+4096 {
			t.Fatalf("the flood reached the metrics: %d bytes before, %d after", len(before), len(after))
		}
	})

	t.Run("#9 a DNS-rebinding page cannot operate the admin listener", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		browser := &http.Client{Jar: jar}
		rebound := "attacker.example:" + strings.Split(adminHostPort, ":")[1]
		signIn := `{"username":"alice","password":"demo"}`
		// The review's page, with the admin address rebound to its name.
		for _, tc := range []struct {
			name, method, path, body string
			hdr                      map[string]string
			want                     int
		}{
			{"read the config", "GET", "/ui/api/config", "", map[string]string{"Host": rebound}, http.StatusForbidden},
			{"sign in as alice", "POST", "/ui/api/session", signIn, map[string]string{"Host": rebound, "Content-Type": "application/json", "Origin": "http://" + rebound}, http.StatusForbidden},
			{"use the admin token", "PUT", "/admin/policy/data", "{}", map[string]string{"Host": rebound, "Content-Type": "application/json", "Authorization": "Bearer " + token}, http.StatusForbidden},
			{"read the metrics", "GET", "/metrics", "", map[string]string{"Host": rebound}, http.StatusForbidden},
			// A page of another origin (no rebinding), posting what a form can.
			{"sign in from another origin", "POST", "/ui/api/session", signIn, map[string]string{"Content-Type": "application/json", "Origin": "http://attacker.example"}, http.StatusForbidden},
			{"sign in cross-site", "POST", "/ui/api/session", signIn, map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
			{"sign in as text/plain", "POST", "/ui/api/session", signIn, map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
			{"data as text/plain with the token", "PUT", "/admin/policy/data", "{}", map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer " + token}, http.StatusUnsupportedMediaType},
		} {
			if status, body := rawHTTP(t, browser, tc.method, admin+tc.path, tc.body, tc.hdr); status != tc.want {
				t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.want)
			}
		}
		if u, _ := url.Parse(admin + "/ui/"); len(jar.Cookies(u)) != 0 {
			t.Fatal("a refused sign-in set a session cookie")
		}
		// The review's goal stays out of reach: no anonymous access, no secret.
		secret := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/prod/secrets/db.env"}}}`
		if a := mcpPost(t, base, "/mcp/drive", "", "", secret); a.status != http.StatusUnauthorized {
			t.Fatalf("anonymous read of a production secret: %d %s", a.status, a.body)
		}
		// The dashboard itself still works: its own origin, JSON, with the
		// token of the sign-in form it loaded.
		status, body := rawHTTP(t, browser, "GET", admin+"/ui/api/session/form", "", nil)
		var form struct{ CSRF string }
		if err := json.Unmarshal([]byte(body), &form); status != http.StatusOK || err != nil || form.CSRF == "" {
			t.Fatalf("the dashboard's sign-in form: %d %s", status, body)
		}
		status, body = rawHTTP(t, browser, "POST", admin+"/ui/api/session", signIn,
			map[string]string{"Content-Type": "application/json", "Origin": admin, "Sec-Fetch-Site": "same-origin", "X-PBAC-CSRF": form.CSRF})
		if status != http.StatusOK || !strings.Contains(body, `"operator":true`) {
			t.Fatalf("the dashboard's own sign-in on a loopback listener: %d %s", status, body)
		}
		if status, _ := rawHTTP(t, browser, "GET", "http://localhost:"+strings.Split(adminHostPort, ":")[1]+"/ui/api/config", "", nil); status != http.StatusOK {
			t.Fatalf("localhost on a loopback admin listener: %d", status)
		}
	})

	t.Run("#18 a bad token is audited", func(t *testing.T) {
		if a := mcpPost(t, base, "/mcp/jira", "forged-or-revoked-token", "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`); a.status != http.StatusUnauthorized {
			t.Fatalf("bad token: %d", a.status)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			status, body := rawHTTP(t, http.DefaultClient, "GET", admin+"/admin/audit?client_id="+url.QueryEscape("(unauthenticated)"), "",
				map[string]string{"Authorization": "Bearer " + token})
			var res struct {
				Records []struct {
					Reasons []string `json:"reasons"`
					Remote  string   `json:"remote"`
					Backend string   `json:"backend"`
					Count   int      `json:"count"`
				} `json:"records"`
			}
			_ = json.Unmarshal([]byte(body), &res)
			for _, r := range res.Records {
				if r.Backend == "jira" && r.Remote == "127.0.0.1" && r.Count >= 1 && len(r.Reasons) > 0 && strings.HasPrefix(r.Reasons[0], "invalid_token") {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no audit record of the refused token: %d %s", status, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
