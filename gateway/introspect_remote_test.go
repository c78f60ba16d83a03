package gateway_test

import (
	"context"
	"slices"
	"testing"

	"github.com/pbac-gateway/pbac/gateway"
)

// The gateway's own client at the AS of newStack (asrv.Introspector).
const testIntrospectorID, testIntrospectorSecret = "gateway", "test-introspector-secret-0123456789"

// TestRemoteIntrospectorMatchesInProcess: the gateway's RFC 7662 client,
// against the real AS over HTTP, sees what the in-process introspection
// sees (so a gateway with a remote AS decides the same).
func TestRemoteIntrospectorMatchesInProcess(t *testing.T) {
	s := newStack(t)
	token := s.humanAgent("claude-code", "alice", "jira:read", "jira:write")
	remote := &gateway.RemoteIntrospector{Endpoint: s.base + "/oauth2/introspect", ClientID: testIntrospectorID, ClientSecret: testIntrospectorSecret}
	got, err := remote.Introspect(context.Background(), token, "")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Active || got.Subject != "alice" || !slices.Equal(got.Roles, []string{"engineering", "dba"}) ||
		got.Agent.AgentProvider != "claude-code" || !got.Agent.Verified || got.Tier != "developer" {
		t.Fatalf("remote introspection %+v (agent %+v)", got, got.Agent)
	}
	if res, err := remote.Introspect(context.Background(), token+"x", ""); err != nil || res.Active {
		t.Fatalf("tampered token: %+v %v", res, err)
	}
	bad := &gateway.RemoteIntrospector{Endpoint: s.base + "/oauth2/introspect", ClientID: testIntrospectorID, ClientSecret: "wrong"}
	if _, err := bad.Introspect(context.Background(), token, ""); err == nil {
		t.Fatal("introspection with a wrong secret did not fail")
	}
}
