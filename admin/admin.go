// Package admin is the admin API of the admin listener: policy versions
// (upload, activate, roll back, shadow, patch data), the bundle the
// replicas poll (/bundles/pbac), the audit trail (query, live stream),
// clients (list, review — approve as a provider or reject —, revoke) and
// revoking everything acting for a person, every request under the admin
// token; and the guard of the whole listener
// (Guard: Host, Origin and content type). The
// dashboard answers policy changes as it does (PolicyErrorAnswer,
// PolicyChangeAnswer).
package admin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/audit/index"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
	tdstore "github.com/pbac-gateway/pbac/tooldefs/store"
)

// TokenAuthor is the author recorded with a policy change made through
// the admin API (plugins.WithAuthor): whoever holds the admin token.
const TokenAuthor = "admin token"

// maxBundleUpload bounds a policy bundle uploaded to the admin API.
const maxBundleUpload = 64 << 20

// Config configures the admin API.
type Config struct {
	// Token authenticates every admin request (Authorization: Bearer).
	Token    string
	Registry *plugins.Registry
	Audit    *audit.Trail
	Index    *index.Index
	// DeleteClient revokes a client and its tokens (the AS store's).
	DeleteClient func(r *http.Request, id string) error
	// ListClients lists the registered clients (the AS store's), with
	// their review status.
	ListClients func(r *http.Request) ([]Client, error)
	// ReviewClient records an operator's review of a client (the AS's):
	// errors wrap ErrNoSuchClient, ErrNotReviewable or ErrBadReview. The
	// provider of an approval is checked against the active policy first.
	// Nil: no authorization server here.
	ReviewClient func(r *http.Request, id string, d ClientDecision) (Client, error)
	// RevokePerson revokes everything acting for the person sub (the AS's
	// RevokeSubject): ErrBadSubject for a subject no grant can have. Nil:
	// no authorization server's store here.
	RevokePerson func(r *http.Request, sub string) (PersonRevocation, error)
	// Tools are the tool definitions the gateway saw its backends serve,
	// for the tool review (GET /admin/tools); nil: no review here.
	Tools *tdstore.Store
	// DiscoverTools lists every backend's tools now (POST
	// /admin/tools/discover) and reports what it saw.
	DiscoverTools func(ctx context.Context) any
	// BackendHealth reports each backend's reachability.
	BackendHealth func(r *http.Request) map[string]string
	// BundleToken, when set, is a read-only token that may fetch the policy
	// bundle (GET /bundles/pbac) and nothing else; the admin token may too.
	BundleToken string
	// Profiling serves Go's runtime profiles at /admin/debug/pprof/
	// (behind the admin token, as every admin route).
	Profiling bool
	// PolicySource reports the bundle server this replica polls, if any
	// (shown in /admin/status as bundle_source).
	PolicySource func() any
	// Propagate, when set, hands a change made here to the other replicas
	// and waits (within ctx) until every live one runs it; complete says
	// whether they all did, report says who did (see plugins/pgsync).
	Propagate func(ctx context.Context) (report any, complete bool, err error)
	// PolicySync reports the replicas' shared policy state for /admin/status.
	PolicySync func(ctx context.Context) any
	// Approvals are the tool calls policy held for a person's approval
	// (GET /admin/approvals, POST /admin/approvals/{id}/approve|deny);
	// nil: none are kept here.
	Approvals *approvals.Service
	// Approvers are the people an approval through the admin API may be
	// decided in the name of: those who sign in with a password (the
	// authorization server's demo users or users file), with their
	// groups as that source gives them now. Nil: nobody.
	Approvers asrv.UserSource
	// ApproversSSO: people also sign in through single sign-on; one the
	// password source does not know is answered 409 (approve in the
	// dashboard) rather than unknown.
	ApproversSSO bool
	Logger       *slog.Logger
}

// propagateWait bounds how long a policy change waits for the other
// replicas to confirm it.
const propagateWait = 10 * time.Second

