package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	system "github.com/pbac-gateway/pbac/internal/stack"
)

// TestPromptsAndResourcesAreDecided: on /mcp/<backend>, prompts/get and
// resources/read are decided by policy through the catalogue like tools
// (the shipped data catalogues jira's triage_issue prompt and every
// jira://issue/ URI), and prompts/list, resources/list and
// resources/templates/list show only what the caller may use — with the
// go-sdk client, as an MCP client sees them.
func TestPromptsAndResourcesAreDecided(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	sess, err := s.connect(s.machineAgent("ci-bot", false, "jira:read"), "jira")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	servesJiraPromptsAndResources(t, sess, "", "")

	// What the catalogue does not cover, or a URI that could leave the
	// prefix it sits under, is denied before the backend.
	for _, uri := range []string{"jira://admin/keys", "jira://issue/../admin/keys", "jira://issue/%2e%2e/admin", "jira://issue//admin", "jira://issue/..;/admin"} {
		if _, err := sess.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri}); err == nil || !strings.Contains(err.Error(), "denied") {
			t.Errorf("resources/read %s: %v, want a denial", uri, err)
		}
	}
	if _, err := sess.GetPrompt(ctx, &mcp.GetPromptParams{Name: "exfiltrate"}); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Errorf("prompts/get of an uncatalogued prompt: %v, want a denial", err)
	}
	recs, err := s.waitAudit(audit.Filter{Decision: "deny", Tool: "jira.resource:jira://admin/keys", Limit: 5})
	if err != nil || len(recs) != 1 || recs[0].Method != "resources/read" {
		t.Errorf("audit of the denied read: %v %+v", err, recs)
	}

	// A read carries no arguments (policy's argument rules must not be met
	// or dodged by ones the backend ignores); a subscription is decided
	// like a read.
	status, _, _, body := s.rpcCall("/mcp/jira", s.machineAgent("ci-bot", false, "jira:read"), "2025-11-25", "",
		`{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"jira://issue/SEC-12","arguments":{"path":"/public/x"}}}`)
	if status != http.StatusForbidden || !strings.Contains(body, "denied") {
		t.Errorf("resources/read with arguments: %d %s", status, body)
	}
	status, _, _, body = s.rpcCall("/mcp/jira", s.machineAgent("ci-bot", false, "jira:read"), "2025-11-25", "",
		`{"jsonrpc":"2.0","id":5,"method":"resources/subscribe","params":{"uri":"jira://admin/keys"}}`)
	if status != http.StatusForbidden || !strings.Contains(body, "denied") {
		t.Errorf("resources/subscribe to an uncatalogued URI: %d %s", status, body)
	}
	status, _, _, body = s.rpcCall("/mcp/jira", s.machineAgent("ci-bot", false, "jira:read"), "2025-11-25", "",
		`{"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":"jira://issue/SEC-12","URI":"jira://admin/keys"}}`)
	if status != http.StatusBadRequest {
		t.Errorf("resources/read with a second spelling of uri: %d %s", status, body)
	}

	// Another tier without jira:read sees and reads nothing of it.
	none := s.machineAgent("ci-bot", false, "drive:read")
	status, _, _, body = s.rpcCall("/mcp/jira", none, "2025-11-25", "",
		`{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"jira://issue/SEC-12"}}`)
	if status != http.StatusForbidden {
		t.Errorf("resources/read without jira:read: %d %s", status, body)
	}
}

