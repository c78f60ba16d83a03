//go:build unix

package stdio

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/logtest"
)

// rpcErrorMessage reads the error message of a JSON-RPC error answer.
func rpcErrorMessage(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == nil {
		t.Fatalf("not a JSON-RPC error: %d %s", resp.StatusCode, body)
	}
	return e.Error.Message
}

// TestStdioErrorsToClientsAreGeneric: what went wrong with the process —
// the exec error of a command that cannot start, the exit status of one
// that died under a request — goes to the log; the client gets a short,
// generic reason.
func TestStdioErrorsToClientsAreGeneric(t *testing.T) {
	// A process that dies under a request.
	b, logs := startHelper(t, Config{RequestTimeout: 5 * time.Second, IdleTimeout: -1})
	sid := rawInit(t, b.URL())
	resp := postRaw(t, b.URL(), sid, `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"crash","arguments":{}}}`)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("crash: status %d", resp.StatusCode)
	}
	if msg := rpcErrorMessage(t, resp); msg != "stdio backend helper: the stdio process exited" {
		t.Errorf("crash: the client was told %q", msg)
	}
	waitFor(t, "the exit status in the log", func() bool { return logs.Contains("exit status 3") })

	// A command that cannot be executed (its interpreter does not exist).
	dir := t.TempDir()
	script := filepath.Join(dir, "server")
	if err := os.WriteFile(script, []byte("#!/nonexistent/pbac-interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bad := &logtest.Buffer{}
	b2, err := Start(t.Context(), Config{Name: "broken", Command: []string{script}, Logger: debugLogger(bad)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Close(t.Context()) })
	resp = postRaw(t, b2.URL(), "", initializeBody)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("a command that cannot start: status %d", resp.StatusCode)
	}
	msg := rpcErrorMessage(t, resp)
	if msg != "stdio backend broken: the stdio process could not be started" {
		t.Errorf("a command that cannot start: the client was told %q", msg)
	}
	for _, leak := range []string{"fork/exec", "exec", dir, "no such file"} {
		if strings.Contains(msg, leak) {
			t.Errorf("the client was told %q: it shows %q", msg, leak)
		}
	}
	if !bad.Contains("could not start") || !bad.Contains("no such file") {
		t.Errorf("the exec error is not in the log:\n%s", bad)
	}
	if bytes.Contains([]byte(bad.String()), []byte("panic")) {
		t.Errorf("log: %s", bad)
	}
}
