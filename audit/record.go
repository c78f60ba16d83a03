// Package audit is the gateway's audit trail: every decision the PEP makes
// (allow, deny, error) becomes a Record, handed to a Trail that fans it out
// asynchronously to durable sinks (a rotated JSON-lines file, a queryable
// Badger index) and to live subscribers (the dashboard's SSE stream).
//
// The request path only ever calls Trail.Record, which never blocks for
// longer than a short, configured bound; records that cannot be queued
// within that bound are counted (Trail.Dropped) and logged, never lost
// silently.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Decisions.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
	DecisionError = "error"
	// DecisionHold is a tools/call policy holds until a person approves
	// it (the client is told where to ask, and retries).
	DecisionHold = "hold"
)

// Event kinds (Record.Event): what a record is about. A record without
// one is a decision: the gateway's records, and every record written
// before records had a kind, read as EventDecision.
const (
	// EventDecision is the gateway's decision on an MCP request.
	EventDecision = "decision"
	// EventSignIn is a sign-in attempt (the AS's page or the dashboard's).
	EventSignIn = "sign_in"
	// EventRegistration is a dynamic client registration, accepted or
	// refused, with what vouched for the client.
	EventRegistration = "registration"
	// EventAuthorization is an authorization request granted or refused.
	EventAuthorization = "authorization"
	// EventToken is a token issued, refreshed or exchanged, or a token
	// request refused.
	EventToken = "token"
	// EventRevocation is a token revoked, or everything acting for a
	// person.
	EventRevocation = "revocation"
	// EventClientReview is an operator's approval or rejection of a
	// client.
	EventClientReview = "client_review"
	// EventPolicy is a change of policy: a version activated or rolled
	// back, its data changed, a shadow set or cleared.
	EventPolicy = "policy"
	// EventToolReview is an operator's review of a tool a backend serves:
	// catalogued, dismissed, a changed definition approved or rejected.
	EventToolReview = "tool_review"
	// EventApproval is a step in the life of an approval a held call asked
	// for (Method says which: ApprovalRequested, ApprovalApproved, ...);
	// ApprovalID links the steps and the gateway's decisions on the call.
	EventApproval = "approval"
)

// The steps of an approval (Record.Method of EventApproval records).
const (
	ApprovalRequested = "approval/requested"
	ApprovalApproved  = "approval/approved"
	ApprovalDenied    = "approval/denied"
	ApprovalRefused   = "approval/refused" // someone not allowed tried to decide it
	ApprovalUsed      = "approval/used"
	ApprovalExpired   = "approval/expired"
	ApprovalVoid      = "approval/void"
	ApprovalWithdrawn = "approval/withdrawn"
)

// eventKinds are the kinds a record can have, in a stable order.
var eventKinds = [...]string{EventDecision, EventSignIn, EventRegistration, EventAuthorization,
	EventToken, EventRevocation, EventClientReview, EventPolicy, EventToolReview, EventApproval}

// EventKinds returns the kinds a record can have, in a stable order.
func EventKinds() []string { return append([]string(nil), eventKinds[:]...) }

// ValidEvent reports whether kind is one of EventKinds.
func ValidEvent(kind string) bool {
	for _, k := range eventKinds {
		if k == kind {
			return true
		}
	}
	return false
}

// Latency stages (keys of Record.LatencyMicros).
const (
	StageIntrospect = "introspect"
	StagePolicy     = "policy"
	StageBackend    = "backend"
	StageTotal      = "total"
)

// Record is one audited request. A Record handed to Trail.Record belongs to
// the trail from then on: the caller must not modify its slices, maps or raw
// JSON afterwards.
type Record struct {
	Time time.Time `json:"ts"`
	// Event is the record's kind (EventDecision, EventToken, ...); empty
	// means EventDecision, and is written as such.
	Event     string `json:"event"`
	RequestID string `json:"request_id"`
	// TraceID is the W3C trace id of the request's trace (hex), when it
	// has one: the gateway's span, or the caller's trace passed on.
	TraceID       string `json:"trace_id,omitempty"`
	ClientID      string `json:"client_id"`
	AgentProvider string `json:"agent_provider,omitempty"`
	AgentModel    string `json:"agent_model,omitempty"`
	Tier          string `json:"tier,omitempty"`
	// Attestation is what vouches for the client (a software statement,
	// an operator, a metadata document, a person), on AS events.
	Attestation   string           `json:"attestation,omitempty"`
	Subject       string           `json:"sub,omitempty"`
	Act           json.RawMessage  `json:"act,omitempty"` // RFC 8693 actor chain as JSON
	Backend       string           `json:"backend,omitempty"`
	Method        string           `json:"method"` // tools/call, tools/list, resources/read, ...
	Tool          string           `json:"tool,omitempty"`
	Scopes        []string         `json:"scopes,omitempty"`
	Decision      string           `json:"decision"` // "allow" | "deny" | "error"
	Reasons       []string         `json:"reasons,omitempty"`
	Status        int              `json:"status"` // HTTP status returned to the client
	PolicyVersion string           `json:"policy_version,omitempty"`
	ArgsDigest    string           `json:"args_digest,omitempty"` // "sha256:<hex>" of the exact argument bytes
	Args          json.RawMessage  `json:"args,omitempty"`        // only when redaction is off
	LatencyMicros map[string]int64 `json:"latency_us,omitempty"`  // introspect, policy, backend, total
	// Remote is the client's address, on a refusal before any identity is
	// known (a bad or missing token); Count is how many such refusals the
	// record stands for (they are aggregated, see host).
	Remote string `json:"remote,omitempty"`
	Count  int    `json:"count,omitempty"`
	// ApprovalID links the records of one approval: its steps
	// (EventApproval) and the decisions on the call that asked for it and
	// used it. Approver and Comment are the decider's, on a decision step.
	ApprovalID string `json:"approval_id,omitempty"`
	Approver   string `json:"approver,omitempty"`
	Comment    string `json:"comment,omitempty"`
}

