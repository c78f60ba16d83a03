// Package certreload serves a TLS certificate from a pair of PEM files and
// picks up a replaced pair without a restart: tls.Config.GetCertificate
// re-reads the files when their modification time or size changed, checking
// at most once per interval. A pair that does not load (half written, key
// and certificate not matching) is logged and the previous one stays.
package certreload

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultInterval is how often, at most, the files are looked at.
const DefaultInterval = 2 * time.Second

// Reloader holds the current certificate of one listener.
type Reloader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp // cert, key as last loaded
	checked time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// Option configures a Reloader.
type Option func(*Reloader)

// WithInterval sets how often, at most, the files are looked at.
func WithInterval(d time.Duration) Option { return func(r *Reloader) { r.interval = d } }

// WithLogger logs reloads and failed reloads.
func WithLogger(l *slog.Logger) Option { return func(r *Reloader) { r.log = l } }

// New loads the pair once; an unreadable or mismatched pair fails here.
func New(certFile, keyFile string, opts ...Option) (*Reloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: both a certificate file and a key file are required")
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, interval: DefaultInterval,
		log: slog.New(slog.DiscardHandler), now: time.Now}
	for _, o := range opts {
		o(r)
	}
	st, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := Load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert, r.stamp, r.checked = cert, st, r.now()
	return r, nil
}

// Load reads and checks a certificate and key pair.
func Load(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

func (r *Reloader) stat() ([2]fileStamp, error) {
	var out [2]fileStamp
	for i, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return out, fmt.Errorf("tls: %w", err)
		}
		out[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return out, nil
}

// GetCertificate is tls.Config.GetCertificate: the current pair, reloaded
// first when the files changed.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= r.interval {
		r.checked = now
		r.reloadLocked()
	}
	return r.cert, nil
}

func (r *Reloader) reloadLocked() {
	st, err := r.stat()
	if err != nil {
		r.log.Warn("tls: certificate files unreadable; keeping the loaded pair", "cert_file", r.certFile, "err", err)
		return
	}
	if st == r.stamp {
		return
	}
	cert, err := Load(r.certFile, r.keyFile)
	if err != nil {
		// Often a pair replaced one file at a time: try again next interval.
		r.log.Warn("tls: new certificate does not load; keeping the loaded pair", "cert_file", r.certFile, "err", err)
		return
	}
	r.cert, r.stamp = cert, st
	r.log.Info("tls: certificate reloaded", "cert_file", r.certFile)
}

// Config is a server tls.Config on this reloader: TLS 1.2 at least,
// HTTP/1.1 (the gateway's Fiber listener speaks nothing else).
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}
