package gateway_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/internal/policytest"
)

// TestContractV1BundleAtTheGateway: with a bundle of contract version 1
// active (before pbac/method), an MCP client of a backend its token holds
// a scope for still starts a session, lists and calls tools; every other
// method is refused by the built-in fallback before it reaches the backend,
// as is a session on a backend the token holds no scope for.
func TestContractV1BundleAtTheGateway(t *testing.T) {
	log := newBackendLog(t)
	s := newStackWith(t, stackOptions{backendURL: log.proxy})
	ci := s.machineAgent("ci-bot", false, "jira:read", "jira:write")
	info, err := s.registry.Activate(context.Background(), policytest.ContractV1(t), "v1")
	if err != nil || info.ContractVersion != 1 {
		t.Fatalf("activate the version 1 bundle: %+v %v", info, err)
	}

	status, sid, body := s.rpc(ci, http.MethodPost, "/mcp/jira", "", initBody)
	if status != http.StatusOK || sid == "" {
		t.Fatalf("initialize on jira: %d %q %s", status, sid, body)
	}
	if status, _, body := s.rpc(ci, http.MethodPost, "/mcp/jira", sid, rpcBody("tools/list", false)); status != http.StatusOK {
		t.Fatalf("tools/list on jira: %d %s", status, body)
	}
	if ok, why := s.call(ci, "jira", "search_issues", map[string]any{"query": "x"}); !ok {
		t.Fatalf("a call the version 1 policy allows: %s", why)
	}
	status, _, body = s.rpc(ci, http.MethodPost, "/mcp/jira", sid, rpcBody("resources/list", false))
	if status != http.StatusForbidden || !strings.Contains(body, "predates pbac/method") {
		t.Fatalf("resources/list on jira: %d %s", status, body)
	}
	status, _, body = s.rpc(ci, http.MethodPost, "/mcp/slack", "", initBody)
	if status != http.StatusForbidden || !strings.Contains(body, "holds no scope on slack") {
		t.Fatalf("initialize on slack: %d %s", status, body)
	}
	if got := log.of("jira"); slices.Contains(got, "POST resources/list") {
		t.Fatalf("jira got a method the fallback refused: %v", got)
	}
	if got := log.of("slack"); len(got) != 0 {
		t.Fatalf("slack saw %v", got)
	}
}
