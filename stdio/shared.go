package stdio

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/jsonrpc"
)

// Shared mode (Config.Shared): one process serves every client session,
// for a stdio server that keeps nothing between requests (most npx
// servers: filesystem, fetch, git …), so that a hundred sessions cost one
// process rather than a hundred (each ~100 MB of node).
//
// The bridge initializes the process once, itself, and answers each
// client's initialize with that result. Each client session is a view of
// the process: its requests go to the process under ids of the bridge's
// own ("pbac-<n>", progress tokens likewise), so two clients' ids never
// meet, and each response and progress notification comes back to the
// request it belongs to, under the client's id. What cannot be told apart
// is not passed on: the process's requests to a client (sampling,
// elicitation, roots) are answered with an error, its log messages and
// resource updates are dropped, and the per-session state some methods
// would set in a shared process (resources/subscribe, logging/setLevel)
// is refused. The list_changed notifications go to every view's GET
// stream. Views are bounded per agent (MaxSessionsPerAgent, oldest idle
// ended first) and in all (maxViews); the process ends when no view has
// used it for IdleTimeout, or when it exits (its views then end, and their
// clients initialize again).

// maxViews bounds the client sessions of one shared process.
const maxViews = 1024

// sharedOnly are the methods whose effect would be the process's for every
// session: refused in shared mode.
var sharedOnly = map[string]bool{"resources/subscribe": true, "resources/unsubscribe": true, "logging/setLevel": true,
	"subscriptions/listen": true}

// view is one client session of the shared process.
type view struct {
	id, owner  string
	proc       *session
	standalone *mailbox // list_changed notifications for its GET stream
	done       chan struct{}
	endOnce    sync.Once

	mu       sync.Mutex
	ended    bool
	getOpen  bool
	active   int
	lastUsed time.Time
	// wire maps the id key of each request of the view in flight to the
	// id it has at the process (notifications/cancelled names that one).
	wire map[string]json.RawMessage
}

func (v *view) end() {
	v.endOnce.Do(func() {
		v.mu.Lock()
		v.ended = true
		v.mu.Unlock()
		close(v.done)
	})
}

func (v *view) begin() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.active++
	v.lastUsed = time.Now()
	return !v.ended
}

func (v *view) finish() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.active--
	v.lastUsed = time.Now()
}

// idle is how long the view has served nothing (0 while it serves a
// request or has its GET stream open), and whether it serves a request.
func (v *view) idle(now time.Time) (time.Duration, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	busy := v.active
	if v.getOpen {
		busy--
	}
	if v.active > 0 || v.getOpen {
		return 0, busy > 0
	}
	return now.Sub(v.lastUsed), false
}

// track records the wire id of a request in flight; a second request
// with the same id in the view is refused.
func (v *view) track(key string, wire json.RawMessage) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, dup := v.wire[key]; dup {
		return errDuplicate
	}
	if len(v.wire) >= maxViewCalls {
		return errTooMany
	}
	v.wire[key] = wire
	return nil
}

func (v *view) untrack(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.wire, key)
}

func (v *view) wireOf(key string) (json.RawMessage, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	w, ok := v.wire[key]
	return w, ok
}

// wireID is a fresh id of the bridge's own for the shared process: a
// count and a random part, so that no session can guess another's.
func (b *Bridge) wireID() json.RawMessage {
	return json.RawMessage(strconv.Quote("pbac-" + strconv.FormatInt(b.wireSeq.Add(1), 10) + "-" + newSessionID()[:16]))
}

// sharedVersion is the protocol revision the bridge initializes a shared
// process at: fixed, so that no client picks it for the others.
const sharedVersion = "2025-06-18"

// maxViewCalls bounds the requests of one view in flight at once.
const maxViewCalls = 32

// queue hands a line of the bridge's own to writeQueued; when the queue
// is full the line is dropped (an answer the process waits for in vain,
// a cancellation not made).
func (s *session) queue(line []byte) {
	select {
	case s.replies <- line:
	default:
		s.log.Warn("a shared stdio process's queue of the bridge's own messages is full; one dropped")
	}
}

// writeQueued writes the queued lines until the session ends.
func (s *session) writeQueued() {
	defer close(s.repliesDone)
	for {
		select {
		case <-s.done:
			return
		case line := <-s.replies:
			if err := s.write(line, time.Now().Add(writeTimeout)); err != nil && !errors.Is(err, errEnded) {
				s.inputFailed(err)
			}
		}
	}
}