// New returns the admin API, for a listener of its own: policy
// versions (upload, activate, roll back, shadow, patch data), the audit
// trail (query, live stream) and client revocation. Every request must carry
// the admin token.
func New(cfg Config) (http.Handler, error) {
	if len(cfg.Token) < 16 {
		return nil, errors.New("admin: the admin token must be at least 16 characters")
	}
	if cfg.Registry == nil {
		return nil, errors.New("admin: the admin API needs the policy registry")
	}
	if cfg.BundleToken != "" && len(cfg.BundleToken) < 16 {
		return nil, errors.New("admin: the bundle token must be at least 16 characters")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &api{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/status", a.status)
	mux.HandleFunc("GET /admin/policy/versions", a.versions)
	mux.HandleFunc("POST /admin/policy/bundles", a.upload)
	mux.HandleFunc("POST /admin/policy/rollback", a.rollback)
	mux.HandleFunc("PUT /admin/policy/data", a.setData)
	mux.HandleFunc("GET /admin/policy/shadow", a.shadow)
	mux.HandleFunc("DELETE /admin/policy/shadow", a.clearShadow)
	mux.HandleFunc("GET /admin/audit", a.queryAudit)
	if cfg.Audit != nil {
		mux.Handle("GET /admin/audit/stream", audit.SSEHandler(cfg.Audit))
	}
	mux.HandleFunc("GET /admin/clients", a.listClients)
	mux.HandleFunc("DELETE /admin/clients/{id}", a.deleteClient)
	mux.HandleFunc("POST /admin/clients/{id}/approve", a.reviewClient(true))
	mux.HandleFunc("POST /admin/clients/{id}/reject", a.reviewClient(false))
	mux.HandleFunc("POST /admin/people/{sub}/revoke", a.revokePerson)
	if cfg.Tools != nil {
		a.tools = &ToolReview{Tools: cfg.Tools, Registry: cfg.Registry, Audit: cfg.Audit}
		mux.HandleFunc("GET /admin/tools", a.listTools)
		mux.HandleFunc("POST /admin/tools/{tool}/{action}", a.reviewTool)
		if cfg.DiscoverTools != nil {
			mux.HandleFunc("POST /admin/tools/discover", func(w http.ResponseWriter, r *http.Request) {
				adminJSON(w, http.StatusOK, cfg.DiscoverTools(r.Context()))
			})
		}
	}
	if cfg.Approvals != nil {
		a.approvals = &ApprovalDesk{Service: cfg.Approvals, Registry: cfg.Registry}
	}
	if cfg.Profiling {
		routeProfiles(mux)
	}
	mux.HandleFunc("GET /admin/approvals", a.listApprovals)
	mux.HandleFunc("GET /admin/approvals/{id}", a.getApproval)
	mux.HandleFunc("POST /admin/approvals/{id}/approve", a.decideApproval(true))
	mux.HandleFunc("POST /admin/approvals/{id}/deny", a.decideApproval(false))
	top := http.NewServeMux()
	top.Handle("GET /bundles/{name}", a.authenticate(http.HandlerFunc(a.serveBundle), cfg.BundleToken))
	top.Handle("/", a.authenticate(mux))
	return top, nil
}

// BundleName is the bundle the admin API serves at /bundles/<name>.
const BundleName = "pbac"

// serveBundle is OPA's bundle service API for the active policy: the
// bundle as it was pushed (signature included), with its revision as a
// strong ETag, so If-None-Match gets a 304 while it stays active. Replicas
// poll it (pbac up --bundle-server) to run what was pushed to this one.
func (a *api) serveBundle(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") != BundleName {
		adminJSON(w, http.StatusNotFound, map[string]string{"error": "no such bundle; this server has /bundles/" + BundleName})
		return
	}
	b, ok := a.cfg.Registry.ActiveBundle()
	info, _ := a.cfg.Registry.Active()
	if !ok {
		adminJSON(w, http.StatusNotFound, map[string]string{"error": plugins.ErrNoPolicy.Error()})
		return
	}
	raw, err := b.TarGz()
	if err != nil {
		adminError(w, err)
		return
	}
	w.Header().Set("ETag", `"`+info.Version+`"`)
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(raw))
}

