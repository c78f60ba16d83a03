package stack

import (
	"cmp"
	"context"
	"net/http"
	"strings"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/plugins"
)

// auditAS counts the AS's registrations, authorizations, token requests
// and revocations and records them in the audit trail, beside the
// gateway's decisions.
// Without a gateway there is no trail, and the AS's log line is the
// record.
func (s *Stack) auditAS(_ context.Context, e asrv.Event) {
	if s.asMetrics != nil {
		s.asMetrics.Event(e)
	}
	if s.trail == nil {
		return
	}
	s.trail.Record(asEventRecord(e, newRequestID()))
}

// asEventKinds is the audit kind of each AS event kind.
var asEventKinds = map[asrv.EventKind]string{
	asrv.EventRegistration:  audit.EventRegistration,
	asrv.EventAuthorization: audit.EventAuthorization,
	asrv.EventToken:         audit.EventToken,
	asrv.EventRevocation:    audit.EventRevocation,
}

// grantTypeURN is the prefix of the grant types RFC 8693 and RFC 7523
// name by URN; the audit trail's methods name them by what follows.
const grantTypeURN = "urn:ietf:params:oauth:grant-type:"

// asEventRecord is the audit record of an AS event, with the request id
// id. Its method says the endpoint and, for a token, the grant type
// ("oauth/token/refresh_token"); a refusal's reason is the OAuth error
// and its description.
func asEventRecord(e asrv.Event, id string) audit.Record {
	kind, ok := asEventKinds[e.Kind]
	if !ok {
		kind = audit.EventDecision // not reached: every kind is in the table (TestASEventRecord)
	}
	r := audit.Record{
		Event: kind, Time: e.Time.UTC(), RequestID: id, ClientID: e.ClientID,
		AgentProvider: e.Provider, AgentModel: e.Model, Tier: e.Tier, Attestation: e.Attestation,
		Subject: e.Subject, Scopes: e.Scopes, Status: e.Status, PolicyVersion: e.PolicyVersion, Remote: e.Remote,
		Method: "oauth/" + e.Action,
	}
	if e.Kind == asrv.EventToken {
		r.Method = "oauth/token/" + strings.TrimPrefix(e.Action, grantTypeURN)
	}
	if r.ClientID == "" {
		// Refused before a client was known: a registration, or a request
		// naming no client.
		r.ClientID = "(" + kind + ")"
	}
	switch {
	case e.Allowed:
		r.Decision = audit.DecisionAllow
		if e.Reason != "" {
			r.Reasons = []string{e.Reason}
		}
	case e.Status >= http.StatusInternalServerError:
		r.Decision = audit.DecisionError
		r.Reasons = []string{e.Error + ": " + e.Reason}
	default:
		r.Decision = audit.DecisionDeny
		r.Reasons = []string{e.Error + ": " + e.Reason}
	}
	return r
}

// auditPolicy records a change of policy — an activation, a data change,
// a rollback, a restore at start, a shadow set or cleared, or a candidate
// refused — in the audit trail once it is open (the first version is
// activated before). The trail's Record is bounded, as the registry asks.
func (s *Stack) auditPolicy(_ context.Context, e plugins.Event) {
	if t := s.policyTrail.Load(); t != nil {
		t.Record(policyEventRecord(e, newRequestID()))
	}
}

// policyClientID is the client of the policy's audit records: no agent,
// the operator who changed it is their subject.
const policyClientID = "(policy)"

// policyEventRecord is the audit record of a policy registry event, with
// the request id id: its method is "policy/<kind>", its subject the
// author, its policy version the version after (for a shadow, the
// shadow's), its reason what changed from what, from which source.
func policyEventRecord(e plugins.Event, id string) audit.Record {
	r := audit.Record{
		Event: audit.EventPolicy, Time: e.At.UTC(), RequestID: id, ClientID: policyClientID, Subject: e.Author,
		Method: "policy/" + e.Kind, PolicyVersion: e.Version, Decision: audit.DecisionAllow, Status: http.StatusOK,
	}
	what := e.Kind
	if e.Version != "" {
		what += " version " + e.Version
	}
	if e.Previous != "" {
		what += " (before: " + e.Previous + ")"
	}
	what += " from " + cmp.Or(e.Source, "an unnamed source")
	if e.Author != "" {
		what += " by " + e.Author
	}
	r.Reasons = []string{what}
	if e.Error != "" {
		// A refused candidate: the active version stays.
		r.Decision, r.Status = audit.DecisionDeny, http.StatusUnprocessableEntity
		r.Reasons = append(r.Reasons, "refused: "+e.Error)
		if e.Version == "" {
			r.PolicyVersion = e.Previous
		}
	}
	return r
}
