package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/jsonrpc"
)

// A call policy holds for a person's approval (contract version
// ApprovalSince) is answered, by what the client can do:
//
//   - revision 2026-07-28 (MRTR, SEP-2322), the request's client
//     capabilities declaring URL elicitation: an input_required result
//     asking the client to open the approval page, with a requestState the
//     gateway signs (approvals.SignState); the retry presents it, and is
//     decided again with the approval once an approver granted it;
//   - the same with form elicitation only, when the rule lets the person
//     the agent acts for confirm the call themselves (Approvers.Requester);
//   - revision 2025-11-25, the session having declared URL elicitation:
//     URLElicitationRequiredError (-32042) naming the page; the client
//     retries the same call;
//   - anyone else: a JSON-RPC error (CodeApprovalRequired) carrying the
//     page and a retry hint.
//
// Without a requestState (the last two), the retry finds its approval by
// the call's binding: the same client, person, tool and argument bytes.
// Either way an approval allows one call: approvals.Service.Use is the one
// compare-and-set, made after policy allowed the retry and before it is
// forwarded.

// approvalInputKey names the gateway's input request in an input_required
// result, and the client's answer in the retry's inputResponses.
const approvalInputKey = "pbac_approval"

// DefaultApprovalWait is how long a retry presenting a pending approval
// waits for an approver before it is answered input_required again.
const DefaultApprovalWait = 10 * time.Second

// hold is a tools/call the approval path looks after.
type hold struct {
	call     approvals.Call
	endpoint string
	backend  *Backend
	// elicitURL: the 2025-11-25 session declared URL elicitation.
	elicitURL bool
	// presented is the granted approval the call presents, if any.
	presented *approvals.Approval
}

// newHold returns the approval path of a call, or nil when approvals are
// off or the call cannot be held (only tools/call is).
func (g *Gateway) newHold(endpoint string, backend *Backend, cl *caller, msg *jsonrpc.Message, full string, elicitURL bool) *hold {
	if g.cfg.Approvals == nil || msg.Method != "tools/call" || cl.anonymous {
		return nil
	}
	return &hold{endpoint: endpoint, backend: backend, elicitURL: elicitURL, call: approvals.Call{
		ClientID: cl.token.ClientID, Subject: cl.token.Subject, Method: msg.Method, Tool: full, Arguments: msg.Arguments}}
}

// heldBy returns what policy asks for when d holds the call for an
// approval; nil when it does not (or the bundle predates approvals).
func heldBy(d contract.Decision) (*contract.Approval, error) {
	if d.ContractVersion < contract.ApprovalSince || !strings.Contains(string(d.Result), `"approval"`) {
		return nil, nil
	}
	var r contract.ToolCallResult
	if err := d.Decode(&r); err != nil {
		return nil, err
	}
	if r.Approval == nil || !r.Approval.Required {
		return nil, nil
	}
	if d.Allow {
		return nil, contract.ErrApprovalAllowed
	}
	if r.Approval.Rule == "" || len(r.Approval.Approvers.Groups) == 0 && !r.Approval.Approvers.Requester {
		return nil, errors.New("the policy asked for an approval without a rule or approvers")
	}
	return r.Approval, nil
}

