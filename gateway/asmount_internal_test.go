package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

// TestAuthServerRequestsOwnTheirStrings: what the authorization server
// keeps of a request (its trace spans are exported after the answer) stays
// as it was when the next request on the same connection arrives, which
// fasthttp parses into the same buffers.
func TestAuthServerRequestsOwnTheirStrings(t *testing.T) {
	type seen struct{ method, proto, target, path, query, host, header string }
	var (
		mu   sync.Mutex
		kept []seen
	)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	mountAuthServer(app, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		kept = append(kept, seen{r.Method, r.Proto, r.RequestURI, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Get("X-Probe")})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	t.Cleanup(func() {
		if err := app.ShutdownWithTimeout(5 * time.Second); err != nil {
			t.Error(err)
		}
		<-served
	})

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(conn)
	// Same lengths, so fasthttp writes the second over the first in place.
	sent := []seen{
		{"GET", "HTTP/1.1", "/oauth2/aaaa?x=1", "/oauth2/aaaa", "x=1", "host-a", "first"},
		{"PUT", "HTTP/1.0", "/oauth2/bbbb?y=2", "/oauth2/bbbb", "y=2", "host-b", "secnd"},
	}
	for _, s := range sent {
		if _, err := fmt.Fprintf(conn, "%s %s %s\r\nHost: %s\r\nX-Probe: %s\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
			s.method, s.target, s.proto, s.host, s.header); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s %s: %d", s.method, s.target, resp.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(kept) != len(sent) {
		t.Fatalf("the handler saw %d requests, want %d", len(kept), len(sent))
	}
	for i := range sent {
		if kept[i] != sent[i] {
			t.Errorf("request %d as kept by the handler: %+v, want %+v", i, kept[i], sent[i])
		}
	}
}
