package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/tooldefs"
	tdstore "github.com/pbac-gateway/pbac/tooldefs/store"
)

// A tool's review status (ReviewedTool.Status): what the catalogue of the
// active policy says of the newest definition its backend serves.
const (
	// ToolUncatalogued: not in the catalogue, so denied to every agent;
	// an operator may catalogue it (as resource:access, pinned) or dismiss it.
	ToolUncatalogued = "uncatalogued"
	// ToolDismissed: not in the catalogue, and an operator chose to leave
	// it out (until its definition changes).
	ToolDismissed = "dismissed"
	// ToolCatalogued: in the catalogue without a pin: any definition
	// passes; approving pins the one served now.
	ToolCatalogued = "catalogued"
	// ToolPinned: in the catalogue, serving the definition it pins.
	ToolPinned = "pinned"
	// ToolChanged: pinned, and serving another definition now: hidden and
	// denied until an operator approves the new one (re-pins) or rejects it.
	ToolChanged = "changed"
	// ToolRejected: a changed definition an operator refused; still
	// hidden and denied.
	ToolRejected = "rejected"
)

// toolStatuses are the statuses a listing may be filtered by.
var toolStatuses = []string{ToolUncatalogued, ToolDismissed, ToolCatalogued, ToolPinned, ToolChanged, ToolRejected}

// Review actions (ToolDecision.Action) and their audit record methods.
const (
	ToolCatalogue = "catalogue"
	ToolDismiss   = "dismiss"
	ToolApprove   = "approve"
	ToolReject    = "reject"

	MethodCatalogueTool = "admin/catalogue-tool"
	MethodDismissTool   = "admin/dismiss-tool"
	MethodApproveTool   = "admin/approve-tool-definition"
	MethodRejectTool    = "admin/reject-tool-definition"
)

// Errors of a tool review, for the status an answer carries.
var (
	// ErrNoSuchTool: no backend was seen serving the tool (404).
	ErrNoSuchTool = errors.New("no backend has listed this tool")
	// ErrBadToolReview: the request is malformed (400).
	ErrBadToolReview = errors.New("bad tool review")
	// ErrToolReviewConflict: the action does not fit the tool's status, or
	// the definition changed since the operator saw it (409).
	ErrToolReviewConflict = errors.New("the tool's review does not allow this")
)

// ToolCatalogueEntry is what the active catalogue says of a tool.
type ToolCatalogueEntry struct {
	Resource string `json:"resource"`
	Access   string `json:"access"`
	Pin      string `json:"pin,omitempty"`
}

// ReviewedTool is one tool a backend serves, as an operator reviews it.
type ReviewedTool struct {
	Tool        string          `json:"tool"` // "<backend>.<name>", its catalogue name
	Backend     string          `json:"backend"`
	Name        string          `json:"name"`
	Status      string          `json:"status"`
	Hash        string          `json:"hash"` // of the definition served now
	FirstSeen   time.Time       `json:"first_seen"`
	LastSeen    time.Time       `json:"last_seen"`
	Description string          `json:"description,omitempty"`
	Flags       []tooldefs.Flag `json:"flags,omitempty"`
	Definition  json.RawMessage `json:"definition"`
	// Catalogue is the active catalogue's entry, if any.
	Catalogue *ToolCatalogueEntry `json:"catalogue,omitempty"`
	// PinnedDefinition is the reviewed definition a changed or rejected
	// tool no longer serves (when still kept), to compare side by side.
	PinnedDefinition json.RawMessage `json:"pinned_definition,omitempty"`
	Review           *tdstore.Review `json:"review,omitempty"`
}

// ToolReview is the review of the tools backends serve: the definitions
// the gateway saw (tdstore.Store) against the active policy's catalogue.
// Cataloguing and approving change the policy data (a new version,
// checked like every change); dismissing and rejecting are kept with the
// definitions. Every decision is audited.
type ToolReview struct {
	Tools    *tdstore.Store
	Registry *plugins.Registry
	Audit    *audit.Trail
}

