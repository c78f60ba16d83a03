package stdio

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/jsonrpc"
)

// reapIdle ends sessions idle for longer than IdleTimeout.
func (b *Bridge) reapIdle() {
	idle := b.cfg.IdleTimeout
	if idle < 0 {
		return
	}
	every := min(max(idle/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			b.mu.Lock()
			var stale []*session
			for _, s := range b.sessions {
				if s.idleFor(now) > idle {
					stale = append(stale, s)
				}
			}
			var staleViews []*view
			for id, v := range b.views {
				if d, _ := v.idle(now); d > idle {
					delete(b.views, id)
					staleViews = append(staleViews, v)
				}
			}
			// The shared process ends when no session has used it for
			// as long.
			if s := b.shared; s != nil && len(b.views) == 0 && s.idleFor(now) > idle {
				stale = append(stale, s)
			}
			b.mu.Unlock()
			for _, v := range staleViews {
				v.end()
			}
			for _, s := range stale {
				s.end("idle")
			}
		}
	}
}

// newSession reserves a session slot for owner and starts its process,
// first ending a session to make room when the quotas say so (see
// Config.MaxSessionsPerAgent).
func (b *Bridge) newSession(owner string) (*session, int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, http.StatusServiceUnavailable, errClosed
	}
	victim, status, err := b.makeRoom(owner, time.Now())
	if err != nil {
		b.mu.Unlock()
		return nil, status, err
	}
	if victim != nil {
		// Forgotten now, so that its slot is this one's; ended below.
		delete(b.sessions, victim.id)
	}
	s := b.newProcess(owner)
	b.sessions[s.id] = s
	b.mu.Unlock()
	if victim != nil {
		victim.log.Info("stdio session ended to make room", "for_owner", owner[:min(len(owner), 8)], "owner", victim.owner[:min(len(victim.owner), 8)])
		victim.end("ended to make room for another session (stdio session quota)")
	}
	if err := b.startProcess(s); err != nil {
		return nil, http.StatusBadGateway, err
	}
	return s, 0, nil
}

// newProcess makes the session of a process not yet started, counted in
// b.procs until it is reaped. b.mu is held.
func (b *Bridge) newProcess(owner string) *session {
	s := &session{
		b:          b,
		owner:      owner,
		id:         newSessionID(),
		pending:    map[string]*pendingCall{},
		standalone: newMailbox(backlog),
		lastUsed:   time.Now(),
		done:       make(chan struct{}),
		exited:     make(chan struct{}),
		outDone:    make(chan struct{}),
		errDone:    make(chan struct{}),
	}
	s.log = b.log.With("session", s.id[:8])
	b.procs[s] = struct{}{}
	b.reaped.Add(1)
	return s
}

// startProcess starts s's process; when it cannot, s is ended and
// reaped, and the error is errNotStarted (the cause is logged).
func (b *Bridge) startProcess(s *session) error {
	if err := s.start(); err != nil {
		s.end("start failed")
		b.mu.Lock()
		delete(b.procs, s)
		b.mu.Unlock()
		close(s.exited)
		b.reaped.Done()
		b.log.Error("stdio backend could not start", "err", err)
		return errNotStarted
	}
	return nil
}

// makeRoom decides whether owner may start a session now: nil and no
// victim when there is room; a victim to end when the owner is at its quota
// (its own least recently used idle session) or the bridge is full (the
// least recently used idle session of the agent holding the most, when it
// holds at least two more than owner); else the status and error to refuse
// with. b.mu is held.
func (b *Bridge) makeRoom(owner string, now time.Time) (*session, int, error) {
	held := map[string][]*session{}
	for _, s := range b.sessions {
		held[s.owner] = append(held[s.owner], s)
	}
	mine := len(held[owner])
	if mine >= b.cfg.MaxSessionsPerAgent {
		if v := leastRecentlyUsedIdle(held[owner], now); v != nil {
			return v, 0, nil
		}
		return nil, http.StatusTooManyRequests, errAgentFull
	}
	if len(b.sessions) < b.cfg.MaxSessions {
		return nil, 0, nil
	}
	// Full: take from the agents holding the most, while they hold at
	// least two more than owner (then sharing evens out, it never swings).
	others := make([]string, 0, len(held))
	for o, ss := range held {
		if o != owner && len(ss) >= mine+2 {
			others = append(others, o)
		}
	}
	slices.SortFunc(others, func(x, y string) int { return len(held[y]) - len(held[x]) })
	for _, o := range others {
		if v := leastRecentlyUsedIdle(held[o], now); v != nil {
			return v, 0, nil
		}
	}
	return nil, http.StatusServiceUnavailable, errFull
}

