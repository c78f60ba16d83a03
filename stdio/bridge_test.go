//go:build unix

package stdio

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/internal/logtest"
	"github.com/pbac-gateway/pbac/jsonrpc"
)

// --- the real thing: pbac demo backend jira --stdio ---

// buildPBAC builds ./cmd/pbac (from the module root) into dir.
func buildPBAC(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "pbac")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/pbac")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/pbac: %v\n%s", err, out)
	}
	return bin
}

func TestStdioDemoBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ./cmd/pbac")
	}
	bin := buildPBAC(t, t.TempDir())
	logs := &logtest.Buffer{}
	b, err := Start(t.Context(), Config{
		Name:    "jira",
		Command: []string{bin, "demo", "backend", "jira", "--stdio"},
		Logger:  debugLogger(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			b.Close(context.Background())
		}
	})
	if !strings.HasPrefix(b.URL(), "http://127.0.0.1:") || !strings.HasSuffix(b.URL(), "/mcp") {
		t.Fatalf("URL = %q", b.URL())
	}
	// Only the URL's own path, with its secret, reaches the processes:
	// another process that finds the port gets 404 for anything else.
	u, err := url.Parse(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/mcp", "/" + rand.Text() + "/mcp", strings.TrimSuffix(u.Path, "/mcp"), u.Path + "/", strings.ToUpper(u.Path)} {
		if resp := postRaw(t, "http://"+u.Host+p, "", initializeBody); resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s: %d, want 404", p, resp.StatusCode)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	// One session: initialize, list tools, search, create, state persists.
	cs1 := connectStdio(t, ctx, b.URL(), nil)
	tools, err := cs1.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	for _, want := range []string{"search_issues", "create_issue", "get_issue"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Fatalf("tools %v lack %s", names, want)
		}
	}
	all := searchTotal(t, ctx, cs1, "")
	if all == 0 {
		t.Fatal("the seeded tracker has no issues")
	}
	res, err := cs1.CallTool(ctx, &mcp.CallToolParams{Name: "create_issue", Arguments: map[string]any{
		"project": "SEC", "summary": "Bridge test issue",
	}})
	if err != nil || res.IsError {
		t.Fatalf("create_issue: %v %+v", err, res)
	}
	if got := searchTotal(t, ctx, cs1, "Bridge test issue"); got != 1 {
		t.Fatalf("the created issue is not found in its session: %d hits", got)
	}
	if got := searchTotal(t, ctx, cs1, ""); got != all+1 {
		t.Fatalf("total after create = %d, want %d", got, all+1)
	}
	pid1 := sessionPID(b, cs1.ID())
	if pid1 == 0 {
		t.Fatal("no process for the first session")
	}

	// A second session is a separate process, with its own state.
	cs2 := connectStdio(t, ctx, b.URL(), nil)
	pid2 := sessionPID(b, cs2.ID())
	if pid2 == 0 || pid2 == pid1 || cs2.ID() == cs1.ID() {
		t.Fatalf("second session: pid %d (first %d), id %q (first %q)", pid2, pid1, cs2.ID(), cs1.ID())
	}
	if got := searchTotal(t, ctx, cs2, "Bridge test issue"); got != 0 {
		t.Fatalf("the second process sees the first one's issue: %d hits", got)
	}

	// DELETE (the client's Close) kills its process.
	if err := cs2.Close(); err != nil {
		t.Fatalf("closing the second session: %v", err)
	}
	waitGone(t, pid2)
	if sessionPID(b, cs2.ID()) != 0 {
		t.Fatal("the deleted session is still known")
	}
	if got := searchTotal(t, ctx, cs1, "Bridge test issue"); got != 1 {
		t.Fatalf("the first session suffered from the second's end: %d hits", got)
	}

	// A crashed process ends its session: 404, then a fresh initialize
	// starts a fresh process.
	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid1)
	waitFor(t, "the crashed session to be forgotten", func() bool { return sessionPID(b, cs1.ID()) == 0 })
	resp := postRaw(t, b.URL(), cs1.ID(), `{"jsonrpc":"2.0","id":99,"method":"tools/list"}`)
	expectRPCError(t, resp, http.StatusNotFound, "99")
	if _, err := cs1.ListTools(ctx, nil); err == nil {
		t.Fatal("a call in the crashed session succeeded")
	}
	cs1.Close()
	cs3 := connectStdio(t, ctx, b.URL(), nil)
	defer cs3.Close()
	pid3 := sessionPID(b, cs3.ID())
	if pid3 == 0 || pid3 == pid1 {
		t.Fatalf("re-initialize: pid %d", pid3)
	}
	if got := searchTotal(t, ctx, cs3, ""); got != all {
		t.Fatalf("the restarted backend has %d issues, want the fresh %d", got, all)
	}
	if !logs.Contains("stdio process exited; its session ends") {
		t.Errorf("the crash was not logged:\n%s", logs)
	}

	// An unknown session is 404 with a JSON-RPC error.
	resp = postRaw(t, b.URL(), "no-such-session", `{"jsonrpc":"2.0","id":"x","method":"tools/list"}`)
	expectRPCError(t, resp, http.StatusNotFound, `"x"`)

	// Close leaves no child process behind.
	cs4 := connectStdio(t, ctx, b.URL(), nil)
	pid4 := sessionPID(b, cs4.ID())
	if kids := childrenRunning(t, bin); len(kids) != 2 {
		t.Errorf("children running %s before Close: %v, want 2 (pids %d, %d)", bin, kids, pid3, pid4)
	}
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelClose()
	if err := b.Close(closeCtx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	for _, pid := range []int{pid3, pid4} {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d survives Close: %v", pid, err)
		}
	}
	if kids := childrenRunning(t, bin); len(kids) != 0 {
		t.Errorf("children left after Close: %v", kids)
	}
	if _, err := http.Get(b.URL()); err == nil {
		t.Error("the listener is still open after Close")
	}
}

