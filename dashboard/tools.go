package dashboard

import (
	"net/http"
	"slices"
	"strings"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/contract"
)

// Operator review of the tools backends serve (issue 19: the tool
// catalogue with review, pinned definitions): the Tools view lists them
// and catalogues, dismisses, approves or rejects one, through the admin
// API's review (admin.ToolReview), with its checks, answers and audit
// records; the operator is the signed-in person (or "admin" for the
// admin token), as in the review of agents.

// toolScopes are the scopes a tool may be catalogued as, from the active
// data: the resources it knows (catalogue entries, backends and the
// resources they map to) and the accesses catalogue entries use; and
// each backend's resource, the likely one for its tools. The data check
// (rego.CheckData) still decides what is accepted.
type toolScopes struct {
	Resources        []string          `json:"resources"`
	Accesses         []string          `json:"accesses"`
	BackendResources map[string]string `json:"backend_resources"`
}

func scopesOf(d contract.Data) toolScopes {
	resources, accesses := map[string]bool{}, map[string]bool{}
	for name, tool := range d.Catalogue {
		resources[tool.Resource] = true
		accesses[tool.Access] = true
		if backend, _, ok := strings.Cut(name, "."); ok {
			resources[backend] = true
		}
	}
	out := toolScopes{BackendResources: map[string]string{}}
	for b, be := range d.Backends {
		if be.Resource != "" {
			resources[be.Resource] = true
			out.BackendResources[b] = be.Resource
		}
	}
	delete(resources, "")
	delete(accesses, "")
	for r := range resources {
		out.Resources = append(out.Resources, r)
	}
	for a := range accesses {
		out.Accesses = append(out.Accesses, a)
	}
	slices.Sort(out.Resources)
	slices.Sort(out.Accesses)
	if out.Resources == nil {
		out.Resources = []string{}
	}
	if out.Accesses == nil {
		out.Accesses = []string{}
	}
	return out
}

// listTools serves GET /ui/api/tools?status=… (an operator; the statuses
// GET /admin/tools takes, every tool by default): the tools as the admin
// API lists them, and the scopes a catalogue entry may name.
func (h *Handler) listTools(w http.ResponseWriter, r *http.Request, _ *session) {
	if h.tools == nil {
		writeError(w, http.StatusServiceUnavailable, "the tool definitions are not recorded here")
		return
	}
	statuses, err := admin.ParseToolStatuses(r.URL.Query().Get("status"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	list, err := h.tools.List(statuses...)
	if err != nil {
		h.cfg.Logger.Error("dashboard: listing the tools for review failed", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	d, err := h.activeData()
	if err != nil {
		policyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tools": list, "scopes": scopesOf(d)})
}

// reviewTool serves POST /ui/api/tools/{tool}/{action} ({"hash"}, and
// "resource" and "access" to catalogue) for an operator, as the admin
// API's POST /admin/tools/{tool}/{action} does: the same statuses and
// bodies (a refused data change answers its problems), audited under the
// operator signed in here.
func (h *Handler) reviewTool(w http.ResponseWriter, r *http.Request, s *session) {
	if h.tools == nil {
		writeError(w, http.StatusServiceUnavailable, "the tool definitions are not recorded here")
		return
	}
	tool := r.PathValue("tool")
	d, err := admin.ToolReviewBody(r.Body, r.PathValue("action"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	d.By = admin.OperatorAdmin
	if s.user != nil {
		d.By = s.user.Subject
	}
	rt, info, err := h.tools.Decide(r.Context(), tool, d)
	if err != nil {
		status := admin.ToolReviewStatus(err)
		if status == http.StatusUnprocessableEntity || status == http.StatusInternalServerError {
			if status == http.StatusInternalServerError {
				h.cfg.Logger.Error("dashboard: reviewing a tool failed", "tool", tool, "action", d.Action, "err", err)
			}
			policyError(w, err)
			return
		}
		writeError(w, status, err.Error())
		return
	}
	h.cfg.Logger.Info("dashboard: tool reviewed", "tool", tool, "action", d.Action, "status", rt.Status, "by", d.By)
	out := map[string]any{"tool": rt}
	if info.Version != "" {
		status, change := admin.PolicyChangeAnswer(r.Context(), h.cfg.Propagate, info, h.cfg.Logger)
		out["policy"] = change
		writeJSON(w, status, out)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
