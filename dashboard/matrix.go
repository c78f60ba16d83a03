package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/contract"
)

// plain: the tool's decision depends on tier, role and scope only, not
// on the subtree a list or search reaches or the author of what it acts on.
func plain(e contract.Tool) bool { return e.Reach == nil && e.AuthorLookup == nil }

// activeData is the typed view of the active policy's data: what the
// dashboard reads to know what to ask the policy about. Decisions always
// come from evaluating it.
func (h *Handler) activeData() (contract.Data, error) {
	_, d, err := h.cfg.Registry.ActivePolicy()
	switch {
	case err != nil:
		return contract.Data{}, err
	case d == nil:
		return contract.Data{}, errors.New("no policy is active")
	}
	return *d, nil
}

type matrixCell struct {
	Label   string            `json:"label"`
	Allowed []string          `json:"allowed"`
	Denied  []string          `json:"denied"`
	Reasons map[string]string `json:"reasons"`
	// Note qualifies an allowed access (an argument constraint of the role).
	Note string `json:"note,omitempty"`
}

type matrixRow struct {
	Provider string                `json:"provider"`
	Tier     string                `json:"tier"`
	Agents   []string              `json:"agents"`
	Cells    map[string]matrixCell `json:"cells"`
}

// unverifiedRow is the row of an agent without a verified statement or an
// operator's approval.
const unverifiedRow = "(unverified)"

// accessOrder sorts accesses the way people read them.
var accessOrder = []string{"read", "write", "build", "approve", "merge", "deploy", "ddl"}

func accessRank(a string) int {
	if i := slices.Index(accessOrder, a); i >= 0 {
		return i
	}
	return len(accessOrder)
}

// label renders the allowed accesses of a cell: "r/w", "read", "denied",
// "r/w + approve, merge".
func label(allowed []string) string {
	if len(allowed) == 0 {
		return "denied"
	}
	rest := slices.Clone(allowed)
	head := ""
	if slices.Contains(rest, "read") && slices.Contains(rest, "write") {
		head = "r/w"
		rest = slices.DeleteFunc(rest, func(a string) bool { return a == "read" || a == "write" })
	}
	switch {
	case head == "":
		return strings.Join(rest, ", ")
	case len(rest) == 0:
		return head
	default:
		return head + " + " + strings.Join(rest, ", ")
	}
}

