package cimd

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// MaxURLLen bounds a client id URL (and a jwks_uri). It equals the longest
// client id the authorization server's stores key by.
const MaxURLLen = 1024

// IsURL tells whether a client_id is URL-formatted: it starts with https://
// or http:// (in any case). Such an id is a metadata document's URL, valid
// or not (ParseClientID says which); any other id is for a client registry.
// An authorization server that also issues ids must never issue one that
// starts so (the draft, "Supporting Both Pre-Registered and Unregistered
// Clients").
func IsURL(clientID string) bool {
	return hasPrefixFold(clientID, "https://") || hasPrefixFold(clientID, "http://")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// ParseClientID checks a client identifier URL against the draft's
// "Client Identifier" section: the https scheme (exactly "https://", since
// the document's client_id is compared to it as a string), a host, a path
// component, no single-dot or double-dot path segment (nor one
// percent-encoded), no fragment, no username or password. A port is
// allowed, and so is a query string (which the draft says SHOULD NOT be
// used). Beyond the draft, the URL is at most MaxURLLen bytes of the
// characters RFC 3986 allows in a URI. Errors wrap ErrInvalidClientID.
func ParseClientID(clientID string) (*url.URL, error) {
	u, err := parseFetchURL(clientID, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidClientID, err)
	}
	return u, nil
}

// parseFetchURL applies the client id rules to any URL this package
// fetches; a jwks_uri need not have a path.
func parseFetchURL(raw string, needPath bool) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("empty")
	}
	if len(raw) > MaxURLLen {
		return nil, fmt.Errorf("longer than %d bytes", MaxURLLen)
	}
	for i := 0; i < len(raw); i++ {
		if !uriChar(raw[i]) {
			return nil, fmt.Errorf("byte %d (%q) is not allowed in a URI", i, raw[i])
		}
	}
	if !strings.HasPrefix(raw, "https://") {
		return nil, fmt.Errorf("the scheme must be https")
	}
	if strings.Contains(raw, "#") {
		return nil, fmt.Errorf("must not contain a fragment")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL")
	}
	authority, _, _ := strings.Cut(strings.TrimPrefix(raw, "https://"), "/")
	authority, _, _ = strings.Cut(authority, "?")
	if u.User != nil || strings.Contains(authority, "@") {
		return nil, fmt.Errorf("must not contain a username or password")
	}
	if strings.Contains(authority, "%") {
		return nil, fmt.Errorf("the host must not be percent-encoded")
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return nil, fmt.Errorf("must have a host")
	}
	if p := u.Port(); p != "" && !validPort(p) {
		return nil, fmt.Errorf("invalid port")
	}
	if strings.HasPrefix(u.Host, "[") && (net.ParseIP(u.Hostname()) == nil || !strings.Contains(u.Hostname(), ":")) {
		return nil, fmt.Errorf("invalid IP literal")
	}
	path := u.EscapedPath()
	if needPath && path == "" {
		return nil, fmt.Errorf("must contain a path component")
	}
	if lp := strings.ToLower(path); strings.Contains(lp, "%2f") || strings.Contains(lp, "%5c") {
		// A server that decodes them would serve another path than the
		// one policy matched (agents.cimd_providers prefixes), e.g.
		// /agents/x%2F..%2F..%2Fother.
		return nil, fmt.Errorf("the path must not contain an encoded slash or backslash")
	}
	for _, seg := range strings.Split(path, "/") {
		if s, err := url.PathUnescape(seg); err == nil && (s == "." || s == "..") || seg == "." || seg == ".." {
			return nil, fmt.Errorf("must not contain a dot segment")
		}
	}
	return u, nil
}

func validPort(p string) bool {
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n > 0 && n <= 65535
}

// uriChar tells whether b may appear in a URI (RFC 3986 §2: unreserved,
// reserved, and '%' of a percent-encoding).
func uriChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("-._~:/?#[]@!$&'()*+,;=%", b) >= 0
}

// Origin is the origin of a URL (scheme://host[:port]), as policy keys
// client id URLs by it.
func Origin(u *url.URL) string {
	return u.Scheme + "://" + u.Host
}
