package bundlesource_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/bundlesource"
	"github.com/pbac-gateway/pbac/rego"
)

type keys struct {
	signer   *rego.Signer
	verifier *rego.Verifier
}

func newKeys(t *testing.T) keys {
	t.Helper()
	priv, pub := policytest.SigningKeys(t)
	s, err := rego.NewSigner(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := rego.NewVerifier(rego.VerificationKey{PEM: pub})
	if err != nil {
		t.Fatal(err)
	}
	return keys{s, v}
}

func (k keys) sign(t *testing.T, b *rego.Bundle) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := b.WriteSignedTarGz(&buf, k.signer); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// server is an OPA-style bundle server: ETag = revision, 304 on a match,
// 503 while down.
type server struct {
	*httptest.Server
	mu        sync.Mutex
	raw       []byte
	etag      string
	down      int // answer 503 to this many requests
	requests  []time.Time
	downloads int
	auth      []string
}

func newServer(t *testing.T) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests = append(s.requests, time.Now())
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		if r.URL.Path != "/bundles/pbac" {
			http.NotFound(w, r)
			return
		}
		if s.down > 0 {
			s.down--
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if s.raw == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", s.etag)
		if r.Header.Get("If-None-Match") == s.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		s.downloads++
		_, _ = w.Write(s.raw)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) serve(raw []byte, rev string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raw, s.etag = raw, `"`+rev+`"`
}

func (s *server) stats() (requests []time.Time, downloads int, auth []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.requests...), s.downloads, append([]string(nil), s.auth...)
}

// replica is a registry running version 0, requiring signatures by k.
func replica(t *testing.T, k keys) *plugins.Registry {
	t.Helper()
	r := policytest.Empty(t)
	if _, err := r.Activate(context.Background(), policytest.Versioned(t, 0, "alice"), "shipped"); err != nil {
		t.Fatal(err)
	}
	r.RequireSignatures(k.verifier)
	return r
}

func active(r *plugins.Registry) string {
	info, _ := r.Active()
	return info.Version
}

func TestPollETagAndRefusal(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t)
	srv := newServer(t)
	reg := replica(t, k)
	src, err := bundlesource.New(bundlesource.Config{URL: bundlesource.BundleURL(srv.URL, "pbac"), Token: "read-only-token", Registry: reg})
	if err != nil {
		t.Fatal(err)
	}

	// The server runs what the replica runs: 304 before any download.
	v0 := policytest.Versioned(t, 0, "alice")
	srv.serve(k.sign(t, v0), v0.Revision)
	if res, err := src.Poll(ctx); res != bundlesource.ResultUnchanged || err != nil {
		t.Fatalf("same version: %s %v", res, err)
	}

	v1 := policytest.Versioned(t, 1, "alice")
	srv.serve(k.sign(t, v1), v1.Revision)
	if res, err := src.Poll(ctx); res != bundlesource.ResultActivated || err != nil {
		t.Fatalf("new version: %s %v", res, err)
	}
	if active(reg) != v1.Revision {
		t.Fatal("v1 is not active")
	}
	if res, _ := src.Poll(ctx); res != bundlesource.ResultUnchanged {
		t.Fatalf("unchanged: %s", res)
	}
	if _, downloads, auth := srv.stats(); downloads != 1 || auth[0] != "Bearer read-only-token" {
		t.Fatalf("%d downloads (want 1), auth %q", downloads, auth[0])
	}
	st := src.Status()
	if st.ETag != `"`+v1.Revision+`"` || st.Version != v1.Revision || st.Result != bundlesource.ResultUnchanged {
		t.Fatalf("status %+v", st)
	}

	// Unsigned, wrongly signed: refused, v1 stays, and not downloaded again.
	var unsigned bytes.Buffer
	v2 := policytest.Versioned(t, 2, "alice")
	if err := v2.WriteTarGz(&unsigned); err != nil {
		t.Fatal(err)
	}
	v3 := policytest.Versioned(t, 3, "alice")
	for _, bad := range []struct {
		raw []byte
		rev string
	}{{unsigned.Bytes(), v2.Revision}, {newKeys(t).sign(t, v3), v3.Revision}} {
		srv.serve(bad.raw, bad.rev)
		res, err := src.Poll(ctx)
		if res != bundlesource.ResultRejected || err == nil {
			t.Fatalf("bad bundle: %s %v", res, err)
		}
		if active(reg) != v1.Revision {
			t.Fatal("a bad bundle replaced the active version")
		}
		if st := src.Status(); st.Refused == "" || st.Version != v1.Revision {
			t.Fatalf("status after refusal %+v", st)
		}
		_, before, _ := srv.stats()
		if res, _ := src.Poll(ctx); res != bundlesource.ResultUnchanged {
			t.Fatalf("refused bundle polled again: %s", res)
		}
		if _, after, _ := srv.stats(); after != before {
			t.Fatal("a refused bundle was downloaded again")
		}
	}
}

