package contract

import "context"

// AgentClaims are the claims of a verified software statement. They are the
// only source of an agent's identity for policy: metadata a client sends
// without a valid statement never becomes a claim.
type AgentClaims struct {
	// Verified is true only when a software statement signed by a trusted
	// issuer was presented at registration.
	Verified bool   `json:"verified"`
	Issuer   string `json:"issuer,omitempty"`
	// IssuerName is the configured name of the trusted statement issuer
	// whose key verified the statement (who vouches, for policy).
	IssuerName            string `json:"issuer_name,omitempty"`
	SoftwareID            string `json:"software_id,omitempty"`
	AgentProvider         string `json:"agent_provider,omitempty"`
	AgentModel            string `json:"agent_model,omitempty"`
	SingleUseAccessTokens bool   `json:"single_use_access_tokens,omitempty"`
	// StatementID and KeyID name the statement (its jti) and the issuer key
	// (its kid) that verified these claims, so that revoking either makes
	// the client unverified.
	StatementID string `json:"statement_id,omitempty"`
	KeyID       string `json:"key_id,omitempty"`
}

// PolicyClient renders the client clientID with these claims for policy.
func (a AgentClaims) PolicyClient(clientID string) *Client {
	return &Client{
		ClientID:              clientID,
		AgentProvider:         a.AgentProvider,
		AgentModel:            a.AgentModel,
		SingleUseAccessTokens: a.SingleUseAccessTokens,
		SoftwareID:            a.SoftwareID,
		Verified:              a.Verified,
	}
}

// Identity is what an introspected access token stands for, as the
// gateway needs it: the agent (its client id and verified claims), the
// person it acts for, the delegation chain, the scopes and audience policy
// allows now. An inactive token carries only the reasons, for the audit
// record; they are not sent to RFC 7662 callers.
type Identity struct {
	Active   bool
	Reasons  []string
	Scopes   []string
	ClientID string
	Subject  string
	Roles    []string
	// Groups are the person's groups at their identity source, recorded
	// with the grant (or read from the users file at each use); policy
	// sees them as subject.groups and data maps them to roles.
	Groups    []string
	Audience  []string
	IssuedAt  int64
	ExpiresAt int64
	Act       *Actor
	Tier      string
	// Agent are the client's verified claims as the authorization server
	// trusts them now (zero when inactive or unverified).
	Agent AgentClaims
	// Attestation is how the client is known now (nil: nobody vouches),
	// as policy sees it in client.attestation.
	Attestation *Attestation
	// Consumed is set when this introspection used up a single-use token.
	Consumed bool
}

// PolicyClient renders the token's client for policy.
func (i Identity) PolicyClient() *Client {
	c := i.Agent.PolicyClient(i.ClientID)
	if i.Attestation != nil {
		a := *i.Attestation
		c.Attestation = &a
	}
	return c
}

// Introspector tells what a bearer token stands for at a protected
// resource (empty: any). An inactive token is an Identity with Active
// false; an error is a check that could not be made (a store down, a
// decision policy could not make: ErrUndecided), and the caller denies.
// The in-process *asrv.Server implements it; a remote authorization
// server is reached over RFC 7662 (gateway.RemoteIntrospector).
type Introspector interface {
	Introspect(ctx context.Context, token, resource string) (Identity, error)
}
