// Package identity owns where people come from: the organisation's OpenID
// Connect provider (identity/idp) and a local users file for installs
// without one (identity/usersfile). The authorization server signs people
// in through the two interfaces here, PasswordSource and RedirectSource,
// and never learns which directory stands behind them.
package identity

import (
	"context"
	"errors"
	"net/url"
	"time"
)

// Person is a human an agent acts for, as a source vouches for them at
// sign-in.
type Person struct {
	// Subject is the stable identifier policy, delegation and the audit
	// trail use: the IdP's subject claim, or the users file's name.
	Subject string
	// Name is for people to read (pages, audit); Email may be empty.
	Name, Email string
	// Groups are the groups the source puts the person in; policy data
	// turns them into roles (data.identity.group_roles).
	Groups []string
}

// Errors of the sources, for callers to branch on. A source wraps them with
// the detail for the logs; a page shows only its own short text.
var (
	// ErrBadCredentials: the name is unknown or the password wrong (never
	// which of the two).
	ErrBadCredentials = errors.New("unknown user or wrong password")
	// ErrUnknownPerson: no person has this subject (any more).
	ErrUnknownPerson = errors.New("unknown person")
	// ErrUnavailable: the identity provider could not be reached or
	// answered with a server error; trying again later may work.
	ErrUnavailable = errors.New("the identity provider is unavailable")
	// ErrRefused: the identity provider did not sign the person in (they
	// cancelled, or it refused the code).
	ErrRefused = errors.New("the identity provider did not sign the person in")
	// ErrInvalidToken: a token said to come from the identity provider
	// fails a check (issuer, audience, signature, expiry, nonce, claims).
	ErrInvalidToken = errors.New("the identity token is not valid")
	// ErrReplayed: a single-use token or state was used before.
	ErrReplayed = errors.New("the token was used before")
)

// PasswordSource signs people in with a name and a password.
type PasswordSource interface {
	// Authenticate returns the person for the credentials, or an error
	// wrapping ErrBadCredentials; it takes the same time for an unknown
	// name as for a wrong password.
	Authenticate(ctx context.Context, username, password string) (Person, error)
	// Lookup returns the person with this subject as the source knows them
	// now, or an error wrapping ErrUnknownPerson.
	Lookup(ctx context.Context, subject string) (Person, error)
}

// RedirectSource signs people in at another server the browser is sent to
// (single sign-on). The caller keeps the Pending state of every sign-in it
// starts, bound to the browser and the request it serves, and hands it
// back, once, with the callback's query.
type RedirectSource interface {
	// Label names the identity provider on the sign-in page.
	Label() string
	// Start begins a sign-in: where to send the browser, and the state to
	// keep until the callback. An unreachable provider is ErrUnavailable.
	Start(ctx context.Context) (Redirect, error)
	// Finish completes the sign-in the callback query answers. Errors wrap
	// ErrUnavailable, ErrRefused or ErrInvalidToken.
	Finish(ctx context.Context, p Pending, callback url.Values) (Person, error)
}

// Redirect is a started sign-in.
type Redirect struct {
	// URL is the identity provider's authorization request.
	URL     string
	Pending Pending
}

// Pending is the secret state of a started sign-in: the OAuth state, the
// OpenID nonce and the PKCE verifier.
type Pending struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
}

// Spender records that a single-use value (an ID-JAG's jti, a sign-in
// state) was used, until exp: fresh is false when it already was. The
// authorization server spends in its token store, so replicas agree.
type Spender interface {
	Spend(ctx context.Context, id string, exp time.Time) (fresh bool, err error)
}

// ErrInvalidAssertion: an identity assertion grant (ID-JAG) fails a check
// (type, signature, issuer, audience, client, resource, time, replay); the
// token endpoint answers invalid_grant.
var ErrInvalidAssertion = errors.New("the identity assertion grant is not valid")

// AssertionGrant is a verified identity assertion authorization grant
// (ID-JAG; MCP's enterprise-managed authorization): the organisation's
// provider lets ClientID act for Person at Resources.
type AssertionGrant struct {
	// Person is who the agent acts for, mapped as at sign-in.
	Person Person
	// ClientID is the client the grant was issued to.
	ClientID string
	// Resources are the RFC 8707 resources the grant is for.
	Resources []string
	// Scopes the provider allowed; nil when it did not say.
	Scopes []string
	// JTI, IssuedAt and Expiry identify the grant for the audit trail.
	JTI              string
	IssuedAt, Expiry time.Time
}

// AssertionIssuer is an identity provider whose identity assertion grants
// an authorization server accepts at its token endpoint (RFC 7523
// jwt-bearer).
type AssertionIssuer interface {
	// VerifyAssertion checks an ID-JAG the authenticated client clientID
	// presented to the authorization server serving resources, and spends
	// its jti in spend (once, until it expires). Errors wrap
	// ErrInvalidAssertion (and ErrReplayed for a replay), ErrUnavailable
	// when the provider's keys cannot be had, or are the spender's.
	VerifyAssertion(ctx context.Context, assertion, clientID string, resources []string, spend Spender) (AssertionGrant, error)
}