func TestRunPicksUpNewVersionWithinInterval(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	k := newKeys(t)
	srv := newServer(t)
	reg := replica(t, k)
	const interval = 200 * time.Millisecond
	src, err := bundlesource.New(bundlesource.Config{URL: srv.URL + "/bundles/pbac", Interval: interval, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	v0 := policytest.Versioned(t, 0, "alice")
	srv.serve(k.sign(t, v0), v0.Revision)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, time.Second, "the first poll", func() bool { return !src.Status().LastPoll.IsZero() })

	for i := 1; i <= 3; i++ {
		v := policytest.Versioned(t, i, "alice")
		srv.serve(k.sign(t, v), v.Revision)
		start := time.Now()
		waitFor(t, 5*time.Second, "the new version", func() bool { return active(reg) == v.Revision })
		took := time.Since(start)
		t.Logf("version %d live after %v (interval %v)", i, took.Round(time.Millisecond), interval)
		// One interval, plus the download and activation.
		if took > interval+500*time.Millisecond {
			t.Errorf("version %d took %v, more than one interval", i, took)
		}
	}
}

func TestBackoffAndRecovery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	k := newKeys(t)
	srv := newServer(t)
	reg := replica(t, k)
	const interval = 40 * time.Millisecond
	src, err := bundlesource.New(bundlesource.Config{URL: srv.URL + "/bundles/pbac", Interval: interval, Jitter: -1, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	v1 := policytest.Versioned(t, 1, "alice")
	srv.serve(k.sign(t, v1), v1.Revision)
	srv.mu.Lock()
	srv.down = 4
	srv.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	// The registry activates before the source records the poll's result,
	// so recovery is when both say so.
	waitFor(t, 10*time.Second, "recovery", func() bool {
		return active(reg) == v1.Revision && src.Status().Result == bundlesource.ResultActivated
	})
	reqs, _, _ := srv.stats()
	if len(reqs) < 5 {
		t.Fatalf("%d requests", len(reqs))
	}
	// Waits after failures 1..4: 1, 2, 4, 4 intervals (timers never fire
	// early, so lower bounds hold on a loaded machine).
	want := []time.Duration{1, 2, 4, 4}
	for i, w := range want {
		if gap := reqs[i+1].Sub(reqs[i]); gap < w*interval {
			t.Errorf("wait %d was %v, want at least %v", i+1, gap, w*interval)
		}
	}
	st := src.Status()
	if st.Failures != 0 || st.Error != "" || st.Result != bundlesource.ResultActivated {
		t.Fatalf("status after recovery %+v", st)
	}

	// A server that is gone altogether is an error too, and polling goes on.
	srv.Close()
	waitFor(t, 10*time.Second, "failures against a closed server", func() bool { return src.Status().Failures >= 2 })
	if active(reg) != v1.Revision {
		t.Fatal("the active version changed while the server was gone")
	}
}

func TestNewChecksConfig(t *testing.T) {
	if _, err := bundlesource.New(bundlesource.Config{URL: "http://x/bundles/pbac"}); err == nil {
		t.Error("no registry accepted")
	}
	if _, err := bundlesource.New(bundlesource.Config{URL: "ftp://x", Registry: &plugins.Registry{}}); err == nil {
		t.Error("ftp accepted")
	}
	if got := bundlesource.BundleURL("https://a:8081/", "pbac"); got != "https://a:8081/bundles/pbac" {
		t.Errorf("BundleURL = %s", got)
	}
	if got := bundlesource.BundleURL("https://cdn/bundles/prod.tar.gz", "pbac"); got != "https://cdn/bundles/prod.tar.gz" {
		t.Errorf("BundleURL kept = %s", got)
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