// List returns every tool seen whose status is one of statuses (none:
// every tool).
func (t *ToolReview) List(statuses ...string) ([]ReviewedTool, error) {
	_, data, err := t.Registry.ActivePolicy()
	if err != nil {
		return nil, fmt.Errorf("read the active catalogue: %w", err)
	}
	out := []ReviewedTool{}
	for _, e := range t.Tools.List() {
		rt := reviewed(e, data)
		if len(statuses) == 0 || slices.Contains(statuses, rt.Status) {
			out = append(out, rt)
		}
	}
	return out, nil
}

// ParseToolStatuses reads a listing's status filter: "", "all", or a
// comma-separated list of statuses.
func ParseToolStatuses(q string) ([]string, error) {
	if q == "" || q == "all" {
		return nil, nil
	}
	out := strings.Split(q, ",")
	for _, s := range out {
		if !slices.Contains(toolStatuses, s) {
			return nil, fmt.Errorf("%w: status: want all or some of %s", ErrBadToolReview, strings.Join(toolStatuses, ", "))
		}
	}
	return out, nil
}

func reviewed(e tdstore.Entry, data *contract.Data) ReviewedTool {
	cur := e.Current()
	rt := ReviewedTool{Tool: e.Backend + "." + e.Name, Backend: e.Backend, Name: e.Name, Hash: e.Hash,
		FirstSeen: e.FirstSeen, LastSeen: e.LastSeen, Flags: tooldefs.Flags(cur.Definition), Definition: cur.Definition, Review: e.Review}
	var d struct {
		Description string `json:"description"`
	}
	_ = json.Unmarshal(cur.Definition, &d)
	rt.Description = d.Description
	reviewedNow := func(state string) bool {
		return e.Review != nil && e.Review.State == state && e.Review.Hash == e.Hash
	}
	entry, ok := contract.Tool{}, false
	if data != nil {
		entry, ok = data.Catalogue[rt.Tool]
	}
	switch {
	case !ok && reviewedNow(tdstore.StateDismissed):
		rt.Status = ToolDismissed
	case !ok:
		rt.Status = ToolUncatalogued
	case entry.Pin == "":
		rt.Status = ToolCatalogued
	case entry.Pin == e.Hash:
		rt.Status = ToolPinned
	case reviewedNow(tdstore.StateRejected):
		rt.Status = ToolRejected
	default:
		rt.Status = ToolChanged
	}
	if ok {
		rt.Catalogue = &ToolCatalogueEntry{Resource: entry.Resource, Access: entry.Access, Pin: entry.Pin}
		if entry.Pin != "" && entry.Pin != e.Hash {
			if v, kept := e.Version(entry.Pin); kept {
				rt.PinnedDefinition = v.Definition
			}
		}
	}
	return rt
}

// ToolDecision is an operator's review of a tool's definition.
type ToolDecision struct {
	Action string // ToolCatalogue, ToolDismiss, ToolApprove, ToolReject
	// Hash is the definition the operator saw: the decision is refused
	// (409) when the backend serves another one now.
	Hash string
	// Resource and Access, for ToolCatalogue: the scope the tool needs.
	Resource, Access string
	By               string // who decided, for the audit trail and the policy history

	// backendResource: cataloguing also made Resource the backend's
	// (data.backends had no entry for it).
	backendResource bool
}

const maxToolReviewBody = 4 << 10

