package asrv_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/contract"
)

// TestReviewClientValidation: what an operator's review must say.
func TestReviewClientValidation(t *testing.T) {
	ta := newTestAS(t)
	id := ta.publicAgent("", "http://127.0.0.1:43190/callback")
	for _, tc := range []struct {
		name                              string
		id, status, provider, by, comment string
		want                              error
	}{
		{"an approval names a provider", id, asrv.ReviewApproved, "", "admin", "", asrv.ErrInvalidReview},
		{"a rejection names none", id, asrv.ReviewRejected, "claude-code", "admin", "", asrv.ErrInvalidReview},
		{"the status is approved or rejected", id, "approve", "claude-code", "admin", "", asrv.ErrInvalidReview},
		{"the operator is named", id, asrv.ReviewApproved, "claude-code", " ", "", asrv.ErrInvalidReview},
		{"a comment is one line", id, asrv.ReviewRejected, "", "admin", "spam\nmore", asrv.ErrInvalidReview},
		{"a comment is short", id, asrv.ReviewRejected, "", "admin", strings.Repeat("x", asrv.MaxReviewComment+1), asrv.ErrInvalidReview},
		{"a provider has no control characters", id, asrv.ReviewApproved, "claude\x00code", "admin", "", asrv.ErrInvalidReview},
		{"an unknown client", "no-such-client", asrv.ReviewApproved, "claude-code", "admin", "", asrv.ErrUnknownClient},
		{"an approval", id, asrv.ReviewApproved, "claude-code", "admin", "ours", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ta.as.ReviewClient(t.Context(), tc.id, asrv.ClientReview{Status: tc.status, Provider: tc.provider, By: tc.by, Comment: tc.comment})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (c != nil) {
				t.Fatalf("ReviewClient = %v, %v; want %v", c, err, tc.want)
			}
		})
	}
	stored, err := ta.store.Client(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r := stored.Review; r == nil || r.Status != asrv.ReviewApproved || r.Provider != "claude-code" || r.By != "admin" || r.Comment != "ours" || r.At.IsZero() {
		t.Fatalf("stored review %+v", r)
	}
	if a := stored.PolicyAttestation(); a == nil || a.Kind != contract.AttestationOperator || a.Provider != "claude-code" {
		t.Fatalf("attestation %+v", a)
	}
}

