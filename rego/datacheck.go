package rego

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// DataSchemaID is the $id of the shipped policy data schema
// (policy/data.schema.json). Data checked against a schema with this id is
// also held to the shipped data model's cross-references (CheckData); a
// custom bundle with a data model of its own carries a schema with another
// id and gets its schema alone.
const DataSchemaID = "https://pbac-gateway.dev/schemas/policy-data/v1"

// dataSchemaFile is the data schema's name in a policy directory (Build)
// and, under pbac/, in a bundle (WriteTarGz, ReadTarGz).
const dataSchemaFile = "data.schema.json"

// maxDataProblems bounds how many problems a DataError lists.
const maxDataProblems = 50

// DataProblem is one thing wrong with a policy data document: where (a
// JSON pointer into the data, "" for the whole document) and what was
// expected there.
type DataProblem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// DataError is policy data refused by CheckData: every problem found, by
// path.
type DataError struct {
	Problems []DataProblem
	// Omitted is how many more problems were found than are listed.
	Omitted int
}

func (e *DataError) Error() string {
	parts := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		at := p.Path
		if at == "" {
			at = "/"
		}
		parts = append(parts, at+": "+p.Message)
	}
	more := ""
	if e.Omitted > 0 {
		more = fmt.Sprintf("; and %d more", e.Omitted)
	}
	return fmt.Sprintf("the policy data has %d problem(s): %s%s", len(e.Problems)+e.Omitted, strings.Join(parts, "; "), more)
}

// CheckData checks a policy data document against the bundle's data
// schema (JSON Schema, draft 2020-12 unless the schema says otherwise)
// and, when the schema is the shipped data model's (DataSchemaID), the
// cross-references no schema can express (crossReferences). An empty
// schema checks nothing: a bundle without one declares no data model. Bad
// data is a *DataError; a schema that does not compile is another error.
func CheckData(schema, data []byte) error {
	if len(bytes.TrimSpace(schema)) == 0 {
		return nil
	}
	sch, id, err := compileDataSchema(schema)
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return &DataError{Problems: []DataProblem{{Path: "", Message: "one JSON document: " + err.Error()}}}
	}
	var problems []DataProblem
	if err := sch.Validate(doc); err != nil {
		verr, ok := err.(*jsonschema.ValidationError)
		if !ok {
			return fmt.Errorf("check the policy data against its schema: %w", err)
		}
		problems = schemaProblems(verr)
	} else if id == DataSchemaID {
		var d modelData
		if err := json.Unmarshal(data, &d); err != nil {
			// The schema admitted it, so the model's types must read it.
			return fmt.Errorf("read the policy data the schema admitted: %w", err)
		}
		problems = crossReferences(&d)
	}
	if len(problems) == 0 {
		return nil
	}
	slices.SortFunc(problems, func(a, b DataProblem) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
	problems = slices.Compact(problems)
	out := &DataError{Problems: problems}
	if len(problems) > maxDataProblems {
		out.Problems, out.Omitted = problems[:maxDataProblems], len(problems)-maxDataProblems
	}
	return out
}

// CheckDataSchema tells whether schema compiles as a JSON Schema (an
// empty one does: it declares no data model).
func CheckDataSchema(schema []byte) error {
	if len(bytes.TrimSpace(schema)) == 0 {
		return nil
	}
	_, _, err := compileDataSchema(schema)
	return err
}

// compileDataSchema compiles a bundle's data schema, offline: a $ref may
// point only inside the schema itself (no loader is configured, so a
// remote reference fails to compile).
func compileDataSchema(schema []byte) (*jsonschema.Schema, string, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, "", fmt.Errorf("read the data schema: %w", err)
	}
	id := ""
	if obj, ok := doc.(map[string]any); ok {
		id, _ = obj["$id"].(string)
	}
	const loc = "pbac:///data.schema.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	if err := c.AddResource(loc, doc); err != nil {
		return nil, "", fmt.Errorf("read the data schema: %w", err)
	}
	sch, err := c.Compile(loc)
	if err != nil {
		return nil, "", fmt.Errorf("compile the data schema: %w", err)
	}
	return sch, id, nil
}

// noLoader refuses every schema that is not in the bundle: validation
// reads no file and no network.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("the data schema may reference only itself, not %s", url)
}

