package asrv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ory/fosite"
)

// Operator review of self-registered clients (issue 17, "operator
// approval"): anybody may register a client, which is unverified and so
// gets nothing until something vouches for it. An operator may approve it
// with the provider it is (and so, by policy data, a trust tier) or reject
// it. An approval is the client's attestation of kind "operator"
// (Client.PolicyAttestation); a rejection refuses it everywhere: no code at
// authorize (an error page, never a redirect), no token, and its tokens
// read as inactive at introspection.
//
// A client verified by a trusted software statement may be reviewed too:
// rejecting it blocks it, approving it again lifts that (its statement
// still says which provider it is). A client of a client id metadata
// document is not reviewed here: its document, not a stored registration,
// is what the AS reads at each request, and policy data maps its URL to a
// provider (agents.cimd_providers).

// Client review states as an operator sees them (ClientUnderReview.Status).
const (
	// ReviewStatusPending: unverified, unreviewed, registered (not a
	// metadata document's client); it gets nothing unless a person's word
	// counts for it.
	ReviewStatusPending = "pending"
	// ReviewStatusApproved and ReviewStatusRejected: an operator decided.
	ReviewStatusApproved = ReviewApproved
	ReviewStatusRejected = ReviewRejected
	// ReviewStatusVerified: known by a trusted software statement and not
	// reviewed.
	ReviewStatusVerified = "verified"
	// ReviewStatusMetadata: a client id metadata document's client, which
	// policy data maps to a provider.
	ReviewStatusMetadata = "metadata"
)

// Review errors callers branch on.
var (
	// ErrInvalidReview is a review the server refuses to record: an
	// unknown status, an approval without a provider, an overlong or
	// multi-line comment.
	ErrInvalidReview = errors.New("invalid client review")
	// ErrNotReviewable is a client an operator does not review here (a
	// metadata document's client).
	ErrNotReviewable = errors.New("client is not reviewed by an operator")
	// ErrUnknownClient is a review of a client that is not registered.
	ErrUnknownClient = errors.New("no such client")
)

// MaxReviewComment bounds an operator's comment, in characters.
const MaxReviewComment = 500

// ClientRejectedReason is the introspection reason of a token whose client
// an operator rejected.
const ClientRejectedReason = "client rejected by an operator"

// errClientRejected is the token endpoint's answer to a rejected client.
var errClientRejected = fosite.ErrAccessDenied.WithHint("An operator rejected this client: it gets no token here.")

// rejectedPage is what the authorization endpoint tells the person about
// a rejected client, on its error page (never a redirect: nobody vouches
// for its redirect URI).
func rejectedPage(id string) string {
	return fmt.Sprintf("An operator of this gateway rejected this agent (client id %s): it gets no authorization here. If that is a mistake, ask the operator to approve it (in the dashboard: Start here, Pending review).", id)
}

// ErrMachineNotConfirmed is an approval of a client that registered the
// client_credentials grant without the operator saying it may act for no
// person (ClientReview.Machine). It wraps ErrInvalidReview.
var ErrMachineNotConfirmed = fmt.Errorf("%w: this client registered the client_credentials grant, so an approval lets it get tokens that act for no person (a machine of the provider's tier); approve it with machine use confirmed (\"machine\": true) only if that is what it is", ErrInvalidReview)

