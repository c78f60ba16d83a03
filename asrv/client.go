package asrv

import (
	"cmp"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv/cimd"
	"github.com/pbac-gateway/pbac/contract"
)

// Token endpoint authentication methods a registered client may use.
const (
	AuthMethodNone        = "none"
	AuthMethodSecretBasic = "client_secret_basic"
	AuthMethodSecretPost  = "client_secret_post"
)

// AgentClaims are the claims of a verified software statement
// (contract.AgentClaims): the only source of an agent's identity for
// policy.
type AgentClaims = contract.AgentClaims

// Client is a registered OAuth client: an agent. It implements fosite.Client
// and the parts of fosite.OpenIDConnectClient fosite's client authentication
// consults. Secrets are stored only as hashes.
type Client struct {
	ID                      string   `json:"client_id"`
	SecretHash              []byte   `json:"secret_hash,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	Scopes                  []string `json:"scopes"`
	Audience                []string `json:"audience,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	// ApplicationType is native or web (SEP-837), as registered or as
	// inferred from the redirect URIs; empty for clients registered
	// before it was recorded and for clients of metadata documents.
	ApplicationType string      `json:"application_type,omitempty"`
	Name            string      `json:"client_name,omitempty"`
	URI             string      `json:"client_uri,omitempty"`
	Agent           AgentClaims `json:"agent"`
	// ClaimedSoftwareID is the software_id the registration request gave
	// without a trusted statement: what the client says it is, shown to
	// the operator who reviews it, never read by policy.
	ClaimedSoftwareID string `json:"claimed_software_id,omitempty"`
	// Attestation, when set, says how the client is known otherwise than
	// by its own registration: a client of a metadata document (kind
	// AttestationCIMD) is resolved from its URL, and stored only so its
	// tokens have a client (see anchorMetadataClient).
	Attestation *contract.Attestation `json:"attestation,omitempty"`
	// Review is an operator's review of the registration: nil while
	// nobody has reviewed it (pending), approved with the provider the
	// operator assigned, or rejected (the client gets no code or token).
	Review *ClientReview `json:"review,omitempty"`
	// Vouch is a person's word for the client at sign-in ("this is my
	// Claude Code"): policy honours it only for that person, and only for
	// tiers that allow user attestation.
	Vouch *ClientVouch `json:"vouch,omitempty"`
	// SoftwareStatement is the JWS presented at registration, kept so RFC 7592
	// reads return it; it carries no secret.
	SoftwareStatement string `json:"software_statement,omitempty"`
	// RegistrationTokenHash is the SHA-256 of the RFC 7592 registration access
	// token.
	RegistrationTokenHash []byte    `json:"registration_token_hash,omitempty"`
	CreatedAt             time.Time `json:"created_at"`

	// metadata is the document a metadata client was resolved from, for
	// this request only.
	metadata *cimd.Document
}

// Review statuses (ClientReview.Status).
const (
	ReviewApproved = "approved"
	ReviewRejected = "rejected"
)

// ClientReview is an operator's decision on a registration.
type ClientReview struct {
	Status string `json:"status"`
	// Provider is the agent provider the operator assigned (approved).
	Provider string `json:"provider,omitempty"`
	// By is the operator: "admin" for the admin token, or the operator's
	// subject when signed in to the dashboard.
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
	// Machine: the operator said the client may act for no person (its
	// client_credentials grant); an approval without it covers only use
	// on a person's behalf.
	Machine bool `json:"machine,omitempty"`
}

// ClientVouch is a person's attestation of a client.
type ClientVouch struct {
	Subject  string    `json:"subject"`
	Provider string    `json:"provider"`
	At       time.Time `json:"at"`
}

// ActsForNoPerson tells whether the client registered the
// client_credentials grant: its tokens would act for nobody.
func (c *Client) ActsForNoPerson() bool {
	return c != nil && slices.Contains(c.GrantTypes, GrantClientCredentials)
}

// Rejected tells whether an operator rejected the client.
func (c *Client) Rejected() bool {
	return c != nil && c.Review != nil && c.Review.Status == ReviewRejected
}