// presentedState reads the retry's requestState when it is the gateway's
// (a backend's own passes through) and returns the approval it presents:
// granted, ready to be decided with. When done is true it has answered
// (refused, denied, or input required again) and audited.
func (g *Gateway) presentedState(c *fiber.Ctx, h *hold, cl *caller, msg *jsonrpc.Message, rec *audit.Record) (_ *approvals.Approval, done bool, _ error) {
	raw, ok := msg.Params["requestState"]
	if !ok {
		return nil, false, nil
	}
	s, ok := jsonrpc.Unquote(raw)
	if !ok {
		return nil, true, g.refuseApproval(c, msg, rec, errors.New("params.requestState must be a string"))
	}
	if !strings.HasPrefix(s, approvals.StatePrefix) {
		return nil, false, nil
	}
	svc := g.cfg.Approvals
	ctx := c.UserContext()
	st, err := svc.VerifyState(s, h.call)
	if err != nil {
		return nil, true, g.refuseApproval(c, msg, rec, fmt.Errorf("requestState refused: %w", err))
	}
	rec.ApprovalID = st.ApprovalID
	a, err := svc.Get(ctx, st.ApprovalID)
	if err != nil {
		return nil, true, g.approvalError(c, msg, rec, fmt.Errorf("requestState refused: %w", err))
	}
	answer := approvalAnswer(msg)
	if answer.Action == "decline" && a.Status.Open() {
		// The person said no in the client: whatever an approver did, the
		// call does not run.
		a, err = svc.Withdraw(ctx, a.ID, "the client answered decline", rec.RequestID)
		if err != nil && !errors.Is(err, approvals.ErrStatus) {
			return nil, true, g.approvalError(c, msg, rec, err)
		}
		if err == nil {
			return nil, true, g.approvalOutcome(c, msg, rec, a, "you declined the approval request")
		}
		// Closed meanwhile (used, expired): answered below as it is now.
	}
	if answer.Action == "cancel" && a.Status == approvals.Pending {
		// Dismissed without a choice — a headless client does so at once
		// (Claude Code's -p): the approval stays pending, and the client
		// is told where it is, in words the model reads, so that the same
		// call made again once an approver decided goes through.
		return nil, true, g.askPlainly(c, h, msg, rec, a)
	}
	if a.Status == approvals.Pending && answer.Action == "accept" && answer.Confirm && a.Approvers.Requester {
		if confirmed, err := svc.Confirm(ctx, a.ID, cl.token.Subject, rec.RequestID); err == nil {
			a = confirmed
		}
	}
	if a.Status == approvals.Pending {
		if a, err = g.waitApproval(ctx, h, a); err != nil {
			return nil, true, g.approvalError(c, msg, rec, fmt.Errorf("the approval cannot be read: %w", err))
		}
	}
	switch a.Status {
	case approvals.Granted:
		return &a, false, nil
	case approvals.Pending:
		return nil, true, g.askFor(c, h, msg, rec, a)
	case approvals.Void, approvals.Withdrawn:
		// Decided afresh: the call may be held again, for a new approval.
		return nil, false, nil
	case approvals.Denied:
		why := "denied by " + a.Approver.Sub
		if a.Comment != "" {
			why += ": " + a.Comment
		}
		return nil, true, g.approvalOutcome(c, msg, rec, a, why)
	case approvals.Used:
		return nil, true, g.refuseApproval(c, msg, rec, fmt.Errorf("%w: call again without it to ask for another", approvals.ErrUsed))
	default:
		return nil, true, g.refuseApproval(c, msg, rec, fmt.Errorf("%w: call again without it to ask for another", approvals.ErrExpired))
	}
}

func (g *Gateway) approvalWait() time.Duration {
	if g.cfg.ApprovalWait > 0 {
		return g.cfg.ApprovalWait
	}
	return DefaultApprovalWait
}

// Bounds on the retries waiting for an approver at once: per agent and in
// all. A retry beyond them is answered at once (input required again)
// instead of waiting.
const (
	maxWaitsPerAgent = 4
	maxWaits         = 256
)

// holders counts what agents hold open at once — retries waiting for an
// approver, aggregated subscriptions/listen streams — within a bound per
// agent and one in all.
type holders struct {
	perAgent, total int

	mu    sync.Mutex
	n     int
	agent map[string]int
}

func (w *holders) enter(agent string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n >= w.total || w.agent[agent] >= w.perAgent {
		return false
	}
	if w.agent == nil {
		w.agent = map[string]int{}
	}
	w.n++
	w.agent[agent]++
	return true
}

func (w *holders) leave(agent string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n--
	if w.agent[agent]--; w.agent[agent] <= 0 {
		delete(w.agent, agent)
	}
}

