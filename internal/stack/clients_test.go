package stack_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/connect"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/internal/stack"
)

// operatorDashboard signs in to the stack's dashboard with the admin token.
type operatorDashboard struct {
	t    *testing.T
	base string
	http *http.Client
	csrf string
}

func signInOperator(t *testing.T, st *stack.Stack) *operatorDashboard {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(st.DataDir(), stack.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	d := &operatorDashboard{t: t, base: st.AdminURL(), http: &http.Client{Jar: jar}}
	var form struct{ CSRF string }
	d.do("GET", "/ui/api/session/form", nil, http.StatusOK, &form)
	d.csrf = form.CSRF
	var sess struct{ CSRF string }
	d.do("POST", "/ui/api/session", map[string]string{"admin_token": strings.TrimSpace(string(token))}, http.StatusOK, &sess)
	d.csrf = sess.CSRF
	return d
}

// do sends a request and decodes the answer into out, failing the test
// unless the status is want.
func (d *operatorDashboard) do(method, path string, body any, want int, out any) {
	d.t.Helper()
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, d.base+path, r)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-PBAC-CSRF", d.csrf)
	resp, err := d.http.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		d.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			d.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
}

type registeredAgent struct {
	ClientID     string   `json:"client_id"`
	RedirectURIs []string `json:"redirect_uris"`
	Snippets     []struct {
		Client, Text string
	} `json:"snippets"`
}

// otherPort is u on another port, or "" when u names none.
func otherPort(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p.Port())
	if err != nil {
		return ""
	}
	p.Host = p.Hostname() + ":" + strconv.Itoa(n+1)
	return p.String()
}

// TestClientPresetsSignIn: for every client preset (connect.Clients), an
// agent registered on the dashboard with that preset gets a token through
// the authorization endpoint with each redirect URI the client really
// sends, port included, as alice; a localhost redirect URI on another port
// than the snippet fixes is refused (a host name matches on its port
// alone); the dashboard offers the preset's snippet for the agent, with its
// client id; and the demo agent claude-code, registered for every client,
// works with each of them too.
func TestClientPresetsSignIn(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the code flow for every client")
	}
	cfg := baseConfig(t, t.TempDir())
	cfg.Demo = stack.Demo{Backends: true, Agents: true}
	cfg.Admin = &stack.Admin{Listen: "127.0.0.1:0"}
	st, err := stack.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(t.Context()) })
	base, resource := st.URL(), st.URL()+"/mcp"
	d := signInOperator(t, st)

	signIn := func(t *testing.T, clientID, redirect string) error {
		t.Helper()
		tok, err := oauthtest.CodeFlow(t.Context(), base, clientID, redirect, "alice", "demo", resource)
		if err == nil && tok.AccessToken == "" {
			err = fmt.Errorf("no access token")
		}
		return err
	}
	var demoAgent string
	for _, a := range st.DemoAgents() {
		if a.Name == "claude-code" {
			demoAgent = a.ClientID
		}
	}
	for _, c := range connect.Clients() {
		t.Run(c.ID, func(t *testing.T) {
			var a registeredAgent
			d.do("POST", "/ui/api/agents", map[string]any{"client_name": "preset " + c.ID, "provider": "claude-code",
				"kind": "human", "client": c.ID}, http.StatusCreated, &a)
			snippet := ""
			for _, s := range a.Snippets {
				if s.Client == c.ID {
					snippet = s.Text
				}
			}
			if (!c.SelfRegisters && !strings.Contains(snippet, a.ClientID)) || !strings.Contains(snippet, resource) {
				t.Errorf("the dashboard's %s snippet for %s: %q", c.ID, a.ClientID, snippet)
			}
			for _, sent := range c.Sends {
				if err := signIn(t, a.ClientID, sent); err != nil {
					t.Errorf("%s sends %s: %v (registered %v)", c.ID, sent, err, a.RedirectURIs)
				}
				if err := signIn(t, demoAgent, sent); err != nil {
					t.Errorf("the demo agent claude-code with %s's %s: %v", c.ID, sent, err)
				}
				if other := otherPort(t, sent); other != "" && strings.HasPrefix(sent, "http://localhost:") {
					if err := signIn(t, a.ClientID, other); err == nil {
						t.Errorf("%s: %s was accepted, registered %v", c.ID, other, a.RedirectURIs)
					}
				}
			}
		})
	}
	t.Run("the claude line", func(t *testing.T) {
		var a registeredAgent
		d.do("POST", "/ui/api/agents", map[string]any{"client_name": "claude line", "provider": "claude-code",
			"kind": "human", "client": "claude-code"}, http.StatusCreated, &a)
		want := fmt.Sprintf("claude mcp add --transport http --client-id %s --callback-port %d pbac %s", a.ClientID, connect.ClaudeCodeCallbackPort, resource)
		if len(a.Snippets) != 1 || a.Snippets[0].Text != want {
			t.Errorf("snippets %+v, want only %q", a.Snippets, want)
		}
	})
	t.Run("bad redirect URIs are refused by the registration rule", func(t *testing.T) {
		for _, body := range []map[string]any{
			{"client_name": "bad 1", "provider": "claude-code", "kind": "human", "client": "custom", "redirect_uris": []string{"http://agent.example.com/cb"}},
			{"client_name": "bad 2", "provider": "claude-code", "kind": "human", "client": "custom", "redirect_uris": []string{"cursor://anysphere.cursor-mcp/oauth/callback"}},
			{"client_name": "bad 3", "provider": "claude-code", "kind": "human", "client": "custom"},
			{"client_name": "bad 4", "provider": "claude-code", "kind": "human", "client": "netscape"},
			{"client_name": "bad 5", "provider": "ci-bot", "kind": "machine", "redirect_uris": []string{"http://127.0.0.1/cb"}},
		} {
			var e struct{ Error string }
			d.do("POST", "/ui/api/agents", body, http.StatusBadRequest, &e)
			if e.Error == "" {
				t.Errorf("%v: no error said", body)
			}
		}
	})
}
