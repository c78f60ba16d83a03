package stack

import (
	"slices"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/plugins"
)

// TestASEventRecord: each AS event becomes an audit record of its kind,
// with the agent, the person, the decision, the reason and the policy
// version where they apply; a refusal's reason is the OAuth error and its
// description.
func TestASEventRecord(t *testing.T) {
	at := time.Date(2026, 12, 3, 5, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   asrv.Event
		want audit.Record
	}{
		{"a verified registration",
			asrv.Event{Kind: asrv.EventRegistration, Time: at, Action: "register", ClientID: "c1", Provider: "claude-code", Model: "opus",
				Attestation: "software_statement", Allowed: true, Status: 201, Reason: "registered verified", Remote: "127.0.0.1:5"},
			audit.Record{Event: audit.EventRegistration, Time: at, RequestID: "id", ClientID: "c1", AgentProvider: "claude-code", AgentModel: "opus",
				Attestation: "software_statement", Method: "oauth/register", Decision: audit.DecisionAllow, Status: 201,
				Reasons: []string{"registered verified"}, Remote: "127.0.0.1:5"}},
		{"a refused registration has no client yet",
			asrv.Event{Kind: asrv.EventRegistration, Time: at, Action: "register", Attestation: "software_statement",
				Error: "invalid_software_statement", Reason: "the signature does not verify", Status: 400},
			audit.Record{Event: audit.EventRegistration, Time: at, RequestID: "id", ClientID: "(registration)", Attestation: "software_statement",
				Method: "oauth/register", Decision: audit.DecisionDeny, Status: 400,
				Reasons: []string{"invalid_software_statement: the signature does not verify"}}},
		{"an authorization refused by policy",
			asrv.Event{Kind: asrv.EventAuthorization, Time: at, Action: "authorize", ClientID: "c2", Subject: "alice", Tier: "untrusted",
				Error: "access_denied", Reason: "unverified agents get no token", Status: 403, PolicyVersion: "v7"},
			audit.Record{Event: audit.EventAuthorization, Time: at, RequestID: "id", ClientID: "c2", Subject: "alice", Tier: "untrusted",
				Method: "oauth/authorize", Decision: audit.DecisionDeny, Status: 403, PolicyVersion: "v7",
				Reasons: []string{"access_denied: unverified agents get no token"}}},
		{"a refresh issued",
			asrv.Event{Kind: asrv.EventToken, Time: at, Action: "refresh_token", ClientID: "c3", Subject: "bob", Scopes: []string{"jira:read"},
				Allowed: true, Status: 200, PolicyVersion: "v7"},
			audit.Record{Event: audit.EventToken, Time: at, RequestID: "id", ClientID: "c3", Subject: "bob", Scopes: []string{"jira:read"},
				Method: "oauth/token/refresh_token", Decision: audit.DecisionAllow, Status: 200, PolicyVersion: "v7"}},
		{"a token exchange is named by what follows its URN",
			asrv.Event{Kind: asrv.EventToken, Time: at, Action: "urn:ietf:params:oauth:grant-type:token-exchange", ClientID: "c4", Allowed: true, Status: 200},
			audit.Record{Event: audit.EventToken, Time: at, RequestID: "id", ClientID: "c4",
				Method: "oauth/token/token-exchange", Decision: audit.DecisionAllow, Status: 200}},
		{"a refresh token reused",
			asrv.Event{Kind: asrv.EventToken, Time: at, Action: "refresh_token", ClientID: "c3", Error: "invalid_grant",
				Reason: "The refresh token was already used. (Refresh token re-use was detected. All related tokens have been revoked.)", Status: 400},
			audit.Record{Event: audit.EventToken, Time: at, RequestID: "id", ClientID: "c3", Method: "oauth/token/refresh_token",
				Decision: audit.DecisionDeny, Status: 400,
				Reasons: []string{"invalid_grant: The refresh token was already used. (Refresh token re-use was detected. All related tokens have been revoked.)"}}},
		{"policy that could not decide is an error",
			asrv.Event{Kind: asrv.EventToken, Time: at, Action: "client_credentials", ClientID: "c5", Error: "temporarily_unavailable",
				Reason: "The policy could not decide; try again later.", Status: 503},
			audit.Record{Event: audit.EventToken, Time: at, RequestID: "id", ClientID: "c5", Method: "oauth/token/client_credentials",
				Decision: audit.DecisionError, Status: 503, Reasons: []string{"temporarily_unavailable: The policy could not decide; try again later."}}},
		{"a revocation",
			asrv.Event{Kind: asrv.EventRevocation, Time: at, Action: "revoke", ClientID: "c3", Allowed: true, Status: 200, Reason: "revocation accepted"},
			audit.Record{Event: audit.EventRevocation, Time: at, RequestID: "id", ClientID: "c3", Method: "oauth/revoke",
				Decision: audit.DecisionAllow, Status: 200, Reasons: []string{"revocation accepted"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := asEventRecord(tc.in, "id")
			g, _ := audit.Encode(&got)
			w, _ := audit.Encode(&tc.want)
			if string(g) != string(w) {
				t.Fatalf("record\n got  %s\n want %s", g, w)
			}
		})
	}
	// Every AS kind has an audit kind, a valid one, and no two share one.
	var kinds []string
	for _, k := range []asrv.EventKind{asrv.EventRegistration, asrv.EventAuthorization, asrv.EventToken, asrv.EventRevocation} {
		got, ok := asEventKinds[k]
		if !ok || !audit.ValidEvent(got) || slices.Contains(kinds, got) {
			t.Errorf("AS event kind %q: audit kind %q", k, got)
		}
		kinds = append(kinds, got)
	}
}

// TestPolicyEventRecord: each policy change is a policy record whose
// subject is its author, whose policy version is the version after, and
// whose reason says what changed from what, from which source; a refused
// candidate is a deny that keeps the active version.
func TestPolicyEventRecord(t *testing.T) {
	at := time.Date(2026, 12, 3, 5, 40, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   plugins.Event
		want audit.Record
	}{
		{"an activation",
			plugins.Event{At: at, Kind: "activated", Version: "v2", Previous: "v1", Source: "admin upload", Author: "admin token"},
			audit.Record{Event: audit.EventPolicy, Time: at, RequestID: "id", ClientID: "(policy)", Subject: "admin token",
				Method: "policy/activated", PolicyVersion: "v2", Decision: audit.DecisionAllow, Status: 200,
				Reasons: []string{"activated version v2 (before: v1) from admin upload by admin token"}}},
		{"a data change from the dashboard",
			plugins.Event{At: at, Kind: "data_updated", Version: "v3", Previous: "v2", Source: "dashboard data", Author: "olga"},
			audit.Record{Event: audit.EventPolicy, Time: at, RequestID: "id", ClientID: "(policy)", Subject: "olga",
				Method: "policy/data_updated", PolicyVersion: "v3", Decision: audit.DecisionAllow, Status: 200,
				Reasons: []string{"data_updated version v3 (before: v2) from dashboard data by olga"}}},
		{"a rollback",
			plugins.Event{At: at, Kind: "rolled_back", Version: "v1", Previous: "v3", Source: "rollback:admin upload", Author: "admin token"},
			audit.Record{Event: audit.EventPolicy, Time: at, RequestID: "id", ClientID: "(policy)", Subject: "admin token",
				Method: "policy/rolled_back", PolicyVersion: "v1", Decision: audit.DecisionAllow, Status: 200,
				Reasons: []string{"rolled_back version v1 (before: v3) from rollback:admin upload by admin token"}}},
		{"a shadow set, by nobody known",
			plugins.Event{At: at, Kind: "shadow_set", Version: "s1", Source: "candidate"},
			audit.Record{Event: audit.EventPolicy, Time: at, RequestID: "id", ClientID: "(policy)",
				Method: "policy/shadow_set", PolicyVersion: "s1", Decision: audit.DecisionAllow, Status: 200,
				Reasons: []string{"shadow_set version s1 from candidate"}}},
		{"a refused candidate keeps the active version",
			plugins.Event{At: at, Kind: "rejected", Previous: "v1", Source: "file:/bundles/x.tar.gz", Error: "validation: vector failed"},
			audit.Record{Event: audit.EventPolicy, Time: at, RequestID: "id", ClientID: "(policy)",
				Method: "policy/rejected", PolicyVersion: "v1", Decision: audit.DecisionDeny, Status: 422,
				Reasons: []string{"rejected (before: v1) from file:/bundles/x.tar.gz", "refused: validation: vector failed"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := policyEventRecord(tc.in, "id")
			g, _ := audit.Encode(&got)
			w, _ := audit.Encode(&tc.want)
			if string(g) != string(w) {
				t.Fatalf("record\n got  %s\n want %s", g, w)
			}
		})
	}
}