type api struct {
	cfg       Config
	tools     *ToolReview   // nil without Config.Tools
	approvals *ApprovalDesk // nil without Config.Approvals
}

// authenticate lets through requests bearing the admin token or one of
// the extra tokens (empty ones ignored).
func (a *api) authenticate(next http.Handler, extra ...string) http.Handler {
	want := [][]byte{[]byte(a.cfg.Token)}
	for _, t := range extra {
		if t != "" {
			want = append(want, []byte(t))
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		match := 0
		for _, t := range want {
			match |= subtle.ConstantTimeCompare([]byte(got), t)
		}
		if !ok || match != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pbac-admin"`)
			adminJSON(w, http.StatusUnauthorized, map[string]string{"error": "the admin token is missing or wrong"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func adminError(w http.ResponseWriter, err error) {
	status, body := PolicyErrorAnswer(err)
	adminJSON(w, status, body)
}

// PolicyError is the body of a refused policy change. Problems lists,
// when the data's schema or its cross-references refused the data
// (rego.CheckData), each problem with its JSON path in the data and what
// was expected there.
type PolicyError struct {
	Error    string             `json:"error"`
	Problems []rego.DataProblem `json:"problems,omitempty"`
	// FailedVectors names the bundle's decision vectors the change fails
	// (on a data update, its invariant ones).
	FailedVectors []string `json:"failed_vectors,omitempty"`
}

// PolicyErrorAnswer is the status (PolicyErrorStatus) and body of a policy
// registry error. Refused data is answered the same whatever path brought
// it (the admin API, the dashboard): the body says what is wrong with the
// data — its problems, or the vectors it fails — not who sent it. The admin API and the dashboard answer with it.
func PolicyErrorAnswer(err error) (int, PolicyError) {
	status := PolicyErrorStatus(err)
	if de, ok := errors.AsType[*rego.DataError](err); ok {
		msg := plugins.ErrValidation.Error() + ": " + de.Error()
		return status, PolicyError{Error: msg, Problems: de.Problems}
	}
	if ve, ok := errors.AsType[*plugins.VectorError](err); ok {
		msg := plugins.ErrValidation.Error() + ": " + ve.Error()
		return status, PolicyError{Error: msg, FailedVectors: ve.Failed}
	}
	return status, PolicyError{Error: err.Error()}
}

// PolicyErrorStatus is the HTTP status of a policy registry error: 422 for
// a version that failed validation, 409 when there is nothing to roll back
// to or no active policy, 500 otherwise. The admin API and the dashboard
// answer with it.
func PolicyErrorStatus(err error) int {
	switch {
	case errors.Is(err, plugins.ErrValidation):
		return http.StatusUnprocessableEntity
	case errors.Is(err, plugins.ErrNoRollback), errors.Is(err, plugins.ErrNoPolicy):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{}
	if info, ok := a.cfg.Registry.Active(); ok {
		out["policy"] = info
	}
	if st, ok := a.cfg.Registry.Shadow(); ok {
		out["shadow"] = st
	}
	if a.cfg.Audit != nil {
		out["audit"] = a.cfg.Audit.Stats()
	}
	if a.cfg.BackendHealth != nil {
		out["backends"] = a.cfg.BackendHealth(r)
	}
	if a.cfg.PolicySource != nil {
		out["bundle_source"] = a.cfg.PolicySource()
	}
	if a.cfg.PolicySync != nil {
		out["policy_sync"] = a.cfg.PolicySync(r.Context())
	}
	out["signatures_required"] = a.cfg.Registry.SignaturesRequired()
	adminJSON(w, http.StatusOK, out)
}

func (a *api) versions(w http.ResponseWriter, _ *http.Request) {
	info, _ := a.cfg.Registry.Active()
	adminJSON(w, http.StatusOK, map[string]any{"active": info, "events": a.cfg.Registry.Events()})
}

// upload takes a bundle (tar.gz) and activates it, or runs it as the shadow
// with ?shadow=true.
func (a *api) upload(w http.ResponseWriter, r *http.Request) {
	b, err := rego.ReadTarGz(io.LimitReader(r.Body, maxBundleUpload))
	if err != nil {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": "not a policy bundle: " + err.Error()})
		return
	}
	source := "admin upload"
	var info plugins.Info
	if shadow, _ := strconv.ParseBool(r.URL.Query().Get("shadow")); shadow {
		info, err = a.cfg.Registry.SetShadow(plugins.WithAuthor(r.Context(), TokenAuthor), b, source)
	} else {
		info, err = a.cfg.Registry.Activate(plugins.WithAuthor(r.Context(), TokenAuthor), b, source)
	}
	if err != nil {
		adminError(w, err)
		return
	}
	a.cfg.Logger.Info("admin: policy uploaded", "version", info.Version, "shadow", r.URL.Query().Get("shadow"))
	if shadow, _ := strconv.ParseBool(r.URL.Query().Get("shadow")); shadow {
		adminJSON(w, http.StatusOK, info)
		return
	}
	a.changed(w, r, info)
}

// changed answers a policy change that is active here (see
// PolicyChangeAnswer).
func (a *api) changed(w http.ResponseWriter, r *http.Request, info plugins.Info) {
	status, body := PolicyChangeAnswer(r.Context(), a.cfg.Propagate, info, a.cfg.Logger)
	adminJSON(w, status, body)
}

// PolicyChangeAnswer is the answer to a policy change that is active here:
// without replicas (propagate nil), 200 with the version; with replicas,
// once propagate reports that every live replica runs it, 200 with their
// confirmation, else — after propagateWait at most — 202 with who is
// pending and why. The admin API and the dashboard answer with it.
func PolicyChangeAnswer(ctx context.Context, propagate func(context.Context) (any, bool, error), info plugins.Info, log *slog.Logger) (int, any) {
	if propagate == nil {
		return http.StatusOK, info
	}
	ctx, cancel := context.WithTimeout(ctx, propagateWait)
	defer cancel()
	report, complete, err := propagate(ctx)
	out := struct {
		plugins.Info
		Replicas any    `json:"replicas,omitempty"`
		Error    string `json:"error,omitempty"`
	}{Info: info, Replicas: report}
	if err == nil && complete {
		return http.StatusOK, out
	}
	if err != nil {
		out.Error = "active here; not confirmed by every replica: " + err.Error()
	}
	log.Warn("policy change not confirmed by every replica", "version", info.Version, "err", err)
	return http.StatusAccepted, out
}

func (a *api) rollback(w http.ResponseWriter, r *http.Request) {
	info, err := a.cfg.Registry.Rollback(plugins.WithAuthor(r.Context(), TokenAuthor))
	if err != nil {
		adminError(w, err)
		return
	}
	a.changed(w, r, info)
}

func (a *api) setData(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBundleUpload))
	var obj map[string]json.RawMessage
	if err != nil || json.Unmarshal(data, &obj) != nil || obj == nil {
		// As the dashboard answers: what is not one JSON object is not
		// policy data at all (400); what the data schema refuses is 422.
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": "the body must be the policy data as a JSON object"})
		return
	}
	info, err := a.cfg.Registry.SetData(plugins.WithAuthor(r.Context(), TokenAuthor), data, "admin data update")
	if err != nil {
		adminError(w, err)
		return
	}
	a.changed(w, r, info)
}

func (a *api) shadow(w http.ResponseWriter, _ *http.Request) {
	st, ok := a.cfg.Registry.Shadow()
	if !ok {
		adminJSON(w, http.StatusNotFound, map[string]string{"error": "no shadow policy"})
		return
	}
	adminJSON(w, http.StatusOK, st)
}

func (a *api) clearShadow(w http.ResponseWriter, r *http.Request) {
	st, ok := a.cfg.Registry.ClearShadow(plugins.WithAuthor(r.Context(), TokenAuthor))
	if !ok {
		adminJSON(w, http.StatusNotFound, map[string]string{"error": "no shadow policy"})
		return
	}
	adminJSON(w, http.StatusOK, st)
}

func (a *api) queryAudit(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Index == nil {
		adminJSON(w, http.StatusNotFound, map[string]string{"error": "no audit index"})
		return
	}
	q := r.URL.Query()
	f := audit.Filter{Event: q.Get("event"), ClientID: q.Get("client_id"), Tool: q.Get("tool"), Decision: q.Get("decision"),
		Subject: q.Get("sub"), ApprovalID: q.Get("approval_id"), TraceID: q.Get("trace_id")}
	if err := f.CheckEvent(); err != nil {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	for key, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(key); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				adminJSON(w, http.StatusBadRequest, map[string]string{"error": key + " must be an RFC 3339 time"})
				return
			}
			*dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			adminJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a positive integer"})
			return
		}
		f.Limit = n
	}
	a.cfg.Audit.FlushForQuery(r.Context())
	recs, err := a.cfg.Index.Query(r.Context(), f)
	if err != nil {
		adminError(w, err)
		return
	}
	adminJSON(w, http.StatusOK, map[string]any{"records": recs})
}

// Client is what the admin API shows of a registered client: its
// identity and verified claims, what it says of itself, and its review;
// never a secret or a token hash.
type Client struct {
	ID                      string               `json:"client_id"`
	Name                    string               `json:"client_name"`
	Agent                   contract.AgentClaims `json:"agent"`
	GrantTypes              []string             `json:"grant_types"`
	TokenEndpointAuthMethod string               `json:"token_endpoint_auth_method"`
	CreatedAt               time.Time            `json:"created_at"`
	// Status is the client's review status (ClientPending, …).
	Status          string   `json:"status"`
	RedirectURIs    []string `json:"redirect_uris"`
	ApplicationType string   `json:"application_type,omitempty"`
	ClientURI       string   `json:"client_uri,omitempty"`
	// ClaimedSoftwareID is the software_id it registered with, unverified.
	ClaimedSoftwareID string        `json:"claimed_software_id,omitempty"`
	Review            *ClientReview `json:"review,omitempty"`
	// NoTokenYet: no code or token was ever issued to this unverified
	// client (it expires unless approved or used).
	NoTokenYet bool `json:"no_token_yet,omitempty"`
	// ActsForNoPerson: the client registered the client_credentials
	// grant, so an approval would let it get tokens acting for no person
	// (a machine of the provider's tier); approving it needs "machine":
	// true. Always present, so a reviewer reads false as well as true.
	ActsForNoPerson bool `json:"acts_for_no_person"`
	// Vouch is a person's word for the client at sign-in, if any.
	Vouch *ClientVouch `json:"vouch,omitempty"`
}

// ClientVouch is a person's attestation of a client at sign-in: who, as
// which provider, when. Policy honours it for that person only.
type ClientVouch struct {
	Subject  string    `json:"subject"`
	Provider string    `json:"provider"`
	At       time.Time `json:"at"`
}

// listClients shows each client's identity, verified claims and review
// status; ?status= selects one status (400 for an unknown one).
func (a *api) listClients(w http.ResponseWriter, r *http.Request) {
	if a.cfg.ListClients == nil {
		adminJSON(w, http.StatusNotFound, map[string]string{"error": "client management is not available"})
		return
	}
	list, err := a.cfg.ListClients(r)
	if err != nil {
		adminError(w, err)
		return
	}
	if list == nil {
		list = []Client{}
	}
	if list, err = FilterClients(list, r.URL.Query().Get("status")); err != nil {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	adminJSON(w, http.StatusOK, map[string]any{"clients": list})
}

func (a *api) deleteClient(w http.ResponseWriter, r *http.Request) {
	if a.cfg.DeleteClient == nil {
		adminJSON(w, http.StatusNotFound, map[string]string{"error": "client management is not available"})
		return
	}
	id := r.PathValue("id")
	if err := a.cfg.DeleteClient(r, id); err != nil {
		adminJSON(w, http.StatusNotFound, map[string]string{"error": "no such client"})
		return
	}
	a.cfg.Logger.Info("admin: client revoked", "client_id", id)
	if a.cfg.Audit != nil {
		a.cfg.Audit.Record(RevokeClientRecord(id, OperatorAdmin))
	}
	w.WriteHeader(http.StatusNoContent)
}
