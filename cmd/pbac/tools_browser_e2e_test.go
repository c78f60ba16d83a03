package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// TestToolReviewInBrowser runs dashboard/e2e/tools.test.mjs: an operator
// reviews, in the dashboard of the real `pbac up`, the tool of a
// third-party backend (the Go SDK's, here) that the browser test has the
// CI bot list through the gateway and re-describe, through a control
// endpoint of this test (PBAC_TOOLS_CONTROL): POST /list answers the names
// the gateway lists, POST /describe {"description"} changes the tool.
func TestToolReviewInBrowser(t *testing.T) {
	b := needBrowser(t)
	acme := mcp.NewServer(&mcp.Implementation{Name: "acme", Version: "1"}, nil)
	describe := func(description string) {
		type in struct {
			Name string `json:"name"`
		}
		mcp.AddTool(acme, &mcp.Tool{Name: "greet", Description: description},
			func(_ context.Context, _ *mcp.CallToolRequest, args in) (*mcp.CallToolResult, any, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "hello " + args.Name}}}, nil, nil
			})
	}
	describe("Greet someone by name.")
	backend := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return acme }, nil))
	defer backend.Close()

	dataDir := t.TempDir()
	conf := filepath.Join(t.TempDir(), "pbac.yaml")
	if err := os.WriteFile(conf, []byte("demo: true\nbackends:\n  - name: acme\n    url: "+backend.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, out := startUp(t, dataDir, "--config", conf)
	// The backend's methods are decided on the jira resource.
	mapBackends(t, out.String(), dataDir, map[string]string{"acme": "jira"})
	creds := ciCreds.FindStringSubmatch(out.String())
	dash := dashboardLine.FindStringSubmatch(out.String())
	if creds == nil || dash == nil {
		t.Fatalf("no CI bot credentials or dashboard in the output:\n%s", out)
	}

	// list lists the tools of the acme backend through the gateway as the
	// CI bot (jira:read), which records the definition served.
	list := func(ctx context.Context) ([]string, error) {
		tok, err := oauthtest.ClientCredentials(ctx, base, creds[1], creds[2], base+"/mcp", "jira:read")
		if err != nil {
			return nil, err
		}
		hc := &http.Client{Transport: &oauthtest.BearerTransport{Token: tok.AccessToken}}
		defer hc.CloseIdleConnections()
		sess, err := mcp.NewClient(&mcp.Implementation{Name: "tools-browser-test", Version: "1"}, nil).Connect(ctx,
			&mcp.StreamableClientTransport{Endpoint: base + "/mcp/acme", HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
		if err != nil {
			return nil, err
		}
		defer sess.Close()
		res, err := sess.ListTools(ctx, nil)
		if err != nil {
			return nil, err
		}
		names := []string{}
		for _, tool := range res.Tools {
			names = append(names, tool.Name)
		}
		return names, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /list", func(w http.ResponseWriter, r *http.Request) {
		names, err := list(r.Context())
		if err != nil {
			http.Error(w, "list the tools through the gateway: "+err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"tools": names})
	})
	mux.HandleFunc("POST /describe", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Description string `json:"description"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Description == "" {
			http.Error(w, "want {\"description\": …}", http.StatusBadRequest)
			return
		}
		describe(in.Description)
		w.WriteHeader(http.StatusNoContent)
	})
	control := httptest.NewServer(mux)
	defer control.Close()

	b.run(t, dash[1]+"/ui/", []string{"PBAC_TOOLS_CONTROL=" + control.URL}, "tools.test.mjs")
}
