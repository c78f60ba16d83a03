package asrv

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/contract"
)

// User attestation: where policy allows it (a tier whose user_attestation
// is true, contract.Data.UserAttestable), the person signing in may vouch
// for a client nobody else vouches for — "this is my Claude Code" — by
// choosing the provider on the sign-in page. The word is recorded on the
// client (Client.Vouch) with who gave it, and policy honours it for that
// person only (attestation kind "user"). A client another person vouched
// for cannot be claimed; a person may change their own word.

// ErrVouchedByAnother means another person has vouched for the client.
var ErrVouchedByAnother = errors.New("another person has vouched for this agent")

// vouchable are the providers the person may vouch for client as: none
// for a client somebody already vouches for otherwise (a statement, an
// operator, a metadata document), none when policy allows no user
// attestation.
func (s *Server) vouchable(c *Client) []string {
	if s.cfg.UserAttestable == nil || c == nil || isMetadataClient(c) || c.Rejected() {
		return nil
	}
	if a := s.clientAsSeen(c).PolicyAttestation(); a != nil && a.Kind != contract.AttestationUser {
		return nil
	}
	return s.cfg.UserAttestable()
}

// vouch records user's word that client is provider ("" : no word) and
// returns the client as stored now. A provider policy does not let people
// vouch for, or a client another person vouched for, is refused with an
// access_denied hint the person reads.
func (s *Server) vouch(ctx context.Context, client *Client, user User, provider string) (*Client, error) {
	if provider == "" {
		return client, nil
	}
	if !slices.Contains(s.vouchable(client), provider) {
		return nil, fosite.ErrAccessDenied.WithHint(fmt.Sprintf("Policy does not let people vouch for this agent as %q.", provider))
	}
	updated, err := s.store.UpdateClient(ctx, client.ID, func(c *Client) error {
		if c.Vouch != nil && c.Vouch.Subject != user.Subject {
			return ErrVouchedByAnother
		}
		c.Vouch = &ClientVouch{Subject: user.Subject, Provider: provider, At: s.now().UTC()}
		return nil
	})
	switch {
	case errors.Is(err, ErrVouchedByAnother):
		s.log.InfoContext(ctx, "vouch refused: another person vouched for the client", "client_id", client.ID, "sub", user.Subject)
		return nil, fosite.ErrAccessDenied.WithHint("Another person has vouched for this agent; only they can use it on their word.").WithWrap(err)
	case err != nil:
		return nil, fosite.ErrServerError.WithWrap(fmt.Errorf("record the vouch for %s: %w", client.ID, err))
	}
	s.log.InfoContext(ctx, "a person vouched for a client", "client_id", client.ID, "sub", user.Subject, "provider", provider)
	return updated, nil
}