// matrix evaluates the active policy for every provider of the trust tiers
// and every access of every resource of the catalogue, for the given user
// (nil: each agent acts as itself). An agent's scopes come from pbac/token,
// then each access is decided by pbac/tool_call on a catalogue tool.
func (h *Handler) computeMatrix(ctx context.Context, user *asrv.User) (map[string]any, error) {
	data, err := h.activeData()
	if err != nil {
		return nil, err
	}
	info, _ := h.cfg.Registry.Active()

	// resource -> access -> a tool that needs it, preferably one whose
	// decision depends on tier, role and scope only (not a search's reach
	// or a merge request's author)
	tools := map[string]map[string]string{}
	for _, name := range slicesSortedKeys(data.Catalogue) {
		e := data.Catalogue[name]
		if e.Resource == "" || e.Access == "" || !contract.IsToolName(name) {
			continue // the matrix calls tools, not prompts or resources
		}
		if tools[e.Resource] == nil {
			tools[e.Resource] = map[string]string{}
		}
		if cur, ok := tools[e.Resource][e.Access]; !ok || (!plain(data.Catalogue[cur]) && plain(e)) {
			tools[e.Resource][e.Access] = name
		}
	}
	resources := slicesSortedKeys(tools)
	accesses := map[string][]string{}
	for _, r := range resources {
		as := slicesSortedKeys(tools[r])
		slices.SortStableFunc(as, func(a, b string) int { return accessRank(a) - accessRank(b) })
		accesses[r] = as
	}

	type provider struct{ name, tier string }
	var providers []provider
	for _, tier := range slicesSortedKeys(data.Agents.TrustTiers) {
		for _, p := range data.Agents.TrustTiers[tier] {
			providers = append(providers, provider{p, tier})
		}
	}
	slices.SortStableFunc(providers, func(a, b provider) int {
		return data.Tiers[b.tier].Rank - data.Tiers[a.tier].Rank
	})
	providers = append(providers, provider{unverifiedRow, ""})

	agentsByProvider := map[string][]string{}
	if list, err := h.listAgents(ctx); err == nil {
		for _, a := range list {
			p := a.Provider
			if (!a.Verified && a.Review != asrv.ReviewApproved) || p == "" {
				p = unverifiedRow
			}
			agentsByProvider[p] = append(agentsByProvider[p], a.ClientName)
		}
	}

	resource := h.cfg.GatewayURL + "/mcp"
	now := time.Now().Unix()
	var rows []matrixRow
	for _, p := range providers {
		client := &contract.Client{ClientID: "matrix-" + p.name, AgentProvider: p.name, AgentModel: "any", Verified: true}
		if p.name == unverifiedRow {
			client = &contract.Client{ClientID: "matrix-unverified"}
		}
		in := contract.Input{Client: client, Now: now,
			Request: contract.Request{GrantType: "client_credentials", Resource: []string{resource}}}
		var subject *contract.Subject
		if user != nil {
			subject = &contract.Subject{Sub: user.Subject, Roles: user.Roles, Groups: user.Groups}
			in.Subject, in.Request.GrantType = subject, "authorization_code"
		}
		var td contract.TokenResult
		tokDecision, err := h.decide(ctx, contract.Token, in, &td)
		if err != nil {
			return nil, err
		}
		row := matrixRow{Provider: p.name, Tier: td.Tier, Agents: agentsByProvider[p.name], Cells: map[string]matrixCell{}}
		if row.Agents == nil {
			row.Agents = []string{}
		}
		if row.Tier == "" {
			row.Tier = p.tier
		}
		for _, r := range resources {
			cell := matrixCell{Allowed: []string{}, Denied: []string{}, Reasons: map[string]string{}}
			args, note := constrainedArgs(data, user, r)
			for _, a := range accesses[r] {
				call := contract.Input{Client: client, Subject: subject, Now: now,
					Token:   &contract.TokenClaims{ClientID: client.ClientID, Scp: td.Scopes, Aud: []string{resource}, Iat: now, Exp: now + 300},
					Request: contract.Request{Backend: r, Method: "tools/call", Tool: tools[r][a], Arguments: args}}
				if data.Catalogue[tools[r][a]].AuthorLookup != nil {
					// The matrix shows what the tier and role allow on
					// someone else's merge request.
					call.Request.ResourceAttributes = map[string]any{"author": "another agent"}
				}
				if user != nil {
					call.Token.Sub = user.Subject
				}
				d, err := h.decide(ctx, contract.ToolCall, call, nil)
				switch {
				case err != nil:
					cell.Denied = append(cell.Denied, a)
					cell.Reasons[a] = "the policy could not decide: " + err.Error()
				case d.Allow && tokDecision.Allow:
					cell.Allowed = append(cell.Allowed, a)
				default:
					cell.Denied = append(cell.Denied, a)
					reasons := d.Reasons
					if !tokDecision.Allow {
						reasons = tokDecision.Reasons
					}
					cell.Reasons[a] = strings.Join(reasons, "; ")
				}
			}
			cell.Label = label(cell.Allowed)
			if len(cell.Allowed) > 0 {
				cell.Note = note
			}
			row.Cells[r] = cell
		}
		rows = append(rows, row)
	}
	out := map[string]any{"policy_version": info.Version, "resources": resources, "accesses": accesses, "rows": rows, "user": ""}
	if user != nil {
		out["user"] = user.Subject
	}
	return out, nil
}

// constrainedArgs are arguments that meet the user's role constraints on a
// resource (so the matrix shows what the role allows within them), with a
// note saying what the constraint is. The user's roles are their own and
// those the policy data gives their groups.
func constrainedArgs(data contract.Data, user *asrv.User, resource string) (contract.RawJSON, string) {
	if user == nil {
		return contract.RawJSON("{}"), ""
	}
	for _, role := range data.RolesOf(user.Roles, user.Groups) {
		c, ok := data.Roles[role].ArgConstraints[resource]
		if !ok || c.Arg == "" || len(c.PathPrefixes) == 0 {
			continue
		}
		pre := strings.TrimSuffix(c.PathPrefixes[0], "/")
		b, _ := json.Marshal(map[string]string{c.Arg: pre + "/readme.md"})
		return b, "only " + c.Arg + " under " + strings.Join(c.PathPrefixes, ", ")
	}
	return contract.RawJSON("{}"), ""
}

func slicesSortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (h *Handler) matrix(w http.ResponseWriter, r *http.Request, s *session) {
	var user *asrv.User
	sub := r.URL.Query().Get("user")
	switch {
	case sub == "":
	case h.restricted(s):
		// A person who does not operate sees the matrix of their own
		// agents (the first steps' "what may my agent do"), or of agents
		// acting as themselves, not another person's.
		if s.user == nil || sub != s.user.Subject {
			writeError(w, http.StatusForbidden, "only an operator may see the matrix of another person")
			return
		}
		u := *s.user
		user = &u
	default:
		u, err := h.lookupUser(r.Context(), sub)
		if err != nil {
			writeError(w, http.StatusBadRequest, "unknown user "+sub)
			return
		}
		user = &u
	}
	m, err := h.computeMatrix(r.Context(), user)
	if err != nil {
		h.cfg.Logger.Warn("dashboard: the matrix could not be computed", "user", sub, "err", err)
		writeError(w, http.StatusServiceUnavailable, "compute the matrix: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (h *Handler) lookupUser(ctx context.Context, sub string) (asrv.User, error) {
	if h.cfg.Users == nil {
		return asrv.User{}, asrv.ErrUnknownUser
	}
	return h.cfg.Users.Lookup(ctx, sub)
}
