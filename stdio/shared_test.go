//go:build unix

package stdio

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestStdioSharedProcess: in shared mode every session is served by one
// process. The go-sdk's clients all number their requests from 1 and name
// the same progress token, yet each gets its own responses and progress;
// a list change reaches every session's stream; the process's request to a
// client (sampling) and the per-session state of resources/subscribe are
// refused rather than sent to whichever client; a DELETE ends the session
// and not the process.
func TestStdioSharedProcess(t *testing.T) {
	b, logs := startHelper(t, Config{Shared: true, MaxSessionsPerAgent: 8, IdleTimeout: -1})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	const clients = 4
	changed := make(chan int, clients)
	sessions := make([]*mcp.ClientSession, clients)
	for i := range clients {
		sessions[i] = connectStdio(t, ctx, b.URL(), &mcp.ClientOptions{
			ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed <- i },
		})
	}
	if n := b.Processes(); n != 1 {
		t.Fatalf("%d processes for %d sessions, want 1", n, clients)
	}

	// Concurrent calls with the same ids and progress tokens.
	var wg sync.WaitGroup
	errs := make(chan error, clients*10)
	for i, cs := range sessions {
		wg.Go(func() {
			for j := range 10 {
				params := &mcp.CallToolParams{Name: "progress", Arguments: map[string]any{}}
				params.SetProgressToken("same-token")
				res, err := cs.CallTool(ctx, params)
				switch {
				case err != nil:
					errs <- fmt.Errorf("client %d call %d: %w", i, j, err)
				case res.IsError || res.Content[0].(*mcp.TextContent).Text != "progressed":
					errs <- fmt.Errorf("client %d call %d: %+v", i, j, res)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A list change reaches every session's GET stream.
	callText(t, ctx, sessions[0], &mcp.CallToolParams{Name: "announce", Arguments: map[string]any{}})
	seen := map[int]bool{}
	for len(seen) < clients {
		select {
		case i := <-changed:
			seen[i] = true
		case <-ctx.Done():
			t.Fatalf("tools/list_changed reached %d of %d sessions", len(seen), clients)
		}
	}

	// Sampling would go to some client: the bridge answers it instead.
	if res, err := sessions[1].CallTool(ctx, &mcp.CallToolParams{Name: "sample", Arguments: map[string]any{}}); err == nil && !res.IsError {
		t.Fatalf("a shared process's sampling request reached a client: %+v", res)
	}
	if err := sessions[1].Subscribe(ctx, &mcp.SubscribeParams{URI: "x://y"}); err == nil || !strings.Contains(err.Error(), "one process for every session") {
		t.Fatalf("resources/subscribe on a shared process: %v", err)
	}

	// DELETE ends the session, not the process the others use.
	sessions[2].Close()
	callText(t, ctx, sessions[3], &mcp.CallToolParams{Name: "progress", Arguments: map[string]any{}})
	if n := b.Processes(); n != 1 {
		t.Fatalf("%d processes after a session ended, want 1", n)
	}
	if !logs.Contains("shared stdio process initialized") {
		t.Fatalf("log: %s", logs)
	}
}

// TestStdioSharedProgressIsTheCallers: two sessions' calls in flight at
// once with the same id and progress token each get their own progress and
// their own response (raw HTTP, so the ids and tokens are exactly equal).
func TestStdioSharedProgressIsTheCallers(t *testing.T) {
	b, _ := startHelper(t, Config{Shared: true, IdleTimeout: -1})
	a, _ := initAs(t, b.URL(), "agent-a")
	c, _ := initAs(t, b.URL(), "agent-b")
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"progress","arguments":{},"_meta":{"progressToken":"p-7"}}}`
	var wg sync.WaitGroup
	got := make([][]map[string]any, 2)
	for i, sid := range []string{a, c} {
		wg.Go(func() {
			resp, err := postAs(t, t.Context(), b.URL(), "x", sid, body)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = readSSE(t, resp)
		})
	}
	wg.Wait()
	for i, msgs := range got {
		if len(msgs) != 4 {
			t.Fatalf("session %d: %d messages, want 3 progress and the response: %v", i, len(msgs), msgs)
		}
		for _, m := range msgs[:3] {
			if m["params"].(map[string]any)["progressToken"] != "p-7" {
				t.Fatalf("session %d: progress under another token: %v", i, m)
			}
		}
		if msgs[3]["id"] != float64(7) {
			t.Fatalf("session %d: response %v, want id 7", i, msgs[3])
		}
	}
	if resp := postRaw(t, b.URL(), a, `{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"debug"}}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("logging/setLevel: %d", resp.StatusCode)
	}
}

