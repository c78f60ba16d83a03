package admin

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Guard protects the admin listener (admin API, dashboard, metrics,
// bundle service) from browsers made to call it by another site:
//
//   - DNS rebinding: a page of attacker.example whose name now resolves to
//     the admin address sends Host: attacker.example. Every request must
//     name the listener's own address in Host — its IP; "localhost",
//     127.0.0.1 or ::1 when it is on loopback; any IP literal when it is on
//     every interface — or one of the configured admin host names.
//   - Cross-site requests: a request that changes something (any method
//     but GET, HEAD, OPTIONS) must not come from another origin (Origin,
//     when present, names this listener's host and port; Sec-Fetch-Site, when present,
//     is same-origin or none), and its body must be one a form cannot send:
//     Content-Type application/json (application/gzip for a policy bundle).
//     A POST without one is refused too; a bodiless DELETE needs none (a
//     browser preflights it across origins).
//
// Probes (GET /healthz, /readyz) are exempt: load balancers name the
// address they probe.
type Guard struct {
	hosts    map[string]bool
	anyIP    bool
	loopback bool
}

// NewGuard builds the guard of a listener bound to addr (host:port
// as bound, e.g. net.Listener.Addr().String()), which also answers to the
// host names in extra.
func NewGuard(addr string, extra []string) (*Guard, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("admin guard: listener address %q: %w", addr, err)
	}
	g := &Guard{hosts: map[string]bool{}}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		g.hosts[normalHost(host)] = true
	case ip.IsUnspecified():
		g.anyIP = true
	default:
		g.hosts[ip.String()] = true
		if ip.IsLoopback() {
			g.loopback = true
			for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
				g.hosts[h] = true
			}
		}
	}
	for _, h := range extra {
		if h = normalHost(h); h != "" {
			g.hosts[h] = true
		}
	}
	return g, nil
}

// Loopback tells whether the listener is reachable from this machine only.
func (g *Guard) Loopback() bool { return g.loopback }

// normalHost is a host name as compared: lower-case, without brackets or a
// final dot.
func normalHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return h
}

// allowedHost tells whether a request's Host names this listener.
func (g *Guard) allowedHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = normalHost(host)
	if host == "" {
		return false
	}
	if g.hosts[host] {
		return true
	}
	return g.anyIP && net.ParseIP(host) != nil
}

// Handler wraps next with the checks.
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz") {
			next.ServeHTTP(w, r)
			return
		}
		if !g.allowedHost(r.Host) {
			adminJSON(w, http.StatusForbidden, map[string]string{"error": "this listener does not answer to host " + r.Host +
				" (a DNS-rebinding defence); use its address or add the name to admin_hosts"})
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		if why := crossSite(r); why != "" {
			adminJSON(w, http.StatusForbidden, map[string]string{"error": why})
			return
		}
		if why := stateChangeBody(r); why != "" {
			adminJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": why})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// crossSite is why a state change is refused as coming from another
// origin, or "". The Origin's host and port must be the request's Host;
// its scheme is not compared, so that a proxy terminating TLS in front of
// the listener does not break the dashboard (no one else serves that
// host and port under the other scheme).
func crossSite(r *http.Request) string {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, r.Host) {
			return "origin " + o + " may not change anything here"
		}
	}
	switch s := r.Header.Get("Sec-Fetch-Site"); s {
	case "", "same-origin", "none":
	default:
		return "a " + s + " request may not change anything here"
	}
	return ""
}

// stateChangeBody is why a state change's body is refused, or "".
func stateChangeBody(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" && r.Method == http.MethodDelete && r.ContentLength <= 0 {
		return ""
	}
	want := []string{"application/json"}
	if strings.HasSuffix(r.URL.Path, "/policy/bundles") {
		want = []string{"application/gzip", "application/x-gzip", "application/octet-stream"}
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		for _, w := range want {
			if mt == w {
				return ""
			}
		}
	}
	return "Content-Type must be " + strings.Join(want, " or ") + " on a request that changes something"
}
