package asrv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// One rule for redirect URIs: checkRedirectURI decides both what a client
// may register (RFC 7591) and what an authorization request may be sent
// back to, so that registration and authorization never disagree about
// what a redirect may be. (fosite matches a loopback redirect by host and
// path alone, RFC 8252 §7.3, so a request could name
// http://evil.example@127.0.0.1:5555/cb for a registered
// http://127.0.0.1/cb: the userinfo that registration refuses.)

// checkRedirectURI enforces RFC 9700 / RFC 8252 redirect URIs: absolute,
// printable ASCII, no fragment, no userinfo; https; http only to a loopback
// host (any port, RFC 8252 §7.3); or a private-use scheme containing a dot
// (RFC 8252 §7.1).
func checkRedirectURI(raw string) error {
	if raw == "" {
		return errors.New("empty")
	}
	if len(raw) > maxURILen {
		return fmt.Errorf("longer than %d bytes", maxURILen)
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= 0x20 || raw[i] >= 0x7f {
			return errors.New("must be printable ASCII without spaces")
		}
	}
	if strings.Contains(raw, "#") {
		return errors.New("must not contain a fragment")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URI")
	}
	if !u.IsAbs() {
		return errors.New("must be an absolute URI")
	}
	if u.User != nil {
		return errors.New("must not contain userinfo")
	}
	switch u.Scheme {
	case "https":
		if u.Opaque != "" || u.Hostname() == "" {
			return errors.New("https URI needs a host")
		}
	case "http":
		if u.Opaque != "" || !isLoopbackHost(u.Hostname()) {
			return errors.New("http is allowed only for loopback hosts (127.0.0.1, [::1], localhost)")
		}
	default:
		if !strings.Contains(u.Scheme, ".") {
			return errors.New("scheme must be https, http on loopback, or a private-use scheme in reverse domain notation")
		}
	}
	return nil
}

// secureRedirect is fosite's RedirectSecureChecker: the same rule, on the
// URI fosite is about to redirect to.
func secureRedirect(_ context.Context, u *url.URL) bool {
	return u != nil && checkRedirectURI(u.String()) == nil
}

// isLoopbackRedirect tells whether u can only reach the user's own machine:
// http to a loopback host (RFC 8252 §7.3).
func isLoopbackRedirect(u *url.URL) bool {
	return u != nil && u.Scheme == "http" && u.User == nil && isLoopbackHost(u.Hostname())
}

func isLoopbackHost(h string) bool {
	return h == "127.0.0.1" || h == "::1" || strings.EqualFold(h, "localhost")
}

// RedirectAccepted tells whether the authorization endpoint sends a client
// registered with the redirect URIs registered back to sent: sent obeys the
// registration rule and is registered, exactly or, for http to a loopback
// IP literal, on another port. The dashboard uses it to offer only the
// client snippets an agent's registration lets work.
func RedirectAccepted(sent string, registered []string) bool {
	if checkRedirectURI(sent) != nil {
		return false
	}
	u, err := url.Parse(sent)
	return err == nil && redirectRegistered(u, registered)
}
