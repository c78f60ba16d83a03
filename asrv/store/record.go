// Package store holds what the token-store backends share: the record a
// store keeps of a fosite request (never a raw token or credential) and the
// bounds on what it keys by. The backends are its subpackages, each its own
// package so that a binary links only the drivers it opens: store/badger
// (embedded, the default) and store/postgres (shared by replicas). The
// interface they implement is asrv.Store, and asrv/storetest is the
// contract suite every one of them passes.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
)

// RecordVersion is the version of the Record encoding.
const RecordVersion = 1

// ValidSignature tells whether sig may be a token signature a store keys
// by (asrv.MaxStoreSignatureLen).
func ValidSignature(sig string) bool { return sig != "" && len(sig) <= asrv.MaxStoreSignatureLen }

// ValidID tells whether id may be a client or request id a store keys by
// (asrv.MaxStoreIDLen).
func ValidID(id string) bool { return id != "" && len(id) <= asrv.MaxStoreIDLen }

// Record is what a store keeps of a fosite.Requester: never a raw
// token or credential, only the request's identity, scopes, audience, the
// allow-listed form parameters and the session.
type Record struct {
	Version           int           `json:"v"`
	ID                string        `json:"id"`
	RequestedAt       time.Time     `json:"requested_at"`
	ClientID          string        `json:"client_id"`
	RequestedScope    []string      `json:"requested_scope,omitempty"`
	GrantedScope      []string      `json:"granted_scope,omitempty"`
	RequestedAudience []string      `json:"requested_audience,omitempty"`
	GrantedAudience   []string      `json:"granted_audience,omitempty"`
	Form              url.Values    `json:"form,omitempty"`
	Session           *asrv.Session `json:"session,omitempty"`
	// Inactive marks an invalidated authorization code or a rotated/revoked
	// refresh token, kept so reuse is detected.
	Inactive bool `json:"inactive,omitempty"`
	// RotatedAt is, for an inactive refresh token, when it was rotated;
	// zero once its family is revoked (or for one rotated before the
	// rotation grace period existed). The grace period runs from it.
	RotatedAt time.Time `json:"rotated_at,omitzero"`
	// AccessSignature is, for a refresh token, the signature of the access
	// token issued with it.
	AccessSignature string `json:"access_signature,omitempty"`
	// Ancestors are, for a delegated access token, the request ids of the
	// grants it descends from (its subject token's, that one's subject
	// token's, …), and Actors the clients of those tokens: revoking any of
	// those grants, or deleting any of those clients, removes it.
	Ancestors []string `json:"ancestors,omitempty"`
	Actors    []string `json:"actors,omitempty"`
}

// Endable tells whether revoking the refresh token r is a change: it is
// still active, or rotated with a grace period its revocation takes away.
func (r *Record) Endable() bool { return !r.Inactive || !r.RotatedAt.IsZero() }

// InRotationGrace tells whether a refresh token rotated at rotatedAt (zero:
// not rotated, or its family revoked) may still be presented at now, under
// a rotation grace period of grace (asrv.TokenStore's
// RotateRefreshTokenWithin).
func InRotationGrace(rotatedAt, now time.Time, grace time.Duration) bool {
	return grace > 0 && !rotatedAt.IsZero() && now.Sub(rotatedAt) < grace
}

// MaxChainLinks bounds Ancestors and Actors whatever the caller's chain
// limit: each is an index entry and a check.
const MaxChainLinks = 16

// DelegatedFrom sets rec's chain links from the subject token's record:
// the subject's grant and client, and everything the subject descends
// from.
func (rec *Record) DelegatedFrom(subject *Record) error {
	rec.Ancestors = appendLink(slices.Clone(subject.Ancestors), subject.ID)
	rec.Actors = appendLink(slices.Clone(subject.Actors), subject.ClientID)
	if len(rec.Ancestors) > MaxChainLinks || len(rec.Actors) > MaxChainLinks {
		return errors.New("delegation chain too long")
	}
	return nil
}

func appendLink(links []string, id string) []string {
	if slices.Contains(links, id) {
		return links
	}
	return append(links, id)
}

