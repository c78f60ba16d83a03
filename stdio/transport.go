package stdio

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/jsonrpc"
)

// kind is what a POSTed message is.
type kind int

const (
	kindRequest kind = iota
	kindNotification
	kindResponse
)

// incoming is a POSTed message, ready for stdin.
type incoming struct {
	line   []byte // compact (one line), newline-terminated
	id     json.RawMessage
	key    string
	method string
	kind   kind
	token  string
	// tokenRaw is the progress token as sent; cancels, for a
	// notifications/cancelled, the id key of the request it cancels.
	tokenRaw json.RawMessage
	cancels  string
}

// parsePost reads a POST body as one JSON-RPC message, with the strict
// parser the gateway uses (jsonrpc.Parse), and makes it a single line for
// stdin. On error, code is the JSON-RPC error code to answer with.
func parsePost(body []byte) (*incoming, int, error) {
	m, err := jsonrpc.Parse(body, maxDepth)
	if err != nil {
		return nil, jsonrpc.Code(err), err
	}
	in := &incoming{id: m.ID, method: m.Method}
	var ok bool
	switch {
	case m.IsResponse:
		if in.key, ok = jsonrpc.IDKey(m.ID); !ok {
			return nil, jsonrpc.CodeInvalidRequest, errors.New("a response needs a string or number id")
		}
		in.kind = kindResponse
	case m.ID == nil:
		in.kind = kindNotification
		if m.Method == "notifications/cancelled" {
			in.cancels, _ = jsonrpc.IDKey(m.Params["requestId"])
		}
	default:
		if in.key, ok = jsonrpc.IDKey(m.ID); !ok {
			return nil, jsonrpc.CodeInvalidRequest, errors.New("id must be a string or a number")
		}
		in.kind = kindRequest
		in.token, _ = jsonrpc.IDKey(m.ProgressToken)
		in.tokenRaw = m.ProgressToken
	}
	var buf bytes.Buffer
	buf.Grow(len(body) + 1)
	if err := json.Compact(&buf, body); err != nil { // what Parse accepted compacts
		return nil, jsonrpc.CodeParseError, fmt.Errorf("%w: %w", jsonrpc.ErrMalformed, err)
	}
	buf.WriteByte('\n')
	in.line = buf.Bytes()
	return in, 0, nil
}

// accepts reports which answers an Accept header allows. No Accept
// header allows both.
func accepts(values []string) (jsonOK, sseOK bool) {
	if len(values) == 0 {
		return true, true
	}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "*/*":
				jsonOK, sseOK = true, true
			case "application/json", "application/*":
				jsonOK = true
			case "text/event-stream", "text/*":
				sseOK = true
			}
		}
	}
	return jsonOK, sseOK
}

