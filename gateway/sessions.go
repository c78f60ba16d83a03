package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/internal/throttle"
)

// DefaultSessionsPerAgent is how many sessions one agent (a client acting
// for one person, or on its own) may hold at once when Config does not say.
const DefaultSessionsPerAgent = 100

// sessionEndTimeout bounds the DELETE that ends an evicted or expired
// session at its backend.
const sessionEndTimeout = 5 * time.Second

// sessions binds the gateway's session ids to a backend session and to the
// agent and human that opened it. Each owner (ownerKey) holds at most
// perOwner sessions: a new one beyond that ends the owner's least recently
// used session, so one agent can exhaust only its own sessions.
type sessions struct {
	perOwner int

	mu    sync.Mutex
	m     map[string]*session
	owned map[string]map[string]struct{} // owner -> its session ids
}

type session struct {
	backend, backendID string
	clientID, subject  string
	// owner is the quota key: ownerKey of the caller that opened it.
	owner string
	// anonymous marks a session opened without a token: only callers
	// without a token may use it.
	anonymous bool
	lastUsed  time.Time
	// agg is set for a session of the aggregated server.
	agg *aggSession
	// elicitURL: the client declared URL elicitation when it opened the
	// session (2025-11-25), so a held call is answered -32042.
	elicitURL bool
}

func newSessions(perOwner int) *sessions {
	if perOwner <= 0 {
		perOwner = DefaultSessionsPerAgent
	}
	return &sessions{perOwner: perOwner, m: map[string]*session{}, owned: map[string]map[string]struct{}{}}
}

// put stores sess under id. When its owner already holds perOwner
// sessions, the owner's least recently used one is forgotten and returned,
// for the caller to end at its backend.
func (s *sessions) put(id string, sess *session) (evicted *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.lastUsed = time.Now()
	if old, ok := s.m[id]; ok {
		s.forget(id, old)
	}
	ids := s.owned[sess.owner]
	if len(ids) >= s.perOwner {
		var lru string
		for other := range ids {
			if lru == "" || s.m[other].lastUsed.Before(s.m[lru].lastUsed) {
				lru = other
			}
		}
		evicted = s.m[lru]
		s.forget(lru, evicted)
	}
	s.m[id] = sess
	if s.owned[sess.owner] == nil {
		s.owned[sess.owner] = map[string]struct{}{}
	}
	s.owned[sess.owner][id] = struct{}{}
	return evicted
}

// forget removes id (holding sess); s.mu is held.
func (s *sessions) forget(id string, sess *session) {
	delete(s.m, id)
	if ids := s.owned[sess.owner]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(s.owned, sess.owner)
		}
	}
}

func (s *sessions) get(id string) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[id]
	if ok {
		sess.lastUsed = time.Now()
	}
	return sess, ok
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.m[id]; ok {
		s.forget(id, sess)
	}
}

// expire removes the sessions last used before cutoff and returns them.
func (s *sessions) expire(cutoff time.Time) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*session
	for id, sess := range s.m {
		if sess.lastUsed.Before(cutoff) {
			s.forget(id, sess)
			out = append(out, sess)
		}
	}
	return out
}

func (s *sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// ownerKey is the quota key of a caller: its client and person, or, for a
// caller without a token, its address. It is opaque (a hash), so a backend
// it is sent to (stdio.OwnerHeader) learns nobody's identity.
func (cl *caller) ownerKey() string {
	k := "token\x00" + cl.token.ClientID + "\x00" + cl.token.Subject
	if cl.anonymous {
		k = "anonymous\x00" + cl.remote
	}
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:12])
}

// inFlightKey is whose requests in flight cl's count among: its agent's
// (ownerKey), or, for a caller without a token, its address's network (an
// IPv6 /64 is one, as for sign-in's throttle: one host has all of its
// addresses, and would otherwise fill every agent's shared cap alone).
func (cl *caller) inFlightKey() string {
	if cl.anonymous {
		return "anonymous\x00" + throttle.AddressKey(cl.remote)
	}
	return cl.ownerKey()
}

// putSession stores a new session, ends at its backend whatever session
// the owner's quota pushed out, and updates the gauge.
func (g *Gateway) putSession(id string, sess *session) {
	if evicted := g.sessions.put(id, sess); evicted != nil {
		g.metrics.sessionsEnded.WithLabelValues("quota").Inc()
		g.log.Info("session ended: the agent reached its session quota", "backend", evicted.backend,
			"client_id", evicted.clientID, "limit", g.sessions.perOwner)
		g.endAtBackends(evicted)
	}
	g.metrics.sessions.Set(float64(g.sessions.count()))
}

// endAtBackends ends, in the background, the backend sessions behind
// forgotten gateway sessions (a stdio backend's process ends with it).
// Shutdown waits for these requests.
func (g *Gateway) endAtBackends(gone ...*session) {
	type end struct {
		b   *Backend
		sid string
	}
	var ends []end
	for _, sess := range gone {
		if sess.agg != nil {
			sess.agg.mu.Lock()
			for name, sid := range sess.agg.backends {
				if b, ok := g.backends[name]; ok && sid != "" {
					ends = append(ends, end{b, sid})
				}
			}
			sess.agg.mu.Unlock()
			continue
		}
		if b, ok := g.backends[sess.backend]; ok && sess.backendID != "" {
			ends = append(ends, end{b, sess.backendID})
		}
	}
	if len(ends) == 0 {
		return
	}
	g.bg.Go(func() {
		for _, e := range ends {
			ctx, cancel := context.WithTimeout(context.Background(), sessionEndTimeout)
			req, err := http.NewRequestWithContext(ctx, http.MethodDelete, e.b.URL, nil)
			if err == nil {
				req.Header.Set(hdrSession, e.sid)
				for k, v := range e.b.Headers {
					req.Header.Set(k, v)
				}
				if resp, err := g.client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
			cancel()
		}
	})
}

// setOwner names the quota key owner on a request to a backend that shares
// itself per agent (Backend.OwnerHeader).
// set is the request's header setter (net/http's or fasthttp's).
func setOwner(set func(k, v string), b *Backend, owner string) {
	if b.OwnerHeader != "" {
		set(b.OwnerHeader, owner)
	}
}

// setCallerOwner is setOwner with cl's key, computed only for a backend
// that reads it (the hot path forwards to others).
func setCallerOwner(set func(k, v string), b *Backend, cl *caller) {
	if b.OwnerHeader != "" {
		set(b.OwnerHeader, cl.ownerKey())
	}
}
