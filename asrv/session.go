package asrv

import (
	"maps"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/contract"
)

// Actor is one link of an RFC 8693 delegation chain (the policy input's
// type): Sub is the client id of the agent that delegated, Act the link
// before it.
type Actor = contract.Actor

// Session is what the AS keeps with every code and token: who the human is
// (absent for machine clients), the agent's delegation chain, and the
// resource the token is bound to (RFC 8707). It implements fosite.Session.
type Session struct {
	Subject string   `json:"sub,omitempty"`
	Roles   []string `json:"roles,omitempty"`
	// Groups are the person's groups, recorded with the grant: for a
	// person who signed in at the identity provider (Via "sso" or
	// "id-jag") the ones
	// policy sees for as long as the grant lives (sign in again to refresh
	// them); for a person of the password source those of their latest
	// lookup.
	Groups []string `json:"groups,omitempty"`
	// AuthTime is when the grant began: the person's sign-in (or the
	// identity assertion grant), kept through refreshes and carried into
	// delegated tokens. A revocation of everything acting for the person
	// (TokenStore.RevokeSubject) refuses any later token of a grant that
	// began before it; zero (grants stored before it was recorded, machine
	// tokens) counts as before. Config.MaxSignInAge counts from it too (a
	// person's grant with none is too old to refresh).
	AuthTime time.Time `json:"auth_time,omitzero"`
	// Via is how the person signed in: "sso" at the identity provider,
	// "id-jag" by its identity assertion grant (the jwt-bearer grant),
	// empty with a password (Config.Users).
	Via       string                         `json:"via,omitempty"`
	ClientID  string                         `json:"client_id"`
	Act       *Actor                         `json:"act,omitempty"`
	ExpiresAt map[fosite.TokenType]time.Time `json:"expires_at,omitempty"`
	// SingleUse marks an access token policy made single-use at issuance.
	SingleUse bool `json:"single_use,omitempty"`
	// Tier is the trust tier policy assigned at issuance (for audit only;
	// every use re-evaluates policy).
	Tier string `json:"tier,omitempty"`

	// delegation carries, from a token exchange's handling to its
	// response, the subject token the new token is delegated from; never
	// stored.
	delegation *delegation
}

// delegation is the subject token of a token exchange being answered.
type delegation struct {
	subjectSig string
	// consume: the subject is single-use, and the exchange is its use.
	consume bool
}

var _ fosite.Session = (*Session)(nil)

// SetExpiresAt implements fosite.Session.
func (s *Session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if s.ExpiresAt == nil {
		s.ExpiresAt = map[fosite.TokenType]time.Time{}
	}
	s.ExpiresAt[key] = exp
}

// GetExpiresAt implements fosite.Session.
func (s *Session) GetExpiresAt(key fosite.TokenType) time.Time {
	if s == nil || s.ExpiresAt == nil {
		return time.Time{}
	}
	return s.ExpiresAt[key]
}

// GetUsername implements fosite.Session.
func (s *Session) GetUsername() string { return s.GetSubject() }

// GetSubject implements fosite.Session.
func (s *Session) GetSubject() string {
	if s == nil {
		return ""
	}
	return s.Subject
}

// Clone implements fosite.Session.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	c := *s
	c.Roles = slices.Clone(s.Roles)
	c.Groups = slices.Clone(s.Groups)
	c.ExpiresAt = maps.Clone(s.ExpiresAt)
	c.Act = s.Act.Clone()
	return &c
}
