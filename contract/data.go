package contract

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Data is the typed view of the policy data (rego/README.md, "Data
// model"): the parts the Go side reads — the scopes there are, what the
// catalogue says of each tool, the backends' resources. Decisions never
// come from it: they come from evaluating the policy. Every reader (the
// gateway's argument checks, the dashboard's matrix, the authorization
// server's advertised scopes, pbac bench) reads this one view.
type Data struct {
	Agents             Agents              `json:"agents"`
	Tiers              map[string]Tier     `json:"tiers"`
	Roles              map[string]Role     `json:"roles"`
	Catalogue          map[string]Tool     `json:"catalogue"`
	Backends           map[string]Backend  `json:"backends"`
	ProtectedArguments []ProtectedArgument `json:"protected_arguments"`
	People             People              `json:"identity"`
}

// People is data.identity: what people's groups at their identity source
// (the IdP's groups claim, the users file) give.
type People struct {
	// GroupRoles are group -> the roles it gives (identity.rego).
	GroupRoles map[string][]string `json:"group_roles"`
	// OperatorGroups are the groups whose people operate the dashboard
	// (change policy and agents), besides the admin token. The dashboard
	// reads them at each change it is asked for, so moving a group here
	// applies to the next one; no group is an operator by default.
	OperatorGroups []string `json:"operator_groups"`
}

// Operator tells whether a person in groups operates the dashboard: one of
// the groups is in OperatorGroups.
func (p People) Operator(groups []string) bool {
	for _, g := range groups {
		if g != "" && slices.Contains(p.OperatorGroups, g) {
			return true
		}
	}
	return false
}

// Agents is data.agents: the providers of each trust tier, and who may
// vouch for which provider (tiers.rego, client_providers).
type Agents struct {
	TrustTiers  map[string][]string `json:"trust_tiers"`
	DefaultTier string              `json:"default_tier"`
	// StatementIssuers are trusted statement issuer name -> the providers
	// its statements may name ("*": any).
	StatementIssuers map[string][]string `json:"statement_issuers"`
	// CIMDProviders are client id metadata document URL (or a prefix
	// ending in "/") -> provider.
	CIMDProviders map[string]string `json:"cimd_providers"`
}

// Providers are the providers listed in any trust tier, sorted.
func (d *Data) Providers() []string {
	set := map[string]bool{}
	for _, ps := range d.Agents.TrustTiers {
		for _, p := range ps {
			set[p] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// UserAttestable are the providers a person may vouch for at sign-in:
// those listed in a tier that allows user attestation, sorted.
func (d *Data) UserAttestable() []string {
	set := map[string]bool{}
	for t, ps := range d.Agents.TrustTiers {
		if !d.Tiers[t].UserAttestation {
			continue
		}
		for _, p := range ps {
			set[p] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// Tier is one trust tier of data.tiers.
type Tier struct {
	Rank int `json:"rank"`
	// Grants are resource -> accesses.
	Grants          map[string][]string `json:"grants"`
	TokenTTLSeconds int64               `json:"token_ttl_seconds"`
	// UserAttestation lets a person vouch for a client as one of this
	// tier's providers (attestation kind "user"); off unless set.
	UserAttestation bool `json:"user_attestation"`
}

// Role is one role of data.roles.
type Role struct {
	Grants map[string][]string `json:"grants"`
	// ArgConstraints are resource -> the argument the role is confined by.
	ArgConstraints map[string]ArgConstraint `json:"arg_constraints"`
}

// ArgConstraint confines a role's calls on a resource to argument values
// under PathPrefixes.
type ArgConstraint struct {
	Arg          string   `json:"arg"`
	PathPrefixes []string `json:"path_prefixes"`
}

// Tool is one catalogue entry, "<backend>.<tool>".
type Tool struct {
	Resource string `json:"resource"`
	Access   string `json:"access"`
	// Arguments are the path and name arguments: name -> "path" or "name".
	Arguments map[string]string `json:"arguments"`
	// ActorArg is the argument naming who acts ("" for none).
	ActorArg string `json:"actor_arg"`
	// AuthorLookup, when set, is the backend call that finds the author of
	// what the tool acts on.
	AuthorLookup *AuthorLookup `json:"author_lookup"`
	// Reach, when set, is the subtree a list or search tool reads.
	Reach *Reach `json:"reach"`
	// Pin, when set, is the hash of the definition an operator reviewed
	// ("sha256:<hex>", as Request.ToolDefinition.Hash): another
	// definition under the tool's name hides it and denies its calls.
	Pin string `json:"pin"`
	// URIPrefix marks an entry of a resource ("<backend>.resource:<uri>/")
	// that decides every canonical URI under its key's.
	URIPrefix bool `json:"uri_prefix"`
}

// IsToolName tells a tool's catalogue name ("<backend>.<tool>") from a
// prompt's ("<backend>.prompt:<name>") and a resource's
// ("<backend>.resource:<uri>").
func IsToolName(name string) bool {
	_, local, ok := strings.Cut(name, ".")
	return ok && !strings.HasPrefix(local, "prompt:") && !strings.HasPrefix(local, "resource:")
}

// Scope is the scope the tool needs, "<resource>:<access>"; "" when the
// entry names no resource or access.
func (t Tool) Scope() string {
	if t.Resource == "" || t.Access == "" {
		return ""
	}
	return t.Resource + ":" + t.Access
}

// AuthorLookup is a catalogue entry's author_lookup: call the backend's
// Tool with the call's Arguments of these names and read Field of the
// result's structured content.
type AuthorLookup struct {
	Tool      string   `json:"tool"`
	Arguments []string `json:"arguments"`
	Field     string   `json:"field"`
}

// Reach is a catalogue entry's reach: the argument naming the subtree a
// list or search tool reads, else Default.
type Reach struct {
	Arg     string `json:"arg"`
	Default string `json:"default"`
}

// Backend is one entry of data.backends: the resource whose grants decide
// the backend's methods (default: the backend's name).
type Backend struct {
	Resource string            `json:"resource"`
	Methods  map[string]string `json:"methods"`
	// AllowDefinitionDrift lets the backend's pinned tools be listed and
	// called while they serve another definition than their pin.
	AllowDefinitionDrift bool `json:"allow_definition_drift"`
}

// ProtectedArgument is one rule of data.protected_arguments.
type ProtectedArgument struct {
	ID           string   `json:"id"`
	Resources    []string `json:"resources"`
	Args         []string `json:"args"`
	PathPrefixes []string `json:"path_prefixes"`
}

// ParseData reads the typed view of policy data (one JSON object).
func ParseData(raw []byte) (*Data, error) {
	var d Data
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("read the policy data: %w", err)
	}
	return &d, nil
}

// Scopes lists every "<resource>:<access>" scope the data knows, sorted:
// each catalogued tool's, and each tier and role grant's. They are the
// scopes the authorization server advertises and clients may ask for;
// policy decides which are granted.
func (d *Data) Scopes() []string {
	seen := map[string]bool{}
	add := func(res, acc string) {
		if res != "" && acc != "" {
			seen[res+":"+acc] = true
		}
	}
	for _, t := range d.Catalogue {
		add(t.Resource, t.Access)
	}
	grants := func(g map[string][]string) {
		for res, accs := range g {
			for _, a := range accs {
				add(res, a)
			}
		}
	}
	for _, t := range d.Tiers {
		grants(t.Grants)
	}
	for _, r := range d.Roles {
		grants(r.Grants)
	}
	return slices.Sorted(maps.Keys(seen))
}

// RolesOf are the roles of a person who holds roles and is in groups: the
// roles themselves, then those the data's group_roles give each group, each
// once, in that order (roles_of in tiers.rego). It is for readers that show
// or prepare what a person may do (the dashboard's matrix); decisions come
// from evaluating the policy, which computes the same set.
func (d *Data) RolesOf(roles, groups []string) []string {
	out := make([]string, 0, len(roles))
	add := func(r string) {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	for _, r := range roles {
		add(r)
	}
	for _, g := range groups {
		for _, r := range d.People.GroupRoles[g] {
			add(r)
		}
	}
	return out
}

// ProtectedArgs lists the arguments a protected_arguments rule names for
// resource, in the order the rules name them.
func (d *Data) ProtectedArgs(resource string) []string {
	var out []string
	for _, p := range d.ProtectedArguments {
		if slices.Contains(p.Resources, resource) {
			out = append(out, p.Args...)
		}
	}
	return out
}
