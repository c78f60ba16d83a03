package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/identity/usersfile"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/rego"
)

// The people agents act for, against the real binary: nobody outside the
// demo tenant without an identity source, the people of a users file, and
// the people of an OpenID provider nobody here wrote (zitadel's example
// provider, run in this test process on 127.0.0.1).

// writeUsers appends people (name -> groups), each with password, to the
// users file at path (cheap hashes: tests only).
func writeUsers(t *testing.T, path, password string, people map[string][]string) {
	t.Helper()
	cheap := usersfile.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	for _, name := range slices.Sorted(maps.Keys(people)) {
		e, err := usersfile.NewEntry(name, people[name], []byte(password), cheap)
		if err != nil {
			t.Fatal(err)
		}
		if err := usersfile.Append(path, e); err != nil {
			t.Fatal(err)
		}
	}
}

// idTenant is a running pbac up (or asrv) of these tests.
type idTenant struct {
	base, admin, adminToken, dataDir, out string
}

// startIdentityUp runs pbac up with the configuration body and extra
// arguments.
func startIdentityUp(t *testing.T, body string, extra ...string) idTenant {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "pbac.yaml")
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	base, out := startUp(t, dir, append([]string{"--config", conf}, extra...)...)
	tn := idTenant{base: base, dataDir: dir, out: out.String()}
	for _, line := range strings.Split(tn.out, "\n") {
		if m := upAdmin.FindStringSubmatch(line); m != nil {
			tn.admin = m[1]
		}
	}
	tok, err := os.ReadFile(filepath.Join(dir, adminTokenFile))
	if err != nil || tn.admin == "" {
		t.Fatalf("admin API of pbac up (%v):\n%s", err, tn.out)
	}
	tn.adminToken = strings.TrimSpace(string(tok))
	return tn
}

// demoBackendsConfig starts the demo backends in this process and returns
// the configuration lines that put them behind the gateway as the
// organisation's own backends (the demo off).
func demoBackendsConfig(t *testing.T) string {
	t.Helper()
	runs, err := demo.StartAll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range runs {
			_ = r.Close(context.Background())
		}
	})
	var b strings.Builder
	b.WriteString("demo: false\nbackends:\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "  - {name: %s, url: %q}\n", r.Name, r.URL)
	}
	return b.String()
}

// humanAgent registers a public agent of provider (a statement signed by
// the data dir's key) redirecting to redirect; unverified without a
// provider.
func humanAgent(t *testing.T, base, dataDir, provider, redirect string) string {
	t.Helper()
	meta := map[string]any{"client_name": "e2e " + provider, "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none"}
	if provider != "" {
		key, err := asrv.LoadOrCreateIssuerKey(dataDir)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := key.Sign(asrv.StatementClaims{AgentProvider: provider, AgentModel: "e2e", Audience: []string{base}, TTL: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		meta["software_statement"] = jws
	}
	reg, err := oauthtest.Register(t.Context(), base, meta)
	if err != nil {
		t.Fatal(err)
	}
	return reg["client_id"].(string)
}

// machineToken registers a CI bot with a statement and gets it a client
// credentials token for resource.
func machineToken(t *testing.T, base, dataDir, resource string) string {
	t.Helper()
	key, err := asrv.LoadOrCreateIssuerKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	id, secret := (&proc{base: base}).registerMachine(t, key, "ci-bot", false)
	tok, err := oauthtest.ClientCredentials(t.Context(), base, id, secret, resource, "jira:read")
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("client credentials: %v", err)
	}
	return tok.AccessToken
}

// allScopes are what the agents of these tests ask for.
var allScopes = []string{"drive:read", "drive:write", "jira:read", "jira:write", "slack:read", "slack:write", "database:read", "database:ddl"}

// codeRequest is an authorization request (PKCE S256, the resource) of
// client, and its verifier.
func codeRequest(base, client, redirect, resource string, scopes ...string) (authURL string, cfg *oauth2.Config, verifier string) {
	cfg = &oauth2.Config{ClientID: client, RedirectURL: redirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: base + asrv.PathAuthorize, TokenURL: base + asrv.PathToken, AuthStyle: oauth2.AuthStyleInParams}}
	verifier = oauth2.GenerateVerifier()
	return cfg.AuthCodeURL("e2e-client-state", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", resource)), cfg, verifier
}

// redeem exchanges the code of a redirect to the agent.
func redeem(t *testing.T, cfg *oauth2.Config, verifier, resource string, redirect *url.URL) *oauth2.Token {
	t.Helper()
	q := redirect.Query()
	if q.Get("code") == "" || q.Get("state") != "e2e-client-state" {
		t.Fatalf("redirect to the agent without a code: %s", redirect)
	}
	tok, err := cfg.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resource))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// noRedirects is a browser that shows each redirect instead of following.