// waitApproval waits, within bounds, for an approver to decide a: at most
// approvalWait, and not at all when the agent already has
// maxWaitsPerAgent retries waiting (or the gateway maxWaits).
func (g *Gateway) waitApproval(ctx context.Context, h *hold, a approvals.Approval) (approvals.Approval, error) {
	agent := h.call.ClientID + "\x00" + h.call.Subject
	if !g.waiting.enter(agent) {
		return a, nil
	}
	defer g.waiting.leave(agent)
	ctx, span := g.child(ctx, "pbac.approval.wait", trace.WithAttributes(attrApprovalID.String(a.ID)))
	got, err := g.cfg.Approvals.Wait(ctx, a.ID, g.approvalWait())
	endApprovalWait(span, got, err)
	return got, err
}

// answer is the client's answer to the gateway's input request.
type answer struct {
	Action  string
	Confirm bool
}

func approvalAnswer(msg *jsonrpc.Message) answer {
	var resp map[string]struct {
		Action  string `json:"action"`
		Content struct {
			Confirm bool `json:"confirm"`
		} `json:"content"`
	}
	if raw, ok := msg.Params["inputResponses"]; !ok || json.Unmarshal(raw, &resp) != nil {
		return answer{}
	}
	r := resp[approvalInputKey]
	return answer{Action: r.Action, Confirm: r.Content.Confirm}
}

// grantedFor finds a granted approval of this very call under rule, for
// the channels that carry no requestState.
func (g *Gateway) grantedFor(ctx context.Context, h *hold, rule string) *approvals.Approval {
	l, err := g.cfg.Approvals.List(ctx, approvals.Filter{Binding: h.call.Binding(), Statuses: []approvals.Status{approvals.Granted}, Limit: approvals.MaxOpenPerClient})
	if err != nil {
		g.log.Warn("looking up a granted approval", "tool", h.call.Tool, "err", err)
		return nil
	}
	now := time.Now()
	for _, a := range l {
		if a.Rule == rule && a.ExpiresAt.After(now) {
			return &a
		}
	}
	return nil
}

// holdCall asks for an approval of the call (or finds the one asked
// already) and answers the client where to get it.
func (g *Gateway) holdCall(c *fiber.Ctx, h *hold, cl *caller, msg *jsonrpc.Message, rec *audit.Record, asked *contract.Approval, version string) error {
	a, _, err := g.cfg.Approvals.Ask(c.UserContext(), approvals.Request{Call: h.call, RequestID: rec.RequestID,
		AgentProvider: cl.token.Agent.AgentProvider, Tier: cl.token.Tier, Backend: h.backend.Name, PolicyVersion: version, Asked: *asked})
	if err != nil {
		var public string
		switch {
		case errors.Is(err, approvals.ErrTooMany):
			public = "too many approvals of this agent are waiting: ask an approver to decide them first"
		case errors.Is(err, approvals.ErrRecentlyDenied), errors.Is(err, approvals.ErrArgsTooLong):
			public = err.Error()
		default:
			return g.approvalError(c, msg, rec, fmt.Errorf("asking for an approval: %w", err))
		}
		rec.Decision, rec.Status = audit.DecisionDeny, fiber.StatusForbidden
		rec.Reasons = append(rec.Reasons, "held for approval, but "+err.Error())
		g.log.Warn("asking for an approval", "request_id", rec.RequestID, "tool", h.call.Tool, "err", err)
		return g.denyHeld(c, msg, rec, "denied: "+public,
			map[string]any{"reasons": []string{public}, "request_id": rec.RequestID, "policy_version": version})
	}
	return g.askFor(c, h, msg, rec, a)
}

