package lightmcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Running is the light backend listening on its own address.
type Running struct {
	// URL is the MCP endpoint, e.g. "http://127.0.0.1:40123/mcp".
	URL string
	hs  *http.Server
	// served is closed when the server's Serve has returned.
	served chan struct{}
}

// Start serves a new Handler at /mcp on addr ("127.0.0.1:0" picks a free
// port). ctx governs only the start; stop it with Close.
func Start(ctx context.Context, addr string) (*Running, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("light backend: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", New())
	r := &Running{
		URL:    "http://" + ln.Addr().String() + "/mcp",
		hs:     &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute},
		served: make(chan struct{}),
	}
	go func() {
		defer close(r.served)
		_ = r.hs.Serve(ln)
	}()
	return r, nil
}

// Close stops the listener and waits, until ctx is done, for the calls in
// flight; then it cuts what is left. It returns when the server has stopped.
func (r *Running) Close(ctx context.Context) error {
	err := r.hs.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, r.hs.Close())
	}
	<-r.served
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
