package admin

import (
	"errors"
	"strings"
	"testing"
)

// TestReviewBody: an approval names a provider and may comment; a
// rejection may comment and names no provider; nothing else is accepted.
func TestReviewBody(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		approve    bool
		want       ClientDecision
		ok         bool
	}{
		{"an approval", `{"provider": " claude-code ", "comment": "ours"}`, true, ClientDecision{Status: ClientApproved, Provider: "claude-code", Comment: "ours"}, true},
		{"an approval confirming machine use", `{"provider": "ci-bot", "machine": true}`, true, ClientDecision{Status: ClientApproved, Provider: "ci-bot", Machine: true}, true},
		{"machine use is a boolean", `{"provider": "ci-bot", "machine": "yes"}`, true, ClientDecision{}, false},
		{"a rejection confirms no machine use", `{"machine": true}`, false, ClientDecision{}, false},
		{"an approval without a provider", `{"comment": "ours"}`, true, ClientDecision{}, false},
		{"an approval with an empty provider", `{"provider": "  "}`, true, ClientDecision{}, false},
		{"an empty approval", ``, true, ClientDecision{}, false},
		{"a rejection", `{"comment": "spam"}`, false, ClientDecision{Status: ClientRejected, Comment: "spam"}, true},
		{"an empty rejection", ``, false, ClientDecision{Status: ClientRejected}, true},
		{"a rejection naming a provider", `{"provider": "claude-code"}`, false, ClientDecision{}, false},
		{"a comment on two lines", `{"comment": "a\nb"}`, false, ClientDecision{}, false},
		{"a long comment", `{"comment": "` + strings.Repeat("é", 501) + `"}`, false, ClientDecision{}, false},
		{"an unknown field", `{"reason": "x"}`, false, ClientDecision{}, false},
		{"two objects", `{} {}`, false, ClientDecision{}, false},
		{"not JSON", `provider=claude-code`, true, ClientDecision{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReviewBody(strings.NewReader(tc.body), tc.approve)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ReviewBody(%q) = %+v, %v", tc.body, got, err)
			}
			if err != nil && !errors.Is(err, ErrBadReview) {
				t.Fatalf("error %v does not wrap ErrBadReview", err)
			}
		})
	}
}

// TestFilterClients: ?status= selects one review status; all (or none)
// selects every client; anything else is an error.
func TestFilterClients(t *testing.T) {
	list := []Client{{ID: "a", Status: ClientPending}, {ID: "b", Status: ClientApproved}, {ID: "c", Status: ClientPending}, {ID: "d", Status: ClientRejected}}
	for _, tc := range []struct {
		status string
		want   string
		ok     bool
	}{
		{"", "abcd", true}, {"all", "abcd", true}, {ClientPending, "ac", true}, {ClientApproved, "b", true},
		{ClientRejected, "d", true}, {ClientVerified, "", true}, {"Pending", "", false}, {"unknown", "", false},
	} {
		got, err := FilterClients(list, tc.status)
		ids := ""
		for _, c := range got {
			ids += c.ID
		}
		if (err == nil) != tc.ok || ids != tc.want {
			t.Errorf("FilterClients(%q) = %q, %v; want %q", tc.status, ids, err, tc.want)
		}
	}
}

// FuzzReviewBody: whatever the body, an accepted review has the status
// its endpoint gives, a provider exactly when it approves, and a one-line
// comment within the bound, and its audit record names the client and the
// operator.
func FuzzReviewBody(f *testing.F) {
	for _, s := range []string{"", "{}", `{"provider":"claude-code"}`, `{"provider":"x","comment":"\u2028"}`, `{"comment":"a\u0000b"}`, `{"provider":null}`, `[]`, "\xff"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, body string, approve bool) {
		d, err := ReviewBody(strings.NewReader(body), approve)
		if err != nil {
			if !errors.Is(err, ErrBadReview) {
				t.Fatalf("error %v does not wrap ErrBadReview", err)
			}
			return
		}
		if approve != (d.Status == ClientApproved) || approve != (d.Provider != "") ||
			strings.ContainsAny(d.Comment, "\r\n") || len([]rune(d.Comment)) > maxReviewComment {
			t.Fatalf("accepted %+v for approve=%v", d, approve)
		}
		d.By = OperatorAdmin
		rec := ReviewClientRecord("client-1", d)
		if rec.ClientID != "client-1" || rec.Subject != OperatorAdmin || (d.Comment != "") != (len(rec.Reasons) == 2) {
			t.Fatalf("record %+v", rec)
		}
	})
}