// askFor answers a held call: where and how the client gets the approval
// a, by what the client can do (see the top of this file).
func (g *Gateway) askFor(c *fiber.Ctx, h *hold, msg *jsonrpc.Message, rec *audit.Record, a approvals.Approval) error {
	svc := g.cfg.Approvals
	rec.Decision, rec.Status, rec.ApprovalID = audit.DecisionHold, fiber.StatusOK, a.ID
	page := svc.URL(a.ID)
	text := fmt.Sprintf("approval required: %s. Ask someone from %s to approve %s at %s; the same call goes through once approved.",
		a.Reason, approverWords(a), h.call.Tool, page)
	if protocolOf(c, msg) >= statelessRevision {
		url, form := elicitation(msg.MetaClientCapabilities)
		var params map[string]any
		switch {
		case url:
			params = map[string]any{"mode": "url", "message": text, "url": page}
		case form && a.Approvers.Requester:
			params = map[string]any{"mode": "form", "message": fmt.Sprintf("Run %s? %s", h.call.Tool, a.Reason),
				"requestedSchema": map[string]any{"type": "object", "required": []string{"confirm"},
					"properties": map[string]any{"confirm": map[string]any{"type": "boolean", "title": "Run it"}}}}
		}
		if params != nil {
			state, err := svc.State(a, h.call)
			if err != nil {
				return fmt.Errorf("signing the requestState of %s: %w", a.ID, err)
			}
			return g.reply(c, fiber.StatusOK, rpcResult(msg.ID, map[string]any{
				"resultType":    "input_required",
				"inputRequests": map[string]any{approvalInputKey: map[string]any{"method": "elicitation/create", "params": params}},
				"requestState":  state,
			}))
		}
	} else if h.elicitURL && protocolOf(c, msg) >= urlElicitationRevision {
		return g.reply(c, fiber.StatusOK, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeURLElicitationRequired, "approval required: "+a.Reason,
			map[string]any{"elicitations": []map[string]any{{"mode": "url", "elicitationId": a.ID, "url": page, "message": text}},
				"request_id": rec.RequestID, "policy_version": a.PolicyVersion}))
	}
	return g.askPlainly(c, h, msg, rec, a)
}

// urlElicitationRevision introduced URL elicitation and -32042 (SEP-1036).
const urlElicitationRevision = "2025-11-25"

// askPlainly answers a held call with a JSON-RPC error (CodeApprovalRequired)
// whose message names the approval page and says to call again: what a
// client that takes no input request shows its model or person.
func (g *Gateway) askPlainly(c *fiber.Ctx, h *hold, msg *jsonrpc.Message, rec *audit.Record, a approvals.Approval) error {
	rec.Decision, rec.Status, rec.ApprovalID = audit.DecisionHold, fiber.StatusOK, a.ID
	page := g.cfg.Approvals.URL(a.ID)
	text := fmt.Sprintf("approval required: %s. Ask someone from %s to approve %s at %s; the same call goes through once approved.",
		a.Reason, approverWords(a), h.call.Tool, page)
	return g.reply(c, fiber.StatusOK, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeApprovalRequired, text,
		map[string]any{"approval": map[string]any{"id": a.ID, "url": page, "status": a.Status,
			"expires_at": a.ExpiresAt.Format(time.RFC3339), "retry_after_seconds": 10},
			"request_id": rec.RequestID, "policy_version": a.PolicyVersion}))
}

// approverWords says who may approve a, for a message.
func approverWords(a approvals.Approval) string {
	if who := strings.Join(a.Approvers.Groups, " or "); who != "" {
		return who
	}
	return "you"
}

// protocolOf is the revision a request speaks: its header, else its
// _meta (2026-07-28 requests carry both).
func protocolOf(c *fiber.Ctx, msg *jsonrpc.Message) string {
	if v := c.Get(hdrProtocol); v != "" {
		return v
	}
	return msg.MetaProtocolVersion
}

// elicitation reads the elicitation modes a client declares
// ({"elicitation":{}} is form only).
func elicitation(caps json.RawMessage) (url, form bool) {
	var c struct {
		Elicitation *struct {
			Form json.RawMessage `json:"form"`
			URL  json.RawMessage `json:"url"`
		} `json:"elicitation"`
	}
	if len(caps) == 0 || json.Unmarshal(caps, &c) != nil || c.Elicitation == nil {
		return false, false
	}
	e := c.Elicitation
	url = e.URL != nil
	form = e.Form != nil || e.URL == nil
	return url, form
}

