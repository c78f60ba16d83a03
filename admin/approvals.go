package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/plugins"
)

// Approvers decide the tool calls policy holds (issue 20): GET
// /admin/approvals lists them, GET /admin/approvals/{id} shows one, POST
// /admin/approvals/{id}/approve|deny with {"approver": "bob", "comment":
// "…"} decides one in that person's name. The approver rule is checked by
// approvals.Service.Decide at that moment, against the person as the
// password source knows them now (their groups) and the roles the active
// policy data gives them. The dashboard decides in the name of its
// signed-in person with the same ApprovalDesk.

// Why an approver cannot be named through the admin API.
var (
	// ErrUnknownApprover: nobody who signs in here has that subject (400).
	ErrUnknownApprover = errors.New("unknown approver")
	// ErrApproverSignsInElsewhere: the person is not in the password
	// source, and people also sign in through single sign-on, where
	// their groups are known only at sign-in: they approve in the
	// dashboard (409).
	ErrApproverSignsInElsewhere = errors.New("approve in the dashboard")
	// ErrApproverRoles: the approver's roles cannot be read (no active
	// policy), so nobody may decide now (503).
	ErrApproverRoles = errors.New("the approver's roles cannot be read")
	// ErrBadApprovalRequest: the request is malformed (400).
	ErrBadApprovalRequest = errors.New("bad approval request")
)

// ApprovalDesk is what the admin API and the dashboard share to show and
// decide approvals: the Service, and the active policy whose data gives
// an approver their roles.
type ApprovalDesk struct {
	Service  *approvals.Service
	Registry *plugins.Registry
}

// Person is the approver sub with the roles they hold and the groups
// they are in, as the approver rule sees them: roles are the active data's
// RolesOf (roles and the group_roles of groups), read now. Without an
// active policy nobody can be checked: ErrApproverRoles.
func (d *ApprovalDesk) Person(sub string, roles, groups []string) (approvals.Person, error) {
	_, data, err := d.Registry.ActivePolicy()
	if err == nil && data == nil {
		err = plugins.ErrNoPolicy
	}
	if err != nil {
		return approvals.Person{}, fmt.Errorf("%w: %w", ErrApproverRoles, err)
	}
	return approvals.Person{Sub: sub, Roles: data.RolesOf(roles, groups), Groups: append([]string(nil), groups...)}, nil
}

// Decide records p's decision on approval id through via. An approval the
// sweeper already closed as expired is ErrExpired, as one past its time
// but not yet swept is.
func (d *ApprovalDesk) Decide(ctx context.Context, id string, p approvals.Person, via string, approve bool, comment string) (approvals.Approval, error) {
	a, err := d.Service.Decide(ctx, id, p, via, approve, comment)
	if errors.Is(err, approvals.ErrClosed) && a.Status == approvals.Expired {
		return a, fmt.Errorf("%w: %s expired at %s", approvals.ErrExpired, id, a.ExpiresAt.Format(time.RFC3339))
	}
	return a, err
}

// ApprovalView is an approval as one reader sees it. For a person (the
// dashboard) it says whether they may decide it now and, if not, why; the
// arguments are shown only to the requester, to eligible approvers and to
// operators (ArgsHidden otherwise).
type ApprovalView struct {
	approvals.Approval
	// CanDecide: the approval is pending and the reader may decide it.
	CanDecide bool `json:"can_decide"`
	// WhyNot says why the reader may not decide a pending approval.
	WhyNot string `json:"why_not,omitempty"`
	// Own: the reader is the person the held call acts for.
	Own bool `json:"own,omitempty"`
	// ArgsHidden: the approval keeps the call's arguments, but not for
	// this reader.
	ArgsHidden bool `json:"args_hidden,omitempty"`
}