// TestListsKeepOnlyWhatPolicyShows: a backend's prompts, resources and
// templates lists reach the caller with only the catalogued items policy
// lets it see — an uncatalogued URI, one that climbs out of its prefix, a
// URI listed twice, an item whose keys repeat and a template outside every
// prefix are dropped — each kept item as the backend wrote it, the list
// private to the caller.
func TestListsKeepOnlyWhatPolicyShows(t *testing.T) {
	lists := map[string]string{
		"prompts/list": `{"prompts":[{"name":"triage_issue","description":"t","icons":[{"src":"https://tracker.example.net/p.png"}]},{"name":"exfiltrate"},` +
			`{"name":"x","name":"triage_issue"}],"ttlMs":1000,"cacheScope":"public"}`,
		"resources/list": `{"resources":[{"uri":"jira://issue/SEC-12","name":"SEC-12"},{"uri":"jira://admin/keys","name":"keys"},` +
			`{"uri":"jira://issue/../admin/keys","name":"climb"},{"uri":"jira://issue/SEC-13","name":"a"},{"uri":"jira://issue/SEC-13","name":"b"},` +
			`{"uri":"jira://issue/SEC-14","URI":"jira://admin/keys","name":"two keys"}]}`,
		"resources/templates/list": `{"resourceTemplates":[{"uriTemplate":"jira://issue/{key}","name":"issue"},{"uriTemplate":"jira://{area}/keys","name":"any"},` +
			`{"uriTemplate":"jira://issue/{+path}","name":"reserved expansion"},{"uriTemplate":"jira://issue/{/a,b}","name":"path segments"}]}`,
	}
	s := newStackBehind(t, listsBackend(lists), nil)
	token := s.machineAgent("ci-bot", false, "jira:read")
	for _, tc := range []struct{ method, want string }{
		{"prompts/list", `"prompts":[{"description":"t","name":"triage_issue"}]`}, // its tracking icon removed
		{"resources/list", `"resources":[{"uri":"jira://issue/SEC-12","name":"SEC-12"}]`},
		{"resources/templates/list", `"resourceTemplates":[{"uriTemplate":"jira://issue/{key}","name":"issue"}]`},
	} {
		status, _, _, body := s.rpcCall("/mcp/jira", token, "2025-11-25", "", `{"jsonrpc":"2.0","id":9,"method":"`+tc.method+`","params":{}}`)
		var answer struct {
			Result json.RawMessage `json:"result"`
		}
		if status != http.StatusOK || json.Unmarshal([]byte(body), &answer) != nil || !strings.Contains(string(answer.Result), tc.want) {
			t.Errorf("%s: %d %s\nwant a result with %s", tc.method, status, body, tc.want)
		}
		if tc.method == "prompts/list" && !strings.Contains(body, `"cacheScope":"private"`) {
			t.Errorf("%s: a filtered list with hints is not private: %s", tc.method, body)
		}
	}
}

// TestAggregatedPromptsAndResources: the aggregated /mcp serves every
// backend's prompts as "<backend>.<name>" and resources as
// "<backend>+<uri>" (templates too), filtered and decided as on
// /mcp/<backend>; a read's contents come back under the aggregated URI.
func TestAggregatedPromptsAndResources(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	client := mcp.NewClient(&mcp.Implementation{Name: "pbac-test", Version: "1"}, nil)
	sess, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             s.base + "/mcp",
		HTTPClient:           &http.Client{Transport: &oauthtest.BearerTransport{Token: s.machineAgent("ci-bot", false, "jira:read")}},
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if caps := sess.InitializeResult().Capabilities; caps.Prompts == nil || caps.Resources == nil {
		t.Fatalf("the aggregated server declares %+v", caps)
	}
	servesJiraPromptsAndResources(t, sess, "jira.", "jira+")
	for _, tc := range []struct{ uri, want string }{
		{"jira+jira://admin/keys", "denied"},
		{"jira+jira://issue/../admin/keys", "denied"},
		{"nowhere+jira://issue/SEC-12", "unknown resource"},
		{"jira://issue/SEC-12", "unknown resource"},
	} {
		if _, err := sess.ReadResource(ctx, &mcp.ReadResourceParams{URI: tc.uri}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("resources/read %s: %v, want %q", tc.uri, err, tc.want)
		}
	}
	if _, err := sess.GetPrompt(ctx, &mcp.GetPromptParams{Name: "jira.exfiltrate"}); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Errorf("prompts/get of an uncatalogued prompt: %v, want a denial", err)
	}
}

// TestListedIconsFromAllowedSourcesOnly: a listed tool keeps the icons
// served from a configured source (icon_sources) and loses the others.
func TestListedIconsFromAllowedSourcesOnly(t *testing.T) {
	jira := &craftedJira{}
	s := newStackBehind(t, jira, func(c *system.Config) { c.Gateway.IconSources = []string{"https://static.example.com/icons/"} })
	token := s.machineAgent("ci-bot", false, "jira:read")
	tool := strings.Replace(genuineSearch, `"name":"search_issues"`, `"name":"search_issues","icons":[{"src":"https://static.example.com/icons/jira.png"},{"src":"https://tracker.example.net/p.png?u=1"}]`, 1)
	if tool == genuineSearch {
		t.Fatal("the fixture has no name to put icons beside")
	}
	jira.set("application/json", `{"jsonrpc":"2.0","id":%ID%,"result":{"tools":[`+tool+`]}}`)
	status, _, _, body := s.rpcCall("/mcp/jira", token, "2025-11-25", "", `{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{}}`)
	if status != http.StatusOK || !strings.Contains(body, "https://static.example.com/icons/jira.png") || strings.Contains(body, "tracker.example.net") {
		t.Fatalf("tools/list: %d %s", status, body)
	}
}