// declaresURLElicitation reads an initialize request's capabilities
// (2025-11-25): whether the client takes URL elicitation.
func declaresURLElicitation(msg *jsonrpc.Message) bool {
	url, _ := elicitation(msg.Params["capabilities"])
	return url
}

// approvalError answers a retry whose approval cannot be used: the
// client's mistake (a bad, tampered or foreign requestState, an approval
// used, closed or expired, or not found) is refused as invalid params;
// anything else is the approvals' store failing, and the call is denied
// as undecided (503), the detail logged and audited but not told.
func (g *Gateway) approvalError(c *fiber.Ctx, msg *jsonrpc.Message, rec *audit.Record, err error) error {
	for _, clients := range []error{approvals.ErrStateMalformed, approvals.ErrStateSignature, approvals.ErrStateExpired,
		approvals.ErrStateOtherRequest, approvals.ErrNotFound, approvals.ErrUsed, approvals.ErrClosed, approvals.ErrExpired} {
		if errors.Is(err, clients) {
			return g.refuseApproval(c, msg, rec, err)
		}
	}
	rec.Decision, rec.Status = audit.DecisionError, fiber.StatusServiceUnavailable
	rec.Reasons = append(rec.Reasons, "approvals could not be read or written: "+err.Error())
	g.log.Error("approvals could not be read or written", "request_id", rec.RequestID, "tool", rec.Tool, "err", err)
	return g.reply(c, fiber.StatusServiceUnavailable, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInternalError,
		"denied: approvals are unavailable, try again later", map[string]any{"request_id": rec.RequestID}))
}

// refuseApproval answers a retry whose approval cannot be used (a bad,
// tampered or foreign requestState, an approval used or expired): invalid
// params, audited as a deny with why.
func (g *Gateway) refuseApproval(c *fiber.Ctx, msg *jsonrpc.Message, rec *audit.Record, err error) error {
	rec.Decision, rec.Status = audit.DecisionDeny, fiber.StatusBadRequest
	rec.Reasons = append(rec.Reasons, err.Error())
	g.log.Info("approval refused", "request_id", rec.RequestID, "tool", rec.Tool, "client_id", rec.ClientID, "err", err)
	return g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidParams, err.Error(),
		map[string]any{"request_id": rec.RequestID}))
}

// approvalOutcome answers a retry whose approval was denied or withdrawn:
// a denial with why, as policy denials are answered.
func (g *Gateway) approvalOutcome(c *fiber.Ctx, msg *jsonrpc.Message, rec *audit.Record, a approvals.Approval, why string) error {
	rec.Decision, rec.Status, rec.PolicyVersion = audit.DecisionDeny, fiber.StatusForbidden, a.PolicyVersion
	rec.Reasons = append(rec.Reasons, "approval "+a.ID+" "+string(a.Status)+": "+why)
	text := "denied: approval " + string(a.Status) + ": " + why
	data := map[string]any{"reasons": []string{"approval " + string(a.Status) + ": " + why}, "request_id": rec.RequestID,
		"policy_version": a.PolicyVersion, "approval": map[string]any{"id": a.ID, "status": a.Status}}
	return g.denyHeld(c, msg, rec, text, data)
}

// denyHeld answers a held call that will not run (its approval denied or
// withdrawn, or none may be asked for) as policy denials are answered
// (Config.Denials): by default a tool result the model reads, else a 403
// JSON-RPC error.
func (g *Gateway) denyHeld(c *fiber.Ctx, msg *jsonrpc.Message, rec *audit.Record, text string, data map[string]any) error {
	if g.cfg.Denials == DenialHTTP403 {
		return g.reply(c, fiber.StatusForbidden, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeDenied, text, data))
	}
	// As policy denials are answered by default: a tool result the model
	// reads (denials: tool_error).
	rec.Status = fiber.StatusOK
	return g.reply(c, fiber.StatusOK, rpcResult(msg.ID, map[string]any{
		"content": []map[string]any{{"type": "text", "text": text + " (request id " + rec.RequestID + ")"}},
		"isError": true,
		"_meta":   map[string]any{contract.DenialMetaKey: data},
	}))
}

