package contract

import "encoding/json"

// The policy input of the contract (rego/README.md): what the
// authorization server and the gateway send to every entrypoint. Every
// field may be absent; the policy denies what it needs and does not get.

// Input is one entrypoint's input document.
type Input struct {
	Client  *Client      `json:"client,omitempty"`
	Subject *Subject     `json:"subject,omitempty"`
	Token   *TokenClaims `json:"token,omitempty"`
	Request Request      `json:"request"`
	// Now is the decision time in unix seconds; the policy never reads a
	// clock of its own.
	Now int64 `json:"now"`
	// Approval is the approval a person granted for this tools/call, which
	// the gateway presents on the client's retry (contract version
	// ApprovalSince); policy decides again and honours it only when it
	// matches the rule that asks for it.
	Approval *GrantedApproval `json:"approval,omitempty"`
}

// GrantedApproval is an approval as policy sees it on a retried call:
// its id, the rule it was asked for, whether it was granted, who decided
// (as they were when they decided), through which channel and when.
type GrantedApproval struct {
	ID       string         `json:"id"`
	Rule     string         `json:"rule"`
	Granted  bool           `json:"granted"`
	Approver ApprovalPerson `json:"approver"`
	// Via is where the approver decided: "dashboard", "link", "admin" or
	// "client" (the requester confirming in the client, form mode).
	Via string `json:"via"`
	// GrantedAt is the decision time in unix seconds.
	GrantedAt int64 `json:"granted_at"`
}

// ApprovalPerson is the person who decided an approval, with their roles
// and identity-source groups at the time they decided.
type ApprovalPerson struct {
	Sub    string   `json:"sub"`
	Roles  []string `json:"roles"`
	Groups []string `json:"groups"`
}

// Client is an agent as policy sees it: only claims verified from a signed
// software statement count (Verified).
type Client struct {
	ClientID              string `json:"client_id"`
	AgentProvider         string `json:"agent_provider,omitempty"`
	AgentModel            string `json:"agent_model,omitempty"`
	SingleUseAccessTokens bool   `json:"single_use_access_tokens"`
	SoftwareID            string `json:"software_id,omitempty"`
	Verified              bool   `json:"verified"`
	// Attestation says how the client is known, when it is known at all
	// (see Attestation); absent for a client nobody vouches for.
	Attestation *Attestation `json:"attestation,omitempty"`
}

// Attestation kinds: who vouches for a client, and so which provider (and
// through policy data, which trust tier) it is.
const (
	// AttestationStatement: a software statement signed by a trusted
	// statement issuer (By is the issuer's configured name) names the
	// provider; the client is Verified.
	AttestationStatement = "software_statement"
	// AttestationCIMD: the client_id is the https URL of a client ID
	// metadata document the authorization server resolved; By is the
	// URL's origin. Policy data maps client id URLs to providers.
	AttestationCIMD = "cimd"
	// AttestationOperator: an operator reviewed the registration and
	// assigned the provider; By is the operator.
	AttestationOperator = "operator"
	// AttestationUser: the person signing in vouched for the client as
	// Provider ("this is my Claude Code"); By is that person's subject.
	// Policy honours it only for that person and only for tiers that
	// allow it.
	AttestationUser = "user"
)

// Attestation is how a client is known, for policy to weigh: one kind,
// who vouches, and the provider they vouch for (absent for "cimd", where
// policy data maps the client id URL to a provider).
type Attestation struct {
	Kind string `json:"kind"`
	// By is who vouches: the statement issuer's name, the document URL's
	// origin (https://host[:port]), the operator, or the person's subject.
	By string `json:"by,omitempty"`
	// Provider is the agent provider vouched for.
	Provider string `json:"provider,omitempty"`
	// Origin is the client id URL's origin, for "cimd" (the same as By;
	// kept for policies written against the first version).
	Origin string `json:"origin,omitempty"`
	// Machine, for "operator": the operator approved the client to act
	// for no person (the client_credentials grant). An approval without it
	// covers only use on a person's behalf.
	Machine bool `json:"machine,omitempty"`
}

// Subject is the human an agent acts for; absent for machine clients.
type Subject struct {
	Sub   string   `json:"sub"`
	Roles []string `json:"roles"`
	// Groups are the person's groups at their identity source (the IdP's
	// groups claim, the users file); policy data maps them to roles
	// (data.identity.group_roles).
	Groups []string `json:"groups,omitempty"`
}

// TokenClaims are an access token's claims.
type TokenClaims struct {
	ClientID string   `json:"client_id"`
	Sub      string   `json:"sub,omitempty"`
	Scp      []string `json:"scp"`
	Aud      []string `json:"aud"`
	Iat      int64    `json:"iat"`
	Exp      int64    `json:"exp"`
	Act      *Actor   `json:"act,omitempty"`
}

// Actor is one link of an RFC 8693 delegation chain: Sub is the client id of
// the agent that delegated, Act the link before it.
type Actor struct {
	Sub string `json:"sub"`
	Act *Actor `json:"act,omitempty"`
}

// Depth is the number of links in the chain.
func (a *Actor) Depth() int {
	n := 0
	for ; a != nil; a = a.Act {
		n++
	}
	return n
}

// Clone copies the chain.
func (a *Actor) Clone() *Actor {
	if a == nil {
		return nil
	}
	return &Actor{Sub: a.Sub, Act: a.Act.Clone()}
}

// Request is what is being asked: a grant at the authorization server, or
// an MCP call at the gateway.
type Request struct {
	Backend   string  `json:"backend,omitempty"`
	Method    string  `json:"method,omitempty"`
	Tool      string  `json:"tool,omitempty"`
	Arguments RawJSON `json:"arguments,omitempty"`
	// ResourceAttributes are what the gateway looked up at the backend for
	// a call, as the catalogue entry's author_lookup declares ({"author":
	// ...}).
	ResourceAttributes map[string]any `json:"resource_attributes,omitempty"`
	Tools              []string       `json:"tools,omitempty"`
	// ToolDefinition is what the gateway knows of the called tool's
	// definition (tools/call); ToolDefinitions the same for each listed
	// tool, by its catalogue name (tools/list).
	ToolDefinition  *ToolDefinition           `json:"tool_definition,omitempty"`
	ToolDefinitions map[string]ToolDefinition `json:"tool_definitions,omitempty"`
	GrantType       string                    `json:"grant_type,omitempty"`
	Scopes          []string                  `json:"scopes,omitempty"`
	Resource        []string                  `json:"resource,omitempty"`
	Actor           *Client                   `json:"actor,omitempty"`
	AudienceClient  *Client                   `json:"audience_client,omitempty"`
}

// ToolDefinition is a tool's definition as its backend serves it now:
// Hash is "sha256:<hex>" of the definition in canonical JSON (package
// tooldefs), "" when the gateway has not seen the tool listed; Pinned
// whether the active catalogue entry pins a definition, and Matches
// whether Hash is that pin. The shipped policy decides on the catalogue's
// pin and Hash (the data of the version deciding); Pinned and Matches are
// the gateway's view, for rules of an organisation's own.
type ToolDefinition struct {
	Hash    string `json:"hash"`
	Pinned  bool   `json:"pinned"`
	Matches bool   `json:"matches"`
}

// RawJSON is JSON passed to policy as it is (the call's exact arguments).
type RawJSON = json.RawMessage