// TestOperatorApprovalAndRejection: a self-registered client is pending
// and refused on the first page, which says an operator can approve it and
// under which client id; approved as claude-code it gets a developer's
// token; rejected, its tokens die at once, its refresh token buys nothing,
// and the authorization endpoint shows an error page (never a redirect).
func TestOperatorApprovalAndRejection(t *testing.T) {
	ta := newTestAS(t)
	const redirect = "http://127.0.0.1:43191/callback"
	id := ta.register(map[string]any{"client_name": "Claude Code", "redirect_uris": []string{redirect},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
		"software_id": "claude-code-2.1"})["client_id"].(string)
	verified := ta.publicAgent("claude-code", redirect)

	statusOf := func(id string) asrv.ClientUnderReview {
		t.Helper()
		list, err := ta.as.ClientsForReview(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(list, func(e asrv.ClientUnderReview) bool { return e.Client.ID == id })
		if i < 0 {
			t.Fatalf("client %s not listed", id)
		}
		return list[i]
	}
	if e := statusOf(id); e.Status != asrv.ReviewStatusPending || !e.NoTokenYet || e.PendingSince.IsZero() || e.Client.ClaimedSoftwareID != "claude-code-2.1" {
		t.Fatalf("a fresh registration: %+v", e)
	}
	if e := statusOf(verified); e.Status != asrv.ReviewStatusVerified {
		t.Fatalf("a verified registration: %+v", e)
	}

	page := getPage(t, ta.authorizeURL(id, redirect, nil), http.StatusForbidden)
	for _, w := range []string{`id="awaits-review"`, `Start here → Pending review`, `<code>` + id + `</code>`} {
		if !strings.Contains(page, w) {
			t.Errorf("the refusal lacks %s:\n%s", w, page)
		}
	}

	if _, err := ta.as.ReviewClient(t.Context(), id, asrv.ClientReview{Status: asrv.ReviewApproved, Provider: "claude-code", By: "admin"}); err != nil {
		t.Fatal(err)
	}
	if e := statusOf(id); e.Status != asrv.ReviewStatusApproved || e.NoTokenYet {
		t.Fatalf("an approved registration: %+v", e)
	}
	tok := ta.codeFlow(id, redirect, "alice", "jira:read", "jira:write")
	info := ta.introspect(tok.AccessToken)
	if info["active"] != true || info["pbac_tier"] != "developer" {
		t.Fatalf("introspection after the approval: %v", info)
	}

	if _, err := ta.as.ReviewClient(t.Context(), id, asrv.ClientReview{Status: asrv.ReviewRejected, By: "ops@example.com", Comment: "not ours"}); err != nil {
		t.Fatal(err)
	}
	got, err := ta.as.Introspect(t.Context(), tok.AccessToken, ta.resource)
	if err != nil || got.Active || !slices.Contains(got.Reasons, asrv.ClientRejectedReason) {
		t.Fatalf("introspection after the rejection = %+v, %v; want inactive, %q", got, err, asrv.ClientRejectedReason)
	}
	_, err = ta.oauthConfig(id, redirect).TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err == nil || !strings.Contains(err.Error(), "access_denied") {
		t.Fatalf("refresh of a rejected client: %v; want access_denied", err)
	}
	page = getPage(t, ta.authorizeURL(id, redirect, nil), http.StatusForbidden)
	if !strings.Contains(page, "An operator of this gateway rejected this agent (client id "+id+")") || strings.Contains(page, `id="awaits-review"`) {
		t.Fatalf("authorize for a rejected client:\n%s", page)
	}
	if e := statusOf(id); e.Status != asrv.ReviewStatusRejected {
		t.Fatalf("a rejected registration: %+v", e)
	}

	// Approving it again lifts the rejection.
	if _, err := ta.as.ReviewClient(t.Context(), id, asrv.ClientReview{Status: asrv.ReviewApproved, Provider: "claude-code", By: "admin", Comment: "after all"}); err != nil {
		t.Fatal(err)
	}
	if ta.introspect(tok.AccessToken)["active"] != true {
		t.Fatal("an approved client's token is inactive")
	}
}

// getPage GETs u without following redirects and wants a page with status.
func getPage(t *testing.T, u string, status int) string {
	t.Helper()
	resp, err := browser().Get(u)
	if err != nil {
		t.Fatal(err)
	}
	page := readBody(t, resp)
	if resp.StatusCode != status || resp.Header.Get("Location") != "" {
		t.Fatalf("GET %s: %d, Location %q; want %d and a page:\n%s", u, resp.StatusCode, resp.Header.Get("Location"), status, page)
	}
	return page
}

// TestRejectedClientsInTokenExchange: a rejected sub-agent is no audience
// of a token exchange, and a rejected parent exchanges nothing.
func TestRejectedClientsInTokenExchange(t *testing.T) {
	ta := newTestAS(t)
	const redirect = "http://127.0.0.1:43192/cb"
	parent := ta.publicAgent("claude-code", redirect)
	child := ta.publicAgent("claude-code", "http://127.0.0.1:43193/cb")
	tok := ta.codeFlow(parent, redirect, "alice", "jira:read")
	exchange := func() (int, map[string]any) {
		return ta.form(asrv.PathToken, "", "", url.Values{
			"grant_type": {asrv.GrantTypeExchange}, "client_id": {parent}, "subject_token": {tok.AccessToken},
			"subject_token_type": {asrv.TokenTypeAccess}, "audience": {child}, "scope": {"jira:read"},
		})
	}
	for _, tc := range []struct {
		rejected, wantErr string
	}{
		{child, "invalid_target"},
		{parent, "invalid_request"}, // its subject token is no longer active
	} {
		if _, err := ta.as.ReviewClient(t.Context(), tc.rejected, asrv.ClientReview{Status: asrv.ReviewRejected, By: "admin"}); err != nil {
			t.Fatal(err)
		}
		if status, out := exchange(); status < 400 || out["error"] != tc.wantErr {
			t.Fatalf("exchange with %s rejected: %d %v; want %s", tc.rejected, status, out, tc.wantErr)
		}
		if _, err := ta.as.ReviewClient(t.Context(), tc.rejected, asrv.ClientReview{Status: asrv.ReviewApproved, Provider: "claude-code", By: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	if status, out := exchange(); status != http.StatusOK {
		t.Fatalf("exchange once both are approved: %d %v", status, out)
	}
}

// TestApprovalOfAMachineClient: anyone may register a client with the
// client_credentials grant and a secret; approved, it would get tokens
// acting for no person as a machine of the provider's tier. The operator
// must say so (Machine), or the approval is refused; an approval that
// does not cover machine use (as stored before approvals said it) gets no
// client_credentials token, and a machine token issued under a machine
// approval dies when the approval is narrowed.
func TestApprovalOfAMachineClient(t *testing.T) {
	ta := newTestAS(t)
	reg := ta.register(map[string]any{"client_name": "alice's Claude Code", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic"})
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)
	public := ta.publicAgent("", "http://127.0.0.1:43194/cb")
	machineToken := func() (int, map[string]any) {
		return ta.form(asrv.PathToken, id, secret, url.Values{"grant_type": {"client_credentials"}, "resource": {ta.resource}, "scope": {"jira:read"}})
	}

	for _, tc := range []struct {
		name    string
		id      string
		machine bool
		want    error
	}{
		{"a client_credentials client needs machine use confirmed", id, false, asrv.ErrMachineNotConfirmed},
		{"machine use of a client without client_credentials", public, true, asrv.ErrInvalidReview},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ta.as.ReviewClient(t.Context(), tc.id, asrv.ClientReview{Status: asrv.ReviewApproved, Provider: "claude-code", By: "admin", Machine: tc.machine})
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReviewClient = %v; want %v", err, tc.want)
			}
		})
	}
	if c, _ := ta.store.Client(t.Context(), id); c.Review != nil {
		t.Fatalf("a refused approval was stored: %+v", c.Review)
	}
	if _, err := ta.as.ReviewClient(t.Context(), id, asrv.ClientReview{Status: asrv.ReviewRejected, By: "admin", Machine: true}); !errors.Is(err, asrv.ErrInvalidReview) {
		t.Fatalf("a rejection confirming machine use: %v", err)
	}

	c, err := ta.as.ReviewClient(t.Context(), id, asrv.ClientReview{Status: asrv.ReviewApproved, Provider: "claude-code", By: "admin", Machine: true})
	if err != nil {
		t.Fatal(err)
	}
	if a := c.PolicyAttestation(); a == nil || a.Kind != contract.AttestationOperator || !a.Machine {
		t.Fatalf("attestation %+v; want operator with machine use", a)
	}
	status, out := machineToken()
	if status != http.StatusOK {
		t.Fatalf("client_credentials after a machine approval: %d %v", status, out)
	}
	tok := out["access_token"].(string)
	if info := ta.introspect(tok); info["active"] != true || info["sub"] != nil {
		t.Fatalf("the machine token: %v", info)
	}

	// An approval as stored before approvals said machine use (or written
	// by hand): the policy refuses it a token acting for no person, and its
	// machine tokens are inactive.
	if _, err := ta.store.UpdateClient(t.Context(), id, func(c *asrv.Client) error {
		c.Review.Machine = false
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	status, out = machineToken()
	if desc, _ := out["error_description"].(string); status < 400 || !strings.Contains(desc, "not for machine use") {
		t.Fatalf("client_credentials under an approval for people only: %d %v", status, out)
	}
	if info := ta.introspect(tok); info["active"] != false {
		t.Fatalf("the machine token after the approval was narrowed: %v", info)
	}
}
