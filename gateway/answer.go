package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/jsonrpc"
)

// A backend's answer to one request is held to what that request may
// bring back before a client sees it. Clients place every response by its
// id, whichever stream it came on (the TypeScript SDK dispatches each
// message of a JSON array, and resolves a pending request by id), so a
// response to another request, carried on this one's answer, would be
// taken as the answer to a request the gateway saw go out but never saw
// answered: a tools/list nobody filtered, tool definitions nobody pinned.
// So on a request's answer only its own response passes, as on a listen
// stream; the server's requests and notifications pass as they pass on
// the GET stream (notificationVetter).

// errAnswerWithheld is a backend's answer that carries something other
// than the response to the request it answers.
var errAnswerWithheld = errors.New("the backend's answer carries what does not answer this request")

// answerWriteWait bounds the write of an answer read whole (at most
// maxFilteredResponse), as Config.ClientWriteWait bounds each write of a
// stream. A client that stops reading loses its answer or stream when
// they are up, and with it what it holds: the backend's connection (a
// stream is read from the backend only as fast as the client takes it),
// a worker, the answer's memory.
const answerWriteWait = 2 * time.Minute

// An agent's requests to a backend in flight are bounded
// (Config.InFlightPerAgent): each may hold a connection to the backend
// (of maxForwardConns per backend), or its answer's memory, until its
// answer has been written, so without a bound one agent could hold them
// all. maxInFlight bounds every agent's together.
const maxInFlight = 4096

// inFlightSlot is one request's place among its agent's requests in
// flight (or its GET streams). It is given back when the handler returns,
// or, when the answer is written after (a stream, a large answer), when
// the server has written it (handOnSlot).
type inFlightSlot struct {
	release  func()
	handedOn bool
}

// localInFlight is the fiber.Ctx local holding the request's slot.
const localInFlight = "pbac.inFlight"

// quota is one bound per agent that takeSlot holds a request to: what it
// counts (for the refusal), its counts, the bound, and when to try again.
type quota struct {
	what       string
	holders    *holders
	perAgent   int
	retryAfter string
}

// takeInFlight takes a slot among the requests in flight of agent owner
// for c's request (takeSlot).
func (g *Gateway) takeInFlight(c *fiber.Ctx, owner string, msg *jsonrpc.Message, rec *audit.Record, start time.Time) (done func(), err error) {
	return g.takeSlot(c, quota{"requests in flight", g.inFlight, g.cfg.InFlightPerAgent, "1"}, owner, msg.ID, rec, start)
}

// takeSlot takes a slot of q for c's request of agent owner and returns
// what gives it back, which the caller defers; or it answers 429 (audited,
// to the request id) and returns nil and the answer's error.
func (g *Gateway) takeSlot(c *fiber.Ctx, q quota, owner string, id json.RawMessage, rec *audit.Record, start time.Time) (done func(), err error) {
	if !q.holders.enter(owner) {
		rec.Decision, rec.Status = "deny", fiber.StatusTooManyRequests
		rec.Reasons = append(rec.Reasons, "refused: this agent has too many "+q.what)
		g.finish(rec, start)
		c.Set(fiber.HeaderRetryAfter, q.retryAfter)
		return nil, g.reply(c, fiber.StatusTooManyRequests, jsonrpc.ErrorBody(id, jsonrpc.CodeInvalidRequest,
			fmt.Sprintf("this agent has %d %s here already", q.perAgent, q.what), nil))
	}
	slot := &inFlightSlot{release: sync.OnceFunc(func() { q.holders.leave(owner) })}
	c.Locals(localInFlight, slot)
	return func() {
		if !slot.handedOn {
			slot.release()
		}
	}, nil
}

// sendStream makes c's response the event stream write writes to the
// client, event by event (writeSSE). write runs in a goroutine of its
// own from now on (fasthttp.NewStreamReader), writing into a pipe the
// server reads and copies to the connection. Each read the server makes
// of it (a few KiB) sets the connection's write deadline for the write of
// what it read (writeDeadlines): Config.ClientWriteWait. So a client that
// stops reading loses the stream, one that reads steadily keeps it, and
// the writer never touches the connection,
// which may serve another request once the server is done. When the
// server closes the stream, what it still buffers gets answerWriteWait
// (and the connection's wait for its next request after it: idleWait),
// and the request's in-flight slot, if any, is given back. The
// connection is taken now: c is not the request's once the handler
// returns.
func (g *Gateway) sendStream(c *fiber.Ctx, write fasthttp.StreamWriter) {
	conn := c.Context().Conn()
	release := g.handOnSlot(c)
	stream := fasthttp.NewStreamReader(write)
	c.Context().SetBodyStream(&writeDeadlines{ReadCloser: stream, conn: conn, wait: g.cfg.ClientWriteWait, after: release}, -1)
}

