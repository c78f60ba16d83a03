package asrv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/contract"
)

// Introspection is the state of an access token as the gateway needs it:
// contract.Identity, so that the gateway reads it without importing the
// authorization server. An inactive token carries the reasons, for the
// audit record; they are not sent to RFC 7662 callers.
type Introspection = contract.Identity

var _ contract.Introspector = (*Server)(nil)

func inactive(reasons ...string) Introspection {
	return Introspection{Reasons: reasons}
}

// Introspect checks an access token for the protected resource (empty:
// any): the token must exist, match its MAC, be unexpired and bound to the
// resource, and pbac/introspect must allow it under current policy data. A
// single-use token (made so at issuance, or by policy now) is consumed by
// its first successful introspection; of concurrent introspections exactly
// one succeeds. Errors are reserved for a failing store or a decision
// policy could not make (ErrUndecided); callers deny on them too.
func (s *Server) Introspect(ctx context.Context, token, resource string) (Introspection, error) {
	req, err := s.viewActiveAccessToken(ctx, token)
	if err != nil {
		if errors.Is(err, errNotActive) {
			return inactive("token is unknown, expired or revoked"), nil
		}
		return Introspection{}, err
	}
	out, singleUse, err := s.inspect(ctx, req, resource)
	if err != nil || !out.Active {
		return out, err
	}
	if singleUse {
		sig := s.strategy.AccessTokenSignature(ctx, token)
		if _, err := s.store.ConsumeAccessToken(ctx, sig); err != nil {
			if errors.Is(err, ErrConsumed) || errors.Is(err, fosite.ErrNotFound) {
				return inactive("single-use token was already used"), nil
			}
			return Introspection{}, err
		}
		out.Consumed = true
	}
	return out, nil
}

// inspect decides whether a stored access token is active for resource
// (empty: any) under current policy, without using it: singleUse tells
// whether a use must consume it. The request is only read.
func (s *Server) inspect(ctx context.Context, req fosite.Requester, resource string) (out Introspection, singleUse bool, err error) {
	// Checked before policy and before a single-use token is consumed: a
	// token shown at the wrong resource must not be spent there.
	if resource != "" && !audienceCovers(req.GetGrantedAudience(), resource) {
		return inactive("token was not issued for this resource"), false, nil
	}
	client, ok := req.GetClient().(*Client)
	if !ok {
		return inactive("token client is unknown"), false, nil
	}
	if client.Rejected() {
		return inactive(ClientRejectedReason), false, nil
	}
	sess, ok := req.GetSession().(*Session)
	if !ok {
		return inactive("token session is unreadable"), false, nil
	}
	if reason, err := s.delegationRejected(ctx, sess.Act); err != nil || reason != "" {
		return inactive(reason), false, err
	}
	seen := s.clientAsSeen(client)
	in := contract.Input{
		Client:  seen.PolicyClient(),
		Token:   tokenInput(req, sess),
		Request: contract.Request{Resource: []string(req.GetGrantedAudience())},
	}
	var roles, groups []string
	if sess.Subject != "" {
		u, err := s.personOf(ctx, sess)
		if err != nil {
			return inactive("token user no longer exists"), false, nil
		}
		in.Subject = subjectInput(&u)
		roles, groups = u.Roles, u.Groups
	}
	d, err := s.decide(ctx, contract.Introspect, in, nil)
	if err != nil {
		return Introspection{}, false, err
	}
	id, err := s.introspected.decode(d.Result)
	if err != nil {
		return inactive("policy result is malformed"), false, nil
	}
	if !d.Allow {
		return inactive(d.Reasons...), false, nil
	}
	return Introspection{
		Active:   true,
		Reasons:  d.Reasons,
		Scopes:   id.Scopes,
		ClientID: client.ID,
		Subject:  sess.Subject,
		Roles:    roles,
		Groups:   groups,
		// Copies: req may share the store's cached record.
		Audience:    slices.Clone([]string(req.GetGrantedAudience())),
		IssuedAt:    in.Token.Iat,
		ExpiresAt:   in.Token.Exp,
		Act:         sess.Act.Clone(),
		Tier:        id.Tier,
		Agent:       seen.Agent,
		Attestation: seen.PolicyAttestation(),
	}, id.JITSingleUse || sess.SingleUse, nil
}

// delegationRejected is the reason a delegated token is no longer active
// because an operator rejected a client of its delegation chain (act: the
// agents that delegated, nearest first), or "". Rejecting a client ends the
// tokens it obtained by exchange for others too, not only its own. The
// chain is at most maxChainDepth links (exchange refuses deeper ones); a
// client that no longer exists is not a rejection (its own tokens were
// ended with it). A failing store is an error: the caller denies.
func (s *Server) delegationRejected(ctx context.Context, act *Actor) (string, error) {
	if act.Depth() > maxChainDepth {
		return "delegation chain is longer than this server issues", nil
	}
	for a := act; a != nil; a = a.Act {
		cl, err := s.store.Client(ctx, a.Sub)
		switch {
		case errors.Is(err, fosite.ErrNotFound):
			continue
		case err != nil:
			return "", fmt.Errorf("introspect: read delegating client %q: %w", a.Sub, err)
		}
		if cl.Rejected() {
			return "a client that delegated this token (" + a.Sub + ") was rejected by an operator", nil
		}
	}
	return "", nil
}

// viewActiveAccessToken is activeAccessToken for introspection, which only
// reads the request: from a store that can show it without a copy, it does.
func (s *Server) viewActiveAccessToken(ctx context.Context, token string) (fosite.Requester, error) {
	v, ok := s.store.(AccessTokenViewer)
	if !ok {
		return s.activeAccessToken(ctx, token)
	}
	return s.checkedAccessToken(ctx, token, v.ViewAccessToken)
}