// ToolReviewBody reads the body of a review: {"hash": "sha256:…"}, and
// for catalogue also "resource" and "access". The error wraps
// ErrBadToolReview.
func ToolReviewBody(body io.Reader, action string) (ToolDecision, error) {
	var in struct {
		Hash     string `json:"hash"`
		Resource string `json:"resource"`
		Access   string `json:"access"`
	}
	dec := json.NewDecoder(io.LimitReader(body, maxToolReviewBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return ToolDecision{}, fmt.Errorf("%w: the body must be a JSON object with the hash of the definition reviewed: %w", ErrBadToolReview, err)
	}
	if dec.More() {
		return ToolDecision{}, fmt.Errorf("%w: the body must be one JSON object", ErrBadToolReview)
	}
	if !tooldefs.HashPattern.MatchString(in.Hash) {
		return ToolDecision{}, fmt.Errorf("%w: hash: the definition's hash as listed (sha256:<64 hex digits>)", ErrBadToolReview)
	}
	d := ToolDecision{Action: action, Hash: in.Hash, Resource: strings.TrimSpace(in.Resource), Access: strings.TrimSpace(in.Access)}
	switch action {
	case ToolCatalogue:
		if d.Resource == "" || d.Access == "" {
			return ToolDecision{}, fmt.Errorf("%w: cataloguing names the scope the tool needs: {\"hash\": …, \"resource\": \"drive\", \"access\": \"read\"}", ErrBadToolReview)
		}
	case ToolDismiss, ToolApprove, ToolReject:
		if d.Resource != "" || d.Access != "" {
			return ToolDecision{}, fmt.Errorf("%w: only cataloguing names a resource and access", ErrBadToolReview)
		}
	default:
		return ToolDecision{}, fmt.Errorf("%w: unknown action %q (catalogue, dismiss, approve, reject)", ErrBadToolReview, action)
	}
	return d, nil
}

// Decide applies an operator's decision on tool ("<backend>.<name>") and
// returns the tool as it is now. A change of the policy data is made on
// the active version's data under the registry's lock (plugins
// UpdateData) and checked like any other; its version is in info (zero
// when the data did not change).
func (t *ToolReview) Decide(ctx context.Context, tool string, d ToolDecision) (ReviewedTool, plugins.Info, error) {
	backend, name, ok := strings.Cut(tool, ".")
	if !ok || backend == "" || name == "" {
		return ReviewedTool{}, plugins.Info{}, fmt.Errorf("%w: a tool is named <backend>.<tool>", ErrBadToolReview)
	}
	e, err := t.Tools.Entry(backend, name)
	if err != nil {
		return ReviewedTool{}, plugins.Info{}, fmt.Errorf("%w: %s", ErrNoSuchTool, tool)
	}
	if e.Hash != d.Hash {
		return ReviewedTool{}, plugins.Info{}, fmt.Errorf("%w: %s serves another definition now (%s); list the tools again and review that one",
			ErrToolReviewConflict, tool, e.Hash)
	}
	_, data, err := t.Registry.ActivePolicy()
	if err != nil {
		return ReviewedTool{}, plugins.Info{}, fmt.Errorf("read the active catalogue: %w", err)
	}
	status := reviewed(e, data).Status
	var info plugins.Info
	switch d.Action {
	case ToolCatalogue:
		if status != ToolUncatalogued && status != ToolDismissed {
			return ReviewedTool{}, info, fmt.Errorf("%w: %s is %s, already in the catalogue", ErrToolReviewConflict, tool, status)
		}
		info, err = t.Registry.UpdateData(plugins.WithAuthor(ctx, d.By), func(active []byte) ([]byte, error) {
			data, err := setCatalogueEntry(active, tool, func(entry map[string]any) error {
				if entry != nil {
					return fmt.Errorf("%w: %s is already in the catalogue", ErrToolReviewConflict, tool)
				}
				return nil
			}, map[string]any{"resource": d.Resource, "access": d.Access, "pin": d.Hash})
			if err != nil {
				return nil, err
			}
			data, d.backendResource, err = defaultBackendResource(data, backend, d.Resource)
			return data, err
		}, "tool review")
	case ToolApprove:
		if status != ToolChanged && status != ToolRejected && status != ToolCatalogued {
			return ReviewedTool{}, info, fmt.Errorf("%w: %s is %s: only a catalogued tool's definition is approved (pinned)", ErrToolReviewConflict, tool, status)
		}
		info, err = t.Registry.UpdateData(plugins.WithAuthor(ctx, d.By), func(active []byte) ([]byte, error) {
			return setCatalogueEntry(active, tool, func(entry map[string]any) error {
				if entry == nil {
					return fmt.Errorf("%w: %s is no longer in the catalogue", ErrToolReviewConflict, tool)
				}
				entry["pin"] = d.Hash
				return nil
			}, nil)
		}, "tool review")
	case ToolDismiss:
		if status != ToolUncatalogued {
			return ReviewedTool{}, info, fmt.Errorf("%w: %s is %s: only an uncatalogued tool is dismissed", ErrToolReviewConflict, tool, status)
		}
		_, err = t.Tools.SetReview(backend, name, d.Hash, tdstore.StateDismissed, d.By)
	case ToolReject:
		if status != ToolChanged {
			return ReviewedTool{}, info, fmt.Errorf("%w: %s is %s: only a changed definition is rejected", ErrToolReviewConflict, tool, status)
		}
		_, err = t.Tools.SetReview(backend, name, d.Hash, tdstore.StateRejected, d.By)
	default:
		return ReviewedTool{}, info, fmt.Errorf("%w: unknown action %q", ErrBadToolReview, d.Action)
	}
	if err != nil {
		return ReviewedTool{}, info, err
	}
	// Decided (and, for a data change, active): audited before anything
	// else can fail.
	if t.Audit != nil {
		t.Audit.Record(toolReviewRecord(tool, backend, d, info))
	}
	if d.Action == ToolCatalogue || d.Action == ToolApprove {
		// The pinned definition is kept for a later side-by-side review
		// (the one reviewed, even when the backend serves another now).
		if _, err := t.Tools.Keep(backend, name, d.Hash); err != nil {
			return ReviewedTool{}, info, fmt.Errorf("the catalogue pins %s; keeping its definition failed: %w", tool, err)
		}
	}
	if e, err = t.Tools.Entry(backend, name); err != nil {
		return ReviewedTool{}, info, err
	}
	_, data, err = t.Registry.ActivePolicy()
	if err != nil {
		return ReviewedTool{}, info, fmt.Errorf("read the active catalogue: %w", err)
	}
	return reviewed(e, data), info, nil
}

// setCatalogueEntry rewrites data's catalogue entry for tool: check sees
// the entry as it is (nil when absent) and may change it in place; a
// non-nil add is the entry to add.
func setCatalogueEntry(data []byte, tool string, check func(entry map[string]any) error, add map[string]any) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("read the active policy data: %w", err)
	}
	cat := map[string]json.RawMessage{}
	if raw, ok := doc["catalogue"]; ok {
		if err := json.Unmarshal(raw, &cat); err != nil {
			return nil, fmt.Errorf("read the active catalogue: %w", err)
		}
	}
	var entry map[string]any
	if raw, ok := cat[tool]; ok {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // the entry's numbers keep their digits
		if err := dec.Decode(&entry); err != nil {
			return nil, fmt.Errorf("read the catalogue entry of %s: %w", tool, err)
		}
	}
	if err := check(entry); err != nil {
		return nil, err
	}
	if add != nil {
		entry = add
	}
	if entry != nil {
		raw, err := json.Marshal(entry)
		if err != nil {
			return nil, err
		}
		cat[tool] = raw
	}
	raw, err := json.Marshal(cat)
	if err != nil {
		return nil, err
	}
	doc["catalogue"] = raw
	return json.Marshal(doc)
}

