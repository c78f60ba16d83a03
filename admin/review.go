package admin

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/plugins"
)

// Operator review of self-registered clients:
//
//	GET  /admin/clients?status=pending|approved|rejected|verified|metadata|all
//	POST /admin/clients/{id}/approve  {"provider": "claude-code", "comment": "…", "machine": false}
//	POST /admin/clients/{id}/reject   {"comment": "…"}
//
// An approval assigns the provider the client is, which the active
// policy's trust tiers map to a tier; a rejection refuses the client
// everywhere (the authorization server's). Each review is one audit
// record naming the operator. A client that registered the
// client_credentials grant would get tokens acting for no person, as a
// machine of the provider's tier: the listing says so
// (acts_for_no_person), and its approval must say "machine": true (400
// otherwise).

// Review statuses of a listed client (Client.Status), as the
// authorization server reports them.
const (
	ClientPending  = "pending"
	ClientApproved = "approved"
	ClientRejected = "rejected"
	ClientVerified = "verified"
	ClientMetadata = "metadata"
)

// clientStatuses are what ?status= may select ("all", or empty, for every
// client).
var clientStatuses = []string{ClientPending, ClientApproved, ClientRejected, ClientVerified, ClientMetadata}

// ClientReview is an operator's recorded decision on a client.
type ClientReview struct {
	Status   string    `json:"status"`
	Provider string    `json:"provider,omitempty"`
	By       string    `json:"by"`
	At       time.Time `json:"at"`
	Comment  string    `json:"comment,omitempty"`
	// Machine: the approval covers acting for no person.
	Machine bool `json:"machine,omitempty"`
}

// ClientDecision is an operator's review to record: Status ClientApproved
// with a Provider, or ClientRejected; By names the operator. Machine, on
// an approval, is the operator's word that the client may act for no
// person (its client_credentials grant): the authorization server refuses
// to approve such a client without it.
type ClientDecision struct {
	Status, Provider, By, Comment string
	Machine                       bool
}

// Review errors the ReviewClient hook returns (wrapped), which the admin
// API and the dashboard answer with a status.
var (
	// ErrNoSuchClient: 404.
	ErrNoSuchClient = errors.New("no such client")
	// ErrNotReviewable: a client an operator does not review (a metadata
	// document's); 409.
	ErrNotReviewable = errors.New("this client is not reviewed by an operator")
	// ErrBadReview: a review the authorization server refuses; 400.
	ErrBadReview = errors.New("invalid review")
	// ErrUnknownProvider: a provider no trust tier of the active policy
	// names; 422.
	ErrUnknownProvider = errors.New("no trust tier of the active policy names this provider")
)

