package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/propagation"
)

// The gateway forwards the messages it allows (forward, proxy.go) with
// fasthttp's client, one HostClient per backend. It writes the request and
// reads the answer's headers in the handler's own goroutine; net/http's
// Transport hands every request to a writer goroutine and every answer
// back from a reader goroutine, three goroutine wake-ups per call that
// cost more CPU than the gateway's own work (RATIONALE.md, "Forwarding
// with fasthttp's client"). The aggregated endpoint's messages go through
// it too (post); a message under a context that can be cancelled (tool
// discovery), the filtered per-backend tools/list, the GET stream and
// ending a session keep net/http.
//
// What a forward must keep from net/http:
//   - A POST is never sent twice: fasthttp retries only idempotent
//     methods, so a call the backend may have acted on is answered with
//     an error, never replayed. The one retry is of a call nothing of
//     which was written: its pooled connection was found closed or dirty.
//   - A pooled connection the backend closed, or on which it sent more
//     than it answered, is not used (liveConn).
//   - An answer read only in part never returns its connection to the
//     pool: closing a body stream that is not at its end closes the
//     connection (fasthttp ≥ 1.79; its tests and ours,
//     TestForwardAbandonedAnswerDoesNotReachNextCall).
//   - backend.Timeout bounds the whole exchange, the streamed body
//     included: DoDeadline sets the connection's read deadline once.

// forwardIdle is how long a connection to a backend stays pooled unused.
// A server closes idle keep-alive connections after its own timeout
// (Node's default is 5 s). liveConn finds a connection already closed; one
// the server closes in the instant the request goes out fails the call
// (it is not sent again), so the gateway lets go first where it can.
const forwardIdle = 4 * time.Second

// maxForwardConns bounds the connections to one backend; a call waits up
// to the backend's timeout for one to free up.
const maxForwardConns = 512

// newForwarder builds the client that forwards allowed messages to b.
func newForwarder(b *Backend) (*fasthttp.HostClient, error) {
	u, err := url.Parse(b.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("gateway: backend %s: URL %q is not absolute", b.Name, b.URL)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("gateway: backend %s: URL %q: scheme must be http or https", b.Name, b.URL)
	}
	return &fasthttp.HostClient{
		Addr:  u.Host,
		IsTLS: u.Scheme == "https",
		Name:  "pbac-gateway",
		// net.Dialer: IPv6 as well as IPv4, names resolved at each dial;
		// every connection checked before it is used again (liveConn).
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				return nil, err
			}
			return newLiveConn(c), nil
		},
		// A call is sent again only when nothing of it was written: the
		// pooled connection it was to go on was found closed or dirty
		// (liveConn). Each such try drops one connection, so the tries are
		// bounded by the pool.
		RetryIfErr: func(_ *fasthttp.Request, _ int, err error) (bool, bool) {
			return false, errors.Is(err, errConnNotReusable)
		},
		MaxIdemponentCallAttempts: maxForwardConns + 1,
		MaxConns:                  maxForwardConns,
		MaxConnWaitTimeout:        b.Timeout,
		MaxIdleConnDuration:       forwardIdle,
		ConnPoolStrategy:          fasthttp.LIFO,
		// Up to 64 KiB of response headers; a larger header block fails
		// the call (net/http's client takes up to 10 MiB).
		ReadBufferSize:         64 << 10,
		StreamResponseBody:     true,
		DisablePathNormalizing: true,
		// fasthttp's errors would quote the bytes it could not parse: a
		// backend's answer, which is not for logs or other callers.
		SecureErrorLogMessage: true,
	}, nil
}

// Why a pooled connection is not used again; errConnNotReusable wraps both.
var (
	errConnNotReusable = errors.New("pooled connection to the backend not reusable")
	errConnClosed      = fmt.Errorf("%w: closed by the backend", errConnNotReusable)
	errConnUnsolicited = fmt.Errorf("%w: bytes nobody asked for are waiting on it", errConnNotReusable)
)

// liveConn is a connection to a backend that, before a request is written
// on it again, checks that the backend has not closed it (an idle timeout,
// a restart) and has sent nothing unasked (an answer longer than it said,
// the rest of which would be read as the next caller's answer). net/http's
// client learns both from a goroutine reading every pooled connection;
// fasthttp's does not, and would fail the call or misread the answer.
type liveConn struct {
	net.Conn
	raw syscall.RawConn // nil: not checked
	// read: an answer has been read since the last request went out.
	read bool
}

func newLiveConn(c net.Conn) *liveConn {
	lc := &liveConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			lc.raw = rc
		}
	}
	return lc
}

func (c *liveConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.read = true
	}
	return n, err
}

