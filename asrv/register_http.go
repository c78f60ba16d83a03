package asrv

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/throttle"
)

// serveRegister is RFC 7591 dynamic client registration. A software
// statement, when present, must verify against a trusted issuer; its claims
// (never the client's own metadata) are what policy sees as the agent.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	addr := throttle.AddressKey(r.RemoteAddr)
	// refused records a refused registration; the request's statement, if
	// it had one, is what it presented to be vouched for.
	var req *RegistrationRequest
	refused := func(status int, code, reason string) {
		e := Event{Kind: EventRegistration, Action: "register", Error: code, Reason: reason, Status: status, Remote: remoteHost(r)}
		if req != nil && req.SoftwareStatement != "" {
			e.Attestation = contract.AttestationStatement
		}
		s.event(ctx, e)
	}
	if ok, wait := s.reg.perAddr.Allow(addr); !ok {
		s.log.WarnContext(ctx, "registration refused: rate limit of the address", "address", addr)
		refused(http.StatusTooManyRequests, "temporarily_unavailable", "too many registrations from this address")
		retryAfter(w, wait)
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "temporarily_unavailable",
			"error_description": "too many registrations from this address; try again later"})
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		re := &RegistrationError{Code: "invalid_client_metadata", Description: "the request body is too large or unreadable"}
		refused(http.StatusBadRequest, re.Code, re.Description)
		writeRegistrationError(w, re)
		return
	}
	req, err = ParseRegistration(body)
	if err != nil {
		s.log.InfoContext(ctx, "registration rejected", "reason", err.Error())
		re := registrationError(err)
		refused(http.StatusBadRequest, re.Code, re.Description)
		writeRegistrationError(w, re)
		return
	}
	client, secret, regToken, err := s.register(ctx, req, addr)
	if err != nil {
		var re *RegistrationError
		if errors.Is(err, ErrAddressPendingFull) {
			s.log.WarnContext(ctx, "registration refused", "reason", err.Error())
			refused(http.StatusTooManyRequests, "temporarily_unavailable", err.Error())
			retryAfter(w, time.Hour)
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "temporarily_unavailable",
				"error_description": "too many unverified registrations from this address have obtained no code or token yet; try again later"})
			return
		}
		if errors.Is(err, ErrRegistrationFull) {
			s.log.WarnContext(ctx, "registration refused", "reason", err.Error())
			refused(http.StatusServiceUnavailable, "temporarily_unavailable", err.Error())
			retryAfter(w, time.Hour)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable",
				"error_description": "the authorization server takes no more registrations now; try again later"})
			return
		}
		if !errors.As(err, &re) {
			s.log.ErrorContext(ctx, "register client", "err", err.Error())
			oe := policyError(err)
			s.event(ctx, *(&Event{Kind: EventRegistration, Action: "register", Remote: remoteHost(r)}).refusal(oe))
			writeOAuthError(w, oe)
			return
		}
		s.log.InfoContext(ctx, "registration rejected", "reason", err.Error())
		refused(http.StatusBadRequest, re.Code, re.Description)
		writeRegistrationError(w, err)
		return
	}
	s.log.InfoContext(ctx, "client registered", "client_id", client.ID, "verified", client.Agent.Verified,
		"provider", client.Agent.AgentProvider, "model", client.Agent.AgentModel)
	// Not its scopes: every client registers the scopes there are (a hint,
	// see Register), so they say nothing of this one.
	e := s.forClient(&Event{Kind: EventRegistration, Action: "register", Allowed: true, Status: http.StatusCreated,
		Remote: remoteHost(r)}, client)
	e.Reason = "registered unverified: no software statement; nothing vouches for it until an operator approves it or a person vouches for it"
	if client.Agent.Verified {
		e.Reason = "registered verified: software statement of issuer " + statementIssuerName(client.Agent)
	}
	s.event(ctx, *e)
	writeJSON(w, http.StatusCreated, RegistrationResponse(client, secret, regToken, s.url(PathRegister+"/"+client.ID)))
}

// Register registers a client as the registration endpoint does: the
// statement is verified, policy (pbac/register) must allow it, and it is
// stored, within the registration limits other than the per-address ones
// (it has no client address). The secret and registration token are
// returned once. A refusal is a *RegistrationError, or ErrRegistrationFull.
func (s *Server) Register(ctx context.Context, req *RegistrationRequest) (client *Client, secret, regToken string, err error) {
	return s.register(ctx, req, "")
}

// register is Register of a request from the address from
// (throttle.AddressKey; "" for none), which may also be refused with
// ErrAddressPendingFull.
func (s *Server) register(ctx context.Context, req *RegistrationRequest, from string) (client *Client, secret, regToken string, err error) {
	client, secret, regToken, err = NewClient(req, s.cfg.Statements, s.now())
	if err != nil {
		return nil, "", "", err
	}
	// A client's registered scope is a hint, not a ceiling: policy decides
	// what each token grants (tier ∩ role ∩ request), and a ceiling the
	// client chose for itself would only break the MCP step-up, where a 403
	// insufficient_scope asks for a scope it did not know at registration.
	if now := s.scopes(); len(now) > 0 || len(client.Scopes) == 0 {
		client.Scopes = append([]string(nil), now...)
	}
	d, err := s.decide(ctx, contract.Register, contract.Input{Client: s.policyClient(client)}, nil)
	if err != nil {
		return nil, "", "", err
	}
	if !d.Allow {
		return nil, "", "", &RegistrationError{Code: "unapproved_software_statement",
			Description: "policy does not allow this client to register: " + strings.Join(d.Reasons, "; ")}
	}
	if err := s.admitClient(ctx, client, admission{from: from}); err != nil {
		return nil, "", "", err
	}
	return client, secret, regToken, nil
}

// retryAfter sets Retry-After to d, in whole seconds (at least 1).
func retryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))))
}

// serveClientConfiguration is RFC 7592 read and delete, authorized by the
// registration access token issued at registration.
func (s *Server) serveClientConfiguration(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("client_id")
	presented, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	client, err := s.store.Client(ctx, id)
	if !ok || err != nil || !CheckRegistrationToken(client, presented) {
		// Unknown client and wrong token look the same to the caller.
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, RegistrationResponse(client, "", "", s.url(PathRegister+"/"+client.ID)))
	case http.MethodDelete:
		if err := s.store.DeleteClient(ctx, id); err != nil {
			s.log.ErrorContext(ctx, "delete client", "err", err)
			writeOAuthError(w, fosite.ErrServerError)
			return
		}
		s.log.InfoContext(ctx, "client deleted", "client_id", id)
		w.WriteHeader(http.StatusNoContent)
	}
}

func writeRegistrationError(w http.ResponseWriter, err error) {
	re := registrationError(err)
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": re.Code, "error_description": re.Description})
}

// registrationError is the RFC 7591 error a registration refused with err
// is answered with.
func registrationError(err error) *RegistrationError {
	var re *RegistrationError
	if !errors.As(err, &re) {
		re = &RegistrationError{Code: "invalid_client_metadata", Description: "the registration request is invalid"}
	}
	return re
}
