package lightmcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/bench/lightmcp"
	"github.com/pbac-gateway/pbac/demo"
)

// post sends one message to url and returns the status, the answer's
// session id and its body.
func post(t *testing.T, url string, hdr map[string]string, body string) (int, string, string) {
	t.Helper()
	status, sid, out, err := send(url, hdr, body)
	if err != nil {
		t.Fatal(err)
	}
	return status, sid, out
}

// send is post for any goroutine: errors are returned.
func send(url string, hdr map[string]string, body string) (int, string, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", "", err
	}
	if len(out) > 0 && resp.Header.Get("Content-Type") == "application/json" && !json.Valid(out) {
		return 0, "", "", fmt.Errorf("answer is not JSON: %s", out)
	}
	return resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), string(out), nil
}

const initialize = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// TestProtocol is the transport and JSON-RPC rules, a row each.
func TestProtocol(t *testing.T) {
	srv := httptest.NewServer(lightmcp.New())
	defer srv.Close()
	status, sid, body := post(t, srv.URL, nil, initialize)
	if status != http.StatusOK || len(sid) != 32 || !strings.Contains(body, `"protocolVersion":"2025-06-18"`) {
		t.Fatalf("initialize: %d %q %s", status, sid, body)
	}
	legacy := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}
	with := func(base map[string]string, kv ...string) map[string]string {
		h := map[string]string{}
		for k, v := range base {
			h[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	stateless := func(method, name string) map[string]string {
		h := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": method}
		if name != "" {
			h["Mcp-Name"] = name
		}
		return h
	}
	const meta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`
	call := func(args string) string {
		return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_issues","arguments":` + args + `}}`
	}
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		body   string
		status int
		want   string // in the body; "" for no body
	}{
		{"initialize answers the client's version when served", nil,
			strings.Replace(initialize, "2025-06-18", "2025-11-25", 1), 200, `"protocolVersion":"2025-11-25"`},
		{"initialize answers the newest for a version it does not serve", nil,
			strings.Replace(initialize, "2025-06-18", "2024-11-05", 1), 200, `"protocolVersion":"2025-11-25"`},
		{"notifications/initialized is 202", legacy, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, 202, ""},
		{"a client's response is 202", legacy, `{"jsonrpc":"2.0","id":3,"result":{}}`, 202, ""},
		{"ping", legacy, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 200, `"result":{}`},
		{"tools/list lists search_issues with its schema", legacy, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, 200,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search_issues",`},
		{"tools/call echoes the query", legacy, call(`{"query":"SEC \"x\""}`), 200,
			`"text":"light bench backend: no issues for query \"SEC \"x\"\" and jql \"\""}],"isError":false}}`},
		{"tools/call keeps a string id", legacy, strings.Replace(call(`{}`), `"id":7`, `"id":"a-1"`, 1), 200, `"id":"a-1","result"`},
		{"tools/call without arguments", legacy, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_issues"}}`, 200, `"isError":false`},
		{"an unknown tool is invalid params", legacy, strings.Replace(call(`{}`), "search_issues", "create_issue", 1), 200,
			`"error":{"code":-32602,"message":"unknown tool: create_issue"}`},
		{"tools/call without a name is invalid params", legacy, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}`, 200, `"code":-32602`},
		{"params that are not an object are invalid params", legacy, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":[1]}`, 200, `"code":-32602`},
		{"arguments that are not an object are invalid params", legacy, call(`"x"`), 200, `"code":-32602`},
		{"an argument of the wrong type is a tool error", legacy, call(`{"query":5}`), 200, `"isError":true`},
		{"an unknown method is method not found", legacy, `{"jsonrpc":"2.0","id":1,"method":"resources/list"}`, 200,
			`"error":{"code":-32601,"message":"method not found: resources/list"}`},
		{"no jsonrpc 2.0 is an invalid request", legacy, `{"jsonrpc":"1.0","id":1,"method":"ping"}`, 400, `"code":-32600`},
		{"a null id is an invalid request", legacy, `{"jsonrpc":"2.0","id":null,"method":"ping"}`, 400, `"code":-32600`},
		{"an object id is an invalid request", legacy, `{"jsonrpc":"2.0","id":{},"method":"ping"}`, 400, `"code":-32600`},
		{"no method is an invalid request", legacy, `{"jsonrpc":"2.0","id":1}`, 400, `"code":-32600`},
		{"a batch is refused", legacy, `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, 400, `"code":-32600`},
		{"malformed JSON is a parse error", legacy, `{"jsonrpc":`, 400, `"id":null,"error":{"code":-32700`},
		{"no session is 400", with(legacy, "Mcp-Session-Id", ""), `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 400, `"code":-32600`},
		{"an unknown session is 404", with(legacy, "Mcp-Session-Id", "feed"), `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 404, `"code":-32600`},
		{"no protocol header is 2025-03-26", with(legacy, "Mcp-Protocol-Version", ""), `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 200, `"result":{}`},
		{"an unserved version is refused", with(legacy, "Mcp-Protocol-Version", "2024-11-05"), `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 400,
			`"code":-32022`},
		{"a later stateless version is refused", with(stateless("ping", ""), "Mcp-Protocol-Version", "2027-01-01"),
			`{"jsonrpc":"2.0","id":1,"method":"ping","params":{` + meta + `}}`, 400, `"requested":"2027-01-01"`},
		{"2026-07-28 server/discover", stateless("server/discover", ""), `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{` + meta + `}}`, 200,
			`"supportedVersions":["2026-07-28","2025-11-25","2025-06-18","2025-03-26"]`},
		{"2026-07-28 tools/list, no session", stateless("tools/list", ""), `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{` + meta + `}}`, 200,
			`"result":{"resultType":"complete","tools":[{"name":"search_issues"`},
		{"2026-07-28 tools/call, no session", stateless("tools/call", "search_issues"),
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_issues","arguments":{"jql":"project = SEC"},` + meta + `}}`, 200,
			`"result":{"resultType":"complete","content":[{"type":"text","text":"light bench backend: no issues for query \"\" and jql \"project = SEC\""}]`},
		{"2026-07-28 without Mcp-Method", with(stateless("tools/list", ""), "Mcp-Method", ""),
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{` + meta + `}}`, 400, `"code":-32020`},
		{"2026-07-28 Mcp-Name other than the tool", stateless("tools/call", "other"),
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_issues",` + meta + `}}`, 400, `"code":-32020`},
		{"2026-07-28 without _meta protocol version", stateless("tools/list", ""), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, 400, `"code":-32602`},
		{"2026-07-28 _meta naming another version", stateless("tools/list", ""),
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}`, 400, `"code":-32020`},
		{"2026-07-28 has no initialize", stateless("initialize", ""),
			strings.Replace(initialize, `"capabilities"`, meta+`,"capabilities"`, 1), 200, `"code":-32601`},
		{"2026-07-28 unknown tool", stateless("tools/call", "nope"),
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope",` + meta + `}}`, 200, `"code":-32602`},
		{"a body that is not JSON by type is 415", with(legacy, "Content-Type", "text/plain"), `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 415, ""},
		{"an Accept without JSON is 406", with(legacy, "Accept", "text/event-stream"), `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 406, ""},
		{"a body over the limit is 413", legacy, `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", lightmcp.MaxBody) + `"}}`, 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := post(t, srv.URL, tc.hdr, tc.body)
			if status != tc.status || (tc.want == "" && tc.status < 400 && body != "") || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %.400s, want %d with %s", status, body, tc.status, tc.want)
			}
		})
	}
	t.Run("GET is 405", func(t *testing.T) {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST, DELETE" {
			t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
	t.Run("DELETE ends the session", func(t *testing.T) {
		del := func() int {
			req, _ := http.NewRequest(http.MethodDelete, srv.URL, nil)
			req.Header.Set("Mcp-Session-Id", sid)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if got := del(); got != http.StatusNoContent {
			t.Fatalf("DELETE: %d", got)
		}
		if got := del(); got != http.StatusNotFound {
			t.Fatalf("second DELETE: %d", got)
		}
		if status, _, body := post(t, srv.URL, legacy, `{"jsonrpc":"2.0","id":1,"method":"ping"}`); status != http.StatusNotFound {
			t.Fatalf("ping on an ended session: %d %s", status, body)
		}
	})
}

// TestGoSDKClient: the go-sdk's own client (code no one here wrote)
// connects on each revision the server speaks and calls the tool.
func TestGoSDKClient(t *testing.T) {
	srv := httptest.NewServer(lightmcp.New())
	defer srv.Close()
	for _, tc := range []struct{ ask, want string }{
		{"2025-06-18", "2025-06-18"},
		{"2025-11-25", "2025-11-25"},
		{"2026-07-28", "2026-07-28"},
	} {
		t.Run(tc.ask, func(t *testing.T) {
			ctx := context.Background()
			client := mcp.NewClient(&mcp.Implementation{Name: "pbac-test", Version: "1"}, nil)
			sess, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: srv.URL, MaxRetries: -1, DisableStandaloneSSE: true},
				&mcp.ClientSessionOptions{ProtocolVersion: tc.ask})
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			if got := sess.InitializeResult().ProtocolVersion; got != tc.want {
				t.Fatalf("negotiated %q, want %q", got, tc.want)
			}
			if stateless := sess.ID() == ""; stateless != (tc.want == lightmcp.Stateless) {
				t.Fatalf("session id %q on %s", sess.ID(), tc.want)
			}
			tools, err := sess.ListTools(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(tools.Tools) != 1 || tools.Tools[0].Name != lightmcp.Tool {
				t.Fatalf("tools: %+v", tools.Tools)
			}
			res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: lightmcp.Tool, Arguments: map[string]any{"query": "SEC-1"}})
			if err != nil {
				t.Fatal(err)
			}
			if text := demo.ResultText(res); res.IsError || !strings.Contains(text, `query "SEC-1"`) {
				t.Fatalf("result %v %q", res.IsError, text)
			}
			_, err = sess.CallTool(ctx, &mcp.CallToolParams{Name: "create_issue", Arguments: map[string]any{"project": "SEC"}})
			if err == nil || !strings.Contains(err.Error(), "unknown tool") {
				t.Fatalf("an unknown tool: %v", err)
			}
		})
	}
}

