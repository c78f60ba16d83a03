package admin_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/admin"
)

// TestAdminGuard: the admin listener answers only to its own address (and
// the configured names), and a change must come from its own origin with a
// body a form cannot send.
func TestAdminGuard(t *testing.T) {
	reached := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	type req struct {
		method, path, host string
		hdr                map[string]string
		body               string
	}
	jsonCT := map[string]string{"Content-Type": "application/json"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		listen string
		extra  []string
		req    req
		want   int
	}{
		// Host (DNS rebinding)
		{"loopback listener, its address", "127.0.0.1:8081", nil, req{"GET", "/ui/api/session", "127.0.0.1:8081", nil, ""}, http.StatusTeapot},
		{"loopback listener, localhost", "127.0.0.1:8081", nil, req{"GET", "/ui/", "localhost:8081", nil, ""}, http.StatusTeapot},
		{"loopback listener, LOCALHOST.", "127.0.0.1:8081", nil, req{"GET", "/ui/", "LOCALHOST.:8081", nil, ""}, http.StatusTeapot},
		{"loopback listener, ::1", "127.0.0.1:8081", nil, req{"GET", "/metrics", "[::1]:8081", nil, ""}, http.StatusTeapot},
		{"a rebound name is refused", "127.0.0.1:8081", nil, req{"GET", "/ui/api/config", "attacker.example:8081", nil, ""}, http.StatusForbidden},
		{"a rebound name is refused on metrics", "127.0.0.1:8081", nil, req{"GET", "/metrics", "rebind.attacker.example", nil, ""}, http.StatusForbidden},
		{"a rebound name is refused on the admin API", "127.0.0.1:8081", nil, req{"GET", "/admin/status", "attacker.example", nil, ""}, http.StatusForbidden},
		{"no Host is refused", "127.0.0.1:8081", nil, req{"GET", "/ui/", "", nil, ""}, http.StatusForbidden},
		{"probes answer any Host", "127.0.0.1:8081", nil, req{"GET", "/readyz", "lb.internal", nil, ""}, http.StatusTeapot},
		{"a configured name", "10.0.0.5:8081", []string{"GW-1.internal"}, req{"GET", "/bundles/pbac", "gw-1.internal:8081", nil, ""}, http.StatusTeapot},
		{"another IP of a specific listener", "10.0.0.5:8081", nil, req{"GET", "/admin/status", "10.0.0.6:8081", nil, ""}, http.StatusForbidden},
		{"localhost is not a name of a network listener", "10.0.0.5:8081", nil, req{"GET", "/admin/status", "localhost:8081", nil, ""}, http.StatusForbidden},
		{"every interface: any IP literal", "0.0.0.0:8081", nil, req{"GET", "/admin/status", "192.168.1.9:8081", nil, ""}, http.StatusTeapot},
		{"every interface: an unknown name", "0.0.0.0:8081", nil, req{"GET", "/admin/status", "attacker.example:8081", nil, ""}, http.StatusForbidden},
		// Origin, Sec-Fetch-Site (cross-site changes)
		{"same-origin change", "127.0.0.1:8081", nil, req{"PUT", "/ui/api/policy/data", "127.0.0.1:8081", with("Content-Type", "application/json", "Origin", "http://127.0.0.1:8081", "Sec-Fetch-Site", "same-origin"), "{}"}, http.StatusTeapot},
		{"change without Origin (a script)", "127.0.0.1:8081", nil, req{"PUT", "/admin/policy/data", "127.0.0.1:8081", jsonCT, "{}"}, http.StatusTeapot},
		{"cross-origin change", "127.0.0.1:8081", nil, req{"POST", "/ui/api/session", "127.0.0.1:8081", with("Content-Type", "application/json", "Origin", "http://attacker.example"), "{}"}, http.StatusForbidden},
		{"another local port's origin", "127.0.0.1:8081", nil, req{"POST", "/ui/api/session", "127.0.0.1:8081", with("Content-Type", "application/json", "Origin", "http://127.0.0.1:3000"), "{}"}, http.StatusForbidden},
		{"behind a TLS-terminating proxy", "127.0.0.1:8081", []string{"admin.example"}, req{"POST", "/ui/api/session", "admin.example", with("Content-Type", "application/json", "Origin", "https://admin.example"), "{}"}, http.StatusTeapot},
		{"origin of another port of the name", "127.0.0.1:8081", []string{"admin.example"}, req{"POST", "/ui/api/session", "admin.example", with("Content-Type", "application/json", "Origin", "https://admin.example:8443"), "{}"}, http.StatusForbidden},
		{"origin null", "127.0.0.1:8081", nil, req{"POST", "/ui/api/session", "127.0.0.1:8081", with("Content-Type", "application/json", "Origin", "null"), "{}"}, http.StatusForbidden},
		{"cross-site fetch metadata", "127.0.0.1:8081", nil, req{"DELETE", "/ui/api/agents/x", "127.0.0.1:8081", with("Sec-Fetch-Site", "cross-site"), ""}, http.StatusForbidden},
		{"same-site is not same-origin", "127.0.0.1:8081", nil, req{"POST", "/ui/api/policy/rollback", "127.0.0.1:8081", with("Content-Type", "application/json", "Sec-Fetch-Site", "same-site"), ""}, http.StatusForbidden},
		// Content-Type (bodies a form can send)
		{"text/plain change", "127.0.0.1:8081", nil, req{"PUT", "/admin/policy/data", "127.0.0.1:8081", with("Content-Type", "text/plain"), "{}"}, http.StatusUnsupportedMediaType},
		{"form change", "127.0.0.1:8081", nil, req{"POST", "/ui/api/session", "127.0.0.1:8081", with("Content-Type", "application/x-www-form-urlencoded"), "username=alice"}, http.StatusUnsupportedMediaType},
		{"multipart change", "127.0.0.1:8081", nil, req{"POST", "/ui/api/policy/bundles", "127.0.0.1:8081", with("Content-Type", "multipart/form-data; boundary=x"), "--x--"}, http.StatusUnsupportedMediaType},
		{"POST without Content-Type", "127.0.0.1:8081", nil, req{"POST", "/admin/policy/rollback", "127.0.0.1:8081", nil, ""}, http.StatusUnsupportedMediaType},
		{"JSON with a charset", "127.0.0.1:8081", nil, req{"POST", "/admin/policy/rollback", "127.0.0.1:8081", with("Content-Type", "application/json; charset=utf-8"), ""}, http.StatusTeapot},
		{"a bundle is gzip", "127.0.0.1:8081", nil, req{"POST", "/admin/policy/bundles", "127.0.0.1:8081", with("Content-Type", "application/gzip"), "x"}, http.StatusTeapot},
		{"a bundle is not JSON", "127.0.0.1:8081", nil, req{"POST", "/ui/api/policy/bundles", "127.0.0.1:8081", jsonCT, "x"}, http.StatusUnsupportedMediaType},
		{"bodiless DELETE", "127.0.0.1:8081", nil, req{"DELETE", "/admin/clients/x", "127.0.0.1:8081", nil, ""}, http.StatusTeapot},
		{"DELETE with a text body", "127.0.0.1:8081", nil, req{"DELETE", "/admin/clients/x", "127.0.0.1:8081", with("Content-Type", "text/plain"), "x"}, http.StatusUnsupportedMediaType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := admin.NewGuard(tc.listen, tc.extra)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(tc.req.method, "http://x"+tc.req.path, strings.NewReader(tc.req.body))
			r.Host = tc.req.host
			if tc.req.body == "" {
				r.ContentLength = 0
			}
			for k, v := range tc.req.hdr {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			g.Handler(reached).ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("%s %s Host %q: %d %s, want %d", tc.req.method, tc.req.path, tc.req.host, w.Code, w.Body, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		listen string
		want   bool
	}{{"127.0.0.1:8081", true}, {"[::1]:8081", true}, {"0.0.0.0:8081", false}, {"10.0.0.5:8081", false}} {
		g, err := admin.NewGuard(tc.listen, nil)
		if err != nil || g.Loopback() != tc.want {
			t.Errorf("Loopback(%s) = %v, want %v (%v)", tc.listen, g.Loopback(), tc.want, err)
		}
	}
}