// audienceCovers reports whether a token with this audience may be used at
// resource: the resource is in it, or lies under one of its resources (a
// token for https://gw/mcp is good at https://gw/mcp/jira).
func audienceCovers(aud []string, resource string) bool {
	for _, a := range aud {
		if a == resource || strings.HasPrefix(resource, strings.TrimSuffix(a, "/")+"/") {
			return true
		}
	}
	return false
}

// serveIntrospect is RFC 7662: only an authenticated confidential client on
// the Introspectors list (a resource server) may ask; any other is refused
// before the token is even read.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, fosite.ErrInvalidRequest.WithHint("The request body could not be parsed."))
		return
	}
	caller, err := s.fosite().AuthenticateClient(ctx, r, r.PostForm)
	if err != nil || caller.IsPublic() {
		w.Header().Set("WWW-Authenticate", `Basic realm="pbac"`)
		writeOAuthError(w, fosite.ErrInvalidClient.WithHint("Introspection requires client authentication."))
		return
	}
	if !s.mayIntrospect(caller.GetID()) {
		s.log.WarnContext(ctx, "introspection refused: client is not an allowed introspector", "caller", caller.GetID())
		writeOAuthError(w, errIntrospectionForbidden)
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		writeOAuthError(w, fosite.ErrInvalidRequest.WithHint("The token parameter is missing."))
		return
	}
	if hint := r.PostForm.Get("token_type_hint"); hint != "" && hint != "access_token" {
		// Refresh tokens are never shown to resource servers.
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	res, err := s.Introspect(ctx, token, r.PostForm.Get("resource"))
	if err != nil {
		s.log.ErrorContext(ctx, "introspection failed", "err", err)
		writeOAuthError(w, policyError(err))
		return
	}
	s.log.InfoContext(ctx, "introspection", "caller", caller.GetID(), "active", res.Active,
		"client_id", res.ClientID, "reasons", res.Reasons)
	writeJSON(w, http.StatusOK, rfc7662(res))
}

// errIntrospectionForbidden answers an authenticated client that is not
// an allowed introspector.
var errIntrospectionForbidden = &fosite.RFC6749Error{
	ErrorField:       "unauthorized_client",
	DescriptionField: "This client may not use the introspection endpoint.",
	CodeField:        http.StatusForbidden,
}

func rfc7662(i Introspection) map[string]any {
	if !i.Active {
		return map[string]any{"active": false}
	}
	m := map[string]any{
		"active":     true,
		"scope":      strings.Join(i.Scopes, " "),
		"client_id":  i.ClientID,
		"token_type": "Bearer",
		"exp":        i.ExpiresAt,
		"iat":        i.IssuedAt,
		"aud":        i.Audience,
	}
	if i.Subject != "" {
		m["sub"] = i.Subject
	}
	if i.Act != nil {
		m["act"] = i.Act
	}
	if i.Tier != "" {
		m["pbac_tier"] = i.Tier
	}
	// What a remote gateway needs for its own policy decision: the agent's
	// verified claims and the human's roles.
	m["pbac_agent"] = i.Agent
	if i.Attestation != nil {
		m["pbac_attestation"] = i.Attestation
	}
	if len(i.Roles) > 0 {
		m["pbac_roles"] = i.Roles
	}
	if len(i.Groups) > 0 {
		m["pbac_groups"] = i.Groups
	}
	return m
}

func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	err := s.provider.NewRevocationRequest(ctx, r)
	e := Event{Kind: EventRevocation, Action: "revoke", ClientID: requestClientID(r), Remote: remoteHost(r),
		Allowed: true, Status: http.StatusOK, Reason: "revocation accepted: the token, if it was one of this client's, is revoked"}
	if hint := r.PostForm.Get("token_type_hint"); hint != "" {
		e.Reason += " (" + hint + ")"
	}
	if err != nil {
		s.log.InfoContext(ctx, "revocation rejected", "client_id", e.ClientID, "reason", refusalReason(err))
		e.refusal(err)
	}
	s.event(ctx, e)
	s.provider.WriteRevocationResponse(ctx, w, err)
}

// resultDecoder decodes pbac/introspect results and remembers them by
// their bytes: every call of a token gets the same result (policy
// remembers the decision, see plugins), and the decoding is a function of
// the bytes alone. At most resultDecoderEntries results of at most
// resultDecoderMax bytes are kept; when full it forgets them all.
type resultDecoder struct {
	mu      sync.Mutex
	decoded map[string]contract.IntrospectResult
}

const (
	resultDecoderEntries = 1024
	resultDecoderMax     = 16 << 10
)

// decode returns raw decoded (an empty result for no bytes); the caller
// owns what it gets.
func (c *resultDecoder) decode(raw []byte) (contract.IntrospectResult, error) {
	var r contract.IntrospectResult
	if len(raw) == 0 {
		return r, nil
	}
	c.mu.Lock()
	r, ok := c.decoded[string(raw)]
	c.mu.Unlock()
	if ok {
		r.Scopes = slices.Clone(r.Scopes)
		return r, nil
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return contract.IntrospectResult{}, fmt.Errorf("decode the introspect result: %w", err)
	}
	if len(raw) <= resultDecoderMax {
		kept := r
		kept.Scopes = slices.Clone(r.Scopes)
		c.mu.Lock()
		if c.decoded == nil || len(c.decoded) >= resultDecoderEntries {
			c.decoded = make(map[string]contract.IntrospectResult)
		}
		c.decoded[string(raw)] = kept
		c.mu.Unlock()
	}
	return r, nil
}