// writeDeadlines is a response's body stream that bounds the write of
// each read's bytes through the connection's write deadline (sendStream).
type writeDeadlines struct {
	io.ReadCloser
	conn  net.Conn
	wait  time.Duration
	after func()
}

func (d *writeDeadlines) Read(p []byte) (int, error) {
	n, err := d.ReadCloser.Read(p)
	if n > 0 {
		// fasthttp reads a chunked body a few KiB at a time and writes
		// each read before the next.
		_ = d.conn.SetWriteDeadline(time.Now().Add(d.wait))
	}
	return n, err
}

func (d *writeDeadlines) Close() error {
	err := d.ReadCloser.Close()
	_ = d.conn.SetWriteDeadline(time.Now().Add(answerWriteWait + idleWait))
	d.after()
	return err
}

// sendAnswer makes body (a JSON answer read whole, or the gateway's own)
// c's response, to be written within answerWriteWait
// (defaultWriteDeadline). An answer larger
// than the connection takes at once keeps the request's in-flight slot,
// if any, until it is written: a client that does not read holds its
// memory, so it counts among its agent's requests in flight.
func (g *Gateway) sendAnswer(c *fiber.Ctx, body []byte) {
	if len(body) <= smallAnswer {
		c.Response().SetBody(body)
		return
	}
	c.Context().SetBodyStream(&closeFunc{ReadCloser: io.NopCloser(bytes.NewReader(body)), after: g.handOnSlot(c)}, len(body))
}

// smallAnswer is the largest answer a connection's send buffer takes at
// once, whether the client reads or not.
const smallAnswer = 64 << 10

// handOnSlot takes over c's request's in-flight slot, if any, from the
// handler (which no longer gives it back when it returns) and returns what
// gives it back.
func (g *Gateway) handOnSlot(c *fiber.Ctx) func() {
	if slot, ok := c.Locals(localInFlight).(*inFlightSlot); ok && !slot.handedOn {
		slot.handedOn = true
		return slot.release
	}
	return func() {}
}

// defaultWriteDeadline bounds the write of every response on the agents'
// listener, a middleware: once the handler has made the response, the
// connection's write deadline is answerWriteWait on, plus idleWait, as
// long as the connection may then wait idle for its next request, so
// that what fasthttp writes itself before that request's handler (a 100
// Continue, a 400) is bounded too. A stream sets its own as it goes
// (sendStream). The deadline is the connection's own, which fasthttp
// does not clear.
func defaultWriteDeadline(c *fiber.Ctx) error {
	err := c.Next()
	if conn := c.Context().Conn(); conn != nil {
		_ = conn.SetWriteDeadline(time.Now().Add(answerWriteWait + idleWait))
	}
	return err
}

// idleWait is how long a connection of the agents' listener may wait for
// its next request (fiber.Config.IdleTimeout).
const idleWait = 120 * time.Second

// writeSSE writes ev (with data as its data) to a stream to a client and
// flushes it.
func writeSSE(w *bufio.Writer, ev sseEvent, data []byte) error {
	if err := ev.write(w, data); err != nil {
		return err
	}
	return w.Flush()
}

// writeKeepAlive writes an SSE comment and flushes it.
func writeKeepAlive(w *bufio.Writer) error {
	return writeSSE(w, sseEvent{fields: [][]byte{[]byte(": keep-alive")}}, nil)
}

// isEventStream reports whether a backend's Content-Type names an event
// stream. The media type is read as clients read it: its case and its
// parameters do not matter.
func isEventStream(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}