// ViewApproval is a as p sees it (nil p: an operator without a person,
// who sees everything and decides nothing); operator shows the arguments
// whatever the rule says.
func ViewApproval(a approvals.Approval, p *approvals.Person, operator bool) ApprovalView {
	v := ApprovalView{Approval: a}
	if p == nil {
		if a.Status == approvals.Pending {
			v.WhyNot = "sign in as a person to approve"
		}
		return v
	}
	v.Own = SamePerson(a.Subject, p.Sub)
	eligible := approvals.Eligible(a, *p)
	if a.Status == approvals.Pending {
		v.CanDecide = eligible == nil
		if eligible != nil {
			v.WhyNot = eligible.Error()
		}
	}
	if !operator && !v.Own && eligible != nil && len(v.Args) > 0 {
		v.Args, v.ArgsHidden = nil, true
	}
	return v
}

// MayRead tells whether a person who does not operate may see a: they may
// decide it under its rule (whatever its status now), or it is their own
// call's.
func MayRead(a approvals.Approval, p approvals.Person) bool {
	return SamePerson(a.Subject, p.Sub) || approvals.Eligible(a, p) == nil
}

// SamePerson compares subjects as policy does (trimmed, lower-cased).
func SamePerson(a, b string) bool {
	a, b = strings.ToLower(strings.TrimSpace(a)), strings.ToLower(strings.TrimSpace(b))
	return a != "" && a == b
}