// defaultBackendResource gives backend the resource its first catalogued
// tool needs, when data.backends has no entry for it: a backend's methods
// (initialize, tools/list) are decided on its resource, by default its own
// name, which no tier grants for a new backend; without this no agent could
// open a session to call the tool. It says whether it did.
func defaultBackendResource(data []byte, backend, resource string) ([]byte, bool, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, false, fmt.Errorf("read the policy data: %w", err)
	}
	backends := map[string]json.RawMessage{}
	if raw, ok := doc["backends"]; ok {
		if err := json.Unmarshal(raw, &backends); err != nil {
			return nil, false, fmt.Errorf("read data.backends: %w", err)
		}
	}
	if _, ok := backends[backend]; ok {
		return data, false, nil
	}
	entry, err := json.Marshal(map[string]string{"resource": resource})
	if err != nil {
		return nil, false, err
	}
	backends[backend] = entry
	if doc["backends"], err = json.Marshal(backends); err != nil {
		return nil, false, err
	}
	out, err := json.Marshal(doc)
	return out, err == nil, err
}

// toolReviewRecord is the audit record of a tool review.
func toolReviewRecord(tool, backend string, d ToolDecision, info plugins.Info) audit.Record {
	var method, what string
	switch d.Action {
	case ToolCatalogue:
		method, what = MethodCatalogueTool, fmt.Sprintf("tool %s catalogued by %s as %s:%s, pinned to %s", tool, d.By, d.Resource, d.Access, d.Hash)
		if d.backendResource {
			what += fmt.Sprintf("; backend %s had no entry in data.backends, so its methods are now decided on %s", backend, d.Resource)
		}
	case ToolApprove:
		method, what = MethodApproveTool, fmt.Sprintf("definition %s of tool %s approved by %s: the catalogue pins it", d.Hash, tool, d.By)
	case ToolDismiss:
		method, what = MethodDismissTool, fmt.Sprintf("tool %s (definition %s) dismissed by %s: it stays out of the catalogue", tool, d.Hash, d.By)
	case ToolReject:
		method, what = MethodRejectTool, fmt.Sprintf("definition %s of tool %s rejected by %s: the tool stays hidden and denied", d.Hash, tool, d.By)
	}
	return audit.Record{Time: time.Now().UTC(), Event: audit.EventToolReview, RequestID: rand.Text(), ClientID: OperatorClientID, Subject: d.By,
		Backend: backend, Tool: tool, Method: method, Decision: audit.DecisionAllow, Status: http.StatusOK,
		PolicyVersion: info.Version, Reasons: []string{what}}
}