// ReviewErrorStatus is the HTTP status of a review's error.
func ReviewErrorStatus(err error) int {
	switch {
	case errors.Is(err, ErrNoSuchClient):
		return http.StatusNotFound
	case errors.Is(err, ErrNotReviewable):
		return http.StatusConflict
	case errors.Is(err, ErrBadReview):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownProvider):
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// Audit record methods of reviews.
const (
	MethodApproveClient = "admin/approve-client"
	MethodRejectClient  = "admin/reject-client"
)

const (
	maxReviewComment = 500
	maxReviewBody    = 4 << 10
)

// ReviewBody reads the body of an approval (approve: {"provider": "…",
// "comment": "…", "machine": true|false}, provider required) or a rejection ({} or {"comment":
// "…"}): JSON, no unknown fields, a one-line comment of at most 500
// characters. The error wraps ErrBadReview.
func ReviewBody(body io.Reader, approve bool) (ClientDecision, error) {
	var in struct {
		Provider *string `json:"provider"`
		Comment  string  `json:"comment"`
		Machine  bool    `json:"machine"`
	}
	dec := json.NewDecoder(io.LimitReader(body, maxReviewBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil && !errors.Is(err, io.EOF) {
		return ClientDecision{}, fmt.Errorf("%w: the body must be a JSON object: %w", ErrBadReview, err)
	}
	if dec.More() {
		return ClientDecision{}, fmt.Errorf("%w: the body must be one JSON object", ErrBadReview)
	}
	d := ClientDecision{Status: ClientRejected, Comment: strings.TrimSpace(in.Comment)}
	if approve {
		d.Status = ClientApproved
		if in.Provider == nil || strings.TrimSpace(*in.Provider) == "" {
			return ClientDecision{}, fmt.Errorf("%w: an approval names the provider: {\"provider\": \"claude-code\"}", ErrBadReview)
		}
		d.Provider = strings.TrimSpace(*in.Provider)
		d.Machine = in.Machine
	} else if in.Provider != nil {
		return ClientDecision{}, fmt.Errorf("%w: a rejection names no provider", ErrBadReview)
	} else if in.Machine {
		return ClientDecision{}, fmt.Errorf("%w: a rejection confirms no machine use", ErrBadReview)
	}
	if !utf8.ValidString(d.Comment) || utf8.RuneCountInString(d.Comment) > maxReviewComment || strings.ContainsAny(d.Comment, "\r\n") {
		return ClientDecision{}, fmt.Errorf("%w: comment: at most %d characters on one line", ErrBadReview, maxReviewComment)
	}
	return d, nil
}

// ProviderTiers maps each provider the active policy's trust tiers name to
// those tiers (sorted): what an operator may assign.
func ProviderTiers(reg *plugins.Registry) (map[string][]string, error) {
	_, data, err := reg.ActivePolicy()
	if err != nil {
		return nil, fmt.Errorf("read the active policy's trust tiers: %w", err)
	}
	out := map[string][]string{}
	for tier, ps := range data.Agents.TrustTiers {
		for _, p := range ps {
			out[p] = append(out[p], tier)
		}
	}
	for _, ts := range out {
		slices.Sort(ts)
	}
	return out, nil
}

// CheckProvider tells whether a trust tier of the active policy names
// provider (ErrUnknownProvider otherwise).
func CheckProvider(reg *plugins.Registry, provider string) error {
	tiers, err := ProviderTiers(reg)
	if err != nil {
		return err
	}
	if _, ok := tiers[provider]; !ok {
		return fmt.Errorf("%w: %q (known: %s)", ErrUnknownProvider, provider, strings.Join(slices.Sorted(maps.Keys(tiers)), ", "))
	}
	return nil
}

// ReviewClientRecord is the audit record of an operator's review of the
// client id: the client is the reviewed one, sub the operator.
func ReviewClientRecord(id string, d ClientDecision) audit.Record {
	method, what := MethodRejectClient, fmt.Sprintf("client %s rejected by %s: it gets no code or token, and its tokens are inactive", id, d.By)
	if d.Status == ClientApproved {
		method, what = MethodApproveClient, fmt.Sprintf("client %s approved by %s as provider %s, for use on a person's behalf only", id, d.By, d.Provider)
		if d.Machine {
			what = fmt.Sprintf("client %s approved by %s as provider %s, including machine use: its client_credentials tokens act for no person", id, d.By, d.Provider)
		}
	}
	reasons := []string{what}
	if d.Comment != "" {
		reasons = append(reasons, "comment: "+d.Comment)
	}
	return audit.Record{Event: audit.EventClientReview, Time: time.Now().UTC(), RequestID: rand.Text(), ClientID: id, AgentProvider: d.Provider, Subject: d.By,
		Method: method, Decision: audit.DecisionAllow, Status: http.StatusOK, Reasons: reasons}
}

// FilterClients selects the clients of status ("" or "all": every one);
// an unknown status is an error.
func FilterClients(list []Client, status string) ([]Client, error) {
	if status == "" || status == "all" {
		return list, nil
	}
	if !slices.Contains(clientStatuses, status) {
		return nil, fmt.Errorf("status: want all or one of %s", strings.Join(clientStatuses, ", "))
	}
	out := []Client{}
	for _, c := range list {
		if c.Status == status {
			out = append(out, c)
		}
	}
	return out, nil
}

// reviewClient serves POST /admin/clients/{id}/approve and …/reject: 200
// with the client as reviewed; 400 bad body, 404 unknown client, 409 a
// client not reviewed here, 422 a provider no trust tier names.
func (a *api) reviewClient(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.ReviewClient == nil {
			adminJSON(w, http.StatusNotFound, map[string]string{"error": "clients are reviewed on the authorization server, which does not run here"})
			return
		}
		id := r.PathValue("id")
		d, err := ReviewBody(r.Body, approve)
		if err == nil && approve {
			err = CheckProvider(a.cfg.Registry, d.Provider)
		}
		if err != nil {
			adminJSON(w, ReviewErrorStatus(err), map[string]string{"error": err.Error()})
			return
		}
		d.By = OperatorAdmin
		c, err := a.cfg.ReviewClient(r, id, d)
		if status := ReviewErrorStatus(err); err != nil && status != http.StatusInternalServerError {
			adminJSON(w, status, map[string]string{"error": err.Error()})
			return
		} else if err != nil {
			a.cfg.Logger.Error("admin: reviewing a client failed", "client_id", id, "err", err)
			adminJSON(w, status, map[string]string{"error": "the review failed; see the server's log"})
			return
		}
		if a.cfg.Audit != nil {
			a.cfg.Audit.Record(ReviewClientRecord(id, d))
		}
		a.cfg.Logger.Info("admin: client reviewed", "client_id", id, "status", d.Status, "provider", d.Provider, "machine", d.Machine)
		adminJSON(w, http.StatusOK, map[string]any{"client": c})
	}
}

// OperatorAdmin is who an admin-token review is by.
const OperatorAdmin = "admin"