func reply(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func fail(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	reply(w, status, jsonrpc.ErrorBody(id, code, msg, nil))
}

// busy refuses a request the process did not read in time (errStdinBusy):
// 503 with Retry-After; the session goes on.
func busy(w http.ResponseWriter, id json.RawMessage, backend string) {
	w.Header().Set("Retry-After", retryAfter)
	fail(w, http.StatusServiceUnavailable, id, jsonrpc.CodeInternalError, "stdio backend "+backend+" is not reading its input: retry later")
}

func (b *Bridge) serveHTTP(w http.ResponseWriter, r *http.Request) {
	// The endpoint's secret compared in constant time: nothing to learn
	// of it from how long a wrong one takes.
	if subtle.ConstantTimeCompare([]byte(r.URL.Path), []byte(b.endpoint)) != 1 {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodPost:
		b.handlePost(w, r)
	case http.MethodGet:
		b.handleGet(w, r)
	case http.MethodDelete:
		b.handleDelete(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		fail(w, http.StatusMethodNotAllowed, nil, jsonrpc.CodeInvalidRequest, "method not allowed")
	}
}

// lookup finds the live session a request names; it has answered otherwise.
func (b *Bridge) lookup(w http.ResponseWriter, r *http.Request, id json.RawMessage) *session {
	sid := r.Header.Get(sessionHeader)
	if sid == "" {
		fail(w, http.StatusBadRequest, id, jsonrpc.CodeInvalidRequest, "missing "+sessionHeader)
		return nil
	}
	s := b.session(sid)
	if s == nil {
		fail(w, http.StatusNotFound, id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return nil
	}
	return s
}

func (b *Bridge) handlePost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, nil, jsonrpc.CodeInvalidRequest,
				fmt.Sprintf("request body exceeds %d bytes", maxBody))
			return
		}
		fail(w, http.StatusBadRequest, nil, jsonrpc.CodeInvalidRequest, "could not read the body")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			fail(w, http.StatusUnsupportedMediaType, nil, jsonrpc.CodeInvalidRequest, "Content-Type must be application/json")
			return
		}
	}
	jsonOK, sseOK := accepts(r.Header.Values("Accept"))
	if !jsonOK && !sseOK {
		fail(w, http.StatusNotAcceptable, nil, jsonrpc.CodeInvalidRequest, "Accept must allow application/json and text/event-stream")
		return
	}
	in, code, err := parsePost(body)
	if err != nil {
		fail(w, http.StatusBadRequest, nil, code, "invalid request: "+err.Error())
		return
	}
	if b.cfg.Shared {
		b.handleSharedPost(w, r, in, jsonOK, sseOK)
		return
	}

	var s *session
	fresh := r.Header.Get(sessionHeader) == ""
	if fresh {
		if in.kind != kindRequest || in.method != "initialize" {
			fail(w, http.StatusBadRequest, in.id, jsonrpc.CodeInvalidRequest,
				"missing "+sessionHeader+": only initialize starts a session")
			return
		}
		var status int
		if s, status, err = b.newSession(r.Header.Get(OwnerHeader)); err != nil {
			msg := "stdio backend " + b.cfg.Name + ": " + err.Error()
			switch status {
			case http.StatusTooManyRequests:
				w.Header().Set("Retry-After", retryAfter)
				msg += fmt.Sprintf(" (%d): end one (DELETE) or retry later", b.cfg.MaxSessionsPerAgent)
			case http.StatusServiceUnavailable:
				w.Header().Set("Retry-After", retryAfter)
			}
			fail(w, status, in.id, jsonrpc.CodeInternalError, msg)
			return
		}
	} else if s = b.lookup(w, r, in.id); s == nil {
		return
	}
	if !s.begin() {
		s.finish()
		fail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return
	}
	defer s.finish()
	deadline := time.Now().Add(b.cfg.RequestTimeout)

	if in.kind != kindRequest {
		if err := s.write(in.line, deadline); err != nil {
			if !s.inputFailed(err) {
				busy(w, in.id, b.cfg.Name)
				return
			}
			fail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "the stdio session has ended")
			return
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}

	call := &pendingCall{sse: sseOK, token: in.token, box: newMailbox(streamQueue)}
	if err := s.register(in.key, call); err != nil {
		if errors.Is(err, errDuplicate) {
			fail(w, http.StatusBadRequest, in.id, jsonrpc.CodeInvalidRequest, err.Error())
		} else {
			fail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		}
		return
	}
	established := false
	if fresh {
		// A session whose initialize did not succeed is not kept.
		defer func() {
			if !established {
				s.end("initialize did not succeed")
			}
		}()
	}
	if err := s.write(in.line, deadline); err != nil {
		s.unregister(in.key, call)
		if !s.inputFailed(err) {
			busy(w, in.id, b.cfg.Name)
			return
		}
		status := http.StatusNotFound
		if fresh {
			status = http.StatusBadGateway
		}
		fail(w, status, in.id, jsonrpc.CodeInternalError, "the stdio process does not accept input")
		return
	}

	established = b.serveCall(w, r, s, call, in.key, in.id, in.id, deadline, fresh, s.id)
}

// serveCall answers one request written to s's process, whose call waits
// for its response under key (wireID on the process's side, clientID on
// the client's): the server messages routed to it, then the response (or
// an error in its place) as JSON or one SSE stream. A fresh call is an
// initialize that starts session sessionID; it reports whether that
// succeeded.
func (b *Bridge) serveCall(w http.ResponseWriter, r *http.Request, s *session, call *pendingCall, key string, wireID, clientID json.RawMessage,
	deadline time.Time, fresh bool, sessionID string) (established bool) {
	// The shared process serves everyone: work a client abandoned is
	// cancelled there rather than left to run.
	cancelGone := s.shared
	rc := http.NewResponseController(w)
	streaming := false
	startStream := func() {
		streaming = true
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache, no-transform")
		h.Set("X-Accel-Buffering", "no")
		if fresh {
			h.Set(sessionHeader, sessionID)
		}
		w.WriteHeader(http.StatusOK)
	}
	// answer sends the final message: the response, or an error in its place.
	answer := func(msg []byte, status int) {
		if streaming {
			_ = writeSSE(w, rc, msg)
			return
		}
		if fresh && established {
			w.Header().Set(sessionHeader, sessionID)
		}
		w.Header().Set("Cache-Control", "no-cache, no-transform")
		reply(w, status, msg)
	}
	// relay writes server messages; it reports false when the client is gone.
	relay := func(msgs [][]byte) bool {
		for _, m := range msgs {
			if !streaming {
				startStream()
			}
			if err := writeSSE(w, rc, m); err != nil {
				return false
			}
		}
		return true
	}
	response := func(final []byte) {
		if fresh {
			var e struct {
				Error json.RawMessage `json:"error"`
			}
			established = json.Unmarshal(final, &e) == nil && e.Error == nil
		}
		answer(final, http.StatusOK)
	}

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case <-call.box.ready:
			msgs, final := call.box.take()
			if !relay(msgs) {
				s.unregister(key, call)
				return established
			}
			if final != nil {
				response(final)
				return established
			}
		case <-s.done:
			// What the process wrote before it ended has been dispatched.
			msgs, final := call.box.take()
			if relay(msgs) && final != nil {
				response(final)
				return established
			}
			status := http.StatusNotFound
			if fresh {
				status = http.StatusBadGateway
			}
			answer(jsonrpc.ErrorBody(clientID, jsonrpc.CodeInternalError, "stdio backend "+b.cfg.Name+": "+s.endReason(), nil), status)
			return established
		case <-timer.C:
			s.unregister(key, call)
			msgs, final := call.box.take()
			if relay(msgs) && final != nil { // it made it after all
				response(final)
				return established
			}
			go s.cancelRequest(wireID)
			answer(jsonrpc.ErrorBody(clientID, jsonrpc.CodeInternalError, fmt.Sprintf("stdio backend %s did not answer within %s", b.cfg.Name, b.cfg.RequestTimeout), nil), http.StatusOK)
			return established
		case <-r.Context().Done():
			// The client is gone. Disconnection is not cancellation: the
			// process finishes the request and its late response is dropped
			// (but on the shared process, see cancelGone).
			s.unregister(key, call)
			if cancelGone {
				s.cancelRequest(wireID) // queued: the shared process's writer sends it
			}
			return established
		}
	}
}