func noRedirects() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// callTool makes one MCP tools/call on backend with token (a fresh
// session); ok when the tool answered without an error, else why.
func callTool(t *testing.T, base, token, backend, tool string, args map[string]any) (bool, string) {
	t.Helper()
	sess, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil).Connect(t.Context(),
		&mcp.StreamableClientTransport{Endpoint: base + "/mcp/" + backend, MaxRetries: -1, DisableStandaloneSSE: true,
			HTTPClient: &http.Client{Transport: &oauthtest.BearerTransport{Token: token}}}, nil)
	if err != nil {
		return false, err.Error()
	}
	defer sess.Close()
	return toolOutcome(sess.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: args}))
}

// toolOutcome says whether a tools/call was allowed and, when it was not,
// why: a policy denial, answered by default as a tool result whose _meta
// carries contract.DenialMetaKey (denials: tool_error), reads "denied: "
// and the result's text, which carries the policy's public reasons; a
// tool's own error result reads "the tool failed: …"; an error of the
// client or the transport (a 401, a 403 step-up) is its message.
func toolOutcome(res *mcp.CallToolResult, err error) (bool, string) {
	if err != nil {
		return false, err.Error()
	}
	if !res.IsError {
		return true, ""
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return false, "the tool result could not be encoded: " + err.Error()
	}
	if d, ok := contract.DenialOf(raw); ok {
		if d.RequestID == "" || len(d.Reasons) == 0 {
			return false, "a denial without its request id or reasons: " + string(raw)
		}
		return false, "denied: " + demo.ResultText(res)
	}
	return false, "the tool failed: " + demo.ResultText(res)
}

// matrixRow is the seed matrix's row for token, as TestUpSeedMatrix writes
// it: drive, jira and slack read/write, then database DDL.
func matrixRow(t *testing.T, base, token string) string {
	t.Helper()
	calls := []struct {
		backend, tool, mark string
		args                map[string]any
	}{
		{"drive", "read_file", "r", map[string]any{"path": "/public/handbook.md"}},
		{"drive", "write_file", "w", map[string]any{"path": "/team/notes.txt", "content": "e2e"}},
		{"jira", "get_issue", "r", map[string]any{"key": "SEC-12"}},
		{"jira", "add_comment", "w", map[string]any{"key": "SEC-12", "body": "e2e"}},
		{"slack", "list_channels", "r", map[string]any{}},
		{"slack", "post_message", "w", map[string]any{"channel": "general", "text": "e2e"}},
		{"database", "execute_ddl", "x", map[string]any{"sql": "CREATE TABLE e2e (id int)"}},
	}
	var b strings.Builder
	for i, c := range calls {
		if ok, _ := callTool(t, base, token, c.backend, c.tool, c.args); ok {
			b.WriteString(c.mark)
		} else {
			b.WriteString("-")
		}
		if i%2 == 1 {
			b.WriteString(" ")
		}
	}
	return b.String()
}

