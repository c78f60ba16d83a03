package admin

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pbac-gateway/pbac/audit"
)

// Revoking everything acting for a person: POST /admin/people/{sub}/revoke
// with a JSON body ({} or {"reason": "…"}) ends every code, access token
// (delegated ones included) and refresh family whose sub is that person,
// on the authorization server's store, and writes one audit record.

// PersonRevocation counts what revoking a person ended (the AS's
// asrv.SubjectRevocation, as the admin API shows it).
type PersonRevocation struct {
	AccessTokens  int `json:"access_tokens"`
	RefreshTokens int `json:"refresh_tokens"`
	Codes         int `json:"authorization_codes"`
}

// Audit record fields of a person's revocation.
const (
	// MethodRevokePerson is the audit record's method.
	MethodRevokePerson = "admin/revoke-person"
	// MethodRevokeClient is the audit record's method of a client's
	// revocation.
	MethodRevokeClient = "admin/revoke-client"
	// OperatorClientID is the audit record's client: an operator, not an
	// agent.
	OperatorClientID = "(operator)"
	// maxRevokeReason bounds the reason an operator gives.
	maxRevokeReason = 500
	maxRevokeBody   = 4 << 10
)

// ErrBadSubject is a subject no grant can have (empty or too long).
var ErrBadSubject = errors.New("the subject is empty or too long")

// RevokePersonRecord is the audit record of a person's revocation by
// operator ("admin API", or the dashboard's signed-in operator), for the
// reason they gave.
func RevokePersonRecord(sub, operator, reason string, r PersonRevocation) audit.Record {
	reasons := []string{fmt.Sprintf("everything acting for %s revoked by %s: %d access tokens (delegated ones included), %d refresh token families, %d authorization codes",
		sub, operator, r.AccessTokens, r.RefreshTokens, r.Codes)}
	if reason != "" {
		reasons = append(reasons, "reason: "+reason)
	}
	return audit.Record{Event: audit.EventRevocation, Time: time.Now().UTC(), RequestID: rand.Text(), ClientID: OperatorClientID, Subject: sub,
		Method: MethodRevokePerson, Decision: audit.DecisionAllow, Status: http.StatusOK, Reasons: reasons}
}

// RevokeClientRecord is the audit record of the revocation of client id
// (deleted with its tokens) by operator: the client is the revoked one,
// sub the operator, as for a review.
func RevokeClientRecord(id, operator string) audit.Record {
	return audit.Record{Event: audit.EventRevocation, Time: time.Now().UTC(), RequestID: rand.Text(), ClientID: id, Subject: operator,
		Method: MethodRevokeClient, Decision: audit.DecisionAllow, Status: http.StatusNoContent,
		Reasons: []string{fmt.Sprintf("client %s revoked by %s: deleted with its tokens", id, operator)}}
}

// RevokeReason reads the optional reason of a revocation request body (a
// JSON object, possibly empty): at most 500 characters of valid UTF-8, on
// one line.
func RevokeReason(body io.Reader) (string, error) {
	var in struct {
		Reason string `json:"reason"`
	}
	dec := json.NewDecoder(io.LimitReader(body, maxRevokeBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("the body must be a JSON object, {} or {\"reason\": \"…\"}: %w", err)
	}
	in.Reason = strings.TrimSpace(in.Reason)
	if utf8.RuneCountInString(in.Reason) > maxRevokeReason || strings.ContainsAny(in.Reason, "\r\n") {
		return "", fmt.Errorf("reason: at most %d characters on one line", maxRevokeReason)
	}
	return in.Reason, nil
}

// revokePerson serves POST /admin/people/{sub}/revoke: 200 with what was
// ended (zero counts for a person with nothing live), 400 for a bad body
// or subject, 404 without an authorization server's store here.
func (a *api) revokePerson(w http.ResponseWriter, r *http.Request) {
	if a.cfg.RevokePerson == nil {
		adminJSON(w, http.StatusNotFound, map[string]string{"error": "people are managed by the authorization server, which does not run here"})
		return
	}
	sub := r.PathValue("sub")
	reason, err := RevokeReason(r.Body)
	if err != nil {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	got, err := a.cfg.RevokePerson(r, sub)
	if errors.Is(err, ErrBadSubject) {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if err != nil {
		a.cfg.Logger.Error("admin: revoking a person failed", "sub", sub, "err", err)
		adminJSON(w, http.StatusInternalServerError, map[string]string{"error": "the revocation failed; see the server's log"})
		return
	}
	if a.cfg.Audit != nil {
		a.cfg.Audit.Record(RevokePersonRecord(sub, "the admin API", reason, got))
	}
	a.cfg.Logger.Info("admin: everything acting for a person revoked", "sub", sub, "reason", reason,
		"access_tokens", got.AccessTokens, "refresh_tokens", got.RefreshTokens, "authorization_codes", got.Codes)
	adminJSON(w, http.StatusOK, map[string]any{"sub": sub, "revoked": got})
}
