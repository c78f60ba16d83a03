package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

// seen is what a handler kept of a request.
type seen struct{ method, proto, target, path, query, host, header string }

// TestAuthServerRequestsOwnTheirStrings: what the authorization server
// keeps of a request (its trace spans are exported after the answer) stays
// as it was when the next request on the same connection arrives, which
// fasthttp parses into the same buffers.
func TestAuthServerRequestsOwnTheirStrings(t *testing.T) {
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
	got := twoOnOneConnection(t, app, &mu, &kept)
	for i := range sentTwice {
		if got[i] != sentTwice[i] {
			t.Errorf("request %d as kept by the handler: %+v, want %+v", i, got[i], sentTwice[i])
		}
	}
}

// TestGatewayRequestsOwnTheirStrings: the same for what the gateway's own
// handlers keep of a request through Fiber (its configuration is
// Immutable).
func TestGatewayRequestsOwnTheirStrings(t *testing.T) {
	var (
		mu   sync.Mutex
		kept []seen
	)
	g := &Gateway{cfg: Config{MaxBodyBytes: 1 << 20}}
	app := fiber.New(g.fiberConfig())
	app.All("/oauth2/:name", func(c *fiber.Ctx) error {
		mu.Lock()
		kept = append(kept, seen{c.Method(), "HTTP/1.1", "/oauth2/" + c.Params("name") + "?" + string(c.Request().URI().QueryString()),
			c.Path(), c.Query("x") + c.Query("y"), c.Hostname(), c.Get("X-Probe")})
		mu.Unlock()
		return c.SendStatus(http.StatusNoContent)
	})
	var want []seen
	for _, s := range sentTwice {
		// What this handler records: the protocol as a constant, the
		// query's value.
		s.proto, s.query = "HTTP/1.1", s.query[2:]
		want = append(want, s)
	}
	got := twoOnOneConnection(t, app, &mu, &kept)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d as kept by the handler: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// sentTwice are two requests of the same lengths, so fasthttp writes the
// second over the first in place.
var sentTwice = []seen{
	{"GET", "HTTP/1.1", "/oauth2/aaaa?x=1", "/oauth2/aaaa", "x=1", "host-a", "first"},
	{"PUT", "HTTP/1.0", "/oauth2/bbbb?y=2", "/oauth2/bbbb", "y=2", "host-b", "secnd"},
}

// twoOnOneConnection serves app, sends sentTwice on one keep-alive
// connection and returns what the handler kept (it appends to *kept under
// mu).
func twoOnOneConnection(t *testing.T, app *fiber.App, mu *sync.Mutex, kept *[]seen) []seen {
	t.Helper()
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
	for _, s := range sentTwice {
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
	got := slices.Clone(*kept)
	if len(got) != len(sentTwice) {
		t.Fatalf("the handler saw %d requests, want %d", len(got), len(sentTwice))
	}
	return got
}