// adminDo calls the admin API of tn.
func (tn idTenant) adminDo(t *testing.T, method, path string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, tn.admin+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tn.adminToken)
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// setIdentityData puts the shipped policy data with its identity section
// changed by mod live on tn (PUT /admin/policy/data).
func (tn idTenant) setIdentityData(t *testing.T, mod func(id map[string]any)) {
	t.Helper()
	raw, err := fs.ReadFile(rego.Sources(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	mod(data["identity"].(map[string]any))
	raw, _ = json.Marshal(data)
	if status, body := tn.adminDo(t, http.MethodPut, "/admin/policy/data", raw); status != http.StatusOK {
		t.Fatalf("PUT /admin/policy/data: %d %s", status, body)
	}
}

const agentCallback = "http://127.0.0.1:47021/cb"

// TestNoIdentitySourceRefusesPeople: with the demo off (pbac up) and in
// pbac asrv, and no identity source, nobody signs in — not the demo users
// either: the authorization request is refused with access_denied naming
// the configuration to add, redirected to a verified agent on loopback and
// shown as a page to any other — and machine clients still get tokens
// (client credentials). Both commands say so when they start.
func TestNoIdentitySourceRefusesPeople(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	upDir := t.TempDir()
	upConf := filepath.Join(upDir, "pbac.yaml")
	if err := os.WriteFile(upConf, []byte("demo: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	upBase, upOut := startUp(t, upDir, "--config", upConf)
	asDir := t.TempDir()
	as := startAsrv(t, asDir, freeAddr(t))
	for _, tc := range []struct {
		name, base, dataDir string
	}{
		{"pbac up, demo off", upBase, upDir},
		{"pbac asrv", as.base, asDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resource := tc.base + "/mcp"
			verified := humanAgent(t, tc.base, tc.dataDir, "claude-code", agentCallback)
			authURL, _, _ := codeRequest(tc.base, verified, agentCallback, resource, "jira:read")
			resp, err := noRedirects().Get(authURL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := resp.Location()
			if loc == nil || loc.Query().Get("error") != "access_denied" || loc.Query().Has("code") ||
				!strings.Contains(loc.Query().Get("error_description"), "identity.oidc or identity.users_file") {
				t.Fatalf("a verified agent's request: %d, redirect %v; want access_denied naming the configuration", resp.StatusCode, loc)
			}
			// alice of the demo posts the sign-in form anyway: refused the
			// same way, before any password is looked at.
			resp, err = noRedirects().PostForm(authURL, url.Values{"username": {"alice"}, "password": {"demo"}, "decision": {"approve"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc, _ := resp.Location(); loc == nil || loc.Query().Get("error") != "access_denied" || loc.Query().Has("code") {
				t.Fatalf("alice/demo posted: %d, redirect %v", resp.StatusCode, loc)
			}

			unverified := humanAgent(t, tc.base, tc.dataDir, "", "https://agent.example.com/cb")
			authURL, _, _ = codeRequest(tc.base, unverified, "https://agent.example.com/cb", resource, "jira:read")
			resp, err = noRedirects().Get(authURL)
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
				!bytes.Contains(page, []byte("<code>access_denied</code>")) || !bytes.Contains(page, []byte("identity.oidc or identity.users_file")) ||
				bytes.Contains(page, []byte(`name="password"`)) {
				t.Fatalf("the page for an unverified agent: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), page)
			}

			if tok := machineToken(t, tc.base, tc.dataDir, resource); tok == "" {
				t.Fatal("no machine token")
			}
		})
	}
	if !strings.Contains(upOut.String(), "no identity source is configured, so only machine clients get one") || strings.Contains(upOut.String(), "alice") {
		t.Errorf("pbac up's output with the demo off:\n%s", upOut)
	}
}

// TestUsersFilePeople: pbac up with the demo off and a users file: a person
// of the file signs in (the agent drives the authorization code flow with
// PKCE through the sign-in page), their token works at the gateway and
// policy decides with their groups — an engineer gets the developer tier's
// row of the seed matrix, a contractor the contractor's narrower one, the
// demo users do not exist — and a person of a group the policy data names
// as operators operates the dashboard once the data names it.
func TestUsersFilePeople(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	users := filepath.Join(t.TempDir(), "users.yaml")
	const password = "people-of-the-file"
	writeUsers(t, users, password, map[string][]string{"dana": {"engineering"}, "erin": {"contractor"}, "olga": {"pbac-operators"}})
	tn := startIdentityUp(t, demoBackendsConfig(t)+"identity: {users_file: "+users+"}\n")
	if !strings.Contains(tn.out, "people sign in with the users file "+users) || strings.Contains(tn.out, "alice") {
		t.Errorf("pbac up's output:\n%s", tn.out)
	}
	resource := tn.base + "/mcp"
	client := humanAgent(t, tn.base, tn.dataDir, "claude-code", agentCallback)
	for _, tc := range []struct{ person, want string }{
		{"dana", "rw rw rw -"},
		{"erin", "r- rw -- -"},
	} {
		t.Run(tc.person, func(t *testing.T) {
			tok, err := oauthtest.CodeFlow(t.Context(), tn.base, client, agentCallback, tc.person, password, resource, allScopes...)
			if err != nil {
				t.Fatal(err)
			}
			if got := matrixRow(t, tn.base, tok.AccessToken); got != tc.want {
				t.Errorf("%s's claude code: %q, want %q", tc.person, got, tc.want)
			}
		})
	}
	if _, err := oauthtest.CodeFlow(t.Context(), tn.base, client, agentCallback, "alice", "demo", resource, "jira:read"); err == nil ||
		!strings.Contains(err.Error(), "unknown user or wrong password") {
		t.Fatalf("alice of the demo outside it: %v", err)
	}

	t.Run("an operator group operates the dashboard", func(t *testing.T) {
		d := signInDashboardAs(t, tn.out, "olga", password)
		session := func() bool {
			_, body := d.do("GET", "/ui/api/session", nil)
			var s struct{ Operator bool }
			_ = json.Unmarshal(body, &s)
			return s.Operator
		}
		if status, _ := d.do("POST", "/ui/api/policy/rollback", nil); session() || status != http.StatusForbidden {
			t.Fatalf("olga operates before the data names her group: rollback %d", status)
		}
		tn.setIdentityData(t, func(id map[string]any) { id["operator_groups"] = []string{"pbac-operators"} })
		if !session() {
			t.Fatal("olga does not operate once the data names her group")
		}
		// She rolls the change back herself: the data no longer names her
		// group, and the next change is refused.
		status, body := d.do("POST", "/ui/api/policy/rollback", nil)
		if status != http.StatusOK {
			t.Fatalf("olga's rollback: %d %s", status, body)
		}
		// The version is recorded as hers.
		var rolled struct{ Author string }
		if err := json.Unmarshal(body, &rolled); err != nil || rolled.Author != "olga" {
			t.Fatalf("olga's rollback is recorded as made by %q (%v), want olga", rolled.Author, err)
		}
		if status, _ := d.do("POST", "/ui/api/policy/rollback", nil); session() || status != http.StatusForbidden {
			t.Fatalf("olga still operates after the rollback: %d", status)
		}
		dana := signInDashboardAs(t, tn.out, "dana", password)
		if status, _ := dana.do("POST", "/ui/api/policy/rollback", nil); status != http.StatusForbidden {
			t.Fatalf("dana (engineering) operates: %d", status)
		}
	})
}

// The OpenID provider of TestSingleSignOnPeople: zitadel's example
// provider with two people of the organisation and a groups claim.

const (
	opClientID     = "pbac"
	opClientSecret = "pbac-client-secret"
)

var opPeople = map[string]struct {
	password string
	groups   []string
}{
	"dana": {"dana-at-the-idp", []string{"engineering"}},
	"erin": {"erin-at-the-idp", []string{"contractor"}},
}

type opUsers struct{}

func (opUsers) GetUserByID(id string) *storage.User {
	p, ok := opPeople[id]
	if !ok {
		return nil
	}
	return &storage.User{ID: id, Username: id, Password: p.password, FirstName: strings.ToUpper(id[:1]) + id[1:], LastName: "Example",
		Email: id + "@example.com", EmailVerified: true}
}
func (u opUsers) GetUserByUsername(name string) *storage.User { return u.GetUserByID(name) }
func (opUsers) ExampleClientID() string                       { return storage.ServiceUserID }

// opStorage adds the groups scope and claim to the example's storage.
type opStorage struct{ *storage.Storage }

type groupsClient struct{ op.Client }

func (c groupsClient) IsScopeAllowed(scope string) bool {
	return scope == "groups" || c.Client.IsScopeAllowed(scope)
}

func (s opStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return groupsClient{c}, nil
}

func (s opStorage) SetUserinfoFromRequest(ctx context.Context, info *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	if slices.Contains(scopes, "groups") {
		info.AppendClaims("groups", opPeople[req.GetSubject()].groups)
	}
	return nil
}

// testOP is the provider on 127.0.0.1. Its token endpoint's answers pass
// through forge when a test sets it (a forged ID token on the wire).
type testOP struct {
	t       *testing.T
	srv     *httptest.Server
	storage opStorage
	h       http.Handler

	mu          sync.Mutex
	forge       func(idToken string) string
	lastIDToken string
}

// startOP starts the provider; pbac's redirect URIs there are those of
// asIssuer and of the admin listener adminBase.
func startOP(t *testing.T, asIssuer, adminBase string) *testOP {
	o := &testOP{t: t, srv: httptest.NewUnstartedServer(nil)}
	issuer := "http://" + o.srv.Listener.Addr().String()
	client := storage.WebClient(opClientID, opClientSecret, identity.CallbackURL(asIssuer), identity.CallbackURL(adminBase))
	o.storage = opStorage{storage.NewStorageWithClients(opUsers{}, map[string]*storage.Client{opClientID: client})}
	o.h = exampleop.SetupServer(issuer, o.storage, slog.New(slog.DiscardHandler), false)
	o.srv.Config.Handler = o
	o.srv.Start()
	t.Cleanup(o.srv.Close)
	return o
}

func (o *testOP) issuer() string { return o.srv.URL }

func (o *testOP) setForge(f func(string) string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.forge = f
}

func (o *testOP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/token") {
		o.h.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	o.h.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	var tok map[string]any
	if rec.Code == http.StatusOK && json.Unmarshal(body, &tok) == nil {
		o.mu.Lock()
		if forge := o.forge; forge != nil {
			tok["id_token"] = forge(tok["id_token"].(string))
			body, _ = json.Marshal(tok)
		} else {
			o.lastIDToken, _ = tok["id_token"].(string)
		}
		o.mu.Unlock()
	}
	for k, v := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

// resign returns idToken's claims changed by mod, signed with the
// provider's key (or key, under the provider's key id).
func (o *testOP) resign(idToken string, key *rsa.PrivateKey, mod func(map[string]any)) string {
	o.t.Helper()
	parts := strings.Split(idToken, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		o.t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		o.t.Fatal(err)
	}
	mod(claims)
	sk, err := o.storage.SigningKey(context.Background())
	if err != nil {
		o.t.Fatal(err)
	}
	var priv any = sk.Key()
	if key != nil {
		priv = key
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: priv, KeyID: sk.ID()}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		o.t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		o.t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

var csrfField = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// ssoResult is where a sign-in ended: a redirect to the agent, or a page.
type ssoResult struct {
	redirect *url.URL
	status   int
	body     string
}

// ssoSignIn is a person in a browser: pbac's sign-in page, its single
// sign-on button, the provider's login page, and back through pbac's
// callback until pbac redirects to the agent or shows a page.
// beforeCallback runs before the browser follows the provider's redirect
// back to pbac.
func ssoSignIn(t *testing.T, authURL, person, password string, beforeCallback func(*url.URL)) ssoResult {
	t.Helper()
	b := noRedirects()
	resp, err := b.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil || !bytes.Contains(page, []byte(`value="sso"`)) {
		t.Fatalf("the sign-in page: %d\n%s", resp.StatusCode, page)
	}
	resp, err = b.PostForm(authURL, url.Values{"csrf_token": {string(m[1])}, "decision": {"sso"}})
	if err != nil {
		t.Fatal(err)
	}
	return followSSO(t, b, resp, agentCallback, person, password, beforeCallback)
}

// followSSO follows a sign-in from resp — through the provider's login
// page as person — until a redirect to a URL starting with done, or a
// page.
func followSSO(t *testing.T, b *http.Client, resp *http.Response, done, person, password string, beforeCallback func(*url.URL)) ssoResult {
	t.Helper()
	var err error
	for range 20 {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		loc, _ := resp.Location()
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != nil && strings.HasPrefix(loc.String(), done):
			return ssoResult{redirect: loc}
		case resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != nil:
			if loc.Path == asrv.PathIDPCallback && beforeCallback != nil {
				beforeCallback(loc)
			}
			resp, err = b.Get(loc.String())
		case resp.StatusCode == http.StatusOK && resp.Request.URL.Path == "/login/username":
			login := resp.Request.URL.ResolveReference(&url.URL{Path: "/login/username"})
			resp, err = b.PostForm(login.String(), url.Values{"id": {resp.Request.URL.Query().Get("authRequestID")},
				"username": {person}, "password": {password}})
		default:
			return ssoResult{status: resp.StatusCode, body: string(body)}
		}
		if err != nil {
			return ssoResult{body: err.Error()}
		}
	}
	t.Fatal("more than 20 redirects")
	return ssoResult{}
}

// TestSingleSignOnPeople: pbac up (the demo off) signs people in at an
// OpenID provider nobody here wrote, started by the test on 127.0.0.1, with
// the agent driving the code flow (PKCE) and the person the provider's
// login page. An engineer's agent is allowed and denied as the seed matrix
// says, a contractor's gets the contractor's narrower grants; moving the
// engineering group in policy data flips the next call with the same token;
// revoking everything acting for a person (the admin API) refuses the next
// call of every token of theirs, and nobody else's, until they sign in
// again; ID tokens forged on the provider's wire (wrong issuer, audience or key,
// an earlier sign-in's nonce, expired) get no code; with the provider down
// the sign-in ends on a clear page without a token, and the tokens issued
// before keep working.
func TestSingleSignOnPeople(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	listen, adminListen := freeAddr(t), freeAddr(t)
	o := startOP(t, "http://"+listen, "http://"+adminListen)
	secret := filepath.Join(t.TempDir(), "oidc-client-secret")
	if err := os.WriteFile(secret, []byte(opClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tn := startIdentityUp(t, demoBackendsConfig(t)+fmt.Sprintf(`identity:
  oidc:
    issuer: %s
    client_id: %s
    client_secret_file: %s
    scopes: [openid, profile, email, groups]
`, o.issuer(), opClientID, secret), "--listen", listen, "--admin-listen", adminListen)
	if !strings.Contains(tn.out, "people sign in with single sign-on at "+o.issuer()) {
		t.Errorf("pbac up's output:\n%s", tn.out)
	}
	resource := tn.base + "/mcp"
	client := humanAgent(t, tn.base, tn.dataDir, "claude-code", agentCallback)
	signIn := func(t *testing.T, person string, scopes ...string) *oauth2.Token {
		t.Helper()
		authURL, cfg, verifier := codeRequest(tn.base, client, agentCallback, resource, scopes...)
		res := ssoSignIn(t, authURL, person, opPeople[person].password, nil)
		if res.redirect == nil {
			t.Fatalf("%s's sign-in ended on a page: %d\n%s", person, res.status, res.body)
		}
		return redeem(t, cfg, verifier, resource, res.redirect)
	}

	dana := signIn(t, "dana", allScopes...)
	for _, tc := range []struct {
		person, token, want string
	}{
		{"dana (engineering)", dana.AccessToken, "rw rw rw -"},
		{"erin (contractor)", signIn(t, "erin", allScopes...).AccessToken, "r- rw -- -"},
	} {
		if got := matrixRow(t, tn.base, tc.token); got != tc.want {
			t.Errorf("%s's claude code: %q, want %q", tc.person, got, tc.want)
		}
	}

	t.Run("moving a group in policy data flips the next call", func(t *testing.T) {
		post := map[string]any{"channel": "general", "text": "e2e"}
		if ok, why := callTool(t, tn.base, dana.AccessToken, "slack", "post_message", post); !ok {
			t.Fatalf("before: %s", why)
		}
		tn.setIdentityData(t, func(id map[string]any) {
			id["group_roles"].(map[string]any)["engineering"] = []string{"contractor"}
		})
		// With no access on slack left, the session itself is refused: the
		// initialize is a method decision, answered 403 whatever denials
		// says.
		if ok, why := callTool(t, tn.base, dana.AccessToken, "slack", "post_message", post); ok ||
			!strings.Contains(why, "Forbidden") || !strings.Contains(why, "holds no access on slack") {
			t.Fatalf("dana's slack post once engineering gives the contractor role: allowed=%v %s", ok, why)
		}
		if status, body := tn.adminDo(t, http.MethodPost, "/admin/policy/rollback", nil); status != http.StatusOK {
			t.Fatalf("rollback: %d %s", status, body)
		}
		if ok, why := callTool(t, tn.base, dana.AccessToken, "slack", "post_message", post); !ok {
			t.Fatalf("after the rollback: %s", why)
		}
	})

	t.Run("the dashboard signs people in at the provider; an operator group operates", func(t *testing.T) {
		// Sign-ins started and abandoned by someone not signed in (300,
		// more than the pending table this replaced held) keep nobody out.
		for i := range 300 {
			resp, err := noRedirects().Get(tn.admin + "/ui/api/session/sso")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("abandoned sign-in %d: %d", i, resp.StatusCode)
			}
		}
		b := noRedirects()
		resp, err := b.Get(tn.admin + "/ui/api/session/sso")
		if err != nil {
			t.Fatal(err)
		}
		var callback *url.URL
		res := followSSO(t, b, resp, tn.admin+"/ui/", "dana", opPeople["dana"].password, func(u *url.URL) {
			callback = u
			// The provider's answer opened in another browser (login
			// CSRF) signs nobody in there, and spends nothing.
			other := noRedirects()
			resp, err := other.Get(u.String())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || len(other.Jar.Cookies(resp.Request.URL.ResolveReference(&url.URL{Path: "/ui/"}))) != 0 {
				t.Errorf("the dashboard's callback in another browser: %d", resp.StatusCode)
			}
		})
		if res.redirect == nil {
			t.Fatalf("the dashboard's sign-in ended on a page: %d\n%s", res.status, res.body)
		}
		// Replayed, it is spent.
		if resp, err := b.Get(callback.String()); err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("the dashboard's callback replayed: %v %v", resp, err)
		}
		d := &dashboardClient{t: t, base: tn.admin, http: &http.Client{Jar: b.Jar, Timeout: time.Minute}}
		session := func() (sub string, groups []string, operator bool) {
			_, body := d.do("GET", "/ui/api/session", nil)
			var s struct {
				User struct {
					Sub    string
					Groups []string
				}
				Operator bool
				CSRF     string
			}
			_ = json.Unmarshal(body, &s)
			d.csrf = s.CSRF
			return s.User.Sub, s.User.Groups, s.Operator
		}
		if sub, groups, op := session(); sub != "dana" || !slices.Equal(groups, []string{"engineering"}) || op {
			t.Fatalf("dana's dashboard session: %s %v operator=%v", sub, groups, op)
		}
		if status, _ := d.do("POST", "/ui/api/policy/rollback", nil); status != http.StatusForbidden {
			t.Fatalf("dana operates before the data names her group: %d", status)
		}
		if status, _ := d.do("GET", "/ui/api/policy", nil); status != http.StatusForbidden {
			t.Fatalf("dana reads the policy before the data names her group: %d", status)
		}
		tn.setIdentityData(t, func(id map[string]any) { id["operator_groups"] = []string{"engineering"} })
		if _, _, op := session(); !op {
			t.Fatal("dana does not operate once the data names engineering")
		}
		if status, body := d.do("POST", "/ui/api/policy/rollback", nil); status != http.StatusOK {
			t.Fatalf("dana's rollback: %d %s", status, body)
		}
		if _, _, op := session(); op {
			t.Fatal("dana still operates after the rollback")
		}
	})

	t.Run("revoking everything acting for a person ends every token of theirs", func(t *testing.T) {
		issue := map[string]any{"key": "SEC-12"}
		first, second := signIn(t, "erin", "jira:read"), signIn(t, "erin", "jira:read")
		for _, tok := range []string{first.AccessToken, second.AccessToken} {
			if ok, why := callTool(t, tn.base, tok, "jira", "get_issue", issue); !ok {
				t.Fatalf("erin before the revocation: %s", why)
			}
		}
		status, body := tn.adminDo(t, http.MethodPost, "/admin/people/erin/revoke", []byte(`{"reason": "left the company"}`))
		var out struct {
			Revoked struct {
				AccessTokens  int `json:"access_tokens"`
				RefreshTokens int `json:"refresh_tokens"`
			}
		}
		if err := json.Unmarshal([]byte(body), &out); status != http.StatusOK || err != nil || out.Revoked.AccessTokens < 2 {
			t.Fatalf("POST /admin/people/erin/revoke: %d %s", status, body)
		}
		for _, tok := range []string{first.AccessToken, second.AccessToken} {
			if ok, why := callTool(t, tn.base, tok, "jira", "get_issue", issue); ok || !strings.Contains(why, "Unauthorized") {
				t.Fatalf("erin's token after the revocation: allowed=%v %s", ok, why)
			}
		}
		if first.RefreshToken != "" {
			_, cfg, _ := codeRequest(tn.base, client, agentCallback, resource)
			if _, err := cfg.TokenSource(t.Context(), &oauth2.Token{RefreshToken: first.RefreshToken}).Token(); err == nil {
				t.Fatal("erin's refresh token refreshed after the revocation")
			}
		}
		if ok, why := callTool(t, tn.base, dana.AccessToken, "jira", "get_issue", issue); !ok {
			t.Fatalf("dana's token after erin's revocation: %s", why)
		}
		if ok, why := callTool(t, tn.base, signIn(t, "erin", "jira:read").AccessToken, "jira", "get_issue", issue); !ok {
			t.Fatalf("erin signed in again: %s", why)
		}
	})

	t.Run("the provider's identity assertion grants (ID-JAG) get tokens", func(t *testing.T) { testIDJAGGrant(t, tn, o, resource) })

	t.Run("forged ID tokens get no code", func(t *testing.T) {
		o.mu.Lock()
		earlier := o.lastIDToken
		o.mu.Unlock()
		otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name  string
			forge func(string) string
		}{
			{"wrong issuer", func(tok string) string {
				return o.resign(tok, nil, func(c map[string]any) { c["iss"] = "http://127.0.0.1:1" })
			}},
			{"wrong audience", func(tok string) string {
				return o.resign(tok, nil, func(c map[string]any) { c["aud"] = []string{"another-app"}; c["azp"] = "another-app" })
			}},
			{"wrong key", func(tok string) string { return o.resign(tok, otherKey, func(map[string]any) {}) }},
			{"replayed nonce", func(string) string { return earlier }},
			{"expired", func(tok string) string {
				return o.resign(tok, nil, func(c map[string]any) { c["iat"] = c["iat"].(float64) - 7200; c["exp"] = c["iat"].(float64) + 60 })
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				o.setForge(tc.forge)
				defer o.setForge(nil)
				authURL, _, _ := codeRequest(tn.base, client, agentCallback, resource, "jira:read")
				res := ssoSignIn(t, authURL, "dana", opPeople["dana"].password, nil)
				if res.redirect == nil {
					t.Fatalf("ended on a page %d:\n%s", res.status, res.body)
				}
				if q := res.redirect.Query(); q.Has("code") || q.Get("error") != "access_denied" {
					t.Fatalf("redirect %s, want access_denied and no code", res.redirect)
				}
			})
		}
	})

	t.Run("the provider down", func(t *testing.T) {
		authURL, _, _ := codeRequest(tn.base, client, agentCallback, resource, "jira:read")
		res := ssoSignIn(t, authURL, "dana", opPeople["dana"].password, func(*url.URL) { o.srv.Close() })
		if res.redirect != nil || res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "cannot be reached") ||
			!strings.Contains(res.body, "no token was issued") {
			t.Fatalf("a sign-in with the provider gone: %v %d\n%s", res.redirect, res.status, res.body)
		}
		if ok, why := callTool(t, tn.base, dana.AccessToken, "jira", "get_issue", map[string]any{"key": "SEC-12"}); !ok {
			t.Fatalf("dana's token issued before: %s", why)
		}
	})
}
