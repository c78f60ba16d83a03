package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// TestApprovalsInBrowser runs dashboard/e2e/approvals.test.mjs (issue 20):
// the CI bot's deploy, made here by a go-sdk client on revision
// 2026-07-28 through the real `pbac up`, is held; in the browser the
// approval link is opened signed out, alice (not in release) may not
// decide it, bob approves it with a comment; the browser test then asks
// this test's control endpoint (PBAC_APPROVALS_CONTROL, POST /retry) to
// retry the call with the requestState it was given — the deploy goes
// through, and the same retry again is refused — and reads the
// approval's story in the audit view and the onboarding's run of the
// deploy-approval scenario.
func TestApprovalsInBrowser(t *testing.T) {
	b := needBrowser(t)
	base, out := startUp(t, t.TempDir())
	creds := ciCreds.FindStringSubmatch(out.String())
	dash := dashboardLine.FindStringSubmatch(out.String())
	if creds == nil || dash == nil {
		t.Fatalf("no CI bot credentials or dashboard in the output:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 9*time.Minute)
	defer cancel()

	tok, err := oauthtest.ClientCredentials(ctx, base, creds[1], creds[2], base+"/mcp", "jenkins:read jenkins:build jenkins:deploy")
	if err != nil {
		t.Fatalf("the CI bot's token: %v", err)
	}
	hc := &http.Client{Transport: &oauthtest.BearerTransport{Token: tok.AccessToken}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	// The client takes URL elicitation and handles the input_required
	// result itself, as an agent that shows the person the page would.
	client := mcp.NewClient(&mcp.Implementation{Name: "approvals-browser-test", Version: "1"}, &mcp.ClientOptions{
		Capabilities:   &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}},
		MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
	})
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp", HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatalf("connect to /mcp as the CI bot: %v", err)
	}
	defer cs.Close()

	const tool = "jenkins.trigger_deploy"
	args := map[string]any{"job": "deploy-prod", "environment": "production"}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("the deploy: %v", err)
	}
	if !res.NeedsInput() {
		t.Fatalf("the deploy was not held for an approval: %+v", res)
	}
	ep, ok := res.InputRequests["pbac_approval"].(*mcp.ElicitParams)
	if !ok || ep.URL == "" {
		t.Fatalf("input request = %#v, want a URL elicitation of the approval page", res.InputRequests["pbac_approval"])
	}
	if want := dash[1] + "/ui/approvals/" + path.Base(ep.URL); ep.URL != want {
		t.Fatalf("the approval page is %q, want the dashboard's approval link %q", ep.URL, want)
	}
	state := res.RequestState
	if state == "" {
		t.Fatal("the held call's answer has no requestState")
	}

	retry := func(ctx context.Context) (*mcp.CallToolResult, error) {
		return cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args,
			InputResponses: mcp.InputResponseMap{"pbac_approval": &mcp.ElicitResult{Action: "accept"}}, RequestState: state})
	}
	// POST /retry (once, when bob has approved): the retry goes through
	// with the deploy's result; the same retry again is refused.
	var (
		mu      sync.Mutex
		retried bool
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /retry", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if retried {
			http.Error(w, "the held call was retried already", http.StatusConflict)
			return
		}
		rctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		text, err := func() (string, error) {
			res, err := retry(rctx)
			switch {
			case err != nil:
				return "", err
			case res.NeedsInput():
				return "", errors.New("the retry was held again")
			case res.IsError:
				return "", errors.New("the retry is a tool error: " + toolText(res))
			case !strings.Contains(toolText(res), "deploy-prod"):
				return "", errors.New("the retry's result is not the deploy's: " + toolText(res))
			}
			replay, err := retry(rctx)
			if err == nil || !strings.Contains(err.Error(), "already used") {
				return "", errors.New("the same retry again: want refused as already used, got " + callOutcome(replay, err))
			}
			return toolText(res), nil
		}()
		if err != nil {
			t.Errorf("retry of the approved deploy: %v", err)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		retried = true
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"text": text})
	})
	control := httptest.NewServer(mux)
	defer control.Close()

	b.run(t, dash[1]+"/ui/", []string{"PBAC_APPROVAL_URL=" + ep.URL, "PBAC_APPROVALS_CONTROL=" + control.URL,
		"PBAC_DEMO_PASSWORD=" + asrv.DemoPassword}, "approvals.test.mjs")
	mu.Lock()
	defer mu.Unlock()
	if !retried {
		t.Fatal("the browser test never had the approved deploy retried")
	}
}

// toolText is the text content of a tool result.
func toolText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func callOutcome(res *mcp.CallToolResult, err error) string {
	if err != nil {
		return err.Error()
	}
	b, _ := json.Marshal(res)
	return string(b)
}
