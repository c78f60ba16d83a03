package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// countingServer answers POSTs with body(n) for the n-th request and
// counts the TCP connections it accepted.
func countingServer(t *testing.T, body func(n int64) []byte) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	var conns, reqs atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		b := body(reqs.Add(1))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns, &reqs
}

// testForwarder is the forwarder of a backend at url, closed with the test.
func testForwarder(t *testing.T, url string, timeout time.Duration) *fasthttp.HostClient {
	t.Helper()
	fw, err := newForwarder(&Backend{Name: "b", URL: url, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fw.CloseIdleConnections)
	return fw
}

// send posts a call through fw within timeout, as forward does; the
// answer's body is the caller's to close.
func send(fw *fasthttp.HostClient, url string, timeout time.Duration) (*forwardBody, error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetBodyString(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`)
	resp := fasthttp.AcquireResponse()
	if err := fw.DoDeadline(req, resp, time.Now().Add(timeout)); err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, err
	}
	return newForwardBody(resp), nil
}

// forwardOnce sends a call whose answer must be streamed.
func forwardOnce(t *testing.T, fw *fasthttp.HostClient, url string) *forwardBody {
	t.Helper()
	b, err := send(fw, url, 5*time.Second)
	if err != nil {
		t.Fatalf("forward: %v", err)
	}
	if b.resp.BodyStream() == nil {
		t.Fatal("the answer's body is not streamed")
	}
	return b
}

// postOnce sends a call and reads its answer.
func postOnce(fw *fasthttp.HostClient, url string) (string, error) {
	b, err := send(fw, url, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	return string(got), err
}

// TestForwardAbandonedAnswerDoesNotReachNextCall: an answer the gateway
// stopped reading (its client went away mid-answer) takes its connection
// with it, so the rest of it can never be read as the answer to another
// caller's call; an answer read to its end leaves the connection for the
// next call.
func TestForwardAbandonedAnswerDoesNotReachNextCall(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 1<<20)
	srv, conns, _ := countingServer(t, func(n int64) []byte {
		if n == 1 {
			return big
		}
		return []byte(`{"answer":` + strconv.FormatInt(n, 10) + `}`)
	})
	fw := testForwarder(t, srv.URL, 5*time.Second)

	first := forwardOnce(t, fw, srv.URL)
	if _, err := io.ReadFull(first, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	_ = first.Close() // 1 MiB minus 10 bytes unread
	_ = first.Close() // idempotent

	for n := 2; n <= 3; n++ {
		b := forwardOnce(t, fw, srv.URL)
		got, err := io.ReadAll(b)
		_ = b.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"answer":` + strconv.Itoa(n) + `}`; string(got) != want {
			t.Fatalf("call %d got %.60q, want %s", n, got, want)
		}
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("connections: %d, want 2 (the abandoned answer's closed, the next two calls on one)", got)
	}
}

// TestForwardDoesNotRepeatACall: a backend that took the call and closed
// the connection without answering gets it once; the gateway answers with
// an error instead of sending the call again.
func TestForwardDoesNotRepeatACall(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		calls.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_ = conn.Close()
	}))
	t.Cleanup(srv.Close)
	fw := testForwarder(t, srv.URL, 5*time.Second)
	b, err := send(fw, srv.URL, 5*time.Second)
	if err == nil {
		_ = b.Close()
	}
	if !errors.Is(err, fasthttp.ErrConnectionClosed) {
		t.Errorf("err = %v, want the connection closed", err)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("the backend got the call %d times, want 1", got)
	}
}

// TestForwardTimeoutBoundsTheBody: the backend's timeout bounds the whole
// answer, its streamed body included.
func TestForwardTimeoutBoundsTheBody(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("event: message\ndata: {}\n\n"))
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	fw := testForwarder(t, srv.URL, 300*time.Millisecond)
	body, err := send(fw, srv.URL, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(body)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the held stream ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the body was still being read 5 s after the 300 ms timeout")
	}
}

func TestNewForwarderRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"ftp://host/mcp", "/mcp", "http://"} {
		if _, err := newForwarder(&Backend{Name: "b", URL: u, Timeout: time.Second}); err == nil {
			t.Errorf("%q: accepted", u)
		}
	}
}

// TestForwardSkipsConnectionsTheBackendClosed: a pooled connection the
// backend closed (its idle timeout, a restart) is found before a call is
// written on it; the call goes out on a new one, once.
func TestForwardSkipsConnectionsTheBackendClosed(t *testing.T) {
	srv, conns, reqs := countingServer(t, func(n int64) []byte { return []byte(`{"answer":` + strconv.FormatInt(n, 10) + `}`) })
	srv.Config.SetKeepAlivesEnabled(true)
	fw := testForwarder(t, srv.URL, 5*time.Second)
	for n := 1; n <= 3; n++ {
		if n > 1 {
			srv.CloseClientConnections() // as a restart does
			time.Sleep(50 * time.Millisecond)
		}
		got, err := postOnce(fw, srv.URL)
		if err != nil {
			t.Fatalf("call %d after the backend closed its connections: %v", n, err)
		}
		if want := `{"answer":` + strconv.Itoa(n) + `}`; got != want {
			t.Fatalf("call %d: %s, want %s", n, got, want)
		}
	}
	if got := reqs.Load(); got != 3 {
		t.Errorf("the backend got %d requests for 3 calls", got)
	}
	if got := conns.Load(); got != 3 {
		t.Errorf("connections: %d, want 3 (one per call, each after the last was closed)", got)
	}
}

// TestForwardDropsConnectionsWithUnsolicitedBytes: a backend that sent
// more than its answer said (here two bytes past its Content-Length) has
// bytes waiting on the connection that would be read as the start of the
// next caller's answer; the connection is dropped and the next call goes
// out on a new one.
func TestForwardDropsConnectionsWithUnsolicitedBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var served atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil || !bytes.Contains(buf[:n], []byte("tools/call")) {
						return
					}
					k := served.Add(1)
					body := `{"answer":` + strconv.FormatInt(k, 10) + `}`
					extra := ""
					if k == 1 {
						extra = `!!`
					}
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+
						strconv.Itoa(len(body))+"\r\n\r\n"+body); err != nil {
						return
					}
					if extra != "" {
						time.Sleep(20 * time.Millisecond) // after the answer was read
						_, _ = io.WriteString(c, extra)
					}
				}
			}(c)
		}
	}()
	url := "http://" + ln.Addr().String() + "/mcp"
	fw := testForwarder(t, url, 5*time.Second)
	for n := 1; n <= 2; n++ {
		got, err := postOnce(fw, url)
		if err != nil {
			t.Fatalf("call %d: %v", n, err)
		}
		if want := `{"answer":` + strconv.Itoa(n) + `}`; got != want {
			t.Fatalf("call %d got %q, want %s", n, got, want)
		}
		time.Sleep(60 * time.Millisecond)
	}
}

// TestForwardReachesIPv6Backends: a backend on an IPv6 address is dialled
// (fasthttp's own dialer is IPv4 only unless told otherwise).
func TestForwardReachesIPv6Backends(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	fw := testForwarder(t, srv.URL, 5*time.Second)
	if got, err := postOnce(fw, srv.URL); err != nil || got != `{"ok":true}` {
		t.Fatalf("%s: %q %v", srv.URL, got, err)
	}
}
