package asrv

import (
	"context"
	"errors"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/pkce"
)

// Store errors callers branch on. Token lookups also return fosite's own
// sentinels (fosite.ErrNotFound, fosite.ErrInactiveToken) where fosite's
// handlers expect them.
var (
	// ErrClientExists means a client with that id is already registered.
	ErrClientExists = errors.New("client already registered")
	// ErrConsumed means a single-use token was already used.
	ErrConsumed = errors.New("token already used")
	// ErrSubjectRevoked means a code or token was refused because
	// everything acting for its person was revoked after its grant began
	// (TokenStore.RevokeSubject).
	ErrSubjectRevoked = errors.New("everything acting for this person was revoked")
)

// Bounds on what a Store keys by: a Store treats an empty or longer
// signature or id as unknown (or refuses to store it), and the AS refuses
// to be configured with one.
const (
	// MaxStoreSignatureLen bounds token signatures. fosite's HMAC
	// signatures are 43 characters; anything much longer is not ours.
	MaxStoreSignatureLen = 512
	// MaxStoreIDLen bounds client and request ids.
	MaxStoreIDLen = 1024
)

func validStoreID(id string) bool { return id != "" && len(id) <= MaxStoreIDLen }

// ClientStore persists registered clients.
//
// An unverified client (no trusted software statement) is pending from its
// registration until the first code or token is issued to it: anybody can
// register one, so pending clients are counted apart and expire
// (DeletePendingClients). Clients stored before pending was tracked never
// are.
type ClientStore interface {
	fosite.ClientManager
	// CreateClient registers c; ErrClientExists if the id is taken. An
	// unverified c is pending, since c.CreatedAt.
	CreateClient(ctx context.Context, c *Client) error
	// CountClients counts the registered clients, and of them the pending
	// ones.
	CountClients(ctx context.Context) (total, pending int, err error)
	// DeletePendingClients deletes the clients still pending that were
	// registered before the cutoff, and returns how many. A client that
	// gets its first code or token meanwhile is not deleted.
	DeletePendingClients(ctx context.Context, registeredBefore time.Time) (int, error)
	// Client returns the registered client, or fosite.ErrNotFound.
	Client(ctx context.Context, id string) (*Client, error)
	// DeleteClient removes a client and every token issued to it.
	DeleteClient(ctx context.Context, id string) error
	// Clients lists the registered clients, ordered by id.
	Clients(ctx context.Context) ([]*Client, error)
	// UpdateClient changes the stored client id in one read-modify-write
	// transaction: update gets the client as stored and changes it in
	// place; its ID cannot change. When update fails nothing is stored and
	// its error is returned wrapped. fosite.ErrNotFound when no such client
	// is registered. It returns the client as stored. A client the update
	// leaves approved by an operator (Review.Status ReviewApproved) is no
	// longer pending; a rejected one stays pending while it never obtained
	// a code or token, so it still expires (it never can obtain one).
	UpdateClient(ctx context.Context, id string, update func(*Client) error) (*Client, error)
	// PendingClients returns the ids of the pending clients (no code or
	// token yet) with their registration time.
	PendingClients(ctx context.Context) (map[string]time.Time, error)
}

