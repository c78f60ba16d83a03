package gateway_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/internal/policytest"
)

// A tools/call policy cannot decide (here, one that runs until the
// evaluation deadline stops it) is a 403 JSON-RPC error saying so, audited
// as an error with the cause; the next call is decided as usual.
func TestUndecidedCallIs403AndTheNextIsDecided(t *testing.T) {
	s := newStack(t)
	if _, err := s.registry.Activate(context.Background(), policytest.Runaway(t), "runaway"); err != nil {
		t.Fatal(err)
	}
	token := s.machineAgent("ci-bot", false, "drive:read")
	post := func(tool, args string) (int, string) {
		body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `}}`
		req, _ := http.NewRequest(http.MethodPost, s.base+"/mcp/drive", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	_, runaway, _ := strings.Cut(policytest.RunawayTool, ".")
	status, out := post(runaway, `{"runaway":true}`)
	if status != http.StatusForbidden || !strings.Contains(out, `"id":7`) || !strings.Contains(out, "denied: the policy could not decide") {
		t.Fatalf("an undecided call: %d %s, want 403 and a JSON-RPC error saying the policy could not decide", status, out)
	}
	recs, err := s.waitAudit(audit.Filter{Decision: "error", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[0]; r.Tool != policytest.RunawayTool || r.Status != http.StatusForbidden ||
		len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "timed out") {
		t.Fatalf("audit record %+v, want the call, 403 and the cause", r)
	}
	if status, out := post("read_file", `{"path":"/public/handbook.md"}`); status != http.StatusOK {
		t.Fatalf("the next call: %d %s", status, out)
	}
}

// When policy cannot decide on the token itself (no version is active, so
// introspection's decision cannot be made), the request is a 403 saying so,
// not a 401 that would send the client off for another token.
func TestUndecidedIntrospectionIs403NotA401(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "drive:read")
	if err := s.registry.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/public/handbook.md"}}}`
	req, _ := http.NewRequest(http.MethodPost, s.base+"/mcp/drive", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(out), "denied: the policy could not decide") ||
		resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("got %d %s (WWW-Authenticate %q), want 403: the policy could not decide", resp.StatusCode, out, resp.Header.Get("WWW-Authenticate"))
	}
}