// PolicyAttestation is how the client is known, the strongest way first:
// a verified software statement, an operator's approval, its metadata
// document's URL, a person's word; nil when nobody vouches for it. The
// caller passes the client as this server trusts it now (clientAsSeen:
// a revoked statement no longer verifies it).
func (c *Client) PolicyAttestation() *contract.Attestation {
	switch {
	case c == nil:
		return nil
	case c.Agent.Verified:
		return &contract.Attestation{Kind: contract.AttestationStatement, By: statementIssuerName(c.Agent), Provider: c.Agent.AgentProvider}
	case c.Review != nil && c.Review.Status == ReviewApproved:
		return &contract.Attestation{Kind: contract.AttestationOperator, By: c.Review.By, Provider: c.Review.Provider, Machine: c.Review.Machine}
	case c.Attestation != nil && c.Attestation.Kind == contract.AttestationCIMD:
		return &contract.Attestation{Kind: contract.AttestationCIMD, By: c.Attestation.Origin, Origin: c.Attestation.Origin}
	case c.Vouch != nil:
		return &contract.Attestation{Kind: contract.AttestationUser, By: c.Vouch.Subject, Provider: c.Vouch.Provider}
	}
	return nil
}

// LocalIssuerName is the name policy knows this server's own statement
// key by (data.agents.statement_issuers).
const LocalIssuerName = "local"

// statementIssuerName is the configured name of the issuer that verified
// a: clients verified before issuers had names were verified by this
// server's own key.
func statementIssuerName(a AgentClaims) string {
	if a.IssuerName == "" && a.Issuer == LocalIssuer {
		return LocalIssuerName
	}
	return cmp.Or(a.IssuerName, a.Issuer)
}

var (
	_ fosite.Client              = (*Client)(nil)
	_ fosite.OpenIDConnectClient = (*Client)(nil)
	_ fosite.ResponseModeClient  = (*Client)(nil)
)

// GetID implements fosite.Client.
func (c *Client) GetID() string { return c.ID }

// GetHashedSecret implements fosite.Client.
func (c *Client) GetHashedSecret() []byte { return c.SecretHash }

// GetRedirectURIs implements fosite.Client.
func (c *Client) GetRedirectURIs() []string { return c.RedirectURIs }

// GetGrantTypes implements fosite.Client.
func (c *Client) GetGrantTypes() fosite.Arguments { return c.GrantTypes }

// GetResponseTypes implements fosite.Client.
func (c *Client) GetResponseTypes() fosite.Arguments { return c.ResponseTypes }

// GetScopes implements fosite.Client.
func (c *Client) GetScopes() fosite.Arguments { return c.Scopes }

// IsPublic implements fosite.Client: a client without a secret.
func (c *Client) IsPublic() bool { return c.TokenEndpointAuthMethod == AuthMethodNone }

// GetAudience implements fosite.Client.
func (c *Client) GetAudience() fosite.Arguments { return c.Audience }

// GetRequestURIs implements fosite.OpenIDConnectClient.
func (c *Client) GetRequestURIs() []string { return nil }

// GetJSONWebKeys implements fosite.OpenIDConnectClient.
func (c *Client) GetJSONWebKeys() *jose.JSONWebKeySet { return nil }

// GetJSONWebKeysURI implements fosite.OpenIDConnectClient.
func (c *Client) GetJSONWebKeysURI() string { return "" }

// GetRequestObjectSigningAlgorithm implements fosite.OpenIDConnectClient.
func (c *Client) GetRequestObjectSigningAlgorithm() string { return "" }

// GetTokenEndpointAuthMethod implements fosite.OpenIDConnectClient.
func (c *Client) GetTokenEndpointAuthMethod() string { return c.TokenEndpointAuthMethod }

// GetTokenEndpointAuthSigningAlgorithm implements fosite.OpenIDConnectClient.
func (c *Client) GetTokenEndpointAuthSigningAlgorithm() string { return "" }

// GetResponseModes implements fosite.ResponseModeClient: query only.
func (c *Client) GetResponseModes() []fosite.ResponseModeType {
	return []fosite.ResponseModeType{fosite.ResponseModeDefault, fosite.ResponseModeQuery}
}
