package cimd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxHeaderBytes bounds a fetched response's headers.
const maxHeaderBytes = 16 << 10

// fetcher is the HTTPS client of a Resolver: no proxy (a proxy would dial
// on our behalf, past the address check), no redirects, no compression
// (what is read is what was sent), every dialled address checked.
type fetcher struct {
	client    *http.Client
	transport *http.Transport
}

func newFetcher(cfg *Config) *fetcher {
	guard := addressPolicy{allow: cfg.AllowNetworks}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, Control: guard.control}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    cfg.ConnectTimeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxResponseHeaderBytes: maxHeaderBytes,
		DisableCompression:     true,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           16,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        30 * time.Second,
	}
	return &fetcher{
		transport: tr,
		client: &http.Client{
			Transport: tr,
			// The draft ("Client Information Discovery"): the AS MUST NOT
			// automatically follow HTTP redirects.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// response is a fetched body with what its headers say about caching.
type response struct {
	body      []byte
	freshness freshness
}

// get fetches rawURL (already validated) within ctx: status 200 only (the
// draft: "MUST treat all other HTTP status codes as an error"), a JSON
// media type, at most maxBytes of body. Errors wrap ErrNotAllowed (an
// address refused) or ErrFetch.
func (f *fetcher) get(ctx context.Context, rawURL string, maxBytes int64, now time.Time) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFetch, rawURL, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "pbac-gateway-cimd/1")
	resp, err := f.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrNotAllowed) {
			return nil, fmt.Errorf("%w: %s", ErrNotAllowed, unwrapURLError(err))
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrFetch, rawURL, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			return nil, fmt.Errorf("%w: %s: status %d, a redirect (to %s), which is never followed", ErrFetch, rawURL, resp.StatusCode, truncate(loc))
		}
		return nil, fmt.Errorf("%w: %s: status %d (only 200 is a document)", ErrFetch, rawURL, resp.StatusCode)
	}
	if !jsonMediaType(resp.Header.Get("Content-Type")) {
		return nil, fmt.Errorf("%w: %s: content type %q is not JSON (application/json or application/*+json)", ErrFetch, rawURL, truncate(resp.Header.Get("Content-Type")))
	}
	if resp.ContentLength > maxBytes {
		return nil, fmt.Errorf("%w: %s: %d bytes, more than the %d allowed", ErrFetch, rawURL, resp.ContentLength, maxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err == nil && ctx.Err() != nil {
		// The time ran out while the body came: a read cut short by the
		// cancelled request may still end in a clean EOF, with half a
		// document.
		err = ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: reading the body: %v", ErrFetch, rawURL, err)
	}
	if int64(len(body)) > maxBytes {
		return nil, fmt.Errorf("%w: %s: body larger than the %d bytes allowed", ErrFetch, rawURL, maxBytes)
	}
	return &response{body: body, freshness: freshnessOf(resp.Header, now)}, nil
}

// unwrapURLError drops the *url.Error wrapper, which repeats the URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

func jsonMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// freshness is what a response's headers say about reusing it (RFC 9111).
type freshness struct {
	// noStore: the response must not be stored (Cache-Control: no-store).
	noStore bool
	// explicit: the headers give a lifetime (max-age, no-cache or
	// Expires); otherwise lifetime is zero and the server picks one.
	explicit bool
	lifetime time.Duration
}

// freshnessOf reads Cache-Control (no-store; no-cache as a zero lifetime;
// max-age, RFC 9111 §5.2.2.1), else Expires less Date (§4.2.1; an invalid
// Expires is already stale, §5.3), less the Age the response already has
// (§4.2.3). s-maxage and private are for shared caches and ignored: the
// authorization server is the sole user of what it caches.
func freshnessOf(h http.Header, now time.Time) freshness {
	var f freshness
	maxAges := 0
	for _, line := range h.Values("Cache-Control") {
		for _, d := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store":
				f.noStore = true
			case "no-cache":
				f.explicit, f.lifetime = true, 0
				maxAges = -1 // wins over any max-age
			case "max-age":
				if maxAges < 0 {
					continue
				}
				maxAges++
				secs, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
				if err != nil || secs < 0 || maxAges > 1 {
					secs = 0 // invalid or conflicting: stale (RFC 9111 §4.2.1)
				}
				f.explicit, f.lifetime = true, time.Duration(min(secs, int64(1<<62)/int64(time.Second)))*time.Second
			}
		}
	}
	if !f.explicit {
		if exp := h.Get("Expires"); exp != "" {
			f.explicit = true
			if t, err := http.ParseTime(exp); err == nil {
				base := now
				if d, err := http.ParseTime(h.Get("Date")); err == nil {
					base = d
				}
				f.lifetime = max(0, t.Sub(base))
			}
		}
	}
	if age, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && age > 0 && f.explicit {
		f.lifetime = max(0, f.lifetime-time.Duration(min(age, int64(1<<62)/int64(time.Second)))*time.Second)
	}
	return f
}
