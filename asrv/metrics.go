package asrv

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbac-gateway/pbac/asrv/signin"
	"github.com/pbac-gateway/pbac/contract"
)

// Metrics counts what the authorization server did and refused, for
// Prometheus: registrations by what vouched for the client, tokens by
// grant, refusals by OAuth error, sign-ins by outcome. Every label takes
// values from a fixed set ("other" for anything else), whatever a caller
// sends. The composition root feeds it the server's events (Event) and the
// sign-in guard's (SignIn) and serves its Collectors.
type Metrics struct {
	registrations  *prometheus.CounterVec
	authorizations *prometheus.CounterVec
	tokens         *prometheus.CounterVec
	revocations    *prometheus.CounterVec
	refusals       *prometheus.CounterVec
	signIns        *prometheus.CounterVec
}

// NewMetrics makes the counters, unregistered.
func NewMetrics() *Metrics {
	return &Metrics{
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbac_as_registrations_total",
			Help: "Dynamic client registrations, by what vouched for the client (software_statement, cimd, operator, user, none) and outcome (allowed, refused, error).",
		}, []string{"attestation", "outcome"}),
		authorizations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbac_as_authorizations_total", Help: "Authorization requests, by outcome (allowed, refused, error).",
		}, []string{"outcome"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbac_as_tokens_total",
			Help: "Token requests, by grant type (authorization_code, refresh_token, client_credentials, token-exchange, jwt-bearer) and outcome (issued, refused, error).",
		}, []string{"grant", "outcome"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbac_as_revocations_total", Help: "Token revocation requests, by outcome (allowed, refused, error).",
		}, []string{"outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbac_as_refusals_total",
			Help: "Requests the authorization server refused, by endpoint (registration, authorization, token, revocation) and OAuth error code.",
		}, []string{"endpoint", "error"}),
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbac_as_sign_ins_total", Help: "Sign-in attempts with a password, by where (the authorization page, the dashboard) and outcome (success, failure, throttled).",
		}, []string{"surface", "outcome"}),
	}
}

// Collectors are the counters, for a registry.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.registrations, m.authorizations, m.tokens, m.revocations, m.refusals, m.signIns}
}

// The label values each label takes; anything else is "other".
var (
	attestationLabels = map[string]bool{contract.AttestationStatement: true, contract.AttestationCIMD: true,
		contract.AttestationOperator: true, contract.AttestationUser: true}
	grantLabels = map[string]bool{"authorization_code": true, "refresh_token": true, "client_credentials": true,
		"token-exchange": true, "jwt-bearer": true}
	oauthErrors = map[string]bool{"invalid_request": true, "invalid_client": true, "invalid_grant": true,
		"unauthorized_client": true, "unsupported_grant_type": true, "invalid_scope": true, "access_denied": true,
		"unsupported_response_type": true, "server_error": true, "temporarily_unavailable": true,
		"invalid_client_metadata": true, "invalid_redirect_uri": true, "invalid_software_statement": true,
		"unapproved_software_statement": true, "invalid_target": true, "request_forbidden": true,
		"login_required": true, "consent_required": true, "interaction_required": true, "invalid_token": true,
		"unsupported_token_type": true, "slow_down": true}
	surfaceLabels = map[string]bool{"authorize": true, "dashboard": true}
	signInLabels  = map[string]bool{string(signin.Success): true, string(signin.Failure): true, string(signin.Throttled): true}
)

func bounded(v string, known map[string]bool) string {
	if known[v] {
		return v
	}
	return "other"
}

// Event counts one of the server's events.
func (m *Metrics) Event(e Event) {
	outcome := "allowed"
	switch {
	case e.Allowed:
	case e.Status >= 500:
		outcome = "error"
	default:
		outcome = "refused"
	}
	switch e.Kind {
	case EventRegistration:
		att := "none"
		if e.Attestation != "" {
			att = bounded(e.Attestation, attestationLabels)
		}
		m.registrations.WithLabelValues(att, outcome).Inc()
	case EventAuthorization:
		m.authorizations.WithLabelValues(outcome).Inc()
	case EventToken:
		token := outcome
		if token == "allowed" {
			token = "issued"
		}
		grant := strings.TrimPrefix(e.Action, "urn:ietf:params:oauth:grant-type:")
		m.tokens.WithLabelValues(bounded(grant, grantLabels), token).Inc()
	case EventRevocation:
		m.revocations.WithLabelValues(outcome).Inc()
	default:
		return
	}
	if !e.Allowed {
		m.refusals.WithLabelValues(string(e.Kind), bounded(e.Error, oauthErrors)).Inc()
	}
}

// SignIn counts a sign-in attempt.
func (m *Metrics) SignIn(e signin.Event) {
	m.signIns.WithLabelValues(bounded(e.Surface, surfaceLabels), bounded(string(e.Outcome), signInLabels)).Inc()
}
