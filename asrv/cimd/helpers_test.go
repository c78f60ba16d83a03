package cimd

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/certreload/certtest"
)

// docServer is a loopback HTTPS server with a test CA that serves what its
// handler says, counting requests by path.
type docServer struct {
	*httptest.Server
	pair  certtest.Pair
	mu    sync.Mutex
	hits  map[string]int
	total atomic.Int64
}

func newDocServer(t testing.TB, h http.HandlerFunc) *docServer {
	t.Helper()
	ds := &docServer{pair: certtest.New(t, "cimd test CA"), hits: map[string]int{}}
	cert, err := tls.X509KeyPair(ds.pair.CertPEM, ds.pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ds.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ds.mu.Lock()
		ds.hits[r.URL.Path]++
		ds.mu.Unlock()
		ds.total.Add(1)
		h(w, r)
	}))
	ds.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ds.StartTLS()
	t.Cleanup(ds.Close)
	return ds
}

func (ds *docServer) hitsOf(path string) int {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.hits[path]
}

// id is the client id URL of path on this server.
func (ds *docServer) id(path string) string { return ds.URL + path }

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// newTestResolver fetches from ds (loopback allowed, its CA trusted).
func newTestResolver(t testing.TB, ds *docServer, opts ...func(*Config)) *Resolver {
	t.Helper()
	cfg := Config{Fetch: true, AllowNetworks: loopback, RootCAs: ds.pair.Pool(), Timeout: 2 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// publicDoc is a valid public client's document for id.
func publicDoc(id string) map[string]any {
	return map[string]any{
		"client_id":                  id,
		"client_name":                "Test Agent",
		"client_uri":                 "https://agent.example/",
		"redirect_uris":              []string{"http://127.0.0.1/callback", "http://localhost/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serveJSON writes body as application/json with extra headers.
func serveJSON(w http.ResponseWriter, body []byte, headers ...string) {
	w.Header().Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		w.Header().Set(headers[i], headers[i+1])
	}
	_, _ = w.Write(body)
}