// persistedFormKeys are the only request form parameters the store keeps:
// the ones fosite's handlers read back from a stored request (redirect_uri
// for the code exchange, code_challenge{,_method} for PKCE, prompt/max_age/
// nonce for OpenID Connect) plus non-secret descriptive ones. Everything
// else — client_secret, code_verifier, password, assertion,
// client_assertion, refresh_token, code, subject_token, actor_token, any
// unknown parameter — is dropped.
var persistedFormKeys = map[string]bool{
	"grant_type":            true,
	"response_type":         true,
	"response_mode":         true,
	"client_id":             true,
	"redirect_uri":          true,
	"scope":                 true,
	"audience":              true,
	"resource":              true,
	"state":                 true,
	"nonce":                 true,
	"prompt":                true,
	"max_age":               true,
	"acr_values":            true,
	"code_challenge":        true,
	"code_challenge_method": true,
	"requested_token_type":  true,
	"subject_token_type":    true,
	"actor_token_type":      true,
}

// persistableForm returns a copy of form holding only persistedFormKeys; never
// nil.
func persistableForm(form url.Values) url.Values {
	out := url.Values{}
	for k, v := range form {
		if persistedFormKeys[k] {
			out[k] = slices.Clone(v)
		}
	}
	return out
}

// NewRecord captures req for storage. The session must be an
// *asrv.Session (or nil).
func NewRecord(req fosite.Requester) (*Record, error) {
	if req == nil {
		return nil, errors.New("nil request")
	}
	client := req.GetClient()
	if client == nil || !ValidID(client.GetID()) {
		return nil, errors.New("request has no valid client")
	}
	id := req.GetID()
	if !ValidID(id) {
		return nil, errors.New("request has no valid id")
	}
	var sess *asrv.Session
	switch s := req.GetSession().(type) {
	case nil:
	case *asrv.Session:
		if s != nil {
			sess = s.Clone().(*asrv.Session)
		}
	default:
		return nil, fmt.Errorf("unsupported session type %T (want *asrv.Session)", s)
	}
	return &Record{
		Version:           RecordVersion,
		ID:                id,
		RequestedAt:       req.GetRequestedAt().UTC(),
		ClientID:          client.GetID(),
		RequestedScope:    slices.Clone([]string(req.GetRequestedScopes())),
		GrantedScope:      slices.Clone([]string(req.GetGrantedScopes())),
		RequestedAudience: slices.Clone([]string(req.GetRequestedAudience())),
		GrantedAudience:   slices.Clone([]string(req.GetGrantedAudience())),
		Form:              persistableForm(req.GetRequestForm()),
		Session:           sess,
	}, nil
}

// DecodeRecord parses a stored value. The bytes come from the
// database and are treated as untrusted: malformed input yields an error,
// never a panic, and the form is filtered through the allow-list again.
func DecodeRecord(b []byte) (*Record, error) {
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode stored request: %w", err)
	}
	if rec.Version != RecordVersion {
		return nil, fmt.Errorf("decode stored request: unsupported version %d", rec.Version)
	}
	if !ValidID(rec.ID) {
		return nil, errors.New("decode stored request: missing or invalid request id")
	}
	if !ValidID(rec.ClientID) {
		return nil, errors.New("decode stored request: missing or invalid client id")
	}
	rec.Form = persistableForm(rec.Form)
	if len(rec.Ancestors) > MaxChainLinks || len(rec.Actors) > MaxChainLinks {
		return nil, errors.New("decode stored request: delegation chain too long")
	}
	for _, id := range slices.Concat(rec.Ancestors, rec.Actors) {
		if !ValidID(id) {
			return nil, errors.New("decode stored request: invalid delegation link")
		}
	}
	if rec.Session == nil {
		rec.Session = &asrv.Session{}
	}
	return &rec, nil
}

// Request rebuilds the fosite request around client. Every call returns
// fresh values the caller may modify.
func (rec *Record) Request(client *asrv.Client) *fosite.Request {
	sess := &asrv.Session{}
	if rec.Session != nil {
		sess = rec.Session.Clone().(*asrv.Session)
	}
	return &fosite.Request{
		ID:                rec.ID,
		RequestedAt:       rec.RequestedAt,
		Client:            client,
		RequestedScope:    fosite.Arguments(slices.Clone(rec.RequestedScope)),
		GrantedScope:      fosite.Arguments(slices.Clone(rec.GrantedScope)),
		RequestedAudience: fosite.Arguments(slices.Clone(rec.RequestedAudience)),
		GrantedAudience:   fosite.Arguments(slices.Clone(rec.GrantedAudience)),
		Form:              persistableForm(rec.Form),
		Session:           sess,
	}
}