// withoutApprovalFields removes from params what only the gateway reads
// on a retry — its own requestState and its input request's answer — so
// the backend gets the call as the person approved it and never a state
// it did not sign. It reports whether anything was removed; params is
// changed in place (the aggregated endpoint, which re-encodes its call).
func withoutApprovalFields(params map[string]json.RawMessage) bool {
	changed := false
	if raw, ok := params["requestState"]; ok && ourState(raw) {
		delete(params, "requestState")
		changed = true
	}
	if raw, ok := params["inputResponses"]; ok {
		if kept, removed, err := withoutMember(raw, approvalInputKey); err == nil && removed {
			changed = true
			if kept == nil {
				delete(params, "inputResponses")
			} else {
				params["inputResponses"] = kept
			}
		}
	}
	return changed
}

// ourState reports whether raw is a requestState the gateway signed.
func ourState(raw json.RawMessage) bool {
	s, ok := jsonrpc.Unquote(raw)
	return ok && strings.HasPrefix(s, approvals.StatePrefix)
}

// withoutMember is the object obj without its member key, spliced from
// obj's own bytes (nil when nothing is left); removed says whether it was
// there.
func withoutMember(obj []byte, key string) (kept []byte, removed bool, _ error) {
	members, err := jsonrpc.Members(obj)
	if err != nil {
		return nil, false, err
	}
	out := []byte{'{'}
	n := 0
	for _, m := range members {
		if m.Key == key {
			removed = true
			continue
		}
		if n > 0 {
			out = append(out, ',')
		}
		k, _ := json.Marshal(m.Key)
		out = append(append(append(out, k...), ':'), m.Raw...)
		n++
	}
	if n == 0 {
		return nil, removed, nil
	}
	return append(out, '}'), removed, nil
}

// forwardedWithoutApproval is msg as the backend gets it on the
// per-backend endpoint: msg itself, or, when it carries the gateway's
// approval fields, its own bytes with those members cut out of params —
// every other byte (the arguments policy decided on, the id, or its
// absence) as the client sent it.
func forwardedWithoutApproval(msg *jsonrpc.Message, maxDepth int) (*jsonrpc.Message, error) {
	if msg.Params == nil {
		return msg, nil
	}
	rs, hasState := msg.Params["requestState"]
	ir, hasAnswers := msg.Params["inputResponses"]
	dropState := hasState && ourState(rs)
	var answers []byte
	dropAnswers := false
	if hasAnswers {
		kept, removed, err := withoutMember(ir, approvalInputKey)
		if err != nil {
			return nil, fmt.Errorf("params.inputResponses: %w", err)
		}
		answers, dropAnswers = kept, removed
	}
	if !dropState && !dropAnswers {
		return msg, nil
	}
	top, err := jsonrpc.Members(msg.Raw)
	if err != nil {
		return nil, err
	}
	var params []byte
	for _, m := range top {
		if m.Key == "params" {
			params = m.Raw
		}
	}
	members, err := jsonrpc.Members(params)
	if err != nil {
		return nil, err
	}
	np := []byte{'{'}
	for _, m := range members {
		v := m.Raw
		switch {
		case m.Key == "requestState" && dropState:
			continue
		case m.Key == "inputResponses" && dropAnswers:
			if answers == nil {
				continue
			}
			v = answers
		}
		if len(np) > 1 {
			np = append(np, ',')
		}
		k, _ := json.Marshal(m.Key)
		np = append(append(append(np, k...), ':'), v...)
	}
	np = append(np, '}')
	off, err := offsetIn(msg.Raw, params)
	if err != nil {
		return nil, fmt.Errorf("the params: %w", err)
	}
	body := make([]byte, 0, len(msg.Raw))
	body = append(body, msg.Raw[:off]...)
	body = append(body, np...)
	body = append(body, msg.Raw[off+len(params):]...)
	return jsonrpc.Parse(body, maxDepth)
}
