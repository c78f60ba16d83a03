package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/connect"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/demo"
)

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails; crashes the program on a broken platform
	return base64.RawURLEncoding.EncodeToString(b)
}

type agentView struct {
	ClientID    string    `json:"client_id"`
	ClientName  string    `json:"client_name"`
	Provider    string    `json:"provider"`
	Model       string    `json:"model"`
	SoftwareID  string    `json:"software_id"`
	Verified    bool      `json:"verified"`
	SingleUse   bool      `json:"single_use"`
	Tier        string    `json:"tier"`
	TierReason  string    `json:"tier_reason"`
	Kind        string    `json:"kind"`
	GrantTypes  []string  `json:"grant_types"`
	TTLSeconds  int64     `json:"token_ttl_seconds"`
	Demo        bool      `json:"demo"`
	CreatedAt   time.Time `json:"created_at"`
	Secret      string    `json:"client_secret,omitempty"`
	RedirectURI string    `json:"-"`
	// RedirectURIs are the agent's registered redirect URIs.
	RedirectURIs []string `json:"redirect_uris"`
	// CallbackPort is the port of the agent's localhost redirect URI, for
	// claude mcp add --callback-port; 0 when it has none.
	CallbackPort int `json:"callback_port,omitempty"`
	// Snippets configure each MCP client whose redirect URIs the agent's
	// registration accepts (connect.Clients): each works as printed.
	Snippets []snippetView `json:"snippets"`
	// Review is an operator's decision on the agent (approved, whose
	// provider it then shows, or rejected); empty when none.
	Review string `json:"review,omitempty"`
	// ReviewMachine: the operator's approval covers acting for no person
	// (its client_credentials grant).
	ReviewMachine bool `json:"review_machine,omitempty"`
	// Vouch is a person's word for the agent at sign-in (who, as which
	// provider, when), which policy honours for that person only.
	Vouch *admin.ClientVouch `json:"vouch,omitempty"`
}

// snippetView is one client's configuration for an agent.
type snippetView struct {
	Client string `json:"client"`
	Label  string `json:"label"`
	File   string `json:"file,omitempty"`
	Note   string `json:"note"`
	Text   string `json:"text"`
}

// snippets are the client configurations that work for an agent acting for
// a user with these redirect URIs: a client is offered only when the
// authorization server accepts every redirect URI it sends
// (asrv.RedirectAccepted, the authorization endpoint's own rule).
func snippets(mcpURL, clientID string, redirectURIs []string) []snippetView {
	out := []snippetView{}
	if len(redirectURIs) == 0 {
		return out
	}
	for _, c := range connect.Clients() {
		if !slices.ContainsFunc(c.Sends, func(sent string) bool { return !asrv.RedirectAccepted(sent, redirectURIs) }) {
			out = append(out, snippetView{Client: c.ID, Label: c.Label, File: c.File, Note: c.Note,
				Text: c.Snippet(connect.Target{MCPURL: mcpURL, ClientID: clientID})})
		}
	}
	return out
}

// kindOf tells a machine agent (client credentials only) from one that
// acts for a user.
func kindOf(c *asrv.Client) string {
	if slices.Contains(c.GrantTypes, "authorization_code") {
		return "human"
	}
	return "machine"
}