// TestToolIsTheDemoJiras: search_issues is listed with the demo jira
// backend's name, description, input schema and annotations, so that
// policy and the gateway's tool review read it as that tool.
func TestToolIsTheDemoJiras(t *testing.T) {
	ctx := context.Background()
	listed := func(h http.Handler) *mcp.Tool {
		srv := httptest.NewServer(h)
		defer srv.Close()
		client := mcp.NewClient(&mcp.Implementation{Name: "pbac-test", Version: "1"}, nil)
		sess, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: srv.URL, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		tools, err := sess.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, tool := range tools.Tools {
			if tool.Name == lightmcp.Tool {
				return tool
			}
		}
		t.Fatalf("no %s", lightmcp.Tool)
		return nil
	}
	jira, err := demo.Handler("jira")
	if err != nil {
		t.Fatal(err)
	}
	want, got := listed(jira), listed(lightmcp.New())
	for _, part := range []struct {
		name      string
		want, got any
	}{
		{"description", want.Description, got.Description},
		{"inputSchema", want.InputSchema, got.InputSchema},
		{"annotations", want.Annotations, got.Annotations},
		{"title", want.Title, got.Title},
	} {
		w, _ := json.Marshal(part.want)
		g, _ := json.Marshal(part.got)
		if string(w) != string(g) {
			t.Errorf("%s:\n got %s\nwant %s", part.name, g, w)
		}
	}
}