// TokenStore persists codes and tokens by signature (never the raw value).
// Every write that issues, rotates, consumes or revokes a token is durable
// when it returns.
//
// Delegated tokens (RFC 8693) die with their chain: RevokeAccessToken and
// RevokeRefreshToken of a grant also delete every access token delegated
// from a token of that grant, at any depth, and DeleteClient also deletes
// every token delegated from a token of that client. Rotating a refresh
// token is not a revocation (the delegated tokens keep their own expiry,
// never later than their subject token's), nor is consuming a single-use
// token.
type TokenStore interface {
	oauth2.CoreStorage
	oauth2.TokenRevocationStorage
	pkce.PKCERequestStorage
	// ConsumeAccessToken deletes the access token with this signature and
	// returns its request, atomically: of any number of concurrent calls for
	// one token exactly one succeeds; the others get ErrConsumed (or
	// fosite.ErrNotFound once the deletion is visible).
	ConsumeAccessToken(ctx context.Context, signature string) (fosite.Requester, error)
	// CreateDelegatedAccessToken stores the access token of a token
	// exchange whose subject token has the signature subjectSig, linked to
	// the subject token's chain (see above). Atomically with the creation it
	// checks that the subject token is still stored and that every client
	// of the chain is still registered, and with consumeSubject deletes the
	// subject token (a single-use token is spent by the exchange): of
	// concurrent exchanges of one single-use subject exactly one succeeds.
	// A revocation or client deletion racing with it either makes it fail
	// or removes what it stored. When the subject is gone it stores nothing
	// and returns fosite.ErrNotFound or ErrConsumed.
	CreateDelegatedAccessToken(ctx context.Context, signature string, req fosite.Requester, subjectSig string, consumeSubject bool) error
	// RevokeSubject ends everything acting for one person (the
	// Session.Subject of a grant): it deletes their authorization codes,
	// PKCE requests and access tokens — delegated ones included, since a
	// token exchange keeps the person as the subject — and marks their
	// refresh tokens inactive (kept for reuse detection, as a revoked
	// family). From then until `until` it refuses (ErrSubjectRevoked) to
	// store a code or token for that person whose grant began
	// (Session.AuthTime; zero counts as before) no later than the
	// revocation: a refresh, code redemption or exchange already under way
	// cannot leave a token behind it. A person who signs in again
	// afterwards is not affected. It returns what it ended that was live.
	RevokeSubject(ctx context.Context, subject string, until time.Time) (SubjectRevocation, error)
	// GetRefreshTokenSessionWithin is GetRefreshTokenSession, except that
	// a refresh token rotated less than grace ago, by the store's clock,
	// and whose family was not revoked since, is returned without error:
	// the rotation grace period (Config.RefreshReuseGrace). grace <= 0 is
	// GetRefreshTokenSession.
	GetRefreshTokenSessionWithin(ctx context.Context, signature string, grace time.Duration) (fosite.Requester, error)
	// RotateRefreshTokenWithin is RotateRefreshToken, except that a refresh
	// token already rotated less than grace ago, and whose family was not
	// revoked since, is accepted again (judged atomically with any
	// concurrent rotation or revocation of it): it is left as it is, so
	// the window still runs from its first rotation, and no access token
	// is deleted, so the pairs issued within the window all stay valid.
	// grace <= 0 is RotateRefreshToken. Revoking the family
	// (RevokeRefreshToken, RevokeSubject) ends the window of every rotated
	// token of it.
	RotateRefreshTokenWithin(ctx context.Context, requestID, signature string, grace time.Duration) error
}

// SubjectRevocation counts what TokenStore.RevokeSubject ended.
type SubjectRevocation struct {
	// AccessTokens deleted, delegated ones included.
	AccessTokens int `json:"access_tokens"`
	// RefreshTokens made inactive (each ends its grant's family).
	RefreshTokens int `json:"refresh_tokens"`
	// Codes are the authorization codes deleted.
	Codes int `json:"authorization_codes"`
}

// SubjectRevokedAt tells whether a record of a grant that began at
// authTime, for a person whose tokens were revoked at revokedAt, is refused
// (TokenStore.RevokeSubject): a grant that began no later than the
// revocation is.
func SubjectRevokedAt(authTime, revokedAt time.Time) bool { return !authTime.After(revokedAt) }

// Store is everything the authorization server persists. The Badger store
// is the embedded default; a networked store implements the same interface
// for several replicas.
type Store interface {
	ClientStore
	TokenStore
	// Ping tells whether the store answers, cheaply: readiness probes call
	// it. A closed store fails.
	Ping(ctx context.Context) error
	// Close flushes and closes the store.
	Close() error
}

// AccessTokenViewer is what a Store may also do: show an access token's
// request for reading only, without the copy GetAccessTokenSession makes
// for callers that may change it. Introspection, which reads and keeps
// nothing, uses it when the store has it (the Badger store serves it from
// its read cache).
type AccessTokenViewer interface {
	// ViewAccessToken is GetAccessTokenSession for a caller that neither
	// modifies nor keeps the request.
	ViewAccessToken(ctx context.Context, sig string) (fosite.Requester, error)
}
