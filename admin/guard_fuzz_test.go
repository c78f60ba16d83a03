package admin

import (
	"net"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAdminGuardHost: whatever a client puts in Host and Origin, a loopback
// admin listener answers only to a loopback name, and a change passes only
// when its Origin names that same host and port.
func FuzzAdminGuardHost(f *testing.F) {
	for _, s := range [][2]string{
		{"127.0.0.1:8081", "http://127.0.0.1:8081"}, {"localhost", ""}, {"[::1]:8081", "http://[::1]:8081"},
		{"attacker.example:8081", "http://attacker.example:8081"}, {"LOCALHOST.", "null"}, {"127.0.0.1.nip.io", ""},
		{"localhost@attacker.example", "http://localhost@attacker.example"}, {"[::ffff:127.0.0.1]:1", ""}, {"", ""},
	} {
		f.Add(s[0], s[1])
	}
	g, err := NewGuard("127.0.0.1:8081", nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host, origin string) {
		if g.allowedHost(host) {
			h := host
			if hh, _, err := net.SplitHostPort(host); err == nil {
				h = hh
			}
			switch normalHost(h) {
			case "localhost", "127.0.0.1", "::1":
			default:
				t.Fatalf("Host %q allowed on a loopback listener", host)
			}
		}
		r := httptest.NewRequest("POST", "/ui/api/session", nil)
		r.Host = host
		r.Header.Set("Origin", origin)
		if crossSite(r) == "" && origin != "" {
			if i := strings.Index(origin, "://"); i < 0 || !strings.EqualFold(strings.SplitN(origin[i+3:], "/", 2)[0], host) {
				t.Fatalf("Origin %q accepted for Host %q", origin, host)
			}
		}
	})
}