// TestConcurrentSessions: sessions opened, used and ended at once (run
// with -race).
func TestConcurrentSessions(t *testing.T) {
	srv := httptest.NewServer(lightmcp.New())
	defer srv.Close()
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := range 16 {
		wg.Go(func() {
			status, sid, body, err := send(srv.URL, nil, initialize)
			if err != nil || status != http.StatusOK || sid == "" {
				errs <- fmt.Sprintf("%d: initialize %d %s %v", i, status, body, err)
				return
			}
			hdr := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}
			for j := range 20 {
				q := fmt.Sprintf("q%d-%d", i, j)
				status, _, body, err := send(srv.URL, hdr, `{"jsonrpc":"2.0","id":`+fmt.Sprint(j)+`,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"`+q+`"}}}`)
				if err != nil || status != http.StatusOK || !strings.Contains(body, `query \"`+q+`\"`) || !strings.Contains(body, `"id":`+fmt.Sprint(j)+`,`) {
					errs <- fmt.Sprintf("%d: call %d: %d %s %v", i, j, status, body, err)
					return
				}
			}
			req, _ := http.NewRequest(http.MethodDelete, srv.URL, nil)
			req.Header.Set("Mcp-Session-Id", sid)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusNoContent {
				errs <- fmt.Sprintf("%d: DELETE %v", i, err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
