package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdingBackend fronts a demo backend and, when hold is set, keeps the
// stream of each tools/call answer open after the answer until released
// (or 10 s), as a slow or misbehaving server might; it counts the TCP
// connections the gateway opened to it.
type holdingBackend struct {
	hold    atomic.Bool
	release chan struct{}
	once    sync.Once
	// ended is closed when a held answer's stream is let go.
	ended chan struct{}
	conns atomic.Int64
}

func (h *holdingBackend) front(t *testing.T, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	rp.FlushInterval = -1
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var m struct {
			Method string `json:"method"`
		}
		_ = json.Unmarshal(body, &m)
		rp.ServeHTTP(w, r)
		if m.Method == "tools/call" && h.hold.Load() {
			select {
			case <-h.release:
			case <-time.After(10 * time.Second):
			}
			h.once.Do(func() { close(h.ended) })
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			h.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL + u.Path
}

// TestAnswerEndsTheClientsStream: once the backend's answer to a
// tools/call has gone through, the client's response ends, even when the
// backend keeps its stream open; a backend that ends its stream promptly
// keeps its connection (calls one after another use one connection).
func TestAnswerEndsTheClientsStream(t *testing.T) {
	h := &holdingBackend{release: make(chan struct{}), ended: make(chan struct{})}
	s := newStackWith(t, stackOptions{backendURL: func(name, u string) string {
		if name != "jira" {
			return u
		}
		return h.front(t, u)
	}})
	ci := s.machineAgent("ci-bot", false, "jira:read")
	sid := s.initialized("/mcp/jira", ci)
	call := func(id int) {
		status, _, _, body := s.rpcCall("/mcp/jira", ci, "2025-11-25", sid,
			`{"jsonrpc":"2.0","id":`+strconv.Itoa(id)+`,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"SEC"}}}`)
		if status != http.StatusOK || !strings.Contains(body, "SEC-12") {
			t.Fatalf("call %d: %d %s", id, status, body)
		}
	}

	before := h.conns.Load()
	for i := 1; i <= 5; i++ {
		call(i)
	}
	if got := h.conns.Load() - before; got > 1 {
		t.Errorf("5 calls one after another opened %d connections to the backend, want at most 1", got)
	}

	h.hold.Store(true)
	call(6) // returns only when the client's response has ended
	select {
	case <-h.ended:
		t.Fatal("the client's response ended only when the backend let its stream go")
	default:
	}
	close(h.release)
}
