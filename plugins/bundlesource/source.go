// Package bundlesource keeps a gateway replica's policy in step with a
// bundle server that speaks OPA's bundle service API: it polls
// GET <server>/bundles/<name> with If-None-Match, activates each new bundle
// through the policy registry (which verifies its signature when signatures
// are required) and backs off while the server fails.
package bundlesource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
)

// Defaults.
const (
	DefaultInterval = 30 * time.Second
	// DefaultJitter shortens each wait by up to this fraction of the
	// interval, so replicas do not poll in step and a new version still
	// reaches every replica within one interval.
	DefaultJitter = 0.2
	// maxBackoff is how many intervals the wait grows to while the server
	// fails.
	maxBackoff = 4
	// maxBundle bounds a downloaded bundle.
	maxBundle = 64 << 20
)

// Config configures a Source.
type Config struct {
	// URL is the bundle's full address, e.g. https://a.internal:8081/bundles/pbac.
	URL string
	// Token, when set, is sent as Authorization: Bearer.
	Token string
	// Interval between polls (DefaultInterval when zero).
	Interval time.Duration
	// Jitter is the fraction of Interval each wait may be shortened by
	// (DefaultJitter when zero, none when negative).
	Jitter float64
	// Registry receives the bundles.
	Registry *plugins.Registry
	// Client makes the requests (a client with a 30 s timeout when nil).
	Client *http.Client
	Logger *slog.Logger
}

// Result is the outcome of one poll.
type Result string

// Poll results.
const (
	ResultActivated Result = "activated" // a new version is live
	ResultUnchanged Result = "unchanged" // 304, or the version already live
	ResultRejected  Result = "rejected"  // downloaded, refused (signature, validation)
	ResultError     Result = "error"     // the server could not be reached or failed
)

// Status is what /admin/status shows about the source.
type Status struct {
	URL      string    `json:"url"`
	Interval string    `json:"interval"`
	LastPoll time.Time `json:"last_poll,omitzero"`
	Result   Result    `json:"result,omitempty"`
	// ETag is the server's tag of the last bundle downloaded.
	ETag string `json:"etag,omitempty"`
	// Error says why the last poll failed.
	Error string `json:"error,omitempty"`
	// Refused says why the bundle at ETag was not activated; it stays
	// until the server hands out another one.
	Refused string `json:"refused,omitempty"`
	// LastActivated is when a bundle from the server last went live.
	LastActivated time.Time `json:"last_activated,omitzero"`
	Version       string    `json:"version,omitempty"`
	// Failures counts consecutive failed polls (the backoff grows with it).
	Failures int `json:"failures,omitempty"`
}

// Source polls one bundle server.
type Source struct {
	cfg Config

	mu     sync.Mutex
	status Status
}

// New checks cfg and returns a source; Run starts polling.
func New(cfg Config) (*Source, error) {
	if cfg.Registry == nil {
		return nil, errors.New("bundlesource: no policy registry")
	}
	if !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://") {
		return nil, fmt.Errorf("bundlesource: bundle URL %q is not http(s)", cfg.URL)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = DefaultJitter
	}
	cfg.Jitter = min(max(cfg.Jitter, 0), 0.9)
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = cfg.Logger.With("bundle_url", cfg.URL)
	return &Source{cfg: cfg, status: Status{URL: cfg.URL, Interval: cfg.Interval.String()}}, nil
}

// BundleURL is the address of bundle name on an OPA bundle server (a
// trailing /bundles/<name> is added to server unless it already names a
// bundle resource).
func BundleURL(server, name string) string {
	server = strings.TrimSuffix(server, "/")
	if strings.Contains(server, "/bundles/") {
		return server
	}
	return server + "/bundles/" + name
}