// cancelRequest tells the process the bridge gave up on a request.
func (s *session) cancelRequest(id json.RawMessage) {
	line, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"method":  "notifications/cancelled",
		"params":  map[string]any{"requestId": id, "reason": "request timed out at the gateway"},
	})
	if err != nil {
		return
	}
	if s.replies != nil {
		s.queue(append(line, '\n'))
		return
	}
	if err := s.write(append(line, '\n'), time.Now().Add(writeTimeout)); err != nil && !errors.Is(err, errEnded) {
		s.inputFailed(err)
	}
}

func writeSSE(w io.Writer, rc *http.ResponseController, msg []byte) error {
	_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	buf := make([]byte, 0, len(msg)+24)
	buf = append(buf, "event: message\ndata: "...)
	buf = append(buf, msg...)
	buf = append(buf, "\n\n"...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	return rc.Flush()
}

// handleGet serves the session's stream of server messages not tied to a
// pending request.
func (b *Bridge) handleGet(w http.ResponseWriter, r *http.Request) {
	if _, sseOK := accepts(r.Header.Values("Accept")); !sseOK {
		fail(w, http.StatusNotAcceptable, nil, jsonrpc.CodeInvalidRequest, "Accept must allow text/event-stream")
		return
	}
	if b.cfg.Shared {
		b.handleSharedGet(w, r)
		return
	}
	s := b.lookup(w, r, nil)
	if s == nil {
		return
	}
	serveGet(w, r, s, s.standalone, s.done, nil)
}

// getHolder is what a GET stream belongs to: a process's session, or a
// view of the shared process. claimGet takes its one GET stream (and
// begins a use of it), or says with what status and words to refuse;
// releaseGet gives the stream back and ends the use.
type getHolder interface {
	claimGet() (status int, refusal string)
	releaseGet()
}

// Refusals of a GET stream.
const (
	refusalEnded  = "unknown or expired session"
	refusalOpened = "this session already has a GET stream"
)

// serveGet serves h's GET stream from box until the client goes or end
// or also closes.
func serveGet(w http.ResponseWriter, r *http.Request, h getHolder, box *mailbox, end, also <-chan struct{}) {
	if status, refusal := h.claimGet(); status != 0 {
		fail(w, status, nil, jsonrpc.CodeInvalidRequest, refusal)
		return
	}
	defer h.releaseGet()
	streamStandalone(w, r, box, end, also)
}

func (s *session) claimGet() (int, string) {
	s.mu.Lock()
	switch {
	case s.ended:
		s.mu.Unlock()
		return http.StatusNotFound, refusalEnded
	case s.getOpen:
		s.mu.Unlock()
		return http.StatusConflict, refusalOpened
	}
	s.getOpen = true
	s.mu.Unlock()
	s.begin()
	return 0, ""
}

func (s *session) releaseGet() {
	s.mu.Lock()
	s.getOpen = false
	s.mu.Unlock()
	s.finish()
}

// handleDelete ends a session and waits (briefly) for its process to go.
func (b *Bridge) handleDelete(w http.ResponseWriter, r *http.Request) {
	if b.cfg.Shared {
		b.handleSharedDelete(w, r)
		return
	}
	s := b.lookup(w, r, nil)
	if s == nil {
		return
	}
	s.end("deleted by the client")
	select {
	case <-s.exited:
	case <-time.After(killGrace + time.Second):
	case <-r.Context().Done():
	}
	w.WriteHeader(http.StatusNoContent)
}