func searchTotal(t *testing.T, ctx context.Context, cs *mcp.ClientSession, query string) int {
	t.Helper()
	args := map[string]any{}
	if query != "" {
		args["query"] = query
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "search_issues", Arguments: args})
	if err != nil || res.IsError {
		t.Fatalf("search_issues: %v %+v", err, res)
	}
	raw, _ := json.Marshal(res.StructuredContent)
	var out struct {
		Total int `json:"total"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("search_issues output %s: %v", raw, err)
	}
	return out.Total
}

// --- protocol details, against a scripted stdio server ---

// TestStdioHelperProcess is not a test: run by the tests below as the stdio
// server (this test binary re-executed), it serves tools that exercise what
// the bridge must carry.
func TestStdioHelperProcess(t *testing.T) {
	if os.Getenv("PBAC_STDIO_HELPER") != "1" {
		t.Skip("the stdio server of the bridge tests")
	}
	fmt.Println("starting helper (not JSON-RPC: the bridge must skip this line)")
	fmt.Fprintln(os.Stderr, "helper stderr: hello")
	if os.Getenv("SECRET_OF_THE_GATEWAY") != "" {
		fmt.Fprintln(os.Stderr, "helper stderr: leaked gateway environment")
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "helper", Version: "1"}, nil)
	type none struct{}
	text := func(s string) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
	}
	mcp.AddTool(s, &mcp.Tool{Name: "progress"}, func(ctx context.Context, req *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
		tok := req.Params.GetProgressToken()
		for i := 1; i <= 3 && tok != nil; i++ {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: float64(i), Total: 3}); err != nil {
				return nil, nil, err
			}
		}
		return text("progressed"), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "sample"}, func(ctx context.Context, req *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
		// Sampling is deprecated in 2026-07-28 but live in the revisions
		// stdio servers speak today; it is the server-to-client request
		// the bridge must carry.
		//lint:ignore SA1019 exercised on purpose, see above
		res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{
			//lint:ignore SA1019 exercised on purpose, see above
			Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "ping?"}}},
			MaxTokens: 10,
		})
		if err != nil {
			return nil, nil, err
		}
		return text("client said: " + res.Content.(*mcp.TextContent).Text), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "big"}, func(context.Context, *mcp.CallToolRequest, none) (*mcp.CallToolResult, any, error) {
		return text(strings.Repeat("x", 3<<20)), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "announce"}, func(context.Context, *mcp.CallToolRequest, none) (*mcp.CallToolResult, any, error) {
		go func() {
			time.Sleep(300 * time.Millisecond)
			mcp.AddTool(s, &mcp.Tool{Name: "announced"}, func(context.Context, *mcp.CallToolRequest, none) (*mcp.CallToolResult, any, error) {
				return text("hi"), nil, nil
			})
		}()
		return text("soon"), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "sleep"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
		select {
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "helper stderr: sleep cancelled")
			return nil, nil, ctx.Err()
		case <-time.After(10 * time.Second):
			return text("woke"), nil, nil
		}
	})
	mcp.AddTool(s, &mcp.Tool{Name: "crash"}, func(context.Context, *mcp.CallToolRequest, none) (*mcp.CallToolResult, any, error) {
		os.Exit(3)
		return nil, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "spam"}, func(context.Context, *mcp.CallToolRequest, none) (*mcp.CallToolResult, any, error) {
		long := strings.Repeat("e", 100<<10) // longer than a log line
		for i := range 500 {
			fmt.Fprintf(os.Stderr, "spam %d %s\n", i, long)
		}
		return text("spammed"), nil, nil
	})
	_ = s.Run(context.Background(), &mcp.StdioTransport{})
	os.Exit(0)
}

func startHelper(t *testing.T, cfg Config) (*Bridge, *logtest.Buffer) {
	t.Helper()
	t.Setenv("SECRET_OF_THE_GATEWAY", "must-not-reach-the-backend")
	logs := &logtest.Buffer{}
	cfg.Name = "helper"
	cfg.Command = []string{os.Args[0], "-test.run=^TestStdioHelperProcess$"}
	cfg.Env = []string{"PBAC_STDIO_HELPER=1"}
	cfg.Logger = debugLogger(logs)
	b, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, logs
}

func TestStdioServerMessages(t *testing.T) {
	b, logs := startHelper(t, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	// Raw HTTP: a request whose server sends progress first is answered as
	// SSE, the progress events then the response; one without, plain JSON.
	sid := rawInit(t, b.URL())
	resp := postRaw(t, b.URL(), sid, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"progress","arguments":{},"_meta":{"progressToken":"p-7"}}}`)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("progress call: %d %q", resp.StatusCode, ct)
	}
	msgs := readSSE(t, resp)
	if len(msgs) != 4 {
		t.Fatalf("progress call: %d events, want 3 progress + the response: %v", len(msgs), msgs)
	}
	for i, m := range msgs[:3] {
		if m["method"] != "notifications/progress" || m["params"].(map[string]any)["progress"] != float64(i+1) {
			t.Fatalf("event %d = %v", i, m)
		}
	}
	if m := msgs[3]; m["id"] != float64(7) || m["result"] == nil {
		t.Fatalf("last event = %v", m)
	}
	resp = postRaw(t, b.URL(), sid, `{"jsonrpc":"2.0","id":"list",
		"method":"tools/list"}`) // a multi-line body goes to stdin as one line
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/json" {
		t.Fatalf("tools/list: %d %q", resp.StatusCode, ct)
	}
	var list struct {
		ID     string `json:"id"`
		Result struct {
			Tools []struct{ Name string } `json:"tools"`
		} `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || list.ID != "list" || len(list.Result.Tools) < 5 {
		t.Fatalf("tools/list answer: %v %+v", err, list)
	}
	resp.Body.Close()

	// One GET stream per session.
	get1 := getRaw(t, b.URL(), sid)
	if get1.StatusCode != http.StatusOK || get1.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET: %d %q", get1.StatusCode, get1.Header.Get("Content-Type"))
	}
	get2 := getRaw(t, b.URL(), sid)
	expectRPCError(t, get2, http.StatusConflict, "null")
	get1.Body.Close()

	// The go-sdk client: progress, a sampling request answered through a
	// POSTed response, a notification on the GET stream, a 3 MiB line.
	var progress atomic.Int32
	listChanged := make(chan struct{}, 1)
	cs := connectStdio(t, ctx, b.URL(), &mcp.ClientOptions{
		//lint:ignore SA1019 sampling is exercised on purpose (server-to-client requests)
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			q := req.Params.Messages[0].Content.(*mcp.TextContent).Text
			//lint:ignore SA1019 sampling is exercised on purpose
			return &mcp.CreateMessageResult{Role: "assistant", Model: "test", Content: &mcp.TextContent{Text: "pong to " + q}}, nil
		},
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) },
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case listChanged <- struct{}{}:
			default:
			}
		},
	})
	defer cs.Close()
	params := &mcp.CallToolParams{Name: "progress", Arguments: map[string]any{}}
	params.SetProgressToken("tok")
	if got := callText(t, ctx, cs, params); got != "progressed" {
		t.Fatalf("progress: %q", got)
	}
	waitFor(t, "3 progress notifications", func() bool { return progress.Load() == 3 })
	if got := callText(t, ctx, cs, &mcp.CallToolParams{Name: "sample", Arguments: map[string]any{}}); got != "client said: pong to ping?" {
		t.Fatalf("sample: %q", got)
	}
	if got := callText(t, ctx, cs, &mcp.CallToolParams{Name: "big", Arguments: map[string]any{}}); len(got) != 3<<20 {
		t.Fatalf("big: %d bytes", len(got))
	}
	if got := callText(t, ctx, cs, &mcp.CallToolParams{Name: "announce", Arguments: map[string]any{}}); got != "soon" {
		t.Fatalf("announce: %q", got)
	}
	select {
	case <-listChanged:
	case <-ctx.Done():
		t.Fatal("tools/list_changed never reached the client")
	}

	// Stderr is logged, rate-limited and truncated; stdout noise skipped;
	// the gateway's environment stays out.
	if got := callText(t, ctx, cs, &mcp.CallToolParams{Name: "spam", Arguments: map[string]any{}}); got != "spammed" {
		t.Fatalf("spam: %q", got)
	}
	waitFor(t, "the stderr rate limit to show", func() bool { return logs.Contains("rate limit reached") })
	for _, want := range []string{"helper stderr: hello", "non-JSON-RPC line", "(truncated)"} {
		if !logs.Contains(want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if logs.Contains("leaked gateway environment") {
		t.Error("the process inherited the gateway's environment")
	}
	if n := strings.Count(logs.String(), "spam "); n > 2*linesPerSecond {
		t.Errorf("%d stderr lines logged: the rate limit does not hold", n)
	}
}

func TestStdioLifecycle(t *testing.T) {
	b, logs := startHelper(t, Config{MaxSessions: 2, RequestTimeout: 500 * time.Millisecond, IdleTimeout: -1})

	// Requests that are not a session's start.
	for _, tc := range []struct {
		name, sid, body string
		status          int
	}{
		{"no session, not initialize", "", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, http.StatusBadRequest},
		{"batch", "", `[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}]`, http.StatusBadRequest},
		{"not JSON", "", `{"jsonrpc":`, http.StatusBadRequest},
		{"unknown session", "nope", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, http.StatusNotFound},
		{"too large", "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"x":"` + strings.Repeat("a", maxBody) + `"}}`, http.StatusRequestEntityTooLarge},
	} {
		resp := postRaw(t, b.URL(), tc.sid, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		resp.Body.Close()
	}
	req, _ := http.NewRequest(http.MethodPut, b.URL(), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %v %v", err, resp)
	}

	// MaxSessions: the third initialize is 503 until one ends.
	s1, s2 := rawInit(t, b.URL()), rawInit(t, b.URL())
	resp := postRaw(t, b.URL(), "", initializeBody)
	expectRPCError(t, resp, http.StatusServiceUnavailable, "0")
	deleteRaw(t, b.URL(), s2)
	s3 := rawInit(t, b.URL())

	// A request the process does not answer in time is a JSON-RPC error; the
	// process is told and the session goes on.
	resp = postRaw(t, b.URL(), s1, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"sleep","arguments":{}}}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sleep: status %d", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body)
	if !bytes.Contains(body, []byte("did not answer within")) || !bytes.Contains(body, []byte(`"id":5`)) {
		t.Fatalf("sleep: %s", body)
	}
	waitFor(t, "the process to get notifications/cancelled", func() bool { return logs.Contains("sleep cancelled") })
	resp = postRaw(t, b.URL(), s1, `{"jsonrpc":"2.0","id":6,"method":"ping"}`)
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"result"`)) {
		t.Fatalf("ping after a timeout: %d %s", resp.StatusCode, body)
	}

	// A process that dies under a request: the request gets an error, the
	// session is gone (404), a new initialize gets a new process.
	pid := sessionPID(b, s3)
	resp = postRaw(t, b.URL(), s3, `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"crash","arguments":{}}}`)
	expectRPCError(t, resp, http.StatusNotFound, "8")
	waitGone(t, pid)
	resp = postRaw(t, b.URL(), s3, `{"jsonrpc":"2.0","id":9,"method":"ping"}`)
	expectRPCError(t, resp, http.StatusNotFound, "9")
	s4 := rawInit(t, b.URL())
	if p := sessionPID(b, s4); p == 0 || p == pid {
		t.Fatalf("new session's pid %d", p)
	}
	deleteRaw(t, b.URL(), s4)
	resp = postRaw(t, b.URL(), s4, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	expectRPCError(t, resp, http.StatusNotFound, "null")
}

func TestStdioIdleTimeout(t *testing.T) {
	b, _ := startHelper(t, Config{IdleTimeout: 300 * time.Millisecond})
	sid := rawInit(t, b.URL())
	pid := sessionPID(b, sid)
	waitGone(t, pid)
	resp := postRaw(t, b.URL(), sid, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	expectRPCError(t, resp, http.StatusNotFound, "1")
}

func TestStdioHelpers(t *testing.T) {
	env := processEnv([]string{"PATH=/bin", "AWS_SECRET_ACCESS_KEY=x", "LC_ALL=C", "HOME=/root"}, []string{"TOKEN=t", "HOME=/srv"})
	if got := strings.Join(env, " "); got != "PATH=/bin LC_ALL=C HOME=/root TOKEN=t HOME=/srv" {
		t.Errorf("processEnv = %s", got)
	}
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{`1`, `1.0`, true}, {`1`, `1e0`, true}, {`1`, `"1"`, false}, {`"a"`, `"\u0061"`, true}, {`-2`, `-2`, true}, {`1.5`, `1.5`, true},
	} {
		ka, oka := jsonrpc.IDKey(json.RawMessage(tc.a))
		kb, okb := jsonrpc.IDKey(json.RawMessage(tc.b))
		if !oka || !okb || (ka == kb) != tc.same {
			t.Errorf("jsonrpc.IDKey(%s)=%q, jsonrpc.IDKey(%s)=%q", tc.a, ka, tc.b, kb)
		}
	}
	for _, bad := range []string{`null`, `{}`, `[1]`, `true`, ``} {
		if _, ok := jsonrpc.IDKey(json.RawMessage(bad)); ok {
			t.Errorf("jsonrpc.IDKey(%s) accepted", bad)
		}
	}
	if _, err := Start(t.Context(), Config{Name: "x", Command: []string{"no-such-command-pbac"}}); err == nil {
		t.Error("a missing command was accepted")
	}
	if _, err := Start(t.Context(), Config{Name: "x", Command: []string{"true"}, Env: []string{"NOEQUALS"}}); err == nil {
		t.Error("a malformed Env entry was accepted")
	}
}

// --- helpers ---

func connectStdio(t *testing.T, ctx context.Context, url string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "stdio-test", Version: "1"}, opts)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return cs
}

func callText(t *testing.T, ctx context.Context, cs *mcp.ClientSession, p *mcp.CallToolParams) string {
	t.Helper()
	res, err := cs.CallTool(ctx, p)
	if err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
	if res.IsError || len(res.Content) != 1 {
		t.Fatalf("%s: %+v", p.Name, res)
	}
	return res.Content[0].(*mcp.TextContent).Text
}

func sessionPID(b *Bridge, id string) int {
	s := b.session(id)
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

const initializeBody = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// rawInit opens a session by hand and returns its id.
func rawInit(t *testing.T, url string) string {
	t.Helper()
	resp := postRaw(t, url, "", initializeBody)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sid := resp.Header.Get(sessionHeader)
	if resp.StatusCode != http.StatusOK || sid == "" || !bytes.Contains(body, []byte(`"protocolVersion"`)) {
		t.Fatalf("initialize: %d, session %q, %s", resp.StatusCode, sid, body)
	}
	resp = postRaw(t, url, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || len(body) != 0 {
		t.Fatalf("notifications/initialized: %d %q", resp.StatusCode, body)
	}
	return sid
}

func postRaw(t *testing.T, url, sid, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set(sessionHeader, sid)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func getRaw(t *testing.T, url, sid string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set(sessionHeader, sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func deleteRaw(t *testing.T, url, sid string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, url, nil)
	req.Header.Set(sessionHeader, sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
}

// expectRPCError checks a JSON-RPC error answer with the given status and id.
func expectRPCError(t *testing.T, resp *http.Response, status int, id string) {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if resp.StatusCode != status || json.Unmarshal(body, &e) != nil || e.JSONRPC != "2.0" || e.Error == nil || string(e.ID) != id {
		t.Fatalf("want %d and a JSON-RPC error for id %s, got %d %q %s", status, id, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// readSSE reads every data event of a stream to its end.
func readSSE(t *testing.T, resp *http.Response) []map[string]any {
	t.Helper()
	defer resp.Body.Close()
	var out []map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 32<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		out = append(out, m)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGone waits until pid is reaped (kill(pid, 0) fails with ESRCH).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	waitFor(t, "process "+strconv.Itoa(pid)+" to be gone", func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	})
}

// childrenRunning lists this process's children that run exe.
func childrenRunning(t *testing.T, exe string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var kids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid != os.Getpid() {
			continue
		}
		if target, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && target != exe {
			continue
		}
		kids = append(kids, pid)
	}
	return kids
}

// debugLogger logs everything, from debug up, to w.
func debugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// postAs is postRaw for the agent whose owner key is owner (what the
// gateway sends in OwnerHeader), cancelled with ctx.
func postAs(t *testing.T, ctx context.Context, url, owner, sid, body string) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set(OwnerHeader, owner)
	if sid != "" {
		req.Header.Set(sessionHeader, sid)
	}
	return http.DefaultClient.Do(req)
}

// initAs opens a session for owner and returns its id, or "" and the
// answer when refused.
func initAs(t *testing.T, url, owner string) (string, *http.Response) {
	t.Helper()
	resp, err := postAs(t, t.Context(), url, owner, "", initializeBody)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", resp
	}
	resp.Body.Close()
	return resp.Header.Get(sessionHeader), resp
}

func stdioAlive(t *testing.T, url, owner, sid string) bool {
	t.Helper()
	resp, err := postAs(t, t.Context(), url, owner, sid, `{"jsonrpc":"2.0","id":"p","method":"ping"}`)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestStdioSessionsAreSharedFairly: one agent cannot hold more than
// MaxSessionsPerAgent processes (a new session ends its own least recently
// used idle one, or is refused with 429 and Retry-After when all of its
// sessions are busy), and when the bridge is full an agent holding fewer
// gets a slot from the agent holding the most, while an agent already
// holding its share is refused (503, Retry-After) instead of taking one.
func TestStdioSessionsAreSharedFairly(t *testing.T) {
	b, _ := startHelper(t, Config{MaxSessions: 4, MaxSessionsPerAgent: 2, RequestTimeout: time.Minute, IdleTimeout: -1})
	url := b.URL()
	open := func(owner string) string {
		t.Helper()
		sid, resp := initAs(t, url, owner)
		if sid == "" {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Fatalf("initialize for %s: %d %s", owner, resp.StatusCode, body)
		}
		time.Sleep(5 * time.Millisecond) // distinct last-use times
		return sid
	}
	refused := func(owner string, status int, why string) {
		t.Helper()
		sid, resp := initAs(t, url, owner)
		if sid != "" {
			t.Fatalf("initialize for %s was not refused", owner)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("refusal without Retry-After")
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status || !bytes.Contains(body, []byte(why)) || !bytes.Contains(body, []byte(`"error"`)) {
			t.Fatalf("initialize for %s: %d %s, want %d with %q", owner, resp.StatusCode, body, status, why)
		}
	}

	// Agent A at its quota: a third session ends its own oldest.
	a1, a2 := open("A"), open("A")
	a3 := open("A")
	if stdioAlive(t, url, "A", a1) || !stdioAlive(t, url, "A", a2) || !stdioAlive(t, url, "A", a3) {
		t.Fatal("A's third session did not replace its least recently used one")
	}

	// Both of A's sessions busy: A is refused, with a reason and a Retry-After.
	ctx, cancel := context.WithCancel(t.Context())
	var busy sync.WaitGroup
	for _, sid := range []string{a2, a3} {
		busy.Go(func() {
			if resp, err := postAs(t, ctx, url, "A", sid, `{"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"sleep","arguments":{}}}`); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	waitFor(t, "A's sessions to be busy", func() bool {
		for _, sid := range []string{a2, a3} {
			if s := b.session(sid); s == nil {
				return false
			} else if _, idle := s.evictable(time.Now()); idle {
				return false
			}
		}
		return true
	})
	refused("A", http.StatusTooManyRequests, "end one (DELETE) or retry later")
	cancel()
	busy.Wait()
	waitFor(t, "A's sessions to be idle", func() bool {
		for _, sid := range []string{a2, a3} {
			if _, idle := b.session(sid).evictable(time.Now()); !idle {
				return false
			}
		}
		return true
	})

	// B fills the bridge; then C, holding nothing, gets a slot from an
	// agent holding two, and C's second try is refused: it holds its share.
	b1, b2 := open("B"), open("B")
	open("C")
	live := 0
	for _, s := range []struct{ owner, sid string }{{"A", a2}, {"A", a3}, {"B", b1}, {"B", b2}} {
		if stdioAlive(t, url, s.owner, s.sid) {
			live++
		}
	}
	if live != 3 {
		t.Fatalf("%d of A's and B's four sessions live after C joined, want 3", live)
	}
	refused("C", http.StatusServiceUnavailable, "every stdio session is in use")
	b.mu.Lock()
	n := len(b.sessions)
	b.mu.Unlock()
	if n != 4 {
		t.Fatalf("%d sessions, want MaxSessions (4)", n)
	}
}
