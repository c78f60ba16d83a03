package admin_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/internal/policytest"
)

// TestProfilesBehindTheToken: with Profiling the admin API serves Go's
// runtime profiles, to the admin token only; without it, none.
func TestProfilesBehindTheToken(t *testing.T) {
	const token = "admin-token-for-tests-0123456789"
	reg := policytest.Empty(t)
	serve := func(profiling bool) *httptest.Server {
		h, err := admin.New(admin.Config{Token: token, Registry: reg, Profiling: profiling})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv
	}
	get := func(srv *httptest.Server, path, bearer string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	on, off := serve(true), serve(false)
	for _, tc := range []struct {
		name, path, bearer string
		srv                *httptest.Server
		status             int
		body               string
	}{
		{"the list", "/admin/debug/pprof/", token, on, 200, `"goroutine"`},
		{"goroutines as text", "/admin/debug/pprof/goroutine?debug=1", token, on, 200, "goroutine profile:"},
		{"no token", "/admin/debug/pprof/goroutine?debug=1", "", on, 401, ""},
		{"a wrong token", "/admin/debug/pprof/heap", "not-the-token-0123456789012345", on, 401, ""},
		{"no such profile", "/admin/debug/pprof/secrets", token, on, 404, "no profile named"},
		{"off", "/admin/debug/pprof/goroutine?debug=1", token, off, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := get(tc.srv, tc.path, tc.bearer)
			if status != tc.status || !strings.Contains(string(body), tc.body) {
				t.Fatalf("GET %s: %d %.200s, want %d with %q", tc.path, status, body, tc.status, tc.body)
			}
		})
	}
	// The heap profile is the gzipped protocol buffer go tool pprof reads.
	status, body := get(on, "/admin/debug/pprof/heap", token)
	if status != 200 {
		t.Fatalf("heap: %d", status)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the heap profile is not gzip: %v", err)
	}
	if raw, err := io.ReadAll(zr); err != nil || len(raw) == 0 {
		t.Fatalf("the heap profile: %d bytes, %v", len(raw), err)
	}
}
