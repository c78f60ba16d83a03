package asrv

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/ory/fosite"
)

// EventKind says what an Event is about.
type EventKind string

// Event kinds.
const (
	// EventRegistration is a dynamic client registration (RFC 7591),
	// accepted or refused.
	EventRegistration EventKind = "registration"
	// EventAuthorization is an authorization request granted (a code
	// issued) or refused.
	EventAuthorization EventKind = "authorization"
	// EventToken is a token request: tokens issued (Action is the grant
	// type: a code redeemed, a refresh, an exchange, ...) or refused,
	// a refresh token's reuse included.
	EventToken EventKind = "token"
	// EventRevocation is a token revocation request (RFC 7009).
	EventRevocation EventKind = "revocation"
)

// Event is something the AS did or refused that belongs in an audit
// trail beside the gateway's decisions. Config.Events receives it.
type Event struct {
	Kind EventKind
	Time time.Time
	// Action is what was asked: "register", "authorize", "revoke", or a
	// token request's grant type.
	Action   string
	ClientID string
	// Provider and Model are the client's agent claims (verified or
	// approved), when known.
	Provider string
	Model    string
	// Attestation is the kind of what vouches for the client
	// (contract.Attestation*), "" when nothing does; for a refused
	// registration, what it presented.
	Attestation string
	Tier        string
	Subject     string
	Scopes      []string
	// Allowed is true when the request was granted. A refusal has Error,
	// the OAuth error code, and Reason, its description (with the cause
	// when there is one for the logs).
	Allowed bool
	Error   string
	Reason  string
	// Status is the HTTP status of the answer.
	Status int
	// PolicyVersion is the policy version that decided, when one did.
	PolicyVersion string
	// Remote is the caller's address, without its port.
	Remote string
}

// event hands e to Config.Events, if any, with the time it happened.
func (s *Server) event(ctx context.Context, e Event) {
	if s.cfg.Events == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = s.now().UTC()
	}
	s.cfg.Events(ctx, e)
}

// forClient fills e's client fields from c, as this server trusts it now.
func (s *Server) forClient(e *Event, c *Client) *Event {
	if c == nil {
		return e
	}
	seen := s.clientAsSeen(c)
	e.ClientID = c.ID
	pc := seen.PolicyClient()
	e.Provider, e.Model = pc.AgentProvider, pc.AgentModel
	if a := seen.PolicyAttestation(); a != nil {
		e.Attestation = a.Kind
		if e.Provider == "" {
			e.Provider = a.Provider
		}
	}
	return e
}

// refusal fills e's Error, Reason and Status from err, an OAuth error (or
// any error: a server error), and clears Allowed.
func (e *Event) refusal(err error) *Event {
	f := fosite.ErrorToRFC6749Error(err)
	e.Allowed = false
	e.Error, e.Reason, e.Status = f.ErrorField, refusalReason(err), f.CodeField
	if e.Status < 400 || e.Status > 599 {
		e.Status = http.StatusBadRequest
	}
	return e
}

// refusalReason is a refused request's error on one line, for the log and
// the audit trail: its description, then its cause when it has one. Never
// log the error itself: fosite's errors carry a stack that slog's text
// handler prints (%+v), some thirty lines for an expected refusal.
func refusalReason(err error) string {
	f := fosite.ErrorToRFC6749Error(err)
	reason := f.GetDescription()
	if f.DebugField != "" && f.DebugField != reason {
		if reason != "" {
			reason += " "
		}
		reason += "(" + f.DebugField + ")"
	}
	if reason == "" {
		reason = f.ErrorField
	}
	return reason
}

// remoteHost is the caller's address without its port, as the sign-in
// records have it.
func remoteHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// requestClientID is the client id a request names, for an event about a
// request refused before its client was found: the form's client_id, or
// HTTP Basic authentication's user.
func requestClientID(r *http.Request) string {
	if id := r.Form.Get("client_id"); id != "" {
		return id
	}
	if id, _, ok := r.BasicAuth(); ok {
		return id
	}
	return ""
}