// Status reports the last poll.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Run polls until ctx is done: at once, then every interval (shortened by
// the jitter), and with a growing wait while the server fails.
func (s *Source) Run(ctx context.Context) error {
	for {
		res, _ := s.Poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		t := time.NewTimer(s.wait(res))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// wait is the delay before the next poll after res.
func (s *Source) wait(res Result) time.Duration {
	d := s.cfg.Interval
	if res == ResultError {
		s.mu.Lock()
		n := s.status.Failures
		s.mu.Unlock()
		for i := 1; i < n && d < maxBackoff*s.cfg.Interval; i++ {
			d *= 2
		}
		d = min(d, maxBackoff*s.cfg.Interval)
	}
	if s.cfg.Jitter > 0 {
		d -= time.Duration(rand.Float64() * s.cfg.Jitter * float64(d))
	}
	return d
}

// Poll asks the server once and activates what it hands out, if new.
func (s *Source) Poll(ctx context.Context) (Result, error) {
	res, etag, info, err := s.poll(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.status
	st.LastPoll, st.Result = time.Now(), res
	switch res {
	case ResultError:
		st.Failures++
		st.Error = err.Error()
	case ResultRejected:
		st.Failures, st.ETag, st.Error, st.Refused = 0, etag, "", err.Error()
	case ResultActivated:
		st.Failures, st.ETag, st.Error, st.Refused = 0, etag, "", ""
		st.LastActivated, st.Version = st.LastPoll, info.Version
	case ResultUnchanged:
		st.Failures, st.Error = 0, ""
		if etag != "" { // downloaded, and already the active version
			st.ETag, st.Refused, st.Version = etag, "", info.Version
		}
		if st.Version == "" {
			if cur, ok := s.cfg.Registry.Active(); ok {
				st.Version = cur.Version
			}
		}
	}
	if ctx.Err() == nil {
		switch res {
		case ResultError:
			s.cfg.Logger.Warn("policy bundle poll failed", "err", err, "failures", st.Failures)
		case ResultRejected:
			s.cfg.Logger.Error("policy bundle refused; the active policy stays", "etag", etag, "err", err)
		case ResultActivated:
			s.cfg.Logger.Info("policy bundle activated", "version", info.Version, "etag", etag, "signed_by", info.SignedBy)
		}
	}
	return res, err
}

func (s *Source) poll(ctx context.Context) (Result, string, plugins.Info, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.URL, nil)
	if err != nil {
		return ResultError, "", plugins.Info{}, fmt.Errorf("bundlesource: %w", err)
	}
	// A bundle already seen (activated or refused) is not downloaded again;
	// before the first download the active version stands in, so a server
	// that tags bundles with their revision (pbac's does) answers 304 when
	// this replica already runs it.
	s.mu.Lock()
	etag := s.status.ETag
	s.mu.Unlock()
	if etag == "" {
		if cur, ok := s.cfg.Registry.Active(); ok {
			etag = `"` + cur.Version + `"`
		}
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	req.Header.Set("Accept", "application/vnd.openpolicyagent.bundles, application/gzip;q=0.9, */*;q=0.1")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return ResultError, "", plugins.Info{}, fmt.Errorf("bundlesource: GET %s: %w", s.cfg.URL, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return ResultUnchanged, "", plugins.Info{}, nil
	case http.StatusOK:
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return ResultError, "", plugins.Info{}, fmt.Errorf("bundlesource: GET %s: %s: %s", s.cfg.URL, resp.Status, bytes.TrimSpace(msg))
	}
	newTag := resp.Header.Get("ETag")
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBundle+1))
	if err != nil {
		return ResultError, "", plugins.Info{}, fmt.Errorf("bundlesource: reading the bundle: %w", err)
	}
	if len(raw) > maxBundle {
		return ResultRejected, newTag, plugins.Info{}, fmt.Errorf("bundlesource: bundle exceeds %d bytes", maxBundle)
	}
	b, err := rego.ReadTarGz(bytes.NewReader(raw))
	if err != nil {
		return ResultRejected, newTag, plugins.Info{}, fmt.Errorf("bundlesource: %w", err)
	}
	if cur, ok := s.cfg.Registry.Active(); ok && cur.Version == b.Revision {
		return ResultUnchanged, newTag, cur, nil
	}
	info, err := s.cfg.Registry.Activate(ctx, b, "bundle server "+s.cfg.URL)
	if err != nil {
		return ResultRejected, newTag, plugins.Info{}, err
	}
	return ResultActivated, newTag, info, nil
}
