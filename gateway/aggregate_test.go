package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// TestAggregatedServer: one URL, every backend's tools as <backend>.<tool>,
// filtered by policy, each call decided.
func TestAggregatedServer(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "jira:read", "jira:write", "drive:read")
	client := mcp.NewClient(&mcp.Implementation{Name: "agg-test", Version: "1"}, nil)
	sess, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: s.base + "/mcp", MaxRetries: -1, DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: &oauthtest.BearerTransport{Token: token}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	list, err := sess.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"jira.search_issues", "jira.create_issue", "drive.read_file"} {
		if !strings.Contains(got, want) {
			t.Fatalf("tools %s lack %s", got, want)
		}
	}
	for _, hidden := range []string{"slack.", "drive.write_file", "database.execute_ddl", "jenkins.trigger_deploy"} {
		if strings.Contains(got, hidden) {
			t.Fatalf("the CI bot is shown %s: %s", hidden, got)
		}
	}
	res, err := sess.CallTool(context.Background(), &mcp.CallToolParams{Name: "jira.search_issues", Arguments: map[string]any{"query": "SEC"}})
	if err != nil || res.IsError {
		t.Fatalf("allowed call: %v %+v", err, res)
	}
	if res, err := sess.CallTool(context.Background(), &mcp.CallToolParams{Name: "slack.post_message",
		Arguments: map[string]any{"channel": "general", "text": "hi"}}); err != nil || !res.IsError || res.Meta[contract.DenialMetaKey] == nil ||
		!strings.Contains(demo.ResultText(res), "denied by policy") {
		t.Fatalf("denied call: %v %+v", err, res)
	}
	if _, err := sess.CallTool(context.Background(), &mcp.CallToolParams{Name: "nosuch", Arguments: map[string]any{}}); err == nil {
		t.Fatal("a tool without a backend prefix was accepted")
	}
}

// TestAggregatedStatelessRevision: a 2026-07-28 client needs no initialize
// or session: server/discover, tools/list and tools/call with the headers.
func TestAggregatedStatelessRevision(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "jira:read")
	post := func(method, name, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, s.base+"/mcp", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("MCP-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", method)
		if name != "" {
			req.Header.Set("Mcp-Name", name)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := post("server/discover", "", `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}`); status != 200 || !strings.Contains(body, `"supportedVersions"`) {
		t.Fatalf("discover: %d %s", status, body)
	} else if !strings.Contains(body, `"extensions":{"`+gateway.ExtensionOAuthClientCredentials+`":{}}`) {
		// SEP-1046: the token above is a client-credentials token.
		t.Fatalf("discover does not advertise the client credentials extension: %s", body)
	}
	if status, body := post("tools/list", "", `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}`); status != 200 || !strings.Contains(body, "jira.search_issues") {
		t.Fatalf("tools/list: %d %s", status, body)
	}
	if status, body := post("tools/call", "jira.search_issues", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"jira.search_issues","arguments":{"query":"SEC"}}}`); status != 200 || !strings.Contains(body, `"result"`) {
		t.Fatalf("tools/call: %d %s", status, body)
	}
}

// TestAggregatedConcurrentCallsOfOneAgent: the stateless calls of one
// agent share the gateway's backend session, so the requests the gateway
// sends there must not share a JSON-RPC id: a backend refuses a second
// in-flight request with the same id ("duplicate in-flight request ID"),
// which the caller got as "backend jira failed" (found by TestThreeReplicas
// once it counted only calls that reached the backend).
func TestAggregatedConcurrentCallsOfOneAgent(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "jira:read")
	const callers, calls = 8, 10
	errs := make(chan string, callers*calls)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			client := &demo.AgentClient{BaseURL: s.base}
			for range calls {
				res, err := client.CallTool(t.Context(), token, "jira.search_issues", map[string]any{"query": "SEC"})
				switch {
				case err != nil:
					errs <- err.Error()
				case res.Status != http.StatusOK || res.Denied || res.Result == nil || res.Result.IsError:
					errs <- fmt.Sprintf("%d denied=%v %s", res.Status, res.Denied, res.Error)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	var failed []string
	for e := range errs {
		failed = append(failed, e)
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d concurrent calls failed; first: %s", len(failed), callers*calls, failed[0])
	}
}