// ParseApprovalFilter reads a listing's query: status ("", "all", "open",
// or a comma-separated list of statuses), client_id, and limit (1 to
// approvals.MaxListLimit).
func ParseApprovalFilter(q url.Values) (approvals.Filter, error) {
	f := approvals.Filter{ClientID: q.Get("client_id")}
	switch s := q.Get("status"); s {
	case "", "all":
	case "open":
		f.Statuses = []approvals.Status{approvals.Pending, approvals.Granted}
	default:
		for _, x := range strings.Split(s, ",") {
			st := approvals.Status(x)
			if !st.Valid() {
				var all []string
				for _, v := range approvals.Statuses() {
					all = append(all, string(v))
				}
				return f, fmt.Errorf("%w: status: want all, open or some of %s", ErrBadApprovalRequest, strings.Join(all, ", "))
			}
			f.Statuses = append(f.Statuses, st)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > approvals.MaxListLimit {
			return f, fmt.Errorf("%w: limit must be an integer from 1 to %d", ErrBadApprovalRequest, approvals.MaxListLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// ApprovalDecision is the body of a decision: the admin API names the
// approver, the dashboard says how the page was opened (via: "dashboard"
// or "link"); both may give a comment.
type ApprovalDecision struct {
	Approver string `json:"approver"`
	Comment  string `json:"comment"`
	Via      string `json:"via"`
}

// ApprovalDecisionBody reads a decision's body, strictly: one JSON object
// of ApprovalDecision's fields (an empty body is {}), at most 4 KiB.
func ApprovalDecisionBody(body io.Reader) (ApprovalDecision, error) {
	var in ApprovalDecision
	dec := json.NewDecoder(io.LimitReader(body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil && !errors.Is(err, io.EOF) {
		return in, fmt.Errorf("%w: the body must be a JSON object: %w", ErrBadApprovalRequest, err)
	}
	if dec.More() {
		return in, fmt.Errorf("%w: trailing data after the JSON object", ErrBadApprovalRequest)
	}
	return in, nil
}

// ApprovalStatus is the HTTP status of an approval error: 403 for a person
// the approver rule refuses, 409 for an approval already decided or
// closed, 410 for an expired one, 404 for an unknown one, 400 for a
// malformed decision or request, 409 for an approver who signs in through
// single sign-on only, 503 when the approver's roles cannot be read.
func ApprovalStatus(err error) int {
	switch {
	case errors.Is(err, approvals.ErrNotApprover), errors.Is(err, approvals.ErrSelfApproval):
		return http.StatusForbidden
	case errors.Is(err, approvals.ErrExpired):
		return http.StatusGone
	case errors.Is(err, approvals.ErrClosed), errors.Is(err, approvals.ErrStatus), errors.Is(err, ErrApproverSignsInElsewhere):
		return http.StatusConflict
	case errors.Is(err, approvals.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, approvals.ErrBadDecision), errors.Is(err, ErrBadApprovalRequest), errors.Is(err, ErrUnknownApprover):
		return http.StatusBadRequest
	case errors.Is(err, ErrApproverRoles):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// approvalError answers err with its status; what has no status of its
// own is logged and answered without its detail.
func (a *api) approvalError(w http.ResponseWriter, what string, err error) {
	status := ApprovalStatus(err)
	if status == http.StatusInternalServerError {
		a.cfg.Logger.Error("admin: "+what+" failed", "err", err)
		adminJSON(w, status, map[string]string{"error": what + " failed; see the server's log"})
		return
	}
	adminJSON(w, status, map[string]string{"error": err.Error()})
}

func (a *api) noApprovals(w http.ResponseWriter) bool {
	if a.approvals == nil {
		adminJSON(w, http.StatusNotFound, map[string]string{"error": "approvals are not kept here"})
		return true
	}
	return false
}

// listApprovals serves GET /admin/approvals?status=&client_id=&limit=:
// newest first, as stored, with their arguments (the admin token
// operates).
func (a *api) listApprovals(w http.ResponseWriter, r *http.Request) {
	if a.noApprovals(w) {
		return
	}
	f, err := ParseApprovalFilter(r.URL.Query())
	if err != nil {
		a.approvalError(w, "listing approvals", err)
		return
	}
	list, err := a.approvals.Service.List(r.Context(), f)
	if err != nil {
		a.approvalError(w, "listing approvals", err)
		return
	}
	if list == nil {
		list = []approvals.Approval{}
	}
	adminJSON(w, http.StatusOK, map[string]any{"approvals": list})
}

// getApproval serves GET /admin/approvals/{id}.
func (a *api) getApproval(w http.ResponseWriter, r *http.Request) {
	if a.noApprovals(w) {
		return
	}
	x, err := a.approvals.Service.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.approvalError(w, "reading the approval", err)
		return
	}
	adminJSON(w, http.StatusOK, x)
}

// decideApproval serves POST /admin/approvals/{id}/approve|deny with
// {"approver": "<sub>", "comment": "…"}: the decision of that person,
// as the password source knows them now, through approvals.ViaAdmin.
func (a *api) decideApproval(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.noApprovals(w) {
			return
		}
		in, err := ApprovalDecisionBody(r.Body)
		if err == nil && in.Via != "" && in.Via != approvals.ViaAdmin {
			err = fmt.Errorf("%w: a decision through the admin API is via %q", ErrBadApprovalRequest, approvals.ViaAdmin)
		}
		if err != nil {
			a.approvalError(w, "deciding the approval", err)
			return
		}
		id := r.PathValue("id")
		p, err := a.approver(r.Context(), in.Approver)
		if err == nil {
			var x approvals.Approval
			if x, err = a.approvals.Decide(r.Context(), id, p, approvals.ViaAdmin, approve, in.Comment); err == nil {
				a.cfg.Logger.Info("admin: approval decided", "id", id, "approver", p.Sub, "status", x.Status)
				adminJSON(w, http.StatusOK, x)
				return
			}
		}
		a.approvalError(w, "deciding the approval", err)
	}
}

// approver is the person sub as the password source knows them now.
func (a *api) approver(ctx context.Context, sub string) (approvals.Person, error) {
	sub = strings.TrimSpace(sub)
	if sub == "" {
		return approvals.Person{}, fmt.Errorf("%w: name the approver: {\"approver\": \"<their subject>\"}", ErrBadApprovalRequest)
	}
	var u asrv.User
	err := asrv.ErrUnknownUser
	if a.cfg.Approvers != nil {
		u, err = a.cfg.Approvers.Lookup(ctx, sub)
	}
	switch {
	case errors.Is(err, asrv.ErrUnknownUser) && a.cfg.ApproversSSO:
		return approvals.Person{}, fmt.Errorf("%q is not a person who signs in with a password here; people who sign in through single sign-on decide with the groups their identity provider gives them at sign-in: %w",
			sub, ErrApproverSignsInElsewhere)
	case errors.Is(err, asrv.ErrUnknownUser):
		return approvals.Person{}, fmt.Errorf("%w: nobody who signs in here is %q", ErrUnknownApprover, sub)
	case err != nil:
		return approvals.Person{}, fmt.Errorf("looking up the approver %q: %w", sub, err)
	}
	return a.approvals.Person(u.Subject, u.Roles, u.Groups)
}
