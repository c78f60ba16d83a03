package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBenchLightBackendCommand: pbac bench light-backend serves until
// interrupted, hidden from pbac bench's help.
func TestBenchLightBackendCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	cmd := newRootCommand()
	cmd.SetArgs([]string{"bench", "light-backend", "--listen", "127.0.0.1:0"})
	cmd.SetOut(pw)
	done := make(chan error, 1)
	go func() {
		err := cmd.ExecuteContext(ctx)
		pw.Close()
		done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no address printed: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	name, url, _ := strings.Cut(strings.TrimSpace(line), "\t")
	if name != "light" || !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/mcp") {
		t.Fatalf("printed %q", line)
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after the interrupt: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still serving 10 s after the interrupt")
	}
	help := newRootCommand()
	var out strings.Builder
	help.SetArgs([]string{"bench", "--help"})
	help.SetOut(&out)
	if err := help.Execute(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "light-backend") {
		t.Fatal("light-backend is listed in pbac bench --help")
	}
}
