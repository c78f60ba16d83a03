package asrv

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/identity"
)

// Where the people agents act for come from (package identity): a
// password source (Config.Users: the demo users in the demo tenant, or a
// users file through PasswordUsers) and single sign-on at the
// organisation's identity provider (Config.SSO). With neither, the
// authorization endpoint refuses every request (access_denied naming the
// missing configuration) and only machine clients get tokens.

// viaSSO is Session.Via for a person who signed in at the identity
// provider.
const viaSSO = "sso"

// PathIDPCallback is where the identity provider sends the browser back:
// register <issuer>/oauth2/idp/callback as the AS's redirect URI there.
const PathIDPCallback = identity.CallbackPath

// PasswordUsers adapts a password identity source (the users file) to a
// UserSource: the person's groups travel as User.Groups.
func PasswordUsers(src identity.PasswordSource) UserSource { return passwordUsers{src} }

type passwordUsers struct{ src identity.PasswordSource }

func (p passwordUsers) Authenticate(ctx context.Context, username, password string) (User, error) {
	person, err := p.src.Authenticate(ctx, username, password)
	if err != nil {
		if errors.Is(err, identity.ErrBadCredentials) {
			return User{}, fmt.Errorf("%w: %w", ErrBadCredentials, err)
		}
		return User{}, err
	}
	return userOf(person), nil
}

func (p passwordUsers) Lookup(ctx context.Context, subject string) (User, error) {
	person, err := p.src.Lookup(ctx, subject)
	if err != nil {
		return User{}, fmt.Errorf("%w: %w", ErrUnknownUser, err)
	}
	return userOf(person), nil
}

func userOf(p identity.Person) User {
	return User{Subject: p.Subject, Name: p.Name, Email: p.Email, Groups: slices.Clone(p.Groups)}
}

// humanSignIn tells whether people can sign in at all.
func (s *Server) humanSignIn() bool { return s.users != nil || s.sso != nil }

// errNoIdentitySource refuses an authorization request on a server where
// nobody can sign in.
const errNoIdentitySource = "No identity source is configured for people to sign in (identity.oidc or identity.users_file in the configuration); this server issues tokens to machine clients only."

// personOf is the person a grant acts for, as policy sees them now: a
// person who signed in at the identity provider (or whom its identity
// assertion grant named) with the groups recorded at sign-in (the provider
// cannot be asked again without them); a person
// of the password source as it knows them now (ErrUnknownUser once they
// are gone).
func (s *Server) personOf(ctx context.Context, sess *Session) (User, error) {
	switch sess.Via {
	case viaSSO:
		if s.sso == nil {
			return User{}, fmt.Errorf("%w: %q signed in by single sign-on, which is no longer configured", ErrUnknownUser, sess.Subject)
		}
		return User{Subject: sess.Subject, Groups: slices.Clone(sess.Groups)}, nil
	case viaAssertion:
		if s.cfg.Assertions == nil {
			return User{}, fmt.Errorf("%w: %q came with an identity assertion grant, which is no longer accepted", ErrUnknownUser, sess.Subject)
		}
		return User{Subject: sess.Subject, Groups: slices.Clone(sess.Groups)}, nil
	}
	if s.users == nil {
		return User{}, fmt.Errorf("%w: %q signed in with a password, and no password source is configured", ErrUnknownUser, sess.Subject)
	}
	return s.users.Lookup(ctx, sess.Subject)
}

// signInTooOld tells whether a person's sign-in that a grant began with
// (Session.AuthTime) is older than Config.MaxSignInAge, so no new token
// may come of it: refreshes renew the refresh token's lifetime, and
// without this bound a person removed at the identity provider, or moved
// out of a group, would keep their agents' access for ever. A grant with
// no recorded sign-in time counts as too old (it cannot be shown to be
// young enough). Machine grants (no subject) have no sign-in.
func (s *Server) signInTooOld(sess *Session) bool {
	if sess.Subject == "" {
		return false
	}
	return sess.AuthTime.IsZero() || s.now().Sub(sess.AuthTime) > s.cfg.MaxSignInAge
}

// errSignInTooOld refuses a token whose person's sign-in is older than
// Config.MaxSignInAge.
func errSignInTooOld() *fosite.RFC6749Error {
	return fosite.ErrInvalidGrant.WithHint("The person's sign-in is older than this server allows (asrv.max_sign_in_age); sign in again.")
}

// ErrInvalidSubject is a subject no grant can have (RevokeSubject).
var ErrInvalidSubject = errors.New("invalid subject")

// RevokeSubject ends everything acting for the person subject: every
// authorization code, access token (delegated ones included) and refresh
// family whose sub is theirs (TokenStore.RevokeSubject). A refresh, code
// redemption or exchange of one of their grants that is under way is
// refused too, for as long as any token of a grant begun before could
// still be issued; the person can sign in again at once. The caller
// audits it.
func (s *Server) RevokeSubject(ctx context.Context, subject string) (SubjectRevocation, error) {
	if !validStoreID(subject) {
		return SubjectRevocation{}, fmt.Errorf("%w: empty or longer than %d bytes", ErrInvalidSubject, MaxStoreIDLen)
	}
	until := s.now().Add(max(s.cfg.RefreshTokenTTL, s.cfg.AccessTokenTTL, s.cfg.AuthCodeTTL))
	r, err := s.store.RevokeSubject(ctx, subject, until)
	if err != nil {
		return r, fmt.Errorf("revoke everything acting for %q: %w", subject, err)
	}
	s.log.InfoContext(ctx, "everything acting for a person revoked", "sub", subject,
		"access_tokens", r.AccessTokens, "refresh_tokens", r.RefreshTokens, "authorization_codes", r.Codes)
	return r, nil
}