// checkJSONAnswer checks a backend's answer that is not an event stream
// (the whole body, at most maxFilteredResponse) to the request whose id is
// id (nil: a notification). A successful answer (status 2xx) is empty or
// is one JSON-RPC response to this request: not a batch, not a request or
// notification, not a response to another id. An error status's body
// passes when it is not JSON (a reason in plain text, which clients show
// and do not dispatch) or is a response to this request or to none (id
// null); any other JSON in it does not.
func checkJSONAnswer(body []byte, id json.RawMessage, status int) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil
	}
	ok2xx := status >= 200 && status < 300
	if !ok2xx && trimmed[0] != '{' && trimmed[0] != '[' {
		return nil
	}
	env, err := readEnvelope(body)
	if err != nil {
		return fmt.Errorf("%w: %v", errAnswerWithheld, err)
	}
	if env.method || !env.answer {
		return fmt.Errorf("%w: a message that is not a response where the response belongs", errAnswerWithheld)
	}
	if !ok2xx && (env.id == nil || string(env.id) == "null") {
		return nil
	}
	if !sameID(env.id, id) {
		return fmt.Errorf("%w: a response to id %s", errAnswerWithheld, clip(string(env.id)))
	}
	return nil
}

// envelope is what a client places a JSON-RPC message by.
type envelope struct {
	id     json.RawMessage // nil when there is none
	method bool            // a request or a notification
	answer bool            // a result or an error: a response
}

// routedNames are the members a client places a message by.
var routedNames = [...]string{"id", "method", "result", "error"}

// readEnvelope reads the top level of one JSON-RPC message (an object,
// not a batch) as a client places it: its "id", "method", "result" and
// "error". Each may come once and only so spelt: a second one, or one in
// another case, is read one way by some client and another way by
// another, and is an error, as are bytes after the object. What the
// members hold is read as JSON and skipped: a result's own names may
// repeat (what the gateway reads of a result, it reads strictly itself).
func readEnvelope(data []byte) (envelope, error) {
	var env envelope
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if tok, err := dec.ReadToken(); err != nil {
		return env, err
	} else if tok.Kind() != '{' {
		return env, errors.New("not one JSON object")
	}
	var seen [len(routedNames)]bool
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return env, err
		}
		name := tok.String()
		routed := -1
		for i, r := range routedNames {
			if strings.EqualFold(name, r) {
				routed = i
			}
		}
		if routed < 0 {
			if err := dec.SkipValue(); err != nil {
				return env, err
			}
			continue
		}
		if name != routedNames[routed] || seen[routed] {
			return env, fmt.Errorf("the member %q twice or in another case", routedNames[routed])
		}
		seen[routed] = true
		switch routed {
		case 0:
			v, err := dec.ReadValue()
			if err != nil {
				return env, err
			}
			env.id = json.RawMessage(v.Clone())
		default:
			if err := dec.SkipValue(); err != nil {
				return env, err
			}
			env.method = env.method || routed == 1
			env.answer = env.answer || routed > 1
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return env, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return env, errors.New("bytes after the message")
	}
	return env, nil
}

// sameID reports whether two JSON-RPC ids name the same request as a
// client reads them (jsonrpc.IDKey: 1 and 1.0 alike). A missing or null
// id names none.
func sameID(a, b json.RawMessage) bool {
	ka, ok := jsonrpc.IDKey(a)
	if !ok {
		return false
	}
	kb, ok := jsonrpc.IDKey(b)
	return ok && ka == kb
}

// relayAnswer copies the event stream answering one request to w, in
// this goroutine, event by event: each message only when keep lets it (and of
// an event's other lines only comments and the event, id and retry
// fields, as relayVetted), flushed as it goes, until the stream ends, the
// client goes, or keep reports the request answered, which it then
// reports (the rest of the stream can be drained so that the connection
// is used again). A message that is withheld is not written at all.
func relayAnswer(ctx context.Context, w *bufio.Writer, body io.Reader, keep func(ctx context.Context, data []byte) (pass, last bool)) (answered bool, err error) {
	events := newSSEReader(body, maxFilteredResponse)
	for {
		ev, err := events.next()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read the backend's event stream: %w", err)
		}
		last := false
		if ev.hasData {
			var pass bool
			if pass, last = keep(ctx, ev.data); !pass {
				continue
			}
		}
		ev = ev.plain()
		if err := writeSSE(w, ev, ev.data); err != nil {
			return false, err
		}
		if last {
			return true, nil
		}
	}
}

// vetEvents keeps, of an event stream read whole (body), the events whose
// messages keep lets through, as relayAnswer would write them.
func vetEvents(ctx context.Context, body []byte, keep func(ctx context.Context, data []byte) (pass, last bool)) ([]byte, error) {
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if _, err := relayAnswer(ctx, w, bytes.NewReader(body), keep); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
