package dashboard

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/approvals"
)

// Approvals (issue 20): the tool calls policy held until a person
// approves them. A signed-in person sees those they may decide and their
// own agents' calls (an operator, and anyone in the demo tenant, sees
// every one), and approves or denies in their own name, checked against
// the approver rule at that moment with their groups (the users file's
// now, looked up at each request; those of their sign-in for single
// sign-on) and the roles the active data gives them, through the admin API's
// ApprovalDesk. The arguments of a call show to the requester, to its
// eligible approvers and to operators only. A session without a person
// (the admin token) reads but does not decide. The approval link the
// gateway hands the client, /ui/approvals/{id}, opens the page on that
// approval, after signing in when needed.

// linkTarget is where the approval link sends the browser: the page,
// on that approval, marked as opened from the link (decisions made there
// are via "link").
func linkTarget(id string) string { return "?via=link#approvals/" + id }

// resumePattern is where a sign-in may send the browser back to on the
// page (after "/ui/"): a view, optionally an approval, optionally marked
// as opened from the link. Nothing else, so no sign-in redirects
// elsewhere.
var resumePattern = regexp.MustCompile(`^(\?via=link)?#[a-z]{1,32}(/apr_[a-z2-7]{26})?$`)

// approvalLink serves GET /ui/approvals/{id}, the approval link: to the
// page on that approval; a browser not signed in signs in there (password
// or admin token) and comes back to it, or — where people sign in only
// through single sign-on — goes through the provider first and comes
// back to it. The link carries no credential.
func (h *Handler) approvalLink(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !approvals.ValidID(id) {
		writeError(w, http.StatusNotFound, "no such approval: the link is not one the gateway made")
		return
	}
	target := linkTarget(id)
	signedIn := false
	if c, err := r.Cookie(sessionCookie); err == nil {
		_, signedIn = h.sessions.get(c.Value)
	}
	if !signedIn && h.cfg.SSO != nil && h.cfg.Users == nil {
		http.Redirect(w, r, "/ui/api/session/sso?return="+url.QueryEscape(target), http.StatusSeeOther)
		return
	}
	// Signed in or not, the page: it shows the approval, or its sign-in
	// form first and the approval once signed in. (A link followed from
	// another site carries no SameSite=Strict cookie, so the page, not
	// this answer, is what finds the session.)
	http.Redirect(w, r, "/ui/"+target, http.StatusSeeOther)
}

// approver is the session's person as the approver rule sees them; nil
// for a session without one (the admin token).
func (h *Handler) approver(s *session) (*approvals.Person, error) {
	if s.user == nil {
		return nil, nil
	}
	p, err := h.approvals.Person(s.user.Subject, s.user.Roles, s.user.Groups)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

func (h *Handler) approvalError(w http.ResponseWriter, what string, err error) {
	status := admin.ApprovalStatus(err)
	if status == http.StatusInternalServerError {
		h.cfg.Logger.Error("dashboard: "+what+" failed", "err", err)
		writeError(w, status, what+" failed; see the server's log")
		return
	}
	writeError(w, status, err.Error())
}

func (h *Handler) noApprovals(w http.ResponseWriter) bool {
	if h.approvals == nil {
		writeError(w, http.StatusServiceUnavailable, "approvals are not kept here")
		return true
	}
	return false
}

// listApprovals serves GET /ui/api/approvals?status=&client_id=&limit=
// (as GET /admin/approvals): newest first, those this session may see,
// each as its person sees it (may they decide it, its arguments or not).
func (h *Handler) listApprovals(w http.ResponseWriter, r *http.Request, s *session) {
	if h.noApprovals(w) {
		return
	}
	f, err := admin.ParseApprovalFilter(r.URL.Query())
	if err != nil {
		h.approvalError(w, "listing approvals", err)
		return
	}
	p, err := h.approver(s)
	if err != nil {
		h.approvalError(w, "listing approvals", err)
		return
	}
	all := !h.restricted(s)
	limit := f.EffectiveLimit()
	if !all {
		// Filtered below: read as many as a listing may hold.
		f.Limit = approvals.MaxListLimit
	}
	list, err := h.approvals.Service.List(r.Context(), f)
	if err != nil {
		h.approvalError(w, "listing approvals", err)
		return
	}
	operator := h.isOperator(s)
	out := []admin.ApprovalView{}
	for _, a := range list {
		if len(out) == limit {
			break
		}
		if all || (p != nil && admin.MayRead(a, *p)) {
			out = append(out, admin.ViewApproval(a, p, operator))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": out})
}

// getApproval serves GET /ui/api/approvals/{id}; one this session may not
// see is unknown to it (404).
func (h *Handler) getApproval(w http.ResponseWriter, r *http.Request, s *session) {
	if h.noApprovals(w) {
		return
	}
	a, err := h.approvals.Service.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		h.approvalError(w, "reading the approval", err)
		return
	}
	p, err := h.approver(s)
	if err != nil {
		h.approvalError(w, "reading the approval", err)
		return
	}
	if h.restricted(s) && (p == nil || !admin.MayRead(a, *p)) {
		writeError(w, http.StatusNotFound, "no such approval among those you may decide or asked for")
		return
	}
	writeJSON(w, http.StatusOK, admin.ViewApproval(a, p, h.isOperator(s)))
}

// decideApproval serves POST /ui/api/approvals/{id}/approve|deny with
// {"comment": "…", "via": "dashboard"|"link"}: the decision of the
// session's person.
func (h *Handler) decideApproval(approve bool) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		if h.noApprovals(w) {
			return
		}
		if s.user == nil {
			writeError(w, http.StatusForbidden, "sign in as a person to approve: the admin token is nobody an approver rule can name")
			return
		}
		in, err := admin.ApprovalDecisionBody(r.Body)
		switch {
		case err != nil:
		case in.Approver != "":
			err = errors.New("the approver is the person signed in; the body names no approver")
		case in.Via == "":
			in.Via = approvals.ViaDashboard
		case in.Via != approvals.ViaDashboard && in.Via != approvals.ViaLink:
			err = errors.New(`via must be "dashboard" or "link"`)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		id := r.PathValue("id")
		p, err := h.approver(s)
		if err != nil {
			h.approvalError(w, "deciding the approval", err)
			return
		}
		a, err := h.approvals.Decide(r.Context(), id, *p, in.Via, approve, in.Comment)
		if err != nil {
			h.approvalError(w, "deciding the approval", err)
			return
		}
		h.cfg.Logger.Info("dashboard: approval decided", "id", id, "approver", p.Sub, "via", in.Via, "status", a.Status)
		writeJSON(w, http.StatusOK, admin.ViewApproval(a, p, h.isOperator(s)))
	}
}