// ReviewClient records an operator's decision r on the registered client
// id: status ReviewApproved with the provider the operator assigns, or
// ReviewRejected (no provider). r.By names the operator ("admin" for the
// admin token, or the dashboard operator's subject); r.At is set here.
// An approval of a client that registered client_credentials must say
// r.Machine (ErrMachineNotConfirmed), and only such an approval may:
// whoever registered the client, an operator who believes it is a
// person's agent must not make it a machine of that provider's tier.
// Whether the provider is one policy knows is the caller's to check (the
// active policy data's trust tiers). It returns the client as stored.
func (s *Server) ReviewClient(ctx context.Context, id string, r ClientReview) (*Client, error) {
	comment := strings.TrimSpace(r.Comment)
	provider := strings.TrimSpace(r.Provider)
	status, by := r.Status, r.By
	switch {
	case status != ReviewApproved && status != ReviewRejected:
		return nil, fmt.Errorf("%w: status %q: want %q or %q", ErrInvalidReview, status, ReviewApproved, ReviewRejected)
	case status == ReviewApproved && provider == "":
		return nil, fmt.Errorf("%w: an approval names the provider the client is", ErrInvalidReview)
	case status == ReviewRejected && provider != "":
		return nil, fmt.Errorf("%w: a rejection names no provider", ErrInvalidReview)
	case status == ReviewRejected && r.Machine:
		return nil, fmt.Errorf("%w: a rejection confirms no machine use", ErrInvalidReview)
	case len(provider) > maxClaimStringLen || dcrHasControl(provider):
		return nil, fmt.Errorf("%w: provider: at most %d bytes without control characters", ErrInvalidReview, maxClaimStringLen)
	case strings.TrimSpace(by) == "" || len(by) > MaxStoreIDLen || dcrHasControl(by):
		return nil, fmt.Errorf("%w: the operator is not named", ErrInvalidReview)
	case utf8.RuneCountInString(comment) > MaxReviewComment || dcrHasControl(comment) || !utf8.ValidString(comment):
		return nil, fmt.Errorf("%w: comment: at most %d characters on one line", ErrInvalidReview, MaxReviewComment)
	}
	review := &ClientReview{Status: status, Provider: provider, By: by, At: s.now().UTC(), Comment: comment, Machine: r.Machine}
	c, err := s.store.UpdateClient(ctx, id, func(c *Client) error {
		switch {
		case isMetadataClient(c):
			return ErrNotReviewable
		case status == ReviewApproved && c.ActsForNoPerson() && !r.Machine:
			return ErrMachineNotConfirmed
		case status == ReviewApproved && !c.ActsForNoPerson() && r.Machine:
			return errMachineNotRegistered
		}
		c.Review = review
		return nil
	})
	switch {
	case errors.Is(err, ErrNotReviewable):
		return nil, fmt.Errorf("%w: %s is a client id metadata document's client; map its URL to a provider in the policy data (agents.cimd_providers)", ErrNotReviewable, id)
	case errors.Is(err, fosite.ErrNotFound):
		return nil, fmt.Errorf("%w: %q", ErrUnknownClient, id)
	case errors.Is(err, ErrMachineNotConfirmed):
		return nil, fmt.Errorf("client %s: %w", id, ErrMachineNotConfirmed)
	case errors.Is(err, errMachineNotRegistered):
		return nil, fmt.Errorf("client %s: %w", id, errMachineNotRegistered)
	case err != nil:
		return nil, fmt.Errorf("review client %q: %w", id, err)
	}
	s.log.InfoContext(ctx, "client reviewed by an operator", "client_id", id, "status", status, "provider", provider, "by", by,
		"machine", review.Machine, "grant_types", c.GrantTypes)
	return c, nil
}

// errMachineNotRegistered is an approval confirming machine use of a
// client that did not register client_credentials: nothing to confirm.
var errMachineNotRegistered = fmt.Errorf("%w: machine use is confirmed only for a client that registered the client_credentials grant, and this one did not", ErrInvalidReview)

// ClientUnderReview is a registered client as an operator reviews it.
type ClientUnderReview struct {
	Client *Client
	// Status is one of the ReviewStatus… values.
	Status string
	// NoTokenYet: the store marks the client pending (no code or token
	// issued to it yet, and not approved), registered at PendingSince.
	// Known for unverified clients only.
	NoTokenYet   bool
	PendingSince time.Time
}

// ClientsForReview lists the registered clients with their review status,
// ordered by id. A client verified by a statement revoked since counts as
// unverified.
func (s *Server) ClientsForReview(ctx context.Context) ([]ClientUnderReview, error) {
	list, err := s.store.Clients(ctx)
	if err != nil {
		return nil, fmt.Errorf("list clients for review: %w", err)
	}
	pending, err := s.store.PendingClients(ctx)
	if err != nil {
		return nil, fmt.Errorf("list clients for review: %w", err)
	}
	out := make([]ClientUnderReview, 0, len(list))
	for _, c := range list {
		e := ClientUnderReview{Client: c, Status: s.reviewStatus(c)}
		e.PendingSince, e.NoTokenYet = pending[c.ID]
		out = append(out, e)
	}
	return out, nil
}

// reviewStatus is c's review state as this server sees it now.
func (s *Server) reviewStatus(c *Client) string {
	switch {
	case c.Review != nil:
		return c.Review.Status
	case isMetadataClient(c):
		return ReviewStatusMetadata
	case s.clientAsSeen(c).Agent.Verified:
		return ReviewStatusVerified
	}
	return ReviewStatusPending
}