// TestBackendNamesCannotBlurAggregatedURIs: the aggregated server reads a
// resource back by the first "+" of "<backend>+<uri>", so a backend name
// may hold neither "+" nor ":" (nor "." for tools and prompts).
func TestBackendNamesCannotBlurAggregatedURIs(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"a+b", false}, {"a:b", false}, {"a.b", false}, {"a_b-1", true}} {
		g, err := gateway.New(gateway.Config{PublicURL: "http://127.0.0.1:1", Introspector: noIntrospection{},
			Policy: contract.DeciderFunc(func(context.Context, contract.Entrypoint, []byte) (contract.Decision, error) {
				return contract.Decision{}, nil
			}),
			Backends: []gateway.Backend{{Name: tc.name, URL: "http://127.0.0.1:2/mcp"}}})
		if (err == nil) != tc.ok {
			t.Errorf("backend %q: %v", tc.name, err)
		}
		if g != nil {
			_ = g.Shutdown(context.Background())
		}
	}
}

type noIntrospection struct{}

func (noIntrospection) Introspect(context.Context, string, string) (contract.Identity, error) {
	return contract.Identity{}, nil
}

// TestALongResourceListIsDecided: a resources/list of 2,000 URIs is
// decided (in parts, each within one evaluation's time), not refused as
// undecided.
func TestALongResourceListIsDecided(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"resources":[`)
	for i := range 2000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"uri":"jira://issue/SEC-%d","name":"SEC-%d"}`, i, i)
	}
	b.WriteString(`]}`)
	s := newStackBehind(t, listsBackend(map[string]string{"resources/list": b.String()}), nil)
	status, _, _, body := s.rpcCall("/mcp/jira", s.machineAgent("ci-bot", false, "jira:read"), "2025-11-25", "",
		`{"jsonrpc":"2.0","id":9,"method":"resources/list","params":{}}`)
	if status != http.StatusOK || strings.Count(body, `"uri":`) != 2000 {
		t.Fatalf("resources/list of 2,000: %d, %d URIs listed", status, strings.Count(body, `"uri":`))
	}
}

// TestCompletionIsDecidedByWhatItCompletes: completion/complete reaches
// the backend only for a prompt or a resource template the caller may
// use; one naming anything else is denied (or refused when it names a
// template with an RFC 6570 operator, or names it twice, once in another
// case), so completions of a prompt or template it may not use never come
// back.
func TestCompletionIsDecidedByWhatItCompletes(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "jira:read")
	sid := s.initialized("/mcp/jira", token)
	complete := func(ref string) (int, string) {
		status, _, _, body := s.rpcCall("/mcp/jira", token, "2025-11-25", sid,
			`{"jsonrpc":"2.0","id":7,"method":"completion/complete","params":{"ref":`+ref+`,"argument":{"name":"key","value":"SEC"}}}`)
		return status, body
	}
	for _, tc := range []struct {
		ref    string
		status int
	}{
		{`{"type":"ref/prompt","name":"triage_issue"}`, http.StatusOK},
		{`{"type":"ref/resource","uri":"jira://issue/{key}"}`, http.StatusOK},
		{`{"type":"ref/prompt","name":"exfiltrate"}`, http.StatusForbidden},
		{`{"type":"ref/resource","uri":"jira://admin/{k}"}`, http.StatusForbidden},
		{`{"type":"ref/resource","uri":"jira://issue/{+path}"}`, http.StatusBadRequest},
		{`{"type":"ref/tool","name":"get_issue"}`, http.StatusBadRequest},
		// A name in another case beside the exact one: the backend reads
		// the exact one, encoding/json the last, so neither is decided.
		{`{"type":"ref/prompt","name":"exfiltrate","NAME":"triage_issue"}`, http.StatusBadRequest},
		{`{"type":"ref/resource","uri":"jira://admin/{k}","URI":"jira://issue/{key}"}`, http.StatusBadRequest},
		{`{"type":"ref/resource","uri":"jira://issue/{+path}","Uri":"jira://issue/{key}"}`, http.StatusBadRequest},
		{`{"type":"ref/tool","Type":"ref/prompt","name":"triage_issue"}`, http.StatusBadRequest},
		{`{"type":"ref/prompt","name":7}`, http.StatusBadRequest},
		{`{"type":"ref/prompt","name":"triage_issue"},"Ref":{"type":"ref/prompt","name":"exfiltrate"}`, http.StatusBadRequest},
	} {
		if status, body := complete(tc.ref); status != tc.status {
			t.Errorf("completion/complete of %s: %d %s, want %d", tc.ref, status, body, tc.status)
		}
	}
}

