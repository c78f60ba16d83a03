package gateway

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
)

// mountAuthServer serves the authorization server's net/http handler on
// the gateway's listener, at the OAuth endpoints and their metadata.
func mountAuthServer(app *fiber.App, h http.Handler) {
	as := adaptor.HTTPHandler(detachRequest(h))
	app.All("/oauth2/*", as)
	app.Get("/.well-known/oauth-authorization-server", as)
	app.Get("/.well-known/openid-configuration", as)
}

// detachRequest gives h a request whose strings are its own. Fiber's
// adaptor builds the net/http request over fasthttp's buffers (method,
// protocol, target, host, headers), which the next request on the same
// connection overwrites, while the authorization server keeps some of
// them after it has answered: its trace spans, exported later, carry the
// protocol version and the path.
func detachRequest(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := r.WithContext(r.Context()) // a shallow copy; what holds strings is replaced below
		d.Method = strings.Clone(r.Method)
		d.Proto = strings.Clone(r.Proto)
		d.RequestURI = strings.Clone(r.RequestURI)
		d.Host = strings.Clone(r.Host)
		d.RemoteAddr = strings.Clone(r.RemoteAddr)
		d.URL = cloneURL(r.URL)
		d.Header = make(http.Header, len(r.Header))
		for k, vs := range r.Header {
			d.Header[strings.Clone(k)] = cloneStrings(vs)
		}
		d.TransferEncoding = cloneStrings(r.TransferEncoding)
		h.ServeHTTP(w, d)
	})
}

func cloneURL(u *url.URL) *url.URL {
	if u == nil {
		return nil
	}
	c := &url.URL{Scheme: strings.Clone(u.Scheme), Opaque: strings.Clone(u.Opaque), Host: strings.Clone(u.Host),
		Path: strings.Clone(u.Path), RawPath: strings.Clone(u.RawPath), OmitHost: u.OmitHost, ForceQuery: u.ForceQuery,
		RawQuery: strings.Clone(u.RawQuery), Fragment: strings.Clone(u.Fragment), RawFragment: strings.Clone(u.RawFragment)}
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			c.User = url.UserPassword(strings.Clone(u.User.Username()), strings.Clone(p))
		} else {
			c.User = url.User(strings.Clone(u.User.Username()))
		}
	}
	return c
}

func cloneStrings(vs []string) []string {
	if vs == nil {
		return nil
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.Clone(v)
	}
	return out
}