// sharedProcess is the running shared process and its initialize result,
// started (and initialized at sharedVersion) when there is none. The
// process is returned begun (session.begin): the caller finishes it.
func (b *Bridge) sharedProcess() (*session, json.RawMessage, int, error) {
	b.sharedMu.Lock()
	defer b.sharedMu.Unlock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, nil, http.StatusServiceUnavailable, errClosed
	}
	if s := b.shared; s != nil && !s.isEnded() {
		init := b.sharedInit
		b.mu.Unlock()
		if s.begin() {
			return s, init, 0, nil
		}
		s.finish()
		return nil, nil, http.StatusServiceUnavailable, errEnded
	}
	s := b.newProcess("")
	s.shared = true
	s.replies, s.repliesDone = make(chan []byte, 64), make(chan struct{})
	b.shared, b.sharedInit = s, nil
	b.mu.Unlock()
	if err := b.startProcess(s); err != nil {
		close(s.repliesDone)
		return nil, nil, http.StatusBadGateway, err
	}
	go s.writeQueued() // joined by wait, through repliesDone
	// The bridge's own initialize: no client capabilities, since the
	// process's requests to a client are not passed on.
	init, err := b.sharedRoundTrip(s, "initialize", map[string]any{"protocolVersion": sharedVersion, "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "pbac-stdio-bridge", "version": "1"}})
	if err == nil {
		err = s.write([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n"), time.Now().Add(writeTimeout))
	}
	if err != nil {
		s.log.Error("the shared stdio process could not be initialized", "err", err)
		s.end("its initialize did not succeed")
		return nil, nil, http.StatusBadGateway, errNotStarted
	}
	b.mu.Lock()
	b.sharedInit = init
	b.mu.Unlock()
	s.log.Info("shared stdio process initialized")
	s.begin()
	return s, init, 0, nil
}

// sharedRoundTrip sends one request of the bridge's own to s and returns
// its result.
func (b *Bridge) sharedRoundTrip(s *session, method string, params any) (json.RawMessage, error) {
	id := b.wireID()
	key, _ := jsonrpc.IDKey(id)
	line, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if err != nil {
		return nil, err
	}
	call := &pendingCall{box: newMailbox(streamQueue)}
	if err := s.register(key, call); err != nil {
		return nil, err
	}
	defer s.unregister(key, call)
	deadline := time.Now().Add(b.cfg.RequestTimeout)
	if err := s.write(append(line, '\n'), deadline); err != nil {
		return nil, err
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case <-call.box.ready:
			if _, final := call.box.take(); final != nil {
				var m struct {
					Result json.RawMessage `json:"result"`
					Error  *struct {
						Message string `json:"message"`
					} `json:"error"`
				}
				if err := json.Unmarshal(final, &m); err != nil {
					return nil, err
				}
				if m.Error != nil {
					return nil, fmt.Errorf("%s: %s", method, m.Error.Message)
				}
				return m.Result, nil
			}
		case <-s.done:
			return nil, errEnded
		case <-timer.C:
			return nil, fmt.Errorf("%s: no answer within %s", method, b.cfg.RequestTimeout)
		}
	}
}

// newView opens a client session of the shared process for owner, ending
// the owner's least recently used idle view when it holds
// MaxSessionsPerAgent already.
func (b *Bridge) newView(owner string, proc *session) (*view, int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, http.StatusServiceUnavailable, errClosed
	}
	if proc.isEnded() {
		return nil, http.StatusServiceUnavailable, errEnded
	}
	now := time.Now()
	var mine []*view
	for _, v := range b.views {
		if v.owner == owner {
			mine = append(mine, v)
		}
	}
	if len(mine) >= b.cfg.MaxSessionsPerAgent {
		var lru *view
		var lruIdle time.Duration
		for _, v := range mine {
			if idle, busy := v.idle(now); !busy && (lru == nil || idle > lruIdle) {
				lru, lruIdle = v, idle
			}
		}
		if lru == nil {
			return nil, http.StatusTooManyRequests, errAgentFull
		}
		delete(b.views, lru.id)
		lru.end()
	} else if len(b.views) >= maxViews {
		return nil, http.StatusServiceUnavailable, errFull
	}
	v := &view{id: newSessionID(), owner: owner, proc: proc, standalone: newMailbox(backlog), done: make(chan struct{}),
		lastUsed: now, wire: map[string]json.RawMessage{}}
	b.views[v.id] = v
	return v, 0, nil
}

// lookupView finds the live view a request names; it has answered
// otherwise.
func (b *Bridge) lookupView(w http.ResponseWriter, r *http.Request, id json.RawMessage) *view {
	sid := r.Header.Get(sessionHeader)
	if sid == "" {
		fail(w, http.StatusBadRequest, id, jsonrpc.CodeInvalidRequest, "missing "+sessionHeader)
		return nil
	}
	b.mu.Lock()
	v := b.views[sid]
	b.mu.Unlock()
	if v == nil || v.proc.isEnded() {
		if v != nil {
			b.endView(v)
		}
		fail(w, http.StatusNotFound, id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return nil
	}
	return v
}

func (b *Bridge) endView(v *view) {
	b.mu.Lock()
	if b.views[v.id] == v {
		delete(b.views, v.id)
	}
	b.mu.Unlock()
	v.end()
}

// endViewsOf ends the views of process s (it ended).
func (b *Bridge) endViewsOf(s *session) {
	b.mu.Lock()
	var gone []*view
	for id, v := range b.views {
		if v.proc == s {
			delete(b.views, id)
			gone = append(gone, v)
		}
	}
	b.mu.Unlock()
	for _, v := range gone {
		v.end()
	}
}

// broadcast queues msg on every view's GET stream.
func (b *Bridge) broadcast(s *session, msg []byte) {
	b.mu.Lock()
	var to []*view
	for _, v := range b.views {
		if v.proc == s {
			to = append(to, v)
		}
	}
	b.mu.Unlock()
	for _, v := range to {
		v.standalone.push(msg)
	}
}

// handleSharedPost is handlePost in shared mode.
func (b *Bridge) handleSharedPost(w http.ResponseWriter, r *http.Request, in *incoming, jsonOK, sseOK bool) {
	if r.Header.Get(sessionHeader) == "" {
		if in.kind != kindRequest || in.method != "initialize" {
			fail(w, http.StatusBadRequest, in.id, jsonrpc.CodeInvalidRequest, "missing "+sessionHeader+": only initialize starts a session")
			return
		}
		s, init, status, err := b.sharedProcess()
		if err == nil {
			defer s.finish()
			var v *view
			if v, status, err = b.newView(r.Header.Get(OwnerHeader), s); err == nil {
				w.Header().Set(sessionHeader, v.id)
				msg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": in.id, "result": init})
				if !jsonOK {
					w.Header().Set("Content-Type", "text/event-stream")
					w.WriteHeader(http.StatusOK)
					_ = writeSSE(w, http.NewResponseController(w), msg)
					return
				}
				reply(w, http.StatusOK, msg)
				return
			}
		}
		msg := "stdio backend " + b.cfg.Name + ": " + err.Error()
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", retryAfter)
		}
		fail(w, status, in.id, jsonrpc.CodeInternalError, msg)
		return
	}
	v := b.lookupView(w, r, in.id)
	if v == nil {
		return
	}
	if !v.begin() {
		v.finish()
		fail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return
	}
	defer v.finish()
	s := v.proc
	// The process is in use while a view's request is: the reaper leaves
	// it be.
	if !s.begin() {
		s.finish()
		fail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return
	}
	defer s.finish()
	deadline := time.Now().Add(b.cfg.RequestTimeout)
	switch in.kind {
	case kindNotification:
		// The bridge initialized the process; a client's cancellation
		// names its request by the id the process knows it by. Any other
		// notification of a client (roots) is not the process's to hear.
		if in.method == "notifications/cancelled" {
			if wire, ok := v.wireOf(in.cancels); ok {
				s.cancelRequest(wire)
			}
		}
		w.WriteHeader(http.StatusAccepted)
		return
	case kindResponse:
		// Nothing was asked of this client: the process's requests are
		// answered by the bridge.
		w.WriteHeader(http.StatusAccepted)
		return
	}
	switch {
	case in.method == "initialize":
		fail(w, http.StatusBadRequest, in.id, jsonrpc.CodeInvalidRequest, "the session is initialized already")
		return
	case sharedOnly[in.method]:
		reply(w, http.StatusOK, jsonrpc.ErrorBody(in.id, jsonrpc.CodeMethodNotFound,
			in.method+" is not available: stdio backend "+b.cfg.Name+" runs one process for every session", nil))
		return
	}
	wire := b.wireID()
	key, _ := jsonrpc.IDKey(wire)
	call := &pendingCall{sse: sseOK, box: newMailbox(streamQueue), origID: in.id}
	line, err := setMember(in.line[:len(in.line)-1], "id", wire)
	if err == nil && in.token != "" {
		tok := json.RawMessage(strconv.Quote("pbac-p-" + strconv.FormatInt(b.wireSeq.Add(1), 10)))
		call.token, _ = jsonrpc.IDKey(tok)
		call.origToken = in.tokenRaw
		line, err = setPath(line, []string{"params", "_meta", "progressToken"}, tok)
	}
	if err != nil {
		fail(w, http.StatusBadRequest, in.id, jsonrpc.CodeInvalidRequest, "invalid request: "+err.Error())
		return
	}
	if err := v.track(in.key, wire); err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errTooMany) {
			status = http.StatusTooManyRequests
			w.Header().Set("Retry-After", retryAfter)
		}
		fail(w, status, in.id, jsonrpc.CodeInvalidRequest, err.Error())
		return
	}
	defer v.untrack(in.key)
	if err := s.register(key, call); err != nil {
		fail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return
	}
	if err := s.write(append(line, '\n'), deadline); err != nil {
		s.unregister(key, call)
		if !s.inputFailed(err) {
			busy(w, in.id, b.cfg.Name)
			return
		}
		fail(w, http.StatusNotFound, in.id, jsonrpc.CodeInternalError, "the stdio process does not accept input")
		return
	}
	b.serveCall(w, r, s, call, key, wire, in.id, deadline, false, v.id)
}

