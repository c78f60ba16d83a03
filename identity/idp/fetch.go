package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/identity"
)

// maxDocumentBytes bounds a discovery document or key set read from the
// provider.
const maxDocumentBytes = 1 << 20

// errNoRedirects: the provider's documents and token endpoint are fetched
// from the URLs discovery names, never from where a redirect points.
var errNoRedirects = errors.New("redirects are not followed")

// newHTTPClient is the client for every call to the provider: a timeout
// per request and no redirects.
func newHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		Transport:     http.DefaultTransport.(*http.Transport).Clone(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return errNoRedirects },
	}
}

// fetchJSON GETs url into out and returns how long the answer may be
// cached as the provider's headers say (Cache-Control max-age, else
// Expires; -1 when they say nothing). A network failure, a timeout or a
// server error wraps identity.ErrUnavailable.
func (p *Provider) fetchJSON(ctx context.Context, url string, out any) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("fetch %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: fetch %s: %w", identity.ErrUnavailable, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return 0, fmt.Errorf("%w: read %s: %w", identity.ErrUnavailable, url, err)
	}
	switch {
	case resp.StatusCode != http.StatusOK:
		return 0, fmt.Errorf("%w: %s answered %s", identity.ErrUnavailable, url, resp.Status)
	case len(body) > maxDocumentBytes:
		return 0, fmt.Errorf("%w: %s is larger than %d bytes", identity.ErrUnavailable, url, maxDocumentBytes)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "application/json" && mt != "application/jwk-set+json" && !strings.HasSuffix(mt, "+json") {
			return 0, fmt.Errorf("%w: %s answered %s, not JSON", identity.ErrUnavailable, url, mt)
		}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return 0, fmt.Errorf("%w: decode %s: %w", identity.ErrUnavailable, url, err)
	}
	return cacheLifetime(resp.Header, p.now()), nil
}

// cacheLifetime is how long a response may be cached by its headers:
// Cache-Control max-age (no-store, no-cache: 0), else Expires - Date; -1
// when the headers say nothing.
func cacheLifetime(h http.Header, now time.Time) time.Duration {
	if cc := h.Get("Cache-Control"); cc != "" {
		for _, d := range strings.Split(cc, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(k) {
			case "no-store", "no-cache":
				return 0
			case "max-age":
				if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 {
					return time.Duration(min(n, int64(365*24*time.Hour/time.Second))) * time.Second
				}
			}
		}
	}
	if e := h.Get("Expires"); e != "" {
		exp, err := http.ParseTime(e)
		if err != nil {
			return 0 // RFC 9111 §5.3: an invalid Expires means already expired
		}
		base := now
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			base = d
		}
		return max(0, exp.Sub(base))
	}
	return -1
}

// lifetime clamps a cache lifetime from the headers to [lo, hi], taking
// def when the headers say nothing.
func lifetime(fromHeaders, def, lo, hi time.Duration) time.Duration {
	if fromHeaders < 0 {
		return def
	}
	return min(max(fromHeaders, lo), hi)
}