// view describes a client, with the tier the active policy gives it now.
func (h *Handler) view(ctx context.Context, c *asrv.Client, tiers map[string]contract.Tier, seeded map[string]bool) agentView {
	v := agentView{ClientID: c.ID, ClientName: c.Name, Provider: c.Agent.AgentProvider, Model: c.Agent.AgentModel,
		SoftwareID: c.Agent.SoftwareID, Verified: c.Agent.Verified, SingleUse: c.Agent.SingleUseAccessTokens,
		Kind: kindOf(c), GrantTypes: c.GrantTypes, Demo: seeded[c.ID], CreatedAt: c.CreatedAt}
	if v.GrantTypes == nil {
		v.GrantTypes = []string{}
	}
	if len(c.RedirectURIs) > 0 {
		v.RedirectURI = c.RedirectURIs[0]
	}
	v.RedirectURIs = append([]string{}, c.RedirectURIs...)
	v.CallbackPort = demo.CallbackPort(c.RedirectURIs)
	if v.Kind == "human" {
		v.Snippets = snippets(h.cfg.GatewayURL+"/mcp", c.ID, c.RedirectURIs)
	} else {
		v.Snippets = []snippetView{}
	}
	if r := c.Review; r != nil {
		v.Review = r.Status
		v.ReviewMachine = r.Status == asrv.ReviewApproved && r.Machine
		if r.Status == asrv.ReviewApproved && !v.Verified {
			v.Provider = r.Provider
		}
	}
	if vc := c.Vouch; vc != nil {
		v.Vouch = &admin.ClientVouch{Subject: vc.Subject, Provider: vc.Provider, At: vc.At}
	}
	var reg contract.RegisterResult
	d, err := h.decide(ctx, contract.Register, contract.Input{Client: c.PolicyClient(), Now: time.Now().Unix()}, &reg)
	switch {
	case err != nil:
		v.Tier, v.TierReason = "unknown", "the policy could not decide: "+err.Error()
	default:
		v.Tier, v.TierReason = reg.Tier, strings.Join(d.Reasons, "; ")
	}
	v.TTLSeconds = tiers[v.Tier].TokenTTLSeconds
	return v
}

// decide evaluates an entrypoint of the active policy and decodes its
// result into out.
func (h *Handler) decide(ctx context.Context, entrypoint contract.Entrypoint, in contract.Input, out any) (decision, error) {
	raw, err := contract.MarshalInput(&in)
	if err != nil {
		return decision{}, err
	}
	d, err := h.cfg.Registry.Decide(ctx, entrypoint, raw)
	if err != nil {
		return decision{}, err
	}
	if out != nil {
		if err := d.Decode(out); err != nil {
			return decision{}, err
		}
	}
	return decision{Allow: d.Allow, Reasons: d.Reasons, Version: d.Version}, nil
}

type decision struct {
	Allow   bool
	Reasons []string
	Version string
}

func (h *Handler) seeded() map[string]bool {
	out := map[string]bool{}
	if h.cfg.Demo != nil && h.cfg.Demo.Agents != nil {
		for _, a := range h.cfg.Demo.Agents() {
			out[a.ClientID] = true
		}
	}
	return out
}

func (h *Handler) listAgents(ctx context.Context) ([]agentView, error) {
	if h.cfg.Clients == nil {
		return nil, errors.New("this gateway uses a remote authorization server: its agents are managed there")
	}
	list, err := h.cfg.Clients.Clients(ctx)
	if err != nil {
		return nil, err
	}
	data, _ := h.activeData()
	seeded := h.seeded()
	out := make([]agentView, 0, len(list))
	for _, c := range list {
		out = append(out, h.view(ctx, c, data.Tiers, seeded))
	}
	// The seeded agents first, in matrix order, then the others by name.
	slices.SortStableFunc(out, func(a, b agentView) int {
		if a.Demo != b.Demo {
			if a.Demo {
				return -1
			}
			return 1
		}
		if a.Demo {
			return a.CreatedAt.Compare(b.CreatedAt)
		}
		return strings.Compare(a.ClientName, b.ClientName)
	})
	return out, nil
}