// handleSharedGet serves a view's GET stream: the list_changed
// notifications of the shared process.
func (b *Bridge) handleSharedGet(w http.ResponseWriter, r *http.Request) {
	v := b.lookupView(w, r, nil)
	if v == nil {
		return
	}
	serveGet(w, r, v, v.standalone, v.done, v.proc.done)
}

func (v *view) claimGet() (int, string) {
	v.mu.Lock()
	switch {
	case v.ended:
		v.mu.Unlock()
		return http.StatusNotFound, refusalEnded
	case v.getOpen:
		v.mu.Unlock()
		return http.StatusConflict, refusalOpened
	}
	v.getOpen = true
	v.mu.Unlock()
	v.begin()
	return 0, ""
}

func (v *view) releaseGet() {
	v.mu.Lock()
	v.getOpen = false
	v.mu.Unlock()
	v.finish()
}

// handleSharedDelete ends a view (the process serves on).
func (b *Bridge) handleSharedDelete(w http.ResponseWriter, r *http.Request) {
	v := b.lookupView(w, r, nil)
	if v == nil {
		return
	}
	b.endView(v)
	w.WriteHeader(http.StatusNoContent)
}

// dispatchShared routes a message of the shared process that is neither a
// response nor a request's progress: list_changed to every view, a request
// of the process's answered with an error, anything else dropped.
func (s *session) dispatchShared(m *jsonrpc.Message, msg []byte) {
	switch {
	case m.ID != nil:
		line, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{
			"code": jsonrpc.CodeMethodNotFound, "message": "the gateway's shared stdio process does not pass requests on to a client"}})
		s.queue(append(line, '\n'))
	case m.Method == "notifications/tools/list_changed", m.Method == "notifications/prompts/list_changed",
		m.Method == "notifications/resources/list_changed":
		s.b.broadcast(s, msg)
	default:
		s.log.Debug("a shared stdio process's message for no one request dropped", "method", m.Method)
	}
}

