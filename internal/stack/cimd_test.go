package stack_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/internal/stack"
)

// cimdRedirect is where the test's metadata document clients say they
// listen (a loopback one, on any port).
const cimdRedirect = "http://127.0.0.1:47311/callback"

// cimdDocument is a public client's metadata document at id, with the
// extra members given.
func cimdDocument(id string, extra map[string]any) []byte {
	doc := map[string]any{"client_id": id, "client_name": "Loopback Agent",
		"redirect_uris": []string{"http://127.0.0.1/callback"}, "token_endpoint_auth_method": "none"}
	for k, v := range extra {
		doc[k] = v
	}
	b, _ := json.Marshal(doc)
	return b
}

// cimdHost serves one metadata document over HTTPS on 127.0.0.1 with a
// test CA, and writes that CA to a PEM file: the client id URL and the
// file. extra, when set, gives the document's extra members (as of each
// fetch).
func cimdHost(t *testing.T, extra func() map[string]any) (id, caFile string) {
	t.Helper()
	var self string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/agent/client.json" {
			http.NotFound(w, r)
			return
		}
		var more map[string]any
		if extra != nil {
			more = extra()
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(cimdDocument(self, more))
	}))
	t.Cleanup(srv.Close)
	self = srv.URL + "/agent/client.json"
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return self, caFile
}

// openCIMDStack is the demo tenant (its demo users sign in) with the
// clients: section given.
func openCIMDStack(t *testing.T, clients *config.Clients) *stack.Stack {
	t.Helper()
	cfg := baseConfig(t, t.TempDir())
	cfg.Ephemeral = true
	cfg.Demo.Backends = true
	cfg.AuthServer.Clients = clients
	st, err := stack.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = st.Close(ctx)
		settle()
	})
	return st
}

// mapCIMDProvider sets the active policy's agents.cimd_providers to
// url -> provider (nothing when url is empty), as an operator's data
// change does.
func mapCIMDProvider(t *testing.T, st *stack.Stack, url, provider string) {
	t.Helper()
	m := map[string]any{}
	if url != "" {
		m[url] = provider
	}
	setAgentsData(t, st, "cimd_providers", m)
}

// setAgentsData sets the active policy's data.agents[key] to v.
func setAgentsData(t *testing.T, st *stack.Stack, key string, v any) {
	t.Helper()
	reg := st.Registry()
	active, ok := reg.ActiveBundle()
	if !ok {
		t.Fatal("no active policy")
	}
	var data map[string]any
	if err := json.Unmarshal(active.Data, &data); err != nil {
		t.Fatal(err)
	}
	data["agents"].(map[string]any)[key] = v
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.SetData(t.Context(), raw, "test"); err != nil {
		t.Fatal(err)
	}
}

// callJiraAs makes one tools/call on jira through the gateway with token.
func callJiraAs(t *testing.T, st *stack.Stack, token string) {
	t.Helper()
	ctx := t.Context()
	hc := &http.Client{Transport: &oauthtest.BearerTransport{Token: token}}
	defer hc.CloseIdleConnections()
	sess, err := mcp.NewClient(&mcp.Implementation{Name: "cimd-test", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: st.URL() + "/mcp/jira", HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "search_issues", Arguments: map[string]any{"query": "SEC"}})
	if err != nil || res.IsError {
		t.Fatalf("search_issues through the gateway: %v %+v", err, res)
	}
}