// newStackBehind is newStackWith with jira's URL served by h (a crafted
// backend); config, when set, adjusts the system's configuration.
func newStackBehind(t *testing.T, h http.Handler, config func(*system.Config)) *stack {
	t.Helper()
	fake := httptest.NewServer(h)
	t.Cleanup(fake.Close)
	return newStackWith(t, stackOptions{backendURL: func(name, url string) string {
		if name == "jira" {
			return fake.URL
		}
		return url
	}, config: config})
}

// listsBackend answers initialize and, for each list method in lists, the
// result given there; anything else is accepted with no answer.
func listsBackend(lists map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &m)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Mcp-Session-Id", "fake")
		switch {
		case m.Method == "initialize":
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{"protocolVersion":"2025-11-25","capabilities":{"prompts":{},"resources":{}},"serverInfo":{"name":"jira","version":"1"}}}`)
		case lists[m.Method] != "":
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":`+lists[m.Method]+`}`)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	})
}

// TestServerInfoIconsFromAllowedSourcesOnly: the server's own icons, in
// initialize's serverInfo and in server/discover's _meta, are held to the
// icon sources like a listed tool's.
func TestServerInfoIconsFromAllowedSourcesOnly(t *testing.T) {
	icons := `"icons":[{"src":"https://static.example.com/icons/jira.png"},{"src":"https://tracker.example.net/p.png?u=1"}]`
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &m)
		w.Header().Set("Mcp-Session-Id", "fake")
		switch m.Method {
		case "initialize":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":"+string(m.ID)+`,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"jira","version":"1",`+icons+"}}}\n\n")
		case "server/discover":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"jira","version":"1",`+icons+`}}}}`)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	})
	s := newStackBehind(t, backend, func(c *system.Config) { c.Gateway.IconSources = []string{"https://static.example.com/icons/"} })
	token := s.machineAgent("ci-bot", false, "jira:read")
	for _, tc := range []struct{ protocol, method, body string }{
		{"2025-11-25", "initialize", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`},
		{"2026-07-28", "server/discover", `{"jsonrpc":"2.0","id":2,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`},
	} {
		status, _, _, body := s.rpcCall("/mcp/jira", token, tc.protocol, "", tc.body, "Mcp-Method", tc.method)
		if status != http.StatusOK || !strings.Contains(body, "https://static.example.com/icons/jira.png") || strings.Contains(body, "tracker.example.net") {
			t.Errorf("%s: %d %s", tc.method, status, body)
		}
	}
}

// servesJiraPromptsAndResources checks the demo jira's prompt, resources
// and template through sess, named with prefix (prompts) and uriPrefix
// (resources): "" on /mcp/jira, "jira." and "jira+" on the aggregated
// server.
func servesJiraPromptsAndResources(t *testing.T, sess *mcp.ClientSession, prefix, uriPrefix string) {
	t.Helper()
	ctx := t.Context()
	prompts, err := sess.ListPrompts(ctx, nil)
	if err != nil || len(prompts.Prompts) != 1 || prompts.Prompts[0].Name != prefix+"triage_issue" {
		t.Fatalf("prompts/list: %v %+v", err, prompts)
	}
	got, err := sess.GetPrompt(ctx, &mcp.GetPromptParams{Name: prefix + "triage_issue", Arguments: map[string]string{"key": "SEC-12"}})
	if err != nil || len(got.Messages) != 1 || !strings.Contains(got.Messages[0].Content.(*mcp.TextContent).Text, "SEC-12") {
		t.Fatalf("prompts/get: %v %+v", err, got)
	}
	resources, err := sess.ListResources(ctx, nil)
	if err != nil || len(resources.Resources) == 0 {
		t.Fatalf("resources/list: %v %+v", err, resources)
	}
	for _, r := range resources.Resources {
		if !strings.HasPrefix(r.URI, uriPrefix+"jira://issue/") {
			t.Errorf("resources/list shows %s", r.URI)
		}
	}
	templates, err := sess.ListResourceTemplates(ctx, nil)
	if err != nil || len(templates.ResourceTemplates) != 1 || templates.ResourceTemplates[0].URITemplate != uriPrefix+"jira://issue/{key}" {
		t.Fatalf("resources/templates/list: %v %+v", err, templates)
	}
	read, err := sess.ReadResource(ctx, &mcp.ReadResourceParams{URI: uriPrefix + "jira://issue/SEC-12"})
	if err != nil || len(read.Contents) != 1 || read.Contents[0].URI != uriPrefix+"jira://issue/SEC-12" || !strings.Contains(read.Contents[0].Text, "SEC-12") {
		t.Fatalf("resources/read: %v %+v", err, read)
	}
}