// setMember is the JSON object doc with member key's value replaced by
// val (doc as it is when it has no such member).
func setMember(doc []byte, key string, val []byte) ([]byte, error) {
	members, err := jsonrpc.Members(doc)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(doc)+len(val))
	out = append(out, '{')
	for i, m := range members {
		if i > 0 {
			out = append(out, ',')
		}
		if m.Key == key {
			k, _ := json.Marshal(key)
			out = append(append(append(out, k...), ':'), val...)
			continue
		}
		out = append(out, m.Whole...)
	}
	return append(out, '}'), nil
}

// setPath is setMember along a path of objects; doc as it is when a step
// is missing or not an object.
func setPath(doc []byte, path []string, val []byte) ([]byte, error) {
	if len(path) == 1 {
		return setMember(doc, path[0], val)
	}
	members, err := jsonrpc.Members(doc)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if m.Key == path[0] && len(m.Raw) > 0 && m.Raw[0] == '{' {
			inner, err := setPath(m.Raw, path[1:], val)
			if err != nil {
				return nil, err
			}
			return setMember(doc, path[0], inner)
		}
	}
	return doc, nil
}

// streamStandalone writes box's messages as an SSE stream, with
// keep-alives, until the client goes or end or also closes (a nil channel
// never does).
func streamStandalone(w http.ResponseWriter, r *http.Request, box *mailbox, end, also <-chan struct{}) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case <-box.ready:
			msgs, _ := box.take()
			for _, m := range msgs {
				if writeSSE(w, rc, m) != nil {
					return
				}
			}
		case <-ping.C:
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-end:
			return
		case <-also:
			return
		case <-r.Context().Done():
			return
		}
	}
}