// TestMetadataDocumentsThroughTheStack: the configuration's
// clients.metadata_documents reaches the authorization server. A client
// whose client_id is the URL of a document served over HTTPS on loopback
// (allowed by allow_networks, its CA the only one trusted) signs alice in;
// the shipped policy refuses it as not attested until policy data maps
// its URL to claude-code (agents.cimd_providers), and then it gets a
// developer token and a tool call through the gateway. The AS metadata
// advertises documents with token endpoint auth method none.
func TestMetadataDocumentsThroughTheStack(t *testing.T) {
	id, ca := cimdHost(t, nil)
	st := openCIMDStack(t, &config.Clients{MetadataDocuments: &config.MetadataDocuments{
		AllowNetworks: []string{"127.0.0.1/32"}, CAFile: ca}})
	ctx := t.Context()

	meta := getJSON(t, st.URL()+"/.well-known/oauth-authorization-server")
	if meta["client_id_metadata_document_supported"] != true {
		t.Fatalf("metadata: client_id_metadata_document_supported = %v", meta["client_id_metadata_document_supported"])
	}
	var methods []string
	for _, m := range meta["token_endpoint_auth_methods_supported"].([]any) {
		methods = append(methods, m.(string))
	}
	if !slices.Contains(methods, "none") || !slices.Contains(methods, "private_key_jwt") {
		t.Fatalf("token_endpoint_auth_methods_supported = %v, want none (Codex asks for it) and private_key_jwt", methods)
	}

	resource := st.URL() + "/mcp/jira"
	_, err := oauthtest.CodeFlow(ctx, st.URL(), id, cimdRedirect, "alice", "demo", resource, "jira:read")
	if err == nil || !strings.Contains(err.Error(), "access_denied") || !strings.Contains(err.Error(), "not attested") {
		t.Fatalf("a document nobody maps: %v, want access_denied … not attested", err)
	}

	mapCIMDProvider(t, st, id, "claude-code")
	tok, err := oauthtest.CodeFlow(ctx, st.URL(), id, cimdRedirect, "alice", "demo", resource, "jira:read")
	if err != nil {
		t.Fatalf("a document mapped to claude-code: %v", err)
	}
	in, err := st.AuthServer().Introspect(ctx, tok.AccessToken, resource)
	if err != nil || !in.Active || in.ClientID != id || in.Tier != "developer" || in.Attestation == nil || in.Attestation.Kind != "cimd" {
		t.Fatalf("the token: %+v %v", in, err)
	}
	callJiraAs(t, st, tok.AccessToken)

	// A prefix ending in "/" maps every document under it.
	u, _ := url.Parse(id)
	mapCIMDProvider(t, st, u.Scheme+"://"+u.Host+"/agent/", "claude-code")
	if _, err := oauthtest.CodeFlow(ctx, st.URL(), id, cimdRedirect, "alice", "demo", resource, "jira:read"); err != nil {
		t.Fatalf("a document under a mapped prefix: %v", err)
	}
}

// TestMetadataDocumentsAirGapped: with fetching off, a pinned document
// (pinned_dir, keyed by its own client_id) works with no fetch — its host
// does not exist — and any other URL client id is refused, on the page a
// browser gets, saying nothing is pinned for it. With documents off, a URL
// client id is an unknown client and the metadata does not advertise
// documents.
func TestMetadataDocumentsAirGapped(t *testing.T) {
	const id = "https://agent.invalid/oauth/client.json"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "agent.json"), cimdDocument(id, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	off := false
	st := openCIMDStack(t, &config.Clients{MetadataDocuments: &config.MetadataDocuments{Fetch: &off, PinnedDir: dir}})
	ctx := t.Context()
	mapCIMDProvider(t, st, id, "claude-code")
	resource := st.URL() + "/mcp/jira"
	if _, err := oauthtest.CodeFlow(ctx, st.URL(), id, cimdRedirect, "alice", "demo", resource, "jira:read"); err != nil {
		t.Fatalf("a pinned document, fetching off: %v", err)
	}

	status, body := authorizePage(t, st.URL(), "https://agent.invalid/other/client.json")
	if status != http.StatusUnauthorized || !strings.Contains(body, "invalid_client") ||
		!strings.Contains(body, "does not fetch client metadata documents, and none is pinned for this client_id") {
		t.Fatalf("an unpinned URL, fetching off: %d\n%s", status, body)
	}

	disabled := openCIMDStack(t, &config.Clients{MetadataDocuments: &config.MetadataDocuments{Enabled: &off}})
	if meta := getJSON(t, disabled.URL()+"/.well-known/oauth-authorization-server"); meta["client_id_metadata_document_supported"] != nil {
		t.Fatalf("documents off, the metadata says client_id_metadata_document_supported = %v", meta["client_id_metadata_document_supported"])
	}
	status, body = authorizePage(t, disabled.URL(), id)
	if status < 400 || !strings.Contains(body, "invalid_client") {
		t.Fatalf("documents off: %d\n%s", status, body)
	}
}

// authorizePage is what a browser gets for an authorization request of
// client id (no redirect is followed).
func authorizePage(t *testing.T, base, id string) (int, string) {
	t.Helper()
	q := url.Values{"response_type": {"code"}, "client_id": {id}, "redirect_uri": {cimdRedirect}, "state": {"state-123456789"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}, "scope": {"jira:read"}}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/oauth2/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if loc := resp.Header.Get("Location"); loc != "" {
		t.Fatalf("an unknown client was redirected to %s", loc)
	}
	return resp.StatusCode, string(body)
}

func getJSON(t *testing.T, u string) map[string]any {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
	}
	return m
}
