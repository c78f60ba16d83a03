package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
)

func (h *Handler) policy(w http.ResponseWriter, _ *http.Request, _ *session) {
	reg := h.cfg.Registry
	out := map[string]any{"events": reg.Events(), "shadow": nil, "data": nil, "can_rollback": false}
	if info, ok := reg.Active(); ok {
		out["active"] = info
	}
	if st, ok := reg.Shadow(); ok {
		out["shadow"] = st
	}
	if b, ok := reg.ActiveBundle(); ok {
		out["data"] = json.RawMessage(b.Data)
	}
	out["can_rollback"] = reg.CanRollback()
	writeJSON(w, http.StatusOK, out)
}

// policyError answers a registry error as the admin API does (status and
// body).
func policyError(w http.ResponseWriter, err error) {
	status, body := admin.PolicyErrorAnswer(err)
	writeJSON(w, status, body)
}

func (h *Handler) who(s *session) string {
	if s.user != nil {
		return "dashboard (" + s.user.Subject + ")"
	}
	return "dashboard (operator)"
}

// author is who a policy change made in this session is recorded as
// (plugins.WithAuthor): the person signed in, or the admin token.
func author(s *session) string {
	if s.user != nil {
		return s.user.Subject
	}
	return admin.TokenAuthor
}

func (h *Handler) setData(w http.ResponseWriter, r *http.Request, s *session) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBundleUpload))
	if err != nil {
		writeError(w, http.StatusBadRequest, "read the policy data: "+err.Error())
		return
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		why := "null"
		if err != nil {
			why = err.Error()
		}
		writeError(w, http.StatusBadRequest, "the policy data must be one JSON object: "+why)
		return
	}
	// What the data must be is the bundle's data schema, checked by the
	// registry on every path that changes data (rego.CheckData): the
	// answer here is the admin API's.
	source := h.who(s) + ": data edit"
	var info plugins.Info
	if shadow, _ := strconv.ParseBool(r.URL.Query().Get("shadow")); shadow {
		active, ok := h.cfg.Registry.ActiveBundle()
		if !ok {
			policyError(w, plugins.ErrNoPolicy)
			return
		}
		// Like a data-only activation (SetData), a data-only shadow is held
		// to the data schema and the bundle's invariant vectors.
		var b *rego.Bundle
		if b, err = active.WithData(raw); err == nil {
			info, err = h.cfg.Registry.SetShadow(plugins.WithAuthor(r.Context(), author(s)), b, source)
		}
	} else {
		info, err = h.cfg.Registry.SetData(plugins.WithAuthor(r.Context(), author(s)), raw, source)
	}
	if err != nil {
		policyError(w, err)
		return
	}
	h.cfg.Logger.Info("dashboard: policy data changed", "version", info.Version, "by", h.who(s), "shadow", r.URL.Query().Get("shadow"))
	if shadow, _ := strconv.ParseBool(r.URL.Query().Get("shadow")); shadow {
		writeJSON(w, http.StatusOK, info)
		return
	}
	h.changed(w, r, info)
}

// changed answers a policy change active here, waiting for the other
// replicas when there are (admin.PolicyChangeAnswer).
func (h *Handler) changed(w http.ResponseWriter, r *http.Request, info plugins.Info) {
	status, body := admin.PolicyChangeAnswer(r.Context(), h.cfg.Propagate, info, h.cfg.Logger)
	writeJSON(w, status, body)
}

func (h *Handler) uploadBundle(w http.ResponseWriter, r *http.Request, s *session) {
	b, err := rego.ReadTarGz(io.LimitReader(r.Body, maxBundleUpload))
	if err != nil {
		writeError(w, http.StatusBadRequest, "not a policy bundle (build one with pbac policy build -o bundle.tar.gz): "+err.Error())
		return
	}
	source := h.who(s) + ": bundle upload"
	var info plugins.Info
	if shadow, _ := strconv.ParseBool(r.URL.Query().Get("shadow")); shadow {
		info, err = h.cfg.Registry.SetShadow(plugins.WithAuthor(r.Context(), author(s)), b, source)
	} else {
		info, err = h.cfg.Registry.Activate(plugins.WithAuthor(r.Context(), author(s)), b, source)
	}
	if err != nil {
		policyError(w, err)
		return
	}
	h.cfg.Logger.Info("dashboard: policy bundle uploaded", "version", info.Version, "by", h.who(s))
	if shadow, _ := strconv.ParseBool(r.URL.Query().Get("shadow")); shadow {
		writeJSON(w, http.StatusOK, info)
		return
	}
	h.changed(w, r, info)
}

func (h *Handler) rollback(w http.ResponseWriter, r *http.Request, s *session) {
	info, err := h.cfg.Registry.Rollback(plugins.WithAuthor(r.Context(), author(s)))
	if err != nil {
		policyError(w, err)
		return
	}
	h.cfg.Logger.Info("dashboard: policy rolled back", "version", info.Version, "by", h.who(s))
	h.changed(w, r, info)
}