// leastRecentlyUsedIdle is the session of ss last used longest ago among
// those serving no request (an open GET stream does not count: ending the
// session ends it), or nil.
func leastRecentlyUsedIdle(ss []*session, now time.Time) *session {
	var lru *session
	var lruIdle time.Duration
	for _, s := range ss {
		idle, ok := s.evictable(now)
		if ok && (lru == nil || idle > lruIdle) {
			lru, lruIdle = s, idle
		}
	}
	return lru
}

func (b *Bridge) session(id string) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[id]
}

func (s *session) register(key string, c *pendingCall) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return errEnded
	}
	if _, dup := s.pending[key]; dup {
		return errDuplicate
	}
	s.seq++
	c.seq = s.seq
	s.pending[key] = c
	return nil
}

func (s *session) unregister(key string, c *pendingCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[key] == c {
		delete(s.pending, key)
	}
}

// dispatch routes one message from the process: a response to the POST
// waiting for it; a progress notification to the POST whose request carries
// its token; any other server request or notification to the oldest pending
// POST that can stream, else to the GET stream (queued until one is open).
func (s *session) dispatch(raw []byte, noise *lineLimiter) {
	msg := bytes.TrimSpace(raw)
	if bytes.ContainsAny(msg, "\r\n") { // a bare CR would split an SSE data line
		var buf bytes.Buffer
		if json.Compact(&buf, msg) == nil {
			msg = buf.Bytes()
		}
	}
	m, err := jsonrpc.Parse(msg, maxDepth)
	if err != nil {
		if noise.allow(time.Now(), s.log, "stdout") {
			s.log.Warn("stdio process wrote a non-JSON-RPC line to stdout; skipped", "line", truncateLine(msg), "err", err)
		}
		return
	}
	msg = bytes.Clone(msg)
	method := m.Method
	if m.IsResponse {
		key, ok := jsonrpc.IDKey(m.ID)
		s.mu.Lock()
		c := s.pending[key]
		if ok && c != nil {
			delete(s.pending, key)
		}
		s.mu.Unlock()
		if !ok || c == nil {
			s.log.Debug("response to no pending request dropped (timed out or abandoned)", "id", string(m.ID))
			return
		}
		if c.origID != nil {
			if msg, err = setMember(msg, "id", c.origID); err != nil {
				s.log.Warn("a response of the shared process could not be given its client's id; dropped", "err", err)
				return
			}
		}
		c.box.finish(msg)
		return
	}
	var target *mailbox
	var origToken json.RawMessage
	s.mu.Lock()
	if method == "notifications/progress" {
		if tok, ok := jsonrpc.IDKey(m.Params["progressToken"]); ok {
			for _, c := range s.pending {
				if c.token == tok && c.sse {
					target, origToken = c.box, c.origToken
					break
				}
			}
		}
	}
	if target == nil && s.shared {
		s.mu.Unlock()
		s.dispatchShared(m, msg)
		return
	}
	if origToken != nil {
		if msg, err = setPath(msg, []string{"params", "progressToken"}, origToken); err != nil {
			s.mu.Unlock()
			return
		}
	}
	if target == nil {
		var oldest *pendingCall
		for _, c := range s.pending {
			if c.sse && (oldest == nil || c.seq < oldest.seq) {
				oldest = c
			}
		}
		if oldest != nil {
			target = oldest.box
		} else {
			target = s.standalone
		}
	}
	s.mu.Unlock()
	if target.push(msg) {
		s.log.Warn("stdio server message dropped: the client does not read its stream", "method", method)
	}
}

// mailbox queues server messages for one HTTP stream. The reader of stdout
// never blocks on it: beyond max messages the oldest is dropped. A POST's
// mailbox also receives the final response, which is never dropped.
type mailbox struct {
	mu    sync.Mutex
	msgs  [][]byte
	final []byte
	max   int
	ready chan struct{}
}

func newMailbox(max int) *mailbox {
	return &mailbox{max: max, ready: make(chan struct{}, 1)}
}

// push queues msg and reports whether an older message was dropped for it.
func (m *mailbox) push(msg []byte) bool {
	m.mu.Lock()
	dropped := false
	if len(m.msgs) >= m.max {
		m.msgs = m.msgs[1:]
		dropped = true
	}
	m.msgs = append(m.msgs, msg)
	m.mu.Unlock()
	m.signal()
	return dropped
}

func (m *mailbox) finish(msg []byte) {
	m.mu.Lock()
	m.final = msg
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox) signal() {
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

func (m *mailbox) take() ([][]byte, []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	msgs, final := m.msgs, m.final
	m.msgs, m.final = nil, nil
	return msgs, final
}