// ToolReviewStatus is the HTTP status of a tool review's error.
func ToolReviewStatus(err error) int {
	switch {
	case errors.Is(err, ErrBadToolReview):
		return http.StatusBadRequest
	case errors.Is(err, ErrNoSuchTool), errors.Is(err, tdstore.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrToolReviewConflict), errors.Is(err, tdstore.ErrStale):
		return http.StatusConflict
	}
	return PolicyErrorStatus(err)
}

func (a *api) listTools(w http.ResponseWriter, r *http.Request) {
	statuses, err := ParseToolStatuses(r.URL.Query().Get("status"))
	if err != nil {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	list, err := a.tools.List(statuses...)
	if err != nil {
		adminJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	adminJSON(w, http.StatusOK, list)
}

func (a *api) reviewTool(w http.ResponseWriter, r *http.Request) {
	d, err := ToolReviewBody(r.Body, r.PathValue("action"))
	if err != nil {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	d.By = TokenAuthor
	rt, info, err := a.tools.Decide(r.Context(), r.PathValue("tool"), d)
	if err != nil {
		status := ToolReviewStatus(err)
		if status == http.StatusUnprocessableEntity || status == http.StatusInternalServerError {
			adminError(w, err)
			return
		}
		adminJSON(w, status, map[string]string{"error": err.Error()})
		return
	}
	out := map[string]any{"tool": rt}
	if info.Version != "" {
		status, change := PolicyChangeAnswer(r.Context(), a.cfg.Propagate, info, a.cfg.Logger)
		out["policy"] = change
		adminJSON(w, status, out)
		return
	}
	adminJSON(w, http.StatusOK, out)
}
