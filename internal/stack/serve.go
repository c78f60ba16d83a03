package stack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/internal/certreload"
)

// openListener opens addr, under TLS when files say so (the certificate
// reloaded when its files change); scheme is "https" or "http".
func openListener(addr string, files *config.TLSFiles, log *slog.Logger) (ln net.Listener, scheme string, err error) {
	var cfg *tls.Config
	if files.Enabled() {
		r, err := certreload.New(files.CertFile, files.KeyFile, certreload.WithLogger(log))
		if err != nil {
			return nil, "", err
		}
		cfg = r.Config()
	}
	if ln, err = net.Listen("tcp", addr); err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	if cfg == nil {
		return ln, "http", nil
	}
	return tls.NewListener(ln, cfg), "https", nil
}

// readiness is what /readyz reports: not draining, a policy version
// active, the token store answering.
type readiness struct {
	draining atomic.Bool
	policy   func() bool                     // a policy version is active
	store    func(ctx context.Context) error // nil: no store in this process
}

func (r *readiness) check(ctx context.Context) error {
	var errs []error
	if r.draining.Load() {
		errs = append(errs, errors.New("draining: shutting down"))
	}
	if r.policy != nil && !r.policy() {
		errs = append(errs, errors.New("policy: no version active"))
	}
	if r.store != nil {
		if err := r.store(ctx); err != nil {
			errs = append(errs, fmt.Errorf("token store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// withProbes serves /healthz (the process answers) and /readyz (ready for
// traffic) in front of h.
func withProbes(h http.Handler, ready func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.Handle("GET /readyz", gateway.ReadyHandler(ready))
	mux.Handle("/", h)
	return mux
}

// drainWait turns readiness off and waits delay (or ctx), so load balancers
// stop sending new calls before the listeners close.
func drainWait(ctx context.Context, r *readiness, delay time.Duration, log *slog.Logger) {
	r.draining.Store(true)
	log.Info("draining: /readyz answers 503", "delay", delay)
	if delay <= 0 {
		return
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// adminMux serves the admin API, the dashboard and the gateway's metrics
// on the admin listener.
func adminMux(adminAPI, dash, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/admin/", adminAPI)
	mux.Handle("GET /metrics", metrics)
	mux.Handle("/bundles/", adminAPI) // OPA bundle service API: the active bundle, for other replicas
	mux.Handle("/ui", dash)
	mux.Handle("/ui/", dash)
	mux.Handle("GET "+identity.CallbackPath, dash) // the dashboard's single sign-on
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	return mux
}