// schemaProblems flattens a validation error to its leaves: the specific
// keywords that failed, each at its instance location. (The shipped schema
// uses patternProperties, not propertyNames: jsonschema v6.0.3 reports a
// propertyNames failure at a location it later reuses, so its path is not
// reliable; a custom schema's is shown as the library gives it.)
func schemaProblems(e *jsonschema.ValidationError) []DataProblem {
	p := message.NewPrinter(language.English)
	var out []DataProblem
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, DataProblem{Path: pointer(e.InstanceLocation...), Message: e.ErrorKind.LocalizedString(p)})
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(e)
	return out
}

// pointer is the JSON pointer (RFC 6901) of the path tokens.
func pointer(tokens ...string) string {
	var sb strings.Builder
	for _, t := range tokens {
		sb.WriteByte('/')
		sb.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return sb.String()
}

// modelData is the part of the shipped data model the cross-references
// read (rego/README.md, Data model).
type modelData struct {
	Agents struct {
		TrustTiers    map[string][]string `json:"trust_tiers"`
		DefaultTier   string              `json:"default_tier"`
		CIMDProviders map[string]string   `json:"cimd_providers"`
	} `json:"agents"`
	Methods  map[string]string `json:"methods"`
	Backends map[string]struct {
		Resource string            `json:"resource"`
		Methods  map[string]string `json:"methods"`
	} `json:"backends"`
	Tiers map[string]struct {
		Grants             map[string][]string `json:"grants"`
		SeparationOfDuties []string            `json:"separation_of_duties"`
		Methods            []string            `json:"methods"`
		TokenTTL           *int64              `json:"token_ttl_seconds"`
		MaxTokenTTL        *int64              `json:"max_token_ttl_seconds"`
	} `json:"tiers"`
	Roles map[string]struct {
		Grants         map[string][]string `json:"grants"`
		ArgConstraints map[string]struct {
			Arg string `json:"arg"`
		} `json:"arg_constraints"`
	} `json:"roles"`
	Identity struct {
		GroupRoles map[string][]string `json:"group_roles"`
	} `json:"identity"`
	ProtectedArguments []struct {
		ID        string   `json:"id"`
		Resources []string `json:"resources"`
	} `json:"protected_arguments"`
	ApprovalRules []struct {
		ID        string   `json:"id"`
		Resources []string `json:"resources"`
		Access    []string `json:"access"`
		Tiers     []string `json:"tiers"`
		// Requester lets the person the agent acts for confirm in the
		// client; ExcludeRequester says they may never approve.
		Requester        bool `json:"requester"`
		ExcludeRequester bool `json:"exclude_requester"`
	} `json:"approval_rules"`
	Catalogue map[string]struct {
		Resource  string            `json:"resource"`
		Access    string            `json:"access"`
		Arguments map[string]string `json:"arguments"`
		Reach     *struct {
			Arg string `json:"arg"`
		} `json:"reach"`
	} `json:"catalogue"`
}

// crossRule is one cross-reference of the data model that JSON Schema
// cannot express; crossRuleMessages says what each expects.
type crossRule int

const (
	ruleTrustTier crossRule = iota
	ruleDefaultTier
	ruleGrantResource
	ruleGrantAccess
	ruleDutyAccess
	ruleToolGranted
	ruleMethodAccess
	ruleTierMethod
	ruleGroupRole
	ruleConstraintResource
	ruleProtectedResource
	ruleProtectedID
	ruleReachArg
	ruleCIMDProvider
	ruleTTL
	ruleApprovalID
	ruleApprovalResource
	ruleApprovalAccess
	ruleApprovalTier
	ruleApprovalRequester
)

// crossRuleMessages is what each cross-reference expects; %[1]s is the
// value found, %[2]s what would do.
var crossRuleMessages = [...]string{
	ruleTrustTier:          "a tier of /tiers; %[1]q is none (tiers: %[2]s)",
	ruleDefaultTier:        "a tier of /tiers; %[1]q is none (tiers: %[2]s)",
	ruleGrantResource:      "a resource of a catalogue tool or a backend; %[1]q is none (resources: %[2]s)",
	ruleGrantAccess:        "an access some catalogue tool uses; %[1]q is none (accesses: %[2]s)",
	ruleDutyAccess:         "an access some catalogue tool uses; %[1]q is none (accesses: %[2]s)",
	ruleToolGranted:        "an access some tier or role grants on the tool's resource; %[1]s is granted by none",
	ruleMethodAccess:       "\"any\" or an access some catalogue tool uses; %[1]q is neither (accesses: %[2]s)",
	ruleTierMethod:         "a method of /methods or of a backend's methods; %[1]q is none",
	ruleGroupRole:          "a role of /roles; %[1]q is none (roles: %[2]s)",
	ruleConstraintResource: "a resource the role grants; the role grants nothing on %[1]q (it grants: %[2]s)",
	ruleProtectedResource:  "a resource of a catalogue tool or a backend; %[1]q is none (resources: %[2]s)",
	ruleProtectedID:        "an id no other protected rule has; %[1]q is used more than once",
	ruleReachArg:           "a path argument the tool declares in its arguments; %[1]q is not one",
	ruleCIMDProvider:       "a provider listed in /agents/trust_tiers; %[1]q is listed in none (providers: %[2]s)",
	ruleTTL:                "max_token_ttl_seconds at least token_ttl_seconds; %[1]s is less",
	ruleApprovalID:         "an id no other approval rule has; %[1]q is used more than once",
	ruleApprovalResource:   "a resource of a catalogue tool or a backend; %[1]q is none (resources: %[2]s)",
	ruleApprovalAccess:     "an access some catalogue tool uses; %[1]q is none (accesses: %[2]s)",
	ruleApprovalTier:       "a tier of /tiers; %[1]q is none (tiers: %[2]s)",
	ruleApprovalRequester:  "false where exclude_requester is true (it is %[1]s): the requester confirming their own call is what exclude_requester forbids%[2]s",
}

// crossReferences checks what the shipped data model's parts say of each
// other: every name one part uses is defined by the part that owns it.
// A tier grant of an access no tool uses, a trust tier that is not a
// tier, a tool no tier or role can be granted would each leave the
// policy deciding other than its author meant, silently.
func crossReferences(d *modelData) []DataProblem {
	var out []DataProblem
	add := func(r crossRule, path []string, found, known string) {
		out = append(out, DataProblem{Path: pointer(path...), Message: fmt.Sprintf(crossRuleMessages[r], found, known)})
	}
	list := func(set map[string]bool) string {
		if len(set) == 0 {
			return "none"
		}
		return strings.Join(slices.Sorted(maps.Keys(set)), ", ")
	}

	tiers := map[string]bool{}
	for t := range d.Tiers {
		tiers[t] = true
	}
	resources, accesses := map[string]bool{}, map[string]bool{}
	for name, tool := range d.Catalogue {
		resources[tool.Resource] = true
		accesses[tool.Access] = true
		if backend, _, ok := strings.Cut(name, "."); ok {
			resources[backend] = true
		}
	}
	for b, be := range d.Backends {
		resources[b] = true
		if be.Resource != "" {
			resources[be.Resource] = true
		}
	}
	roles := map[string]bool{}
	for r := range d.Roles {
		roles[r] = true
	}

	// Who grants what: "resource:access" from any tier or role.
	granted := map[string]bool{}
	checkGrants := func(path []string, grants map[string][]string) {
		for res, accs := range grants {
			if !resources[res] {
				add(ruleGrantResource, append(slices.Clone(path), res), res, list(resources))
			}
			for i, a := range accs {
				granted[res+":"+a] = true
				if !accesses[a] {
					add(ruleGrantAccess, append(slices.Clone(path), res, strconv.Itoa(i)), a, list(accesses))
				}
			}
		}
	}

	for t := range d.Agents.TrustTiers {
		if !tiers[t] {
			add(ruleTrustTier, []string{"agents", "trust_tiers", t}, t, list(tiers))
		}
	}
	if !tiers[d.Agents.DefaultTier] {
		add(ruleDefaultTier, []string{"agents", "default_tier"}, d.Agents.DefaultTier, list(tiers))
	}
	providers := map[string]bool{}
	for _, ps := range d.Agents.TrustTiers {
		for _, p := range ps {
			providers[p] = true
		}
	}
	for url, p := range d.Agents.CIMDProviders {
		if !providers[p] {
			add(ruleCIMDProvider, []string{"agents", "cimd_providers", url}, p, list(providers))
		}
	}

	methods := map[string]bool{}
	checkMethods := func(path []string, m map[string]string) {
		for name, a := range m {
			methods[name] = true
			if a != "any" && !accesses[a] {
				add(ruleMethodAccess, append(slices.Clone(path), name), a, list(accesses))
			}
		}
	}
	checkMethods([]string{"methods"}, d.Methods)
	for b, be := range d.Backends {
		checkMethods([]string{"backends", b, "methods"}, be.Methods)
	}

	for t, tier := range d.Tiers {
		checkGrants([]string{"tiers", t, "grants"}, tier.Grants)
		for i, a := range tier.SeparationOfDuties {
			if !accesses[a] {
				add(ruleDutyAccess, []string{"tiers", t, "separation_of_duties", strconv.Itoa(i)}, a, list(accesses))
			}
		}
		for i, m := range tier.Methods {
			if !methods[m] {
				add(ruleTierMethod, []string{"tiers", t, "methods", strconv.Itoa(i)}, m, "")
			}
		}
		if tier.TokenTTL != nil && tier.MaxTokenTTL != nil && *tier.MaxTokenTTL < *tier.TokenTTL {
			add(ruleTTL, []string{"tiers", t, "max_token_ttl_seconds"}, strconv.FormatInt(*tier.MaxTokenTTL, 10), "")
		}
	}
	for r, role := range d.Roles {
		checkGrants([]string{"roles", r, "grants"}, role.Grants)
		for res := range role.ArgConstraints {
			if len(role.Grants[res]) == 0 {
				add(ruleConstraintResource, []string{"roles", r, "arg_constraints", res}, res, strings.Join(slices.Sorted(maps.Keys(role.Grants)), ", "))
			}
		}
	}
	for g, rs := range d.Identity.GroupRoles {
		for i, r := range rs {
			if !roles[r] {
				add(ruleGroupRole, []string{"identity", "group_roles", g, strconv.Itoa(i)}, r, list(roles))
			}
		}
	}
	ids := map[string]bool{}
	for i, rule := range d.ProtectedArguments {
		if ids[rule.ID] {
			add(ruleProtectedID, []string{"protected_arguments", strconv.Itoa(i), "id"}, rule.ID, "")
		}
		ids[rule.ID] = true
		for j, res := range rule.Resources {
			if !resources[res] {
				add(ruleProtectedResource, []string{"protected_arguments", strconv.Itoa(i), "resources", strconv.Itoa(j)}, res, list(resources))
			}
		}
	}
	approvalIDs := map[string]bool{}
	for i, rule := range d.ApprovalRules {
		at := func(key string, j ...int) []string {
			p := []string{"approval_rules", strconv.Itoa(i), key}
			for _, n := range j {
				p = append(p, strconv.Itoa(n))
			}
			return p
		}
		if approvalIDs[rule.ID] {
			add(ruleApprovalID, at("id"), rule.ID, "")
		}
		approvalIDs[rule.ID] = true
		for j, res := range rule.Resources {
			if !resources[res] {
				add(ruleApprovalResource, at("resources", j), res, list(resources))
			}
		}
		for j, a := range rule.Access {
			if !accesses[a] {
				add(ruleApprovalAccess, at("access", j), a, list(accesses))
			}
		}
		for j, t := range rule.Tiers {
			if !tiers[t] {
				add(ruleApprovalTier, at("tiers", j), t, list(tiers))
			}
		}
		if rule.Requester && rule.ExcludeRequester {
			add(ruleApprovalRequester, at("requester"), "true", "")
		}
	}
	for name, tool := range d.Catalogue {
		if !granted[tool.Resource+":"+tool.Access] {
			add(ruleToolGranted, []string{"catalogue", name, "access"}, tool.Resource+":"+tool.Access, "")
		}
		if tool.Reach != nil && tool.Arguments[tool.Reach.Arg] != "path" {
			add(ruleReachArg, []string{"catalogue", name, "reach", "arg"}, tool.Reach.Arg, "")
		}
	}
	return out
}
