package dashboard

import (
	"net/http"
	"slices"
	"strings"

	"github.com/pbac-gateway/pbac/admin"
)

// Operator review of self-registered agents (issue 17): the Agents view's
// "Pending review" list and its Approve and Reject buttons, through the
// admin API's hooks, with the admin API's checks, answers and audit
// records; the operator is the signed-in person (or "admin" for the admin
// token).

// providerTier is a provider an operator may assign, with the tiers the
// active policy puts it in.
type providerTier struct {
	Provider string   `json:"provider"`
	Tiers    []string `json:"tiers"`
}

// clientsForReview serves GET /ui/api/agents/review?status=pending (an
// operator; any status GET /admin/clients takes, "pending" by default):
// the clients and the providers an approval may assign.
func (h *Handler) clientsForReview(w http.ResponseWriter, r *http.Request, _ *session) {
	if h.cfg.ListClients == nil || h.cfg.ReviewClient == nil {
		writeError(w, http.StatusServiceUnavailable, "agents are reviewed on the authorization server, which does not run here")
		return
	}
	status := r.URL.Query().Get("status")
	if status == "" {
		status = admin.ClientPending
	}
	list, err := h.cfg.ListClients(r)
	if err != nil {
		h.cfg.Logger.Error("dashboard: listing clients for review failed", "err", err)
		writeError(w, http.StatusInternalServerError, "the clients could not be listed; see the server's log")
		return
	}
	if list, err = admin.FilterClients(list, status); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	tiers, err := admin.ProviderTiers(h.cfg.Registry)
	if err != nil {
		writeError(w, admin.PolicyErrorStatus(err), err.Error())
		return
	}
	providers := make([]providerTier, 0, len(tiers))
	for p, ts := range tiers {
		providers = append(providers, providerTier{Provider: p, Tiers: ts})
	}
	slices.SortFunc(providers, func(a, b providerTier) int { return strings.Compare(a.Provider, b.Provider) })
	if list == nil {
		list = []admin.Client{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"clients": list, "providers": providers})
}

// reviewAgent serves POST /ui/api/agents/{id}/approve ({"provider",
// "comment", "machine"}) and …/reject ({"comment"}) for an operator, as the admin
// API's POST /admin/clients/{id}/approve and …/reject do, audited under
// the operator signed in here.
func (h *Handler) reviewAgent(approve bool) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		if h.cfg.ReviewClient == nil {
			writeError(w, http.StatusServiceUnavailable, "agents are reviewed on the authorization server, which does not run here")
			return
		}
		id := r.PathValue("id")
		d, err := admin.ReviewBody(r.Body, approve)
		if err == nil && approve {
			err = admin.CheckProvider(h.cfg.Registry, d.Provider)
		}
		if err != nil {
			writeError(w, admin.ReviewErrorStatus(err), err.Error())
			return
		}
		d.By = admin.OperatorAdmin
		if s.user != nil {
			d.By = s.user.Subject
		}
		c, err := h.cfg.ReviewClient(r, id, d)
		if err != nil {
			status := admin.ReviewErrorStatus(err)
			msg := err.Error()
			if status == http.StatusInternalServerError {
				h.cfg.Logger.Error("dashboard: reviewing an agent failed", "client_id", id, "err", err)
				msg = "the review failed; see the server's log"
			}
			writeError(w, status, msg)
			return
		}
		if h.cfg.Audit != nil {
			h.cfg.Audit.Record(admin.ReviewClientRecord(id, d))
		}
		h.cfg.Logger.Info("dashboard: agent reviewed", "client_id", id, "status", d.Status, "provider", d.Provider, "machine", d.Machine, "by", d.By)
		writeJSON(w, http.StatusOK, map[string]any{"client": c})
	}
}