func (h *Handler) clearShadow(w http.ResponseWriter, r *http.Request, s *session) {
	st, ok := h.cfg.Registry.ClearShadow(plugins.WithAuthor(r.Context(), author(s)))
	if !ok {
		writeError(w, http.StatusNotFound, "no shadow policy")
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *Handler) queryAudit(w http.ResponseWriter, r *http.Request, s *session) {
	if h.cfg.Index == nil {
		writeError(w, http.StatusServiceUnavailable, "no audit index")
		return
	}
	q := r.URL.Query()
	f := audit.Filter{Event: q.Get("event"), ClientID: q.Get("client_id"), Tool: q.Get("tool"), Decision: q.Get("decision"), Subject: q.Get("sub"),
		ApprovalID: q.Get("approval_id"), Limit: 100}
	if sub, only := h.ownRecordsOnly(s); only {
		// A person who does not operate sees their own records, whatever
		// the query asks for.
		if sub == "" {
			writeError(w, http.StatusForbidden, "only an operator may read the audit trail")
			return
		}
		f.Subject = sub
	}
	if d := f.Decision; d != "" && d != audit.DecisionAllow && d != audit.DecisionDeny && d != audit.DecisionError && d != audit.DecisionHold {
		writeError(w, http.StatusBadRequest, "decision must be allow, deny, error or hold")
		return
	}
	if err := f.CheckEvent(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	for key, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(key); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, key+" must be an RFC 3339 time")
				return
			}
			*dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit must be an integer from 1 to 1000")
			return
		}
		f.Limit = n
	}
	h.cfg.Audit.FlushForQuery(r.Context())
	recs, err := h.cfg.Index.Query(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "query the audit trail: "+err.Error())
		return
	}
	if recs == nil {
		recs = []audit.Record{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": recs})
}

// --- scenarios ---

func (h *Handler) listScenarios(w http.ResponseWriter, _ *http.Request, _ *session) {
	if h.cfg.Demo == nil {
		writeJSON(w, http.StatusOK, map[string]any{"scenarios": []demo.Scenario{}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"scenarios": h.scenarios})
}

// maxPace bounds the pause between a scenario's steps.
const maxPace = 5 * time.Second

func (h *Handler) runScenario(w http.ResponseWriter, r *http.Request, s *session) {
	d := h.cfg.Demo
	if d == nil || d.Runner == nil {
		writeError(w, http.StatusServiceUnavailable, "the narrative demo runs only in the demo tenant")
		return
	}
	id := r.PathValue("id")
	var sc *demo.Scenario
	for i := range h.scenarios {
		if h.scenarios[i].ID == id {
			sc = &h.scenarios[i]
		}
	}
	if sc == nil {
		writeError(w, http.StatusNotFound, "no scenario "+id)
		return
	}
	if !h.isOperator(s) && slices.ContainsFunc(sc.Steps, func(st demo.Step) bool { return st.Kind == demo.StepPolicy }) {
		writeError(w, http.StatusForbidden, "this scenario changes policy data for a moment: only an operator may run it")
		return
	}
	in := struct {
		User   *string `json:"user"`
		Agent  string  `json:"agent"`
		PaceMS int     `json:"pace_ms"`
	}{}
	if r.ContentLength != 0 {
		if err := decodeBody(r, &in); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, "bad run request: "+err.Error())
			return
		}
	}
	if in.PaceMS < 0 || time.Duration(in.PaceMS)*time.Millisecond > maxPace {
		writeError(w, http.StatusBadRequest, "pace_ms must be from 0 to 5000")
		return
	}
	agentRef := sc.Agent
	if in.Agent != "" {
		agentRef = in.Agent
	}
	view, ident, err := h.identity(r.Context(), agentRef)
	if err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, errUnknownAgent) {
			status = http.StatusBadRequest
		}
		writeError(w, status, err.Error())
		return
	}
	user := sc.User
	if in.User != nil {
		user = *in.User
	}
	if !ident.Machine && user == "" && s.user != nil {
		user = s.user.Subject
	}
	if !ident.Machine {
		if user == "" {
			writeError(w, http.StatusBadRequest, "agent "+view.ClientName+" acts for a user: pick one")
			return
		}
		if _, err := h.lookupUser(r.Context(), user); err != nil {
			writeError(w, http.StatusBadRequest, "unknown user "+user)
			return
		}
	}
	opt := demo.RunOptions{AgentName: view.ClientName, Agent: ident, User: user, Password: d.Password,
		Tier: view.Tier, SingleUse: view.SingleUse, Pace: time.Duration(in.PaceMS) * time.Millisecond}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	emit := func(e demo.Event) {
		_ = enc.Encode(e)
		_ = rc.Flush()
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	if err := d.Runner.Run(ctx, *sc, opt, emit); err != nil {
		h.cfg.Logger.Info("dashboard: scenario could not start", "scenario", id, "agent", view.ClientID, "err", err)
		return
	}
	h.cfg.Logger.Info("dashboard: scenario run", "scenario", id, "agent", view.ClientID, "user", user,
		"by", strings.TrimSpace(h.who(s)))
}
