package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/bench/lightmcp"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	system "github.com/pbac-gateway/pbac/internal/stack"
)

// newLightStack is the stack with the light bench backend as "jira".
func newLightStack(t testing.TB) *stack { return newLightStackWith(t, nil) }

// newLightStackWith is newLightStack with the system's configuration
// adjusted by config (nil: as it is).
func newLightStackWith(t testing.TB, config func(*system.Config)) *stack {
	t.Helper()
	light, err := lightmcp.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = light.Close(context.Background()) })
	s := newStackWith(t, stackOptions{backendURL: func(name, url string) string {
		if name == "jira" {
			return light.URL
		}
		return url
	}, config: config})
	s.direct["jira"] = light.URL
	return s
}

// callAt makes one tools/call through the gateway with the go-sdk client on
// revision version: the result's text and whether policy denied it, or the
// error the client got.
func (s *stack) callAt(version, token, backend, tool string, args map[string]any) (text string, denied bool, err error) {
	s.t.Helper()
	ctx := context.Background()
	client := mcp.NewClient(&mcp.Implementation{Name: "pbac-test", Version: "1"}, nil)
	sess, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             s.base + "/mcp/" + backend,
		HTTPClient:           &http.Client{Transport: &oauthtest.BearerTransport{Token: token}},
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
	}, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		return "", false, err
	}
	defer sess.Close()
	if got := sess.InitializeResult().ProtocolVersion; got != version {
		s.t.Fatalf("negotiated %s through the gateway, want %s", got, version)
	}
	res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return "", false, err
	}
	return demo.ResultText(res), res.Meta[contract.DenialMetaKey] != nil, nil
}

// TestGatewayFrontsLightBackend: the gateway fronts the light bench
// backend as "jira" unchanged, on a revision with sessions and on the
// stateless one, and decides its calls as the demo jira's.
func TestGatewayFrontsLightBackend(t *testing.T) {
	s := newLightStack(t)
	readWrite := s.machineAgent("ci-bot", false, "jira:read", "jira:write")
	readOnly := s.machineAgent("ci-bot", false, "jira:read")
	for _, version := range []string{"2025-11-25", lightmcp.Stateless} {
		for _, tc := range []struct {
			name, token, tool string
			args              map[string]any
			check             func(text string, denied bool, err error) bool
		}{
			{"ci-bot searches issues", readWrite, "search_issues", map[string]any{"query": "SEC"},
				func(text string, denied bool, err error) bool {
					return err == nil && !denied && strings.Contains(text, `light bench backend: no issues for query "SEC"`)
				}},
			// Policy refuses it before the backend: 403 with the scope that
			// would do (step-up), which the go-sdk client reports as an error.
			{"ci-bot with read alone may not create an issue", readOnly, "create_issue", map[string]any{"project": "SEC", "summary": "x"},
				func(_ string, _ bool, err error) bool {
					return err != nil && strings.Contains(err.Error(), "denied by policy: token lacks scope jira:write") &&
						strings.Contains(err.Error(), "Forbidden")
				}},
			// Policy allows it (ci_agent writes jira); the light backend
			// serves search_issues alone and answers the JSON-RPC error.
			{"ci-bot with write may create an issue, which the light backend does not serve", readWrite, "create_issue", map[string]any{"project": "SEC", "summary": "x"},
				func(_ string, _ bool, err error) bool {
					return err != nil && strings.Contains(err.Error(), "unknown tool: create_issue") && !strings.Contains(err.Error(), "denied")
				}},
		} {
			t.Run(version+"/"+tc.name, func(t *testing.T) {
				text, denied, err := s.callAt(version, tc.token, "jira", tc.tool, tc.args)
				if !tc.check(text, denied, err) {
					t.Fatalf("got denied=%v %q, err %v", denied, text, err)
				}
			})
		}
	}
	// The trail says the same, a record per call and revision.
	for _, want := range []struct {
		tool, decision string
	}{{"jira.search_issues", "allow"}, {"jira.create_issue", "deny"}, {"jira.create_issue", "allow"}} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			recs, err := s.index.Query(context.Background(), audit.Filter{Tool: want.tool, Decision: want.decision, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s %s: %d audit records, want 2", want.tool, want.decision, len(recs))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
