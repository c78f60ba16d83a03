package contract

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Decision is the outcome of one entrypoint. Every entrypoint returns an
// object with at least "allow" and "reasons"; Result keeps the whole object
// for the entrypoint's own fields (decode them with Decode into one of the
// result types below).
type Decision struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"`
	// Version is the policy version that made the decision.
	Version string `json:"-"`
	// ContractVersion is the contract version of the bundle that made the
	// decision (see BundleVersion); fields a newer contract introduced are
	// read only when it is at least that version (ApprovalSince).
	ContractVersion int `json:"-"`
	// Result is the entrypoint's whole result object.
	Result json.RawMessage `json:"-"`
}

// Decode unmarshals the whole result object into v, for entrypoint-specific
// fields such as scopes or required_scope.
func (d Decision) Decode(v any) error {
	if err := json.Unmarshal(d.Result, v); err != nil {
		return fmt.Errorf("decode %s decision: %w", d.Version, err)
	}
	return nil
}

// Decider asks policy: it evaluates entrypoint on input (an Input,
// JSON-encoded). Any error is a decision that could not be made, and the
// caller denies; Decide returns in bounded time. *plugins.Registry
// implements it.
type Decider interface {
	Decide(ctx context.Context, entrypoint Entrypoint, input []byte) (Decision, error)
}

// DeciderFunc adapts a function to Decider.
type DeciderFunc func(ctx context.Context, entrypoint Entrypoint, input []byte) (Decision, error)

// Decide implements Decider.
func (f DeciderFunc) Decide(ctx context.Context, entrypoint Entrypoint, input []byte) (Decision, error) {
	return f(ctx, entrypoint, input)
}

// ErrUndecided means policy could not make a decision: it failed, ran out
// of time or was too busy. The request is denied; the cause goes to the
// log, not the client.
var ErrUndecided = errors.New("the policy could not decide")

// The results callers read, besides allow and reasons, by entrypoint.

// RegisterResult is pbac/register's result.
type RegisterResult struct {
	Tier string `json:"tier"`
}

// TokenResult is pbac/token's result.
type TokenResult struct {
	Tier       string   `json:"tier"`
	Scopes     []string `json:"scopes"`
	TTLSeconds int64    `json:"ttl_seconds"`
	SingleUse  bool     `json:"single_use"`
	// RefusedForEverySubject are the reasons the decision denies a human
	// grant (authorization_code) of this client and request whoever the
	// person is; the policy computes them without reading the subject, so
	// the authorization server asks with none, before anyone signs in, and
	// refuses on the first page. Empty: some person might be granted (or
	// the bundle predates the field, and the sign-in decides).
	RefusedForEverySubject []string `json:"refused_for_every_subject"`
}

// IntrospectResult is pbac/introspect's result.
type IntrospectResult struct {
	Tier         string   `json:"tier"`
	JITSingleUse bool     `json:"jit_single_use"`
	Scopes       []string `json:"scopes"`
}

// ExchangeResult is pbac/exchange's result.
type ExchangeResult struct {
	Scopes     []string `json:"scopes"`
	TTLSeconds int64    `json:"ttl_seconds"`
}

// ToolCallResult is pbac/tool_call's result: on a deny, the scope that
// was missing (and whether it was the only reason), the reasons the agent
// may be told, and whether a person may approve the call (contract version
// ApprovalSince).
type ToolCallResult struct {
	RequiredScope     string   `json:"required_scope"`
	InsufficientScope bool     `json:"insufficient_scope"`
	PublicReasons     []string `json:"public_reasons"`
	// Approval is set on a call policy would allow once an approver
	// allowed it. Approval.Required implies allow is false (ErrApprovalAllowed),
	// so a binary that does not know approvals denies the call.
	Approval *Approval `json:"approval,omitempty"`
}

// Approval is what pbac/tool_call asks for when a call needs a person's
// approval first: the rule that asks (data.approval_rules[].id, which a
// granted approval is bound to), why, who may approve and for how long
// an approval stays valid.
type Approval struct {
	Required   bool      `json:"required"`
	Rule       string    `json:"rule"`
	Reason     string    `json:"reason"`
	Approvers  Approvers `json:"approvers"`
	TTLSeconds int64     `json:"ttl_seconds"`
}

// Approvers says who may approve: a person in any one of Groups (matched
// against the approver's roles and raw groups), and never one of Not (the
// requester's identities, compared trimmed and lower-cased: separation of
// duties). Requester lets the person the agent acts for confirm the call
// themselves (in the client, form mode).
type Approvers struct {
	Groups    []string `json:"groups"`
	Not       []string `json:"not"`
	Requester bool     `json:"requester,omitempty"`
}

// ErrApprovalAllowed is the error of a pbac/tool_call result that asks for
// an approval and allows the call at once: a policy must fail closed, so
// that a binary that does not know approvals denies the call.
var ErrApprovalAllowed = errors.New("approval.required with allow: the policy must fail closed")

// CheckToolCallResult checks the invariant of pbac/tool_call's result: a
// result whose approval is required does not allow. raw is the whole
// result object; an approval that is not an object is an error as well.
func CheckToolCallResult(raw []byte) error {
	var shape struct {
		Allow    bool            `json:"allow"`
		Approval json.RawMessage `json:"approval"`
	}
	if err := json.Unmarshal(raw, &shape); err != nil {
		return fmt.Errorf("read the pbac/tool_call result: %w", err)
	}
	if len(shape.Approval) == 0 || string(shape.Approval) == "null" {
		return nil
	}
	var a Approval
	if err := json.Unmarshal(shape.Approval, &a); err != nil {
		return fmt.Errorf("read the pbac/tool_call result's approval: %w", err)
	}
	if a.Required && shape.Allow {
		return ErrApprovalAllowed
	}
	return nil
}

// ListResult is pbac/list's (and pbac/anonymous's, for tools/list)
// result: the tools the caller may call.
type ListResult struct {
	Tools []string `json:"tools"`
}
