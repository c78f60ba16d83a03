// Package cimd resolves OAuth Client ID Metadata Documents
// (draft-ietf-oauth-client-id-metadata-document, "the draft"; adopted by
// the MCP authorization spec of 2026-07-28 through SEP-991): a client whose
// client_id is an https URL publishes its metadata at that URL, and the
// authorization server fetches it instead of looking the client up in a
// registry.
//
// Everything here treats the URL and the document as hostile input: a
// Resolver fetches over HTTPS only, never follows a redirect, reads at most
// a few kilobytes within a time limit, dials no special-purpose address
// (RFC 6890) unless configured to, checks the address it actually dials (so
// a DNS answer that changes between check and use changes nothing), and
// validates the document before anything of it is used or cached. Operators
// without outbound access pin documents instead (Config.Pinned,
// LoadPinnedDir) and turn fetching off.
//
// An AssertionVerifier authenticates a document's private_key_jwt client
// (RFC 7523) with the keys of its jwks or jwks_uri, the latter fetched by
// the same Resolver.
//
// The package knows nothing of the authorization server that uses it: it
// returns validated documents and sentinel errors to branch on.
package cimd

import (
	"errors"
	"fmt"
)

// Errors callers branch on. Every error a Resolver or AssertionVerifier
// returns wraps exactly one of them, with the detail for logs; a client
// should be told no more than the sentinel's meaning.
var (
	// ErrInvalidClientID means the client_id looks like a URL (http:// or
	// https://) but breaks the draft's rules for a client identifier URL.
	ErrInvalidClientID = errors.New("cimd: invalid client id URL")
	// ErrNotAllowed means the document may not be fetched: fetching is off
	// and no document is pinned for it, or the URL's host resolves to an
	// address that is not allowed.
	ErrNotAllowed = errors.New("cimd: fetching this client's metadata is not allowed")
	// ErrNotPinned means fetching is off and no document is pinned for the
	// client id (air-gapped); it wraps ErrNotAllowed.
	ErrNotPinned = fmt.Errorf("%w: fetching is off and no document is pinned", ErrNotAllowed)
	// ErrFetch means the fetch failed: network error, time limit, a status
	// other than 200 (a redirect included), a body too large, the wrong
	// content type.
	ErrFetch = errors.New("cimd: fetching the client's metadata failed")
	// ErrInvalidDocument means the document (or a key set) was fetched but
	// is not acceptable: not JSON, a mismatched client_id, a missing
	// required field, a forbidden one.
	ErrInvalidDocument = errors.New("cimd: invalid client metadata document")
	// ErrInvalidAssertion means a client assertion does not authenticate
	// the client.
	ErrInvalidAssertion = errors.New("cimd: invalid client assertion")
	// ErrReplayed means a client assertion's jti was already used; it
	// wraps ErrInvalidAssertion.
	ErrReplayed = errors.Join(ErrInvalidAssertion, errors.New("cimd: client assertion already used"))
	// ErrClosed means the Resolver was closed.
	ErrClosed = errors.New("cimd: resolver closed")
)