// filesystemServer is the real @modelcontextprotocol/server-filesystem
// the README's walkthrough installs (npm ci in cmd/pbac/testdata/walkthrough),
// or a skip; PBAC_WALKTHROUGH=1 makes its absence a failure.
func filesystemServer(t testing.TB) string {
	t.Helper()
	server, err := filepath.Abs("../cmd/pbac/testdata/walkthrough/node_modules/.bin/mcp-server-filesystem")
	if err == nil {
		_, err = os.Stat(server)
	}
	if err != nil {
		if os.Getenv("PBAC_WALKTHROUGH") != "" {
			t.Fatalf("the filesystem server is not installed (cd cmd/pbac/testdata/walkthrough && npm ci): %v", err)
		}
		t.Skipf("cd cmd/pbac/testdata/walkthrough && npm ci first: %v", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skipf("node is needed: %v", err)
	}
	return server
}

// openFilesystemSessions starts a bridge of the real filesystem server
// (shared or not) over a directory holding one file, and opens n sessions
// that each read the file.
func openFilesystemSessions(t testing.TB, shared bool, n int) *Bridge {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "note.txt"), []byte("shared or not"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := Start(context.Background(), Config{Name: "files", Command: []string{filesystemServer(t), dir}, Shared: shared,
		MaxSessions: n, MaxSessionsPerAgent: n, IdleTimeout: -1, RequestTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			cs, err := mcp.NewClient(&mcp.Implementation{Name: "fs", Version: "1"}, nil).Connect(ctx, &mcp.StreamableClientTransport{Endpoint: b.URL()}, nil)
			if err != nil {
				errs <- err
				return
			}
			t.Cleanup(func() { cs.Close() })
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": filepath.Join(dir, "note.txt")}})
			switch {
			case err != nil:
				errs <- err
			case res.IsError || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, "shared or not"):
				errs <- fmt.Errorf("read_text_file: %+v", res)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return b
}

// TestStdioSharedFilesystemServer: eight sessions of the real filesystem
// server in shared mode are one node process, each session reading its
// file through it.
func TestStdioSharedFilesystemServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node")
	}
	if b := openFilesystemSessions(t, true, 8); b.Processes() != 1 {
		t.Fatalf("%d processes for 8 shared sessions, want 1", b.Processes())
	}
}

// BenchmarkStdioMemory prints the resident memory of the real filesystem
// server's processes with 8 sessions open, one process per session against
// one shared: go test -run '^$' -bench StdioMemory -benchtime 1x ./stdio/
func BenchmarkStdioMemory(b *testing.B) {
	for _, mode := range []struct {
		name   string
		shared bool
	}{{"per-session", false}, {"shared", true}} {
		b.Run(mode.name, func(b *testing.B) {
			for range b.N {
				br := openFilesystemSessions(b, mode.shared, 8)
				var rss int64
				br.mu.Lock()
				for s := range br.procs {
					rss += residentKB(s.pid)
				}
				procs := len(br.procs)
				br.mu.Unlock()
				b.ReportMetric(float64(procs), "processes")
				b.ReportMetric(float64(rss)/1024, "MB-resident")
			}
		})
	}
}

// residentKB is a process's VmRSS in kB (0 when unreadable).
func residentKB(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}
