package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/pbac-gateway/pbac/jsonrpc"
)

func TestIsEventStream(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/event-stream":                     true,
		"Text/Event-Stream":                     true,
		"TEXT/EVENT-STREAM; charset=utf-8":      true,
		" text/event-stream ;x=1":               true,
		"application/json":                      false,
		"application/json; a=text/event-stream": false,
		"text/event-streams":                    false,
		"":                                      false,
	} {
		if got := isEventStream(ct); got != want {
			t.Errorf("isEventStream(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestCheckJSONAnswer(t *testing.T) {
	for _, c := range []struct {
		name   string
		body   string
		id     string // the request's; "" for a notification
		status int
		ok     bool
	}{
		{"the response", `{"jsonrpc":"2.0","id":5,"result":{}}`, `5`, 200, true},
		{"an error response", `{"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"no"}}`, `"a"`, 200, true},
		{"the same id spelt as a client reads it", `{"jsonrpc":"2.0","id":5.0,"result":{}}`, `5`, 200, true},
		{"a result whose own names repeat", `{"jsonrpc":"2.0","id":5,"result":{"a":1,"a":2}}`, `5`, 200, true},
		{"no body", ``, `5`, 200, true},
		{"the other id escaped", `{"jsonrpc":"2.0","\u0069d":99,"result":{}}`, `5`, 200, false},
		{"neither result nor error", `{"jsonrpc":"2.0","id":5}`, `5`, 200, false},
		{"result in another case", `{"jsonrpc":"2.0","id":5,"Result":{}}`, `5`, 200, false},
		{"no body for a notification", "  \n", ``, 202, true},
		{"a response to another id", `{"jsonrpc":"2.0","id":99,"result":{"tools":[]}}`, `5`, 200, false},
		{"a response to the string id of the number", `{"jsonrpc":"2.0","id":"5","result":{}}`, `5`, 200, false},
		{"a batch holding the response", `[{"jsonrpc":"2.0","id":99,"result":{}},{"jsonrpc":"2.0","id":5,"result":{}}]`, `5`, 200, false},
		{"a batch of the response alone", `[{"jsonrpc":"2.0","id":5,"result":{}}]`, `5`, 200, false},
		{"a request of the server's", `{"jsonrpc":"2.0","id":5,"method":"sampling/createMessage","params":{}}`, `5`, 200, false},
		{"a notification", `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`, `5`, 200, false},
		{"id twice", `{"jsonrpc":"2.0","id":5,"id":99,"result":{}}`, `5`, 200, false},
		{"id in another case as well", `{"jsonrpc":"2.0","id":5,"ID":99,"result":{}}`, `5`, 200, false},
		{"not JSON", `SEC-12`, `5`, 200, false},
		{"bytes after the response", `{"jsonrpc":"2.0","id":5,"result":{}} {"jsonrpc":"2.0","id":99,"result":{}}`, `5`, 200, false},
		{"a response to a notification", `{"jsonrpc":"2.0","id":5,"result":{}}`, ``, 200, false},
		{"an error status with a reason in plain text", `session not found`, `5`, 404, true},
		{"an error status with the response", `{"jsonrpc":"2.0","id":5,"error":{"code":-32600,"message":"bad"}}`, `5`, 400, true},
		{"an error status with a response to none", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`, `5`, 400, true},
		{"an error status with a response to another id", `{"jsonrpc":"2.0","id":99,"result":{"tools":[]}}`, `5`, 400, false},
		{"an error status with a batch", `[{"jsonrpc":"2.0","id":99,"result":{}}]`, `5`, 500, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var id json.RawMessage
			if c.id != "" {
				id = json.RawMessage(c.id)
			}
			err := checkJSONAnswer([]byte(c.body), id, c.status)
			if (err == nil) != c.ok {
				t.Fatalf("checkJSONAnswer(%s) = %v, want ok %v", c.body, err, c.ok)
			}
			if err != nil && !errors.Is(err, errAnswerWithheld) {
				t.Errorf("the error %v is not errAnswerWithheld", err)
			}
		})
	}
}

// FuzzCheckJSONAnswer holds checkJSONAnswer to encoding/json: whatever it
// passes with a 2xx status and a body is one JSON object whose "id" (read
// as a client reads it, the one member of that name) is the request's,
// with no "method".
func FuzzCheckJSONAnswer(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":5,"result":{}}`,
		`{"jsonrpc":"2.0","id":99,"result":{}}`,
		`[{"jsonrpc":"2.0","id":5,"result":{}}]`,
		`{"jsonrpc":"2.0","id":5,"method":"x"}`,
		`{"jsonrpc":"2.0","\u0069d":5,"result":{}}`,
		`{"jsonrpc":"2.0","id":5,"result":{},"id":6}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if checkJSONAnswer(body, json.RawMessage(`5`), 200) != nil || len(bytes.TrimSpace(body)) == 0 {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("passed %q, which is not one JSON object: %v", body, err)
		}
		if _, ok := m["method"]; ok {
			t.Fatalf("passed %q, which has a method", body)
		}
		if key, ok := jsonrpc.IDKey(m["id"]); !ok || key != "n:5" {
			t.Fatalf("passed %q, whose id reads as %s", body, m["id"])
		}
	})
}

// TestRelayAnswer: relayAnswer writes only the events keep lets through,
// in the normal form, and stops after the last.
func TestRelayAnswer(t *testing.T) {
	stream := ": a comment\n\n" +
		"event: message\r\ndata: {\"id\":99,\"result\":{}}\r\n\r\n" +
		"data: {\"method\":\"notifications/progress\"}\n\n" +
		"data: {\"method\":\"notifications/other\"}\n\n" +
		"foo: bar\nid: 7\ndata: {\"id\":5,\"result\":{}}\n\n" +
		"data: {\"method\":\"notifications/progress\",\"after\":true}\n\n"
	keep := func(_ context.Context, data []byte) (pass, last bool) {
		switch {
		case bytes.Contains(data, []byte(`"id":5`)):
			return true, true
		case bytes.Contains(data, []byte(`"id":`)):
			return false, false
		}
		return bytes.Contains(data, []byte("progress")), false
	}
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	answered, err := relayAnswer(context.Background(), w, strings.NewReader(stream), keep)
	if err != nil || !answered {
		t.Fatalf("relayAnswer = %v, %v; want answered", answered, err)
	}
	want := ": a comment\n\n" +
		"data: {\"method\":\"notifications/progress\"}\n\n" +
		"id: 7\ndata: {\"id\":5,\"result\":{}}\n\n"
	if out.String() != want {
		t.Errorf("wrote\n%q\nwant\n%q", out.String(), want)
	}
	got, err := vetEvents(context.Background(), []byte(stream), keep)
	if err != nil || string(got) != want {
		t.Errorf("vetEvents = %q, %v; want %q", got, err, want)
	}
}

// TestBackendClientErrorsKeepSecretURLs: an error reaching a backend whose
// URL is a secret (a stdio bridge's) names its address, not the URL.
func TestBackendClientErrorsKeepSecretURLs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	secret := "http://" + addr + "/S3CRET/mcp"
	plain := "http://" + addr + "/mcp"
	c := backendClient{Client: &http.Client{}, secret: secretURLs([]Backend{{Name: "fs", URL: secret, SecretURL: true}, {Name: "jira", URL: plain}})}
	for _, u := range []string{secret, plain} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Do(req)
		switch {
		case err == nil:
			t.Fatalf("GET %s: no error", u)
		case strings.Contains(err.Error(), "S3CRET"):
			t.Errorf("the error quotes the secret URL: %v", err)
		case u == plain && !strings.Contains(err.Error(), plain):
			t.Errorf("the error of a backend whose URL is no secret does not name it: %v", err)
		case u == secret && !strings.Contains(err.Error(), addr):
			t.Errorf("the error does not name the backend's address: %v", err)
		}
	}
}

// smallSendBuffers accepts connections whose send buffers are as small as
// the kernel allows, so that what a stream writes waits on its reader.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// TestAStreamKeepsASteadyReader: a client that reads a stream steadily at
// 128 KiB a second keeps it to its end, with ClientWriteWait 1 s and many
// large events queued ahead of the socket; the deadline is the server's
// own for each write, not the writer's, which runs ahead.
func TestAStreamKeepsASteadyReader(t *testing.T) {
	const events, size = 8, 64 << 10
	g := &Gateway{cfg: Config{ClientWriteWait: time.Second}}
	wrote := make(chan error, 1)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/s", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, "text/event-stream")
		g.sendStream(c, func(w *bufio.Writer) {
			data := bytes.Repeat([]byte("x"), size)
			for i := range events {
				if err := writeSSE(w, sseEvent{hasData: true}, data); err != nil {
					wrote <- fmt.Errorf("event %d: %w", i, err)
					return
				}
			}
			wrote <- nil
		})
		return nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = app.Listener(smallSendBuffers{ln}) }()
	t.Cleanup(func() { _ = app.Shutdown(); <-served })
	conn, err := (&net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
	total, buf := 0, make([]byte, 16<<10)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.ReadFull(conn, buf)
		total += n
		if err != nil || total >= events*size {
			break
		}
		time.Sleep(125 * time.Millisecond) // 16 KiB every 125 ms
	}
	if err := <-wrote; err != nil {
		t.Fatalf("the stream's writer: %v", err)
	}
	if want := events * size; total < want {
		t.Errorf("the reader got %d bytes, fewer than the %d of the events", total, want)
	}
}