func (c *liveConn) Write(p []byte) (int, error) {
	if c.read {
		// The first write of a request on a connection used before.
		c.read = false
		if err := connUsable(c.raw); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// forwardRequest fills req with the message to the backend: the exact
// body, the transport headers, the backend's own credentials, never the
// client's token. It is backendRequest's counterpart for forward.
func forwardRequest(req *fasthttp.Request, c *fiber.Ctx, backend *Backend, cl *caller, body []byte, sess *session) {
	req.SetRequestURI(backend.URL)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetNoDefaultContentType(true)
	req.SetBodyRaw(body)
	forwardHeaders(c, backend, sess, req.Header.Set)
	setCallerOwner(req.Header.Set, backend, cl)
}

// forwardBody is a backend's answer as the gateway passes it on: its
// streamed body (or, when fasthttp read it whole, the body it read), read
// by the server writing the reply (or the SSE pipe, or post's caller), and
// closed once. Close may run while a Read waits (a drain that ran out
// of time): fasthttp then closes the connection to end the Read.
type forwardBody struct {
	resp *fasthttp.Response
	r    io.Reader
	once sync.Once
	err  error
}

func newForwardBody(resp *fasthttp.Response) *forwardBody {
	if s := resp.BodyStream(); s != nil {
		return &forwardBody{resp: resp, r: s}
	}
	return &forwardBody{resp: resp, r: bytes.NewReader(resp.Body())}
}

func (b *forwardBody) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *forwardBody) Close() error {
	b.once.Do(func() {
		b.err = b.resp.CloseBodyStream()
		fasthttp.ReleaseResponse(b.resp)
	})
	return b.err
}

// backendAnswer is a backend's answer to a message the gateway sent of its own
// (post): the parts the gateway reads, whichever client carried it.
type backendAnswer struct {
	status      int
	sid         string // Mcp-Session-Id, if the backend named one
	contentType string
	body        io.ReadCloser
}

// post sends a message of the gateway's own (the aggregated endpoint's
// calls, its backend sessions, tool discovery) for the caller whose quota
// key is owner. A context that cannot be cancelled (a handler's) goes
// through the backend's forwarder, bounded by the backend's timeout and
// the context's deadline; one that can be (discovery, shutdown) goes
// through net/http, which ends the request when the context ends.
func (g *Gateway) post(ctx context.Context, b *Backend, owner, sid string, body []byte) (*backendAnswer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ctx.Done() != nil {
		return g.postHTTP(ctx, b, owner, sid, body)
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(b.URL)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetBodyRaw(body)
	setPostHeaders(req.Header.Set, b, owner, sid)
	g.propagator.Inject(ctx, fasthttpCarrier{&req.Header})
	deadline := time.Now().Add(b.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	resp := fasthttp.AcquireResponse()
	if err := g.forwarders[b.Name].DoDeadline(req, resp, deadline); err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, err
	}
	return &backendAnswer{status: resp.StatusCode(), sid: string(resp.Header.Peek(hdrSession)), contentType: string(resp.Header.ContentType()),
		body: newForwardBody(resp)}, nil
}

func (g *Gateway) postHTTP(ctx context.Context, b *Backend, owner, sid string, body []byte) (*backendAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, b.Timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.URL, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, err
	}
	setPostHeaders(req.Header.Set, b, owner, sid)
	g.propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := g.client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	return &backendAnswer{status: resp.StatusCode, sid: resp.Header.Get(hdrSession), contentType: resp.Header.Get("Content-Type"),
		body: &closeFunc{ReadCloser: resp.Body, after: cancel}}, nil
}

// setPostHeaders sets the headers of a message of the gateway's own.
func setPostHeaders(set func(k, v string), b *Backend, owner, sid string) {
	set("Content-Type", "application/json")
	set("Accept", "application/json, text/event-stream")
	set(hdrProtocol, backendProtocol)
	if sid != "" {
		set(hdrSession, sid)
	}
	for k, v := range b.Headers {
		set(k, v)
	}
	setOwner(set, b, owner)
}

// forwardHeaders sets, on a request to backend for the client's request c,
// the transport headers the client sent, the backend's session and the
// backend's own credentials.
func forwardHeaders(c *fiber.Ctx, backend *Backend, sess *session, set func(k, v string)) {
	for _, h := range []string{fiber.HeaderContentType, fiber.HeaderAccept, hdrProtocol, hdrLastID, hdrMethod, hdrName} {
		if v := c.Get(h); v != "" {
			set(h, v)
		}
	}
	// Mcp-Param-* mirror annotated arguments (2026-07-28); the backend
	// validates them against the body it gets, which is the body policy saw.
	for k, v := range c.Request().Header.All() {
		if len(k) > len("Mcp-Param-") && strings.EqualFold(string(k[:len("Mcp-Param-")]), "Mcp-Param-") {
			set(string(k), string(v))
		}
	}
	if sess != nil {
		set(hdrSession, sess.backendID)
	}
	for k, v := range backend.Headers {
		set(k, v)
	}
}
