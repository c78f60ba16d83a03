package audit

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// SSE defaults.
const (
	DefaultSSEHeartbeat = 15 * time.Second
	DefaultSSEBuffer    = 256
	sseWriteTimeout     = 30 * time.Second
)

type sseConfig struct {
	heartbeat time.Duration
	buffer    int
	// onlySubject: stream only subject's records (WithSSESubject).
	onlySubject bool
	subject     string
}

// SSEOption configures SSEHandler.
type SSEOption func(*sseConfig)

// WithSSEHeartbeat sets the interval of the keep-alive comment (default 15s).
func WithSSEHeartbeat(d time.Duration) SSEOption {
	return func(c *sseConfig) {
		if d > 0 {
			c.heartbeat = d
		}
	}
}

// WithSSEBuffer sets each stream's subscriber buffer (default 256).
func WithSSEBuffer(n int) SSEOption {
	return func(c *sseConfig) {
		if n > 0 {
			c.buffer = n
		}
	}
}

// WithSSESubject streams only the records of this subject, whatever the
// request asks: a caller that may see only one person's records builds a
// handler with it for each request. An empty subject selects none.
func WithSSESubject(sub string) SSEOption {
	return func(c *sseConfig) {
		c.subject = sub
		c.onlySubject = true
	}
}

// SSEHandler streams the trail's live records as text/event-stream:
//
//	event: audit
//	data: <record JSON>
//
// with a ": heartbeat" comment every 15s. Optional query parameters
// client_id, decision, tool and approval_id select records. When the stream falls behind
// and loses records, it says so before the next record with
//
//	event: dropped
//	data: {"dropped":<records lost so far on this stream>}
//
// The stream ends when the request's context is cancelled or the trail
// closes. The handler does no authentication: mount it behind the admin
// API's auth (records carry subjects and, with redaction off, arguments).
func SSEHandler(t *Trail, opts ...SSEOption) http.Handler {
	cfg := sseConfig{heartbeat: DefaultSSEHeartbeat, buffer: DefaultSSEBuffer}
	for _, o := range opts {
		o(&cfg)
	}
	return &sseHandler{t: t, cfg: cfg}
}

type sseHandler struct {
	t   *Trail
	cfg sseConfig
}

func (h *sseHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	f := Filter{ClientID: q.Get("client_id"), Decision: q.Get("decision"), Tool: q.Get("tool"), ApprovalID: q.Get("approval_id")}
	if h.cfg.onlySubject {
		if h.cfg.subject == "" {
			http.Error(w, "no subject to stream the records of", http.StatusForbidden)
			return
		}
		f.Subject = h.cfg.subject
	}
	switch f.Decision {
	case "", DecisionAllow, DecisionDeny, DecisionError, DecisionHold:
	default:
		http.Error(w, "decision must be allow, deny, error or hold", http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // no proxy buffering
	hdr.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}

	sub := h.t.NewSubscription(h.cfg.buffer)
	defer sub.Cancel()

	write := func(s string) bool {
		// A per-write deadline so a stalled client cannot hold the stream
		// forever; servers whose writer has no deadlines just ignore it.
		if err := rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := fmt.Fprint(w, s); err != nil {
			return false
		}
		if err := rc.Flush(); err != nil {
			return false
		}
		return true
	}
	if !write("retry: 3000\n: connected\n\n") {
		return
	}
	hb := time.NewTicker(h.cfg.heartbeat)
	defer hb.Stop()
	var reported uint64
	for {
		select {
		case <-r.Context().Done():
			return
		case <-hb.C:
			if !write(": heartbeat\n\n") {
				return
			}
		case rec, ok := <-sub.C:
			if !ok {
				return // trail closed
			}
			if d := sub.Dropped(); d != reported {
				reported = d
				if !write(fmt.Sprintf("event: dropped\ndata: {\"dropped\":%d}\n\n", d)) {
					return
				}
			}
			if !f.Matches(&rec) {
				continue
			}
			b, err := Encode(&rec)
			if err != nil {
				continue
			}
			// JSON from encoding/json has no raw newlines, so one data line.
			if !write("event: audit\ndata: " + string(b) + "\n\n") {
				return
			}
		}
	}
}
