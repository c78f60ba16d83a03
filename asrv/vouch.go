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
// choosing the provider on the sign-in page. Policy decides the grant with
// the word as given (attestation kind "user"), and only when it allows it
// is the word recorded on the client (Client.Vouch) with who gave it, so a
// word policy refuses claims nothing. Policy honours it for that person
// only. A client another person vouched for cannot be claimed; a person
// may change their own word, and vouches for MaxVouchesPerSubject clients
// at most.

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

// MaxVouchesPerSubject bounds how many clients one person may vouch for:
// a person's word is cheap to give, and each one claims a client nobody
// else may then vouch for.
const MaxVouchesPerSubject = 20

// proposeVouch checks user's word that client is provider ("": no word)
// and returns the client as it would be with it, and the vouch to record
// once policy allows the grant it is for (nil: nothing new to record). A
// provider policy does not let people vouch for, a client another person
// vouched for, or a person who already vouches for MaxVouchesPerSubject
// other clients is refused with an access_denied hint the person reads.
// Nothing is stored here: a word policy then refuses must not claim the
// client (recordVouch stores it).
func (s *Server) proposeVouch(ctx context.Context, client *Client, user User, provider string) (*Client, *ClientVouch, error) {
	if provider == "" {
		return client, nil, nil
	}
	if !slices.Contains(s.vouchable(client), provider) {
		return nil, nil, fosite.ErrAccessDenied.WithHint(fmt.Sprintf("Policy does not let people vouch for this agent as %q.", provider))
	}
	switch v := client.Vouch; {
	case v != nil && v.Subject != user.Subject:
		s.log.InfoContext(ctx, "vouch refused: another person vouched for the client", "client_id", client.ID, "sub", user.Subject)
		return nil, nil, errVouchedByAnother()
	case v != nil && v.Provider == provider:
		return client, nil, nil // their word stands as it is
	case v == nil:
		n, err := s.vouchesBy(ctx, user.Subject)
		if err != nil {
			return nil, nil, fosite.ErrServerError.WithWrap(fmt.Errorf("count the vouches of %s: %w", user.Subject, err))
		}
		if n >= MaxVouchesPerSubject {
			s.log.InfoContext(ctx, "vouch refused: the person vouches for the most clients allowed", "client_id", client.ID, "sub", user.Subject, "vouches", n)
			return nil, nil, fosite.ErrAccessDenied.WithHint(fmt.Sprintf(
				"You already vouch for %d agents, the most one person may; ask an operator to approve this agent instead.", MaxVouchesPerSubject))
		}
	}
	vouch := &ClientVouch{Subject: user.Subject, Provider: provider, At: s.now().UTC()}
	proposed := *client
	proposed.Vouch = vouch
	return &proposed, vouch, nil
}

// vouchesBy counts the registered clients sub vouches for. It reads every
// registered client, which registration limits bound; two sign-ins of one
// person at the same instant may each pass the count once.
func (s *Server) vouchesBy(ctx context.Context, sub string) (int, error) {
	list, err := s.store.Clients(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range list {
		if c.Vouch != nil && c.Vouch.Subject == sub {
			n++
		}
	}
	return n, nil
}

// recordVouch stores vouch on the client id, after policy allowed the
// grant it was given for, unless another person's word got there first.
func (s *Server) recordVouch(ctx context.Context, id string, vouch *ClientVouch) error {
	_, err := s.store.UpdateClient(ctx, id, func(c *Client) error {
		if c.Vouch != nil && c.Vouch.Subject != vouch.Subject {
			return ErrVouchedByAnother
		}
		c.Vouch = vouch
		return nil
	})
	switch {
	case errors.Is(err, ErrVouchedByAnother):
		s.log.InfoContext(ctx, "vouch refused: another person vouched for the client", "client_id", id, "sub", vouch.Subject)
		return errVouchedByAnother().WithWrap(err)
	case err != nil:
		return fosite.ErrServerError.WithWrap(fmt.Errorf("record the vouch for %s: %w", id, err))
	}
	s.log.InfoContext(ctx, "a person vouched for a client", "client_id", id, "sub", vouch.Subject, "provider", vouch.Provider)
	return nil
}

func errVouchedByAnother() *fosite.RFC6749Error {
	return fosite.ErrAccessDenied.WithHint("Another person has vouched for this agent; only they can use it on their word.")
}