func (h *Handler) agents(w http.ResponseWriter, r *http.Request, _ *session) {
	list, err := h.listAgents(r.Context())
	if err != nil {
		h.cfg.Logger.Warn("dashboard: the agents could not be listed", "err", err)
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": list})
}

// agentName and providerName bound what the dashboard registers.
var (
	agentName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$`)
	providerName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

func (h *Handler) registerAgent(w http.ResponseWriter, r *http.Request, _ *session) {
	d := h.cfg.Demo
	if d == nil || d.Register == nil || d.Sign == nil {
		writeError(w, http.StatusServiceUnavailable, "agents register themselves with a software statement from their vendor; the dashboard registers agents only in the demo tenant")
		return
	}
	var in struct {
		ClientName string `json:"client_name"`
		Provider   string `json:"provider"`
		Model      string `json:"model"`
		Kind       string `json:"kind"`
		SingleUse  bool   `json:"single_use"`
		// Client is a preset of connect.Clients (or connect.Custom): its
		// redirect URIs when RedirectURIs is empty.
		Client       string   `json:"client"`
		RedirectURIs []string `json:"redirect_uris"`
	}
	if err := decodeBody(r, &in); err != nil {
		writeError(w, http.StatusBadRequest, "bad registration: "+err.Error())
		return
	}
	switch {
	case !agentName.MatchString(in.ClientName):
		writeError(w, http.StatusBadRequest, "client_name: 1-64 letters, digits, spaces, dots, dashes or underscores")
		return
	case !providerName.MatchString(in.Provider):
		writeError(w, http.StatusBadRequest, "provider: 1-64 lower-case letters, digits, dots, dashes or underscores")
		return
	case len(in.Model) > 64:
		writeError(w, http.StatusBadRequest, "model: at most 64 characters")
		return
	case in.Kind != "human" && in.Kind != "machine":
		writeError(w, http.StatusBadRequest, `kind must be "human" (acts for a signed-in user) or "machine" (acts as itself)`)
		return
	case in.Kind == "machine" && (len(in.RedirectURIs) > 0 || (in.Client != "" && in.Client != connect.Custom)):
		writeError(w, http.StatusBadRequest, "redirect_uris and client are for an agent that acts for a user; a machine agent has no redirect")
		return
	}
	redirects, err := humanRedirectURIs(in.Client, in.RedirectURIs)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	model := in.Model
	if model == "" {
		model = "unspecified"
	}
	jws, err := d.Sign(asrv.StatementClaims{SoftwareID: "pbac-dashboard-" + strings.ToLower(strings.ReplaceAll(in.ClientName, " ", "-")),
		AgentProvider: in.Provider, AgentModel: model, SingleUseAccessTokens: in.SingleUse})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "sign the software statement: "+err.Error())
		return
	}
	req := &asrv.RegistrationRequest{ClientName: in.ClientName, SoftwareStatement: jws}
	if in.Kind == "machine" {
		req.GrantTypes, req.TokenEndpointAuthMethod = []string{"client_credentials"}, asrv.AuthMethodSecretBasic
	} else {
		req.GrantTypes = []string{"authorization_code", "refresh_token", asrv.GrantTypeExchange}
		req.RedirectURIs, req.TokenEndpointAuthMethod = redirects, asrv.AuthMethodNone
	}
	// The registration rule of the authorization server (RFC 7591 at
	// /oauth2/register), redirect URIs included: the one validator.
	if err := req.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c, secret, err := d.Register(r.Context(), req)
	if err != nil {
		status, msg := http.StatusInternalServerError, "register: "+err.Error()
		if re, ok := errors.AsType[*asrv.RegistrationError](err); ok {
			status, msg = http.StatusBadRequest, re.Description
			if re.Code == "unapproved_software_statement" {
				status = http.StatusForbidden
			}
		}
		writeError(w, status, msg)
		return
	}
	if secret != "" {
		h.mu.Lock()
		h.secrets[c.ID] = secret
		h.mu.Unlock()
	}
	data, _ := h.activeData()
	v := h.view(r.Context(), c, data.Tiers, h.seeded())
	v.Secret = secret
	h.cfg.Logger.Info("dashboard: agent registered", "client_id", c.ID, "provider", in.Provider, "tier", v.Tier)
	writeJSON(w, http.StatusCreated, v)
}

// humanRedirectURIs are the redirect URIs to register for an agent acting
// for a user: those given, else the preset client's, else (no preset, none
// given) those of every client the dashboard has a snippet for, as the demo
// agents have. The authorization server's validator checks them after.
func humanRedirectURIs(client string, given []string) ([]string, error) {
	var preset connect.Client
	if client != "" && client != connect.Custom {
		c, ok := connect.Lookup(client)
		if !ok {
			return nil, errors.New("client: no such preset; want one of " + strings.Join(clientIDs(), ", ") + " or " + connect.Custom)
		}
		preset = c
	}
	switch {
	case len(given) > 0:
		return given, nil
	case client == "":
		return demo.HumanRedirectURIs(), nil
	case client == connect.Custom:
		return nil, errors.New("redirect_uris: a custom client needs the redirect URIs it sends")
	}
	return preset.RedirectURIs, nil
}

func clientIDs() []string {
	var out []string
	for _, c := range connect.Clients() {
		out = append(out, c.ID)
	}
	return out
}

func (h *Handler) deleteAgent(w http.ResponseWriter, r *http.Request, s *session) {
	if h.cfg.Clients == nil {
		writeError(w, http.StatusServiceUnavailable, "agents are managed by the remote authorization server")
		return
	}
	id := r.PathValue("id")
	if err := h.cfg.Clients.DeleteClient(r.Context(), id); err != nil {
		writeError(w, http.StatusNotFound, "no such agent")
		return
	}
	h.mu.Lock()
	delete(h.secrets, id)
	h.mu.Unlock()
	h.cfg.Logger.Info("dashboard: agent revoked", "client_id", id)
	if h.cfg.Audit != nil {
		by := admin.OperatorAdmin
		if s.user != nil {
			by = s.user.Subject
		}
		h.cfg.Audit.Record(admin.RevokeClientRecord(id, by))
	}
	w.WriteHeader(http.StatusNoContent)
}

// identity finds the agent a scenario runs as: a registered client's id,
// or a seeded agent's name.
func (h *Handler) identity(ctx context.Context, ref string) (agentView, demo.AgentIdentity, error) {
	list, err := h.listAgents(ctx)
	if err != nil {
		return agentView{}, demo.AgentIdentity{}, err
	}
	seeded := map[string]SeededAgent{}
	if h.cfg.Demo != nil && h.cfg.Demo.Agents != nil {
		for _, a := range h.cfg.Demo.Agents() {
			seeded[a.ClientID] = a
			if a.Name == ref {
				ref = a.ClientID
			}
		}
	}
	i := slices.IndexFunc(list, func(a agentView) bool { return a.ClientID == ref })
	if i < 0 {
		return agentView{}, demo.AgentIdentity{}, errUnknownAgent
	}
	a := list[i]
	id := demo.AgentIdentity{ClientID: a.ClientID, Machine: a.Kind == "machine", RedirectURI: a.RedirectURI}
	if id.Machine {
		id.ClientSecret = seeded[a.ClientID].ClientSecret
		h.mu.Lock()
		if s, ok := h.secrets[a.ClientID]; ok {
			id.ClientSecret = s
		}
		h.mu.Unlock()
	}
	return a, id, nil
}

var errUnknownAgent = errors.New("no such agent: give a registered agent's client_id or a demo agent's name")

// revokePerson revokes everything acting for a person, as the admin API's
// POST /admin/people/{sub}/revoke does, and audits it under the operator
// signed in here.
func (h *Handler) revokePerson(w http.ResponseWriter, r *http.Request, s *session) {
	if h.cfg.RevokePerson == nil {
		writeError(w, http.StatusServiceUnavailable, "people are managed by the authorization server, which does not run here")
		return
	}
	sub := r.PathValue("sub")
	reason, err := admin.RevokeReason(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	got, err := h.cfg.RevokePerson(r, sub)
	if errors.Is(err, admin.ErrBadSubject) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		h.cfg.Logger.Error("dashboard: revoking a person failed", "sub", sub, "err", err)
		writeError(w, http.StatusInternalServerError, "the revocation failed; see the server's log")
		return
	}
	operator := "the dashboard (admin token)"
	if s.user != nil {
		operator = "the dashboard (" + s.user.Subject + ")"
	}
	// Their dashboard sessions act for them too (the operator's own
	// included, when they revoke themselves).
	sessions := h.sessions.endPerson(sub)
	if h.cfg.Audit != nil {
		h.cfg.Audit.Record(admin.RevokePersonRecord(sub, operator, reason, got))
	}
	h.cfg.Logger.Info("dashboard: everything acting for a person revoked", "sub", sub, "by", operator, "reason", reason,
		"access_tokens", got.AccessTokens, "refresh_tokens", got.RefreshTokens, "authorization_codes", got.Codes,
		"dashboard_sessions", sessions)
	writeJSON(w, http.StatusOK, map[string]any{"sub": sub, "revoked": got})
}
