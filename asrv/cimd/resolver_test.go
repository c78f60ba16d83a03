package cimd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// selfID is the client id URL a request was made for.
func selfID(r *http.Request) string { return "https://" + r.Host + r.URL.RequestURI() }

func TestResolveFetchesAValidDocument(t *testing.T) {
	ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) {
		serveJSON(w, mustJSON(t, publicDoc(selfID(r))))
	})
	r := newTestResolver(t, ds)
	id := ds.id("/oauth/client.json")
	d, err := r.Resolve(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if d.ClientID != id || d.ClientName != "Test Agent" || d.Origin != ds.URL || d.TokenEndpointAuthMethod != AuthMethodNone ||
		len(d.RedirectURIs) != 2 || d.Pinned || d.FetchedAt.IsZero() {
		t.Fatalf("document %+v", d)
	}
	if !d.LoopbackOnly() {
		t.Error("a document of loopback redirect URIs only is LoopbackOnly")
	}
}

// TestFetchRules: every way a fetch or a document is refused, against a
// loopback HTTPS server, with the sentinel the AS branches on.
func TestFetchRules(t *testing.T) {
	big := publicDoc("")
	big["padding"] = strings.Repeat("x", DefaultMaxBytes)
	tests := []struct {
		name    string
		handler func(t *testing.T, w http.ResponseWriter, r *http.Request)
		want    error
		// notHit is a path the server must never have been asked for.
		notHit string
	}{
		{"a redirect is never followed", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/elsewhere.json" {
				serveJSON(w, mustJSON(t, publicDoc(selfID(r))))
				return
			}
			http.Redirect(w, r, "/elsewhere.json", http.StatusFound)
		}, ErrFetch, "/elsewhere.json"},
		{"a permanent redirect is never followed", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere.json", http.StatusPermanentRedirect)
		}, ErrFetch, "/elsewhere.json"},
		{"only status 200 is a document (404)", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		}, ErrFetch, ""},
		{"only status 200 is a document (203 with a valid body)", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNonAuthoritativeInfo)
			_, _ = w.Write(mustJSON(t, publicDoc(selfID(r))))
		}, ErrFetch, ""},
		{"a body over the limit is refused (announced length)", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			serveJSON(w, mustJSON(t, big))
		}, ErrFetch, ""},
		{"a body over the limit is refused (chunked)", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			for range 20 {
				_, _ = w.Write([]byte(strings.Repeat(" ", 1024)))
				w.(http.Flusher).Flush()
			}
		}, ErrFetch, ""},
		{"a slow body runs out of time", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"client_id":`))
			w.(http.Flusher).Flush()
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		}, ErrFetch, ""},
		{"slow headers run out of time", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		}, ErrFetch, ""},
		{"the content type must be JSON", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write(mustJSON(t, publicDoc(selfID(r))))
		}, ErrFetch, ""},
		{"client_id must equal the URL exactly", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			serveJSON(w, mustJSON(t, publicDoc(selfID(r)+"?x")))
		}, ErrInvalidDocument, ""},
		{"client_id of another host", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			serveJSON(w, mustJSON(t, publicDoc("https://claude.ai/oauth/claude-code-client-metadata")))
		}, ErrInvalidDocument, ""},
		{"bad JSON", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			serveJSON(w, []byte(`{"client_id": "`+selfID(r)+`", "client_name": "x",`))
		}, ErrInvalidDocument, ""},
		{"a JSON array is not a document", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			serveJSON(w, []byte(`[]`))
		}, ErrInvalidDocument, ""},
		{"client_secret is forbidden", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			d := publicDoc(selfID(r))
			d["client_secret"] = "s3cret"
			serveJSON(w, mustJSON(t, d))
		}, ErrInvalidDocument, ""},
		{"a shared-secret auth method is forbidden", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			d := publicDoc(selfID(r))
			d["token_endpoint_auth_method"] = "client_secret_basic"
			serveJSON(w, mustJSON(t, d))
		}, ErrInvalidDocument, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) { tc.handler(t, w, r) })
			r := newTestResolver(t, ds, func(c *Config) { c.Timeout = 300 * time.Millisecond })
			start := time.Now()
			_, err := r.Resolve(t.Context(), ds.id("/client.json"))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Resolve: %v, want %v", err, tc.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Resolve took %s: the time limit did not hold", d)
			}
			if tc.notHit != "" && ds.hitsOf(tc.notHit) != 0 {
				t.Errorf("%s was fetched", tc.notHit)
			}
		})
	}
}

func TestPrivateAddressesRefusedUnlessAllowed(t *testing.T) {
	ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) {
		serveJSON(w, mustJSON(t, publicDoc(selfID(r))))
	})
	port := ds.URL[strings.LastIndex(ds.URL, ":"):]
	for _, id := range []string{
		ds.id("/client.json"),
		// A name is judged by the address it resolves to, at dial time.
		"https://localhost" + port + "/client.json",
	} {
		r := newTestResolver(t, ds, func(c *Config) { c.AllowNetworks = nil })
		if _, err := r.Resolve(t.Context(), id); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Resolve(%s) with no network allowed: %v, want ErrNotAllowed", id, err)
		}
	}
	if n := ds.total.Load(); n != 0 {
		t.Fatalf("the server was reached %d times", n)
	}
	// Allowed by configuration, the same fetch works.
	r := newTestResolver(t, ds)
	if _, err := r.Resolve(t.Context(), ds.id("/client.json")); err != nil {
		t.Fatalf("allowed: %v", err)
	}
}

func TestTrustStoreIsTheOnlyTrust(t *testing.T) {
	ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) {
		serveJSON(w, mustJSON(t, publicDoc(selfID(r))))
	})
	other := newDocServer(t, func(http.ResponseWriter, *http.Request) {})
	for name, opt := range map[string]func(*Config){
		"system roots do not know the test CA": func(c *Config) { c.RootCAs = nil },
		"another CA's pool":                    func(c *Config) { c.RootCAs = other.pair.Pool() },
	} {
		r := newTestResolver(t, ds, opt)
		if _, err := r.Resolve(t.Context(), ds.id("/client.json")); !errors.Is(err, ErrFetch) {
			t.Errorf("%s: %v, want ErrFetch", name, err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, ds.pair.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool, err := LoadTrustStore(path)
	if err != nil {
		t.Fatal(err)
	}
	r := newTestResolver(t, ds, func(c *Config) { c.RootCAs = pool })
	if _, err := r.Resolve(t.Context(), ds.id("/client.json")); err != nil {
		t.Fatalf("with the trust store file: %v", err)
	}
	if _, err := LoadTrustStore(filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("a missing trust store loaded")
	}
}

// TestCachingHeaders: how long a document is reused follows its headers,
// within the floor and the ceiling.
func TestCachingHeaders(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		// after each step's wait, whether the document is fetched again
		steps []struct {
			wait    time.Duration
			fetched bool
		}
	}{
		{"max-age is honoured", []string{"Cache-Control", "public, max-age=300"}, steps(
			0, true, 299*time.Second, false, 2*time.Second, true)},
		{"Age counts against max-age", []string{"Cache-Control", "max-age=300", "Age", "200"}, steps(
			0, true, 99*time.Second, false, 2*time.Second, true)},
		{"no-store is never kept", []string{"Cache-Control", "no-store, max-age=300"}, steps(
			0, true, 0, true, time.Second, true)},
		{"max-age below the floor is raised to it", []string{"Cache-Control", "max-age=5"}, steps(
			0, true, 59*time.Second, false, 2*time.Second, true)},
		{"no-cache is a zero lifetime, raised to the floor", []string{"Cache-Control", "no-cache"}, steps(
			0, true, 30*time.Second, false, 31*time.Second, true)},
		{"max-age above the ceiling is capped", []string{"Cache-Control", "max-age=31536000"}, steps(
			0, true, 23*time.Hour, false, 2*time.Hour, true)},
		{"Expires less Date", []string{"Date", "Sat, 01 Aug 2026 12:00:00 GMT", "Expires", "Sat, 01 Aug 2026 12:10:00 GMT"}, steps(
			0, true, 9*time.Minute, false, 2*time.Minute, true)},
		{"no caching header: kept for the floor", nil, steps(
			0, true, 59*time.Second, false, 2*time.Second, true)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) {
				serveJSON(w, mustJSON(t, publicDoc(selfID(r))), tc.headers...)
			})
			clk := newClock()
			r := newTestResolver(t, ds, func(c *Config) { c.Now = clk.Now; c.CacheMin = time.Minute; c.CacheMax = 24 * time.Hour })
			id := ds.id("/client.json")
			for i, s := range tc.steps {
				clk.Add(s.wait)
				before := ds.total.Load()
				if _, err := r.Resolve(t.Context(), id); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if fetched := ds.total.Load() > before; fetched != s.fetched {
					t.Fatalf("step %d (after %s): fetched %v, want %v", i, s.wait, fetched, s.fetched)
				}
			}
		})
	}
}

func steps(v ...any) []struct {
	wait    time.Duration
	fetched bool
} {
	var out []struct {
		wait    time.Duration
		fetched bool
	}
	for i := 0; i+1 < len(v); i += 2 {
		w, _ := v[i].(time.Duration)
		if n, ok := v[i].(int); ok {
			w = time.Duration(n)
		}
		out = append(out, struct {
			wait    time.Duration
			fetched bool
		}{w, v[i+1].(bool)})
	}
	return out
}

// TestFailuresAreNotCached: the draft forbids caching error responses and
// invalid documents, so a client that fixes its document is seen at once;
// NegativeTTL opts into remembering failures briefly.
func TestFailuresAreNotCached(t *testing.T) {
	var mu sync.Mutex
	broken := true
	ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		serveJSON(w, mustJSON(t, publicDoc(selfID(r))))
	})
	setBroken := func(b bool) { mu.Lock(); broken = b; mu.Unlock() }
	clk := newClock()
	id := ds.id("/client.json")

	r := newTestResolver(t, ds, func(c *Config) { c.Now = clk.Now })
	if _, err := r.Resolve(t.Context(), id); !errors.Is(err, ErrFetch) {
		t.Fatalf("broken: %v", err)
	}
	setBroken(false)
	if _, err := r.Resolve(t.Context(), id); err != nil {
		t.Fatalf("fixed, without a negative cache: %v", err)
	}

	setBroken(true)
	neg := newTestResolver(t, ds, func(c *Config) { c.Now = clk.Now; c.NegativeTTL = 5 * time.Second })
	if _, err := neg.Resolve(t.Context(), id); !errors.Is(err, ErrFetch) {
		t.Fatalf("broken: %v", err)
	}
	setBroken(false)
	before := ds.total.Load()
	if _, err := neg.Resolve(t.Context(), id); !errors.Is(err, ErrFetch) {
		t.Fatalf("within NegativeTTL the failure is remembered: %v", err)
	}
	if ds.total.Load() != before {
		t.Fatal("a remembered failure fetched again")
	}
	clk.Add(6 * time.Second)
	if _, err := neg.Resolve(t.Context(), id); err != nil {
		t.Fatalf("after NegativeTTL: %v", err)
	}
}

func TestOneFetchPerURLAtATime(t *testing.T) {
	release := make(chan struct{})
	ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		serveJSON(w, mustJSON(t, publicDoc(selfID(r))), "Cache-Control", "no-store")
	})
	r := newTestResolver(t, ds)
	id := ds.id("/client.json")
	const callers = 20
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			d, err := r.Resolve(t.Context(), id)
			if err == nil && d.ClientID != id {
				err = fmt.Errorf("got %s", d.ClientID)
			}
			errs <- err
		})
	}
	// Every caller is waiting on the one request the server holds.
	deadline := time.Now().Add(5 * time.Second)
	for ds.total.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := ds.total.Load(); n != 1 {
		t.Fatalf("%d callers made %d fetches, want 1 (no-store, so only sharing the flight explains it)", callers, n)
	}
}

func TestCallerContextBoundsTheWait(t *testing.T) {
	release := make(chan struct{})
	ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		serveJSON(w, mustJSON(t, publicDoc(selfID(r))))
	})
	r := newTestResolver(t, ds, func(c *Config) { c.Timeout = 10 * time.Second })
	id := ds.id("/client.json")
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := r.Resolve(ctx, id); !errors.Is(err, ErrFetch) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Resolve past the caller's deadline: %v", err)
	}
	// The fetch goes on for the next caller, who gets it.
	close(release)
	if _, err := r.Resolve(t.Context(), id); err != nil {
		t.Fatal(err)
	}
}

func TestCloseEndsFetchesUnderWay(t *testing.T) {
	ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	r := newTestResolver(t, ds, func(c *Config) { c.Timeout = time.Minute })
	done := make(chan error, 1)
	go func() { _, err := r.Resolve(t.Context(), ds.id("/client.json")); done <- err }()
	for ds.total.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Resolve during Close: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %s", d)
	}
	if _, err := r.Resolve(t.Context(), ds.id("/other.json")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Resolve after Close: %v", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) {
		serveJSON(w, mustJSON(t, publicDoc(selfID(r))), "Cache-Control", "max-age=3600")
	})
	r := newTestResolver(t, ds, func(c *Config) { c.MaxEntries = 2 })
	for _, p := range []string{"/a.json", "/b.json", "/c.json", "/a.json"} {
		if _, err := r.Resolve(t.Context(), ds.id(p)); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.docs.len(); n != 2 {
		t.Fatalf("cache holds %d documents, want at most 2", n)
	}
	// /a.json was evicted by /c.json (least recently used), so fetched twice.
	if n := ds.hitsOf("/a.json"); n != 2 {
		t.Fatalf("/a.json fetched %d times, want 2", n)
	}
}

func TestPinnedDocumentsWithFetchingOff(t *testing.T) {
	const id = "https://agent.example/oauth/client.json"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "agent.json"), mustJSON(t, publicDoc(id)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not a document"), 0o600); err != nil {
		t.Fatal(err)
	}
	pinned, err := LoadPinnedDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Fetch: false, Pinned: pinned})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d, err := r.Resolve(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Pinned || d.ClientName != "Test Agent" {
		t.Fatalf("pinned document %+v", d)
	}
	if _, err := r.Resolve(t.Context(), "https://other.example/client.json"); !errors.Is(err, ErrNotAllowed) || !errors.Is(err, ErrNotPinned) {
		t.Fatalf("unpinned with fetching off: %v", err)
	}

	// Two files for one URL, and an invalid pinned document, fail at start.
	if err := os.WriteFile(filepath.Join(dir, "again.json"), mustJSON(t, publicDoc(id)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPinnedDir(dir); err == nil {
		t.Error("two pinned documents for one URL loaded")
	}
	bad := publicDoc(id)
	delete(bad, "redirect_uris")
	if _, err := New(Config{Pinned: map[string][]byte{id: mustJSON(t, bad)}}); !errors.Is(err, ErrInvalidDocument) {
		t.Errorf("invalid pinned document: %v", err)
	}
	if _, err := New(Config{Pinned: map[string][]byte{"https://elsewhere.example/c.json": mustJSON(t, publicDoc(id))}}); !errors.Is(err, ErrInvalidDocument) {
		t.Errorf("pinned under another URL than its client_id: %v", err)
	}
}

// TestPinnedWinsOverFetching: with fetching on, a pinned document is used
// as pinned and never fetched.
func TestPinnedWinsOverFetching(t *testing.T) {
	ds := newDocServer(t, func(w http.ResponseWriter, r *http.Request) {
		serveJSON(w, mustJSON(t, publicDoc(selfID(r))))
	})
	id := ds.id("/client.json")
	doc := publicDoc(id)
	doc["client_name"] = "Pinned Name"
	r := newTestResolver(t, ds, func(c *Config) { c.Pinned = map[string][]byte{id: mustJSON(t, doc)} })
	d, err := r.Resolve(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if d.ClientName != "Pinned Name" || ds.total.Load() != 0 {
		t.Fatalf("got %q after %d fetches", d.ClientName, ds.total.Load())
	}
}