// Kind is the record's event kind: Event, or EventDecision when it has
// none.
func (r *Record) Kind() string {
	if r.Event == "" {
		return EventDecision
	}
	return r.Event
}

// MarshalJSON writes the record with its kind: a record without one (the
// gateway's decisions) is written with "event":"decision", so every line
// of the trail says what it is about.
func (r Record) MarshalJSON() ([]byte, error) {
	return marshalPlain(&r)
}

// plainRecord is Record without its MarshalJSON method.
type plainRecord Record

// marshalPlain encodes r with its kind. Encoding the record through
// MarshalJSON would have encoding/json check and compact the method's
// output again, a second pass over every line.
func marshalPlain(r *Record) ([]byte, error) {
	p := (*plainRecord)(r)
	if r.Event != "" {
		return json.Marshal(p)
	}
	c := *p
	c.Event = EventDecision
	return json.Marshal(&c)
}

// Digest returns "sha256:<hex>" of exactly the given bytes (no
// canonicalisation: the digest identifies the bytes the backend received).
// It returns "" for empty input, so a call without arguments carries no
// digest.
func Digest(args []byte) string {
	if len(args) == 0 {
		return ""
	}
	sum := sha256.Sum256(args)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Encode marshals r as one line of JSON (no trailing newline), as every
// sink stores it. A record is never lost to bad input: when Act or Args are
// not valid JSON they are kept as JSON strings holding the raw bytes
// instead.
func Encode(r *Record) ([]byte, error) {
	b, err := marshalPlain(r)
	if err == nil {
		return b, nil
	}
	c := *r
	if len(c.Act) > 0 && !json.Valid(c.Act) {
		c.Act, _ = json.Marshal(string(c.Act))
	}
	if len(c.Args) > 0 && !json.Valid(c.Args) {
		c.Args, _ = json.Marshal(string(c.Args))
	}
	return marshalPlain(&c)
}

// Filter selects records for Index.Query. Empty fields match everything.
// Since is inclusive, Until exclusive. Limit <= 0 means DefaultQueryLimit;
// it is capped at MaxQueryLimit.
type Filter struct {
	// Event is a kind of EventKinds; EventDecision also selects the
	// records without a kind.
	Event    string
	ClientID string
	Tool     string
	Decision string
	Subject  string
	// ApprovalID selects the records of one approval: its steps and the
	// gateway's decisions on the call that asked for it and used it.
	ApprovalID string
	// TraceID selects the records of one trace.
	TraceID string
	Since   time.Time
	Until   time.Time
	Limit   int
}

// CheckEvent checks the filter's kind: empty (every kind) or one of
// EventKinds. The error says which kinds there are.
func (f *Filter) CheckEvent() error {
	if f.Event == "" || ValidEvent(f.Event) {
		return nil
	}
	return fmt.Errorf("event must be one of %s; got %q", strings.Join(eventKinds[:], ", "), f.Event)
}

// Query limits.
const (
	DefaultQueryLimit = 100
	MaxQueryLimit     = 10000
)

// Matches reports whether r passes the filter's kind, client, tool,
// decision, subject and approval (its time range and limit are the
// query's).
func (f *Filter) Matches(r *Record) bool {
	return (f.Event == "" || r.Kind() == f.Event) &&
		(f.ClientID == "" || r.ClientID == f.ClientID) &&
		(f.Tool == "" || r.Tool == f.Tool) &&
		(f.Decision == "" || r.Decision == f.Decision) &&
		(f.Subject == "" || r.Subject == f.Subject) &&
		(f.ApprovalID == "" || r.ApprovalID == f.ApprovalID) &&
		(f.TraceID == "" || r.TraceID == f.TraceID)
}
