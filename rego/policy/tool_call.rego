# pbac/tool_call: may this client call this MCP tool with these arguments now?
package pbac

tool_name := t if {
	t := request.tool
	is_string(t)
	t != ""
} else := ""

tool_entry := catalogue_entry(tool_name)

in_catalogue if tool_entry != null

tool_resource := tool_entry.resource if in_catalogue else := ""

tool_access := tool_entry.access if in_catalogue else := ""

required_scope := concat(":", [tool_resource, tool_access])

tool_prefix(t) := split(t, ".")[0]

arguments := a if {
	a := request.arguments
	is_object(a)
} else := {}

request_backend := b if {
	b := request.backend
	b != null
	b != ""
}

backend_mismatch(t) if {
	request_backend
	request_backend != tool_prefix(t)
}

scope_missing if {
	in_catalogue
	tok != null
	not token_has_scope(required_scope)
}

# ---------------------------------------------------------------------------
# What the catalogue declares about a tool's arguments
#
#   "arguments": {"<name>": "path" | "name"}  a path or name argument: when
#       present it must be canonical (canonical_value).
#   "actor_arg": "<name>"  the argument naming who acts (approver, author):
#       when present it must be the caller (caller_identity); the gateway
#       fills it in when it is absent.
#   "author_lookup": {"tool", "arguments", "field"}  the gateway looks the
#       resource's author up at the backend and passes it as
#       request.resource_attributes.author; the caller may not act on what
#       it authored (no self-approval).
#   "reach": {"arg", "default"}  a list or search tool: the path argument
#       (or default, "/" when none) whose subtree the tool reads; it may
#       not cover a protected path prefix of the tool's resource.

arg_kinds(e) := k if {
	k := e.arguments
	is_object(k)
} else := {}

# declared_names(e, r): every argument name the policy looks at for a tool
# with catalogue entry e on resource r.
declared_names(e, r) := {n |
	some n, _ in arg_kinds(e)
} | {n |
	n := e.actor_arg
	is_string(n)
} | {n |
	n := e.reach.arg
	is_string(n)
} | {n |
	some rule in data.protected_arguments
	r in rule.resources
	some n in rule.args
	is_string(n)
} | {n |
	some role, _ in data.roles
	n := data.roles[role].arg_constraints[r].arg
	is_string(n)
}

# case_variant(names, k): argument name k is another spelling ("Path",
# "PATH") of an argument policy looks at, which a case-insensitive decoder
# in the backend would read as that argument.
case_variant(names, k) if {
	not k in names
	lk := lower(k)
	some n in names
	lower(n) == lk
}

# The argument names policy looks at for the called tool, once per
# decision.
tool_declared_names := declared_names(tool_entry, tool_resource) if in_catalogue else := set()

# The strings of this call whose characters policy checks: the argument
# names (one with a refused character, such as "ſql", which folds to
# "sql", is denied) and the string values of the arguments it looks at.
checked_strings := {k | some k, _ in arguments} | {v |
	some n in tool_declared_names
	v := arguments[n]
	is_string(v)
}

# The caller's identity as the backend records it: the human the token
# names, else the agent (client_id). The gateway forces actor arguments to
# it.
caller_identity(t) := s if {
	s := t.sub
	is_string(s)
	s != ""
} else := c if {
	c := t.client_id
	is_string(c)
}

# bad_actor(e, args, t): the actor argument is present and is not exactly
# the caller.
bad_actor(e, args, t) if {
	name := e.actor_arg
	is_string(name)
	v := args[name]
	not v == caller_identity(t)
}

# The author of the resource, as the gateway looked it up at the backend.
looked_up_author(req) := a if {
	a := req.resource_attributes.author
	is_string(a)
	a != ""
}

needs_author(e) if is_object(e.author_lookup)

# Identities are compared trimmed and lower-cased on both sides.
identity_key(x) := lower(trim_space(x))

# reach_of(e, args): the path a list or search tool reads below.
reach_of(e, args) := v if {
	v := args[e.reach.arg]
} else := d if {
	d := e.reach.default
} else := "/"

# reach_hit(e, r, args, rule, how): the reach covers a protected prefix of
# rule (it holds the protected area or lies inside it). how is
# canonical_as's: "checked" in the full rules, "vouched" on the fast path.
reach_hit(e, r, args, rule, how) if {
	is_object(e.reach)
	v := reach_of(e, args)
	canonical_as("path", v, how)
	p := folded(v)
	r in rule.resources
	some pre in rule.path_prefixes
	is_string(pre)
	covers(p, prefix_path(pre))
}

covers(p, pre) if path_under(pre, p)

covers(p, pre) if path_under(p, pre)

# A reach that is not a canonical path (a bad default in data; a bad
# argument is denied as a declared path).
reach_unusable(e, args, how) if {
	is_object(e.reach)
	not canonical_as("path", reach_of(e, args), how)
}

# ---------------------------------------------------------------------------
# Argument protection (data.protected_arguments)
#
# protected_state(rule, v, how): "ok", or why the value of a protected
# argument is refused: not a string, not canonical (for a rule with path
# prefixes), or protected (under a prefix, case-insensitively; or holding a
# substring, lower-cased). how is canonical_as's.

protected_state(rule, v, how) := "not a string" if {
	not is_string(v)
} else := "not canonical" if {
	has_prefixes(rule)
	not canonical_as("ref", v, how)
} else := "protected" if {
	protected_hit(rule, v, how)
} else := "ok"

has_prefixes(rule) if {
	some pre in rule.path_prefixes
	is_string(pre)
}

protected_hit(rule, v, how) if {
	has_prefixes(rule)
	canonical_as("ref", v, how)
	p := folded(v)
	some pre in rule.path_prefixes
	is_string(pre)
	path_under(p, prefix_path(pre))
}

protected_hit(rule, v, _) if {
	lv := lower(v)
	some sub in rule.substrings
	is_string(sub)
	sub != ""
	contains(lv, lower(sub))
}

protected_violations contains msg if {
	in_catalogue
	some rule in data.protected_arguments
	tool_resource in rule.resources
	some name in rule.args
	v := arguments[name]
	st := protected_state(rule, v, "checked")
	st != "ok"
	msg := protected_message(rule, name, st)
}

protected_message(rule, name, "protected") := concat("", [
	"argument ", name, " is protected by rule ", rule.id,
	" (", object.get(rule, "description", rule.id), ")",
])

protected_message(rule, name, "not a string") := concat("", ["argument ", name, " must be a string (protected rule ", rule.id, ")"])

protected_message(rule, name, "not canonical") := concat("", ["argument ", name, " is not canonical (protected rule ", rule.id, ")"])

# ---------------------------------------------------------------------------
# Role argument constraints (data.roles[role].arg_constraints[resource])

# args is the call's arguments object. (Data is always read through full
# references such as data.roles[role].grants[r]: under the unit tests' `with
# data.x.y as v`, a parent object bound to a variable would still show the
# replaced keys merged with the original ones.)
role_constrains(role, r) if is_object(data.roles[role].arg_constraints[r])

# An allow-list: the value must be canonical and under a prefix exactly,
# case kept.
role_constraint_ok(role, r, args) := true if {
	not role_constrains(role, r)
} else := true if {
	c := data.roles[role].arg_constraints[r]
	v := args[c.arg]
	canonical_alone("ref", v)
	some pre in c.path_prefixes
	is_string(pre)
	path_under(rooted(v), exact_prefix(pre))
} else := true if {
	c := data.roles[role].arg_constraints[r]
	object.get(c, "required", false) != true
	object.get(args, c.arg, null) == null
} else := false

# role_call_ok(s, r, a, args): some role of subject s grants a on r and its
# argument constraint on r (if any) holds for args. Machine clients: true.
role_call_ok(null, _, _, _) := true

role_call_ok(s, r, a, args) if {
	s != null
	some role in s.roles # the members of roles_of(s), without building the set
	is_string(role)
	accs := data.roles[role].grants[r]
	is_array(accs)
	a in accs
	role_constraint_ok(role, r, args)
}

role_constraint_text(s, r) := concat(", ", sort({t |
	some role in roles_of(s)
	c := data.roles[role].arg_constraints[r]
	some pre in c.path_prefixes
	is_string(pre)
	t := concat("", [c.arg, " under ", pre])
}))

# ---------------------------------------------------------------------------
# Self-approval

# Identities of the caller: the agent, the human it acts for, and every
# agent in its delegation chain.
self_ids contains id if {
	id := client.client_id
	is_string(id)
}

self_ids contains id if {
	id := tok.client_id
	is_string(id)
}

self_ids contains id if {
	id := tok.sub
	is_string(id)
}

self_ids contains id if {
	id := subject.sub
	is_string(id)
}

self_ids contains id if {
	tok != null
	some p in act_paths
	a := object.get(tok, p, null)
	is_object(a)
	id := a.sub
	is_string(id)
}

self_id_keys := {identity_key(id) | some id in self_ids; id != ""}

# self_approval_in(e, req): the tool acts on a resource whose author the
# gateway looked up, and that author is the caller (or the author could not
# be determined, which is denied as well).
self_approval_in(e, req) if {
	needs_author(e)
	not looked_up_author(req)
}

self_approval_in(e, req) if {
	needs_author(e)
	identity_key(looked_up_author(req)) in self_id_keys
}

# ---------------------------------------------------------------------------
# Deny reasons

tool_call_deny contains msg if some msg in token_issues

tool_call_deny contains msg if some msg in client_binding_issues

tool_call_deny contains msg if some msg in subject_binding_issues

tool_call_deny contains "request method is not tools/call, prompts/get or resources/read" if {
	m := request.method
	m != null
	not m in call_methods
}

tool_call_deny contains msg if {
	m := object.get(request, "method", null)
	tool_name != ""
	not call_kind_ok(m, tool_name)
	msg := concat("", [method_text(m), " does not name ", tool_name])
}

method_text(m) := m if is_string(m) else := "the call"

# A resource is read by its URI alone: arguments on resources/read are
# nothing the backend acts on, and policy's argument rules must not be
# satisfied (or dodged) by them.
tool_call_deny contains "a resource is read without arguments" if {
	names_resource(tool_name)
	args := object.get(request, "arguments", null)
	args != null
	args != {}
}

# The argument rules of a resource (protected_arguments, a role's
# arg_constraints) hold tools to paths and names a URI does not carry:
# its resources are not read through the catalogue at all.
tool_call_deny contains msg if {
	names_resource(tool_name)
	in_catalogue
	resource_has_argument_rules(tool_resource)
	msg := concat("", [
		"resource ", tool_resource, " has argument rules (protected_arguments, arg_constraints) ",
		"that a resource URI cannot be held to: read it through its tools",
	])
}

resource_has_argument_rules(r) if {
	some rule in data.protected_arguments
	r in rule.resources
}

resource_has_argument_rules(r) if {
	some role, _ in data.roles
	is_object(data.roles[role].arg_constraints[r])
}

tool_call_deny contains "request.tool is missing" if tool_name == ""

tool_call_deny contains msg if {
	tool_name != ""
	not in_catalogue
	msg := concat("", ["tool ", tool_name, " is not in the catalogue"])
}

tool_call_deny contains msg if {
	tool_name != ""
	backend_mismatch(tool_name)
	is_string(request_backend)
	msg := concat("", ["backend ", request_backend, " does not serve tool ", tool_name])
}

tool_call_deny contains "request.backend is not a string" if {
	request_backend
	not is_string(request_backend)
}

tool_call_deny contains msg if {
	in_catalogue
	sod_blocked(tier, tool_access)
	msg := concat("", [
		"separation of duties: ", tier, " tier may not ", tool_access,
		" (", tool_name, ")",
	])
}

tool_call_deny contains msg if {
	in_catalogue
	not sod_blocked(tier, tool_access)
	not tier_grants(tier, tool_resource, tool_access)
	msg := concat("", [tier, " tier does not grant ", required_scope])
}

tool_call_deny contains msg if {
	in_catalogue
	subject != null
	not role_grants(subject, tool_resource, tool_access)
	msg := concat("", ["roles ", roles_text(subject), " do not grant ", required_scope])
}

tool_call_deny contains msg if {
	in_catalogue
	subject != null
	role_grants(subject, tool_resource, tool_access)
	not role_call_ok(subject, tool_resource, tool_access, arguments)
	msg := concat("", [
		"roles ", roles_text(subject), " allow ", tool_resource,
		" only with ", role_constraint_text(subject, tool_resource),
	])
}

tool_call_deny contains msg if {
	scope_missing
	msg := concat("", ["token lacks scope ", required_scope])
}

tool_call_deny contains msg if some msg in protected_violations

tool_call_deny contains msg if some msg in reach_violations

tool_call_deny contains msg if {
	in_catalogue
	self_approval_in(tool_entry, request)
	looked_up_author(request)
	msg := concat("", [
		"separation of duties: ", tool_name,
		" on a merge request the caller authored (self-approval)",
	])
}

tool_call_deny contains msg if {
	in_catalogue
	needs_author(tool_entry)
	not looked_up_author(request)
	msg := concat("", [
		"the author of what ", tool_name,
		" acts on could not be determined (request.resource_attributes.author)",
	])
}

tool_call_deny contains msg if {
	in_catalogue
	some name, kind in arg_kinds(tool_entry)
	v := arguments[name]
	not canonical_value(kind, v)
	msg := concat("", ["argument ", name, " is not a canonical ", format_kind(kind)])
}

format_kind(k) := k if is_string(k) else := "value"

tool_call_deny contains msg if {
	in_catalogue
	some k, _ in arguments
	case_variant(tool_declared_names, k)
	msg := concat("", ["argument name ", k, " is another spelling of an argument policy checks"])
}

tool_call_deny contains "an argument name holds a refused character" if {
	in_catalogue
	some k, _ in arguments
	not canonical_chars(k)
}

tool_call_deny contains msg if {
	in_catalogue
	tok != null
	bad_actor(tool_entry, arguments, tok)
	msg := concat("", ["argument ", tool_entry.actor_arg, " must name the caller (", caller_identity_text, ") or be left out"])
}

caller_identity_text := caller_identity(tok) if tok != null else := "unknown"

tool_call_deny contains msg if {
	in_catalogue
	reach_unusable(tool_entry, arguments, "checked")
	msg := concat("", [tool_name, " has no canonical reach (catalogue reach)"])
}

# A list or search tool whose reach covers protected data (internal: names
# the rule).
reach_violations contains msg if {
	in_catalogue
	some rule in data.protected_arguments
	reach_hit(tool_entry, tool_resource, arguments, rule, "checked")
	msg := concat("", [
		tool_name, " reaches ", reach_of(tool_entry, arguments),
		", which covers data protected by rule ", rule.id,
	])
}

# ---------------------------------------------------------------------------
# Approval (data.approval_rules; contract version 3)
#
# A call the rules above would allow may still need a person's approval
# first: the first approval rule whose resources, access and tiers (absent:
# every tier) match it holds the call (allow false, with an "approval"
# object saying who may approve) until the gateway presents, on a retry,
# an approval granted for that rule (input.approval) by someone in one of
# its approver_groups (a role, or an identity-source group) who is not one
# of the requester's identities when the rule excludes the requester. A
# rule with requester: true also takes the requester's own confirmation in
# the client (via "client"). A call denied for any other reason carries no
# approval: nobody can approve it into being allowed.

# approval_rule_applies(i, t, r, a): approval rule i holds access a on
# resource r for tier t.
approval_rule_applies(i, t, r, a) if {
	r in data.approval_rules[i].resources
	a in data.approval_rules[i].access
	approval_rule_tier(i, t)
}

approval_rule_tier(i, _) if object.get(data.approval_rules[i], "tiers", null) == null

approval_rule_tier(i, t) if t in data.approval_rules[i].tiers

# approval_gated(t, r, a): some approval rule holds access a on r for t.
approval_gated(t, r, a) if {
	some i, _ in data.approval_rules
	approval_rule_applies(i, t, r, a)
}

approval_rule_index := min(ids) if {
	in_catalogue
	ids := {i | some i, _ in data.approval_rules; approval_rule_applies(i, tier, tool_resource, tool_access)}
	count(ids) > 0
}

approval_rule := data.approval_rules[approval_rule_index]

# Who may not approve: every identity of the caller (self_ids: the agent,
# the person it acts for, its delegation chain), compared as identity_key.
approval_not := sort(self_id_keys) if {
	approval_rule.exclude_requester == true
} else := []

approval_requester_may_confirm if approval_rule.requester == true

approval_presented := a if {
	a := input.approval
	is_object(a)
	a.granted == true
	a.rule == approval_rule.id
}

approval_approver_sub := identity_key(s) if {
	s := approval_presented.approver.sub
	is_string(s)
	trim_space(s) != ""
}

# approver_in_groups(p, groups): person p has one of groups as a role (own
# or through identity.group_roles) or as an identity-source group.
approver_in_groups(p, groups) if {
	some g in groups
	g in roles_of(p)
}

approver_in_groups(p, groups) if {
	some g in groups
	g in p.groups
}

# Granted by an eligible approver (not in the client: that channel is the
# requester's own).
approval_granted if {
	object.get(approval_presented, "via", "") != "client"
	p := approval_presented.approver
	is_object(p)
	approver_in_groups(p, data.approval_rules[approval_rule_index].approver_groups)
	sub := approval_approver_sub
	not sub in approval_not
}

# Confirmed in the client by the person the agent acts for, where the rule
# allows it.
approval_granted if {
	approval_requester_may_confirm
	approval_presented.via == "client"
	subject != null
	approval_approver_sub == identity_key(subject.sub)
	not approval_approver_sub in approval_not
}

approval_required if {
	approval_rule
	not approval_granted
}

tool_call_approval := {
	"required": true,
	"rule": approval_rule.id,
	"reason": approval_rule.reason,
	"approvers": {
		"groups": approval_rule.approver_groups,
		"not": approval_not,
		"requester": object.get(approval_rule, "requester", false) == true,
	},
	"ttl_seconds": approval_rule.ttl_seconds,
}

# ---------------------------------------------------------------------------
# Decision

default tool_call_allow := false

# Allowed but for an approval: what tool_call_allow was before approvals.
tool_call_permitted if {
	count(tool_call_deny) == 0
	tok != null
	now != null
	in_catalogue
	effective(tier, subject, tool_resource, tool_access)
	role_call_ok(subject, tool_resource, tool_access, arguments)
	required_scope in token_scopes
}

tool_call_allow if {
	tool_call_permitted
	not approval_required
}

# Held: permitted, and an approval rule asks for an approval not yet
# presented. Never together with tool_call_allow (the contract's
# invariant: approval.required implies allow false).
tool_call_held if {
	tool_call_permitted
	approval_required
}

tool_call_reasons := [concat("", [tier, " tier may ", tool_access, " ", tool_resource])] if {
	tool_call_allow
} else := sort(tool_call_deny) if {
	count(tool_call_deny) > 0
} else := [concat("", ["approval required: ", approval_rule.reason])] if {
	tool_call_held
} else := ["no rule allows this call"]

# What the agent is told (public_reasons): the deny reasons, except that
# those naming policy internals (protected rules and their ids) are replaced
# by a short statement the agent can relay to its person. The full reasons
# go to the audit trail.
tool_call_private := protected_violations | reach_violations

tool_call_public_extra contains "the arguments name data protected by policy" if count(protected_violations) > 0

tool_call_public_extra contains msg if {
	count(reach_violations) > 0
	msg := concat("", [
		tool_name, " would reach protected data: narrow its ",
		object.get(tool_entry.reach, "arg", "path"), " argument to a folder without any",
	])
}

tool_call_public_reasons := tool_call_reasons if {
	tool_call_allow
} else := sort((tool_call_deny - tool_call_private) | tool_call_public_extra) if {
	count(tool_call_deny) > 0
} else := tool_call_reasons

default tool_call_insufficient_scope := false

tool_call_insufficient_scope if {
	scope_missing
	count(tool_call_deny) == 1
}

tool_call_extra := {"required_scope": required_scope} if in_catalogue else := {}

tool_call_approval_extra := {"approval": tool_call_approval} if tool_call_held else := {}

# ---------------------------------------------------------------------------
# Fast allow path
#
# The decision is evaluated in full on every call, so the allowed case is
# decided first by one rule body of cheap positive checks on the raw input
# (no message strings, few sets and rule lookups): the negation of every
# tool_call_deny rule plus the conditions of tool_call_allow. When any check
# fails, the full rules below compute allow and the sorted reasons; in a few
# rare shapes (a token without iat or client_id, a missing method, a subject
# on a machine token, ...) the fast path is stricter than the rules and the
# full rules decide. tool_call_fast_allow implies tool_call_allow and an
# empty tool_call_deny (asserted in tool_call_test.rego).

tool_call_fast(inp) := {
	"allow": true,
	"reasons": [why],
	"tier": ti,
	"resource": r,
	"access": a,
	"insufficient_scope": false,
	"required_scope": sc,
	"public_reasons": [why],
} if {
	# token_issues, client_binding_issues
	c := inp.client
	is_object(c)
	t := inp.token
	token_valid_for(t, c, inp.now)

	# the tool: catalogued, method and backend
	req := inp.request
	is_object(req)
	tool := req.tool
	is_string(tool)
	tool != ""
	e := data.catalogue[tool]
	is_object(e)
	not object.get(e, "uri_prefix", false) == true
	r := e.resource
	is_string(r)
	a := e.access
	is_string(a)
	# the kind of call (call_kind_ok): tools/call of a tool, its local name
	# computed once; other methods, resources and templates: the full rules
	tools_call_method(object.get(req, "method", null))
	not other_kind_local(local_name(tool))
	backend_ok(req, tool)
	not definition_drift(tool, object.get(req, "tool_definition", null))

	# tier grant (tier_grants), separation of duties (sod_blocked)
	ti := tier # tier_of(c): c is input.client, an object
	tier_grants(ti, r, a)
	not sod_blocked(ti, a)

	# subject binding, role grant and role argument constraints
	args := arguments_of(req)
	subject_call_ok(inp, t, r, a, args)

	# token scope
	sc := concat(":", [r, a])
	scope_in(t.scp, sc)

	# arguments: canonical paths and names, their spelling, the actor,
	# protected arguments, reach, self-approval
	arguments_ok(e, r, args, t)
	not self_approval_in(e, req)

	# a call an approval rule holds is decided by the full rules
	not approval_gated(ti, r, a)

	why := concat("", [ti, " tier may ", a, " ", r])
}

tool_call_fast_allow if tool_call_fast(input)

# token_valid_for(t, c, n): token t passes every token_issues check at time
# n, carries a numeric iat and is bound to client object c
# (client_binding_issues is empty).
token_valid_for(t, c, n) if {
	is_object(t)
	is_number(n)
	exp := t.exp
	is_number(exp)
	n < exp
	iat := t.iat
	is_number(iat)
	iat_ok(iat, n)
	has_audience(t)
	m := data.delegation.max_chain_depth
	is_number(m)
	act_depth(t) <= m
	t.client_id == c.client_id
}

# Not issued in the future (iat <= now + 60); the sum only when needed.
iat_ok(iat, n) := true if {
	iat <= n
} else := true if {
	iat <= n + 60
} else := false

arguments_of(req) := a if {
	a := req.arguments
	is_object(a)
} else := {}

# The backend deny rules fire only when request_backend is set and not false.
backend_ok(req, tool) := true if {
	b := req.backend
	is_string(b)
	b == tool_prefix(tool)
} else := true if {
	not backend_given(req)
} else := false

backend_given(req) if {
	b := req.backend
	b != null
	b != ""
	b != false
}

# subject_call_ok(inp, t, r, a, args): subject_binding_issues is empty and
# the subject's roles grant a on r with their argument constraints (machine
# clients: the tier alone).
subject_call_ok(inp, t, r, a, args) := true if {
	s := inp.subject
	s != null
	t.sub == s.sub
	role_call_ok(s, r, a, args)
} else := true if {
	object.get(inp, "subject", null) == null
	not human_sub(t)
} else := false

# The token's human subject (cf. token_human_sub).
human_sub(t) if {
	s := t.sub
	is_string(s)
	s != ""
	s != t.client_id
}

# scope_in(scp, sc): sc, a non-empty string, is in scope_set(scp).
scope_in(scp, sc) if {
	is_array(scp)
	sc in scp
}

scope_in(scp, sc) if {
	is_string(scp)
	sc in split(scp, " ")
}

# arguments_ok(e, r, args, t): for tool entry e on resource r, no
# declared argument is spelled non-canonically, no argument name is
# refused, the actor argument (if any) is the caller, no protected argument
# holds protected data and the reach covers none. It works on e, r and
# args, not on the rules the full decision builds from the input
# (tool_declared_names, checked_strings; nor does a role's argument
# constraint, checked before it, when its value is plain ASCII:
# canonical_alone): the strings whose canonical
# spelling it checks (the argument names, the values of arguments the
# catalogue declares a kind for or a protected rule with path prefixes
# names, and the reach) are found plain ASCII, without a regular
# expression, the names and values together and the reach by itself
# (reach_plain), and the checks that follow take their characters as
# vouched for (canonical_form). A string that is not plain ASCII (which
# may still be canonical) leaves the call to the full rules. Values policy
# does not check the spelling of (a query, an actor) are not among them:
# "%" in a SQL statement does not leave the fast path.
arguments_ok(e, r, args, t) if {
	names := declared_names(e, r)
	plain_ascii(concat("/", array.concat(
		[k | some k, _ in args],
		[v | some n in spelled_names(e, r); v := args[n]; is_string(v)],
	)))
	reach_plain(e, args)
	not variant_key_in(names, args)
	not bad_declared_arg(e, args)
	not bad_actor(e, args, t)
	not reach_unusable(e, args, "vouched")
	not protected_violation_in(r, args)
	not reach_blocked(e, r, args)
}

# spelled_names(e, r): the arguments whose values policy checks the
# canonical spelling of, for tool entry e on resource r: those with a kind
# in the catalogue, and those a protected rule with path prefixes names.
spelled_names(e, r) := {n | some n, _ in arg_kinds(e)} | {n |
	some rule in data.protected_arguments
	r in rule.resources
	has_prefixes(rule)
	some n in rule.args
	is_string(n)
}

# The reach of a tool without one, or a reach that is plain ASCII: its
# argument's value, or the default from data, or "/".
reach_plain(e, _) if not is_object(object.get(e, "reach", null))

reach_plain(e, args) if {
	is_object(e.reach)
	v := reach_of(e, args)
	is_string(v)
	plain_ascii(v)
}

# variant_key_in(names, args): case_variant for some argument name, the
# declared names lower-cased once.
variant_key_in(names, args) if {
	lowered := {lower(n) | some n in names}
	some k, _ in args
	not k in names
	lower(k) in lowered
}

bad_declared_arg(e, args) if {
	some name, kind in arg_kinds(e)
	v := args[name]
	not canonical_form(kind, v)
}

# Some protected_violations message exists for resource r and arguments args.
protected_violation_in(r, args) if {
	some rule in data.protected_arguments
	r in rule.resources
	some name in rule.args
	v := args[name]
	protected_state(rule, v, "vouched") != "ok"
}

reach_blocked(e, r, args) if {
	is_object(e.reach)
	some rule in data.protected_arguments
	reach_hit(e, r, args, rule, "vouched")
}

default tool_call := {
	"allow": false,
	"reasons": ["policy produced no decision"],
	"public_reasons": ["policy produced no decision"],
	"tier": "unverified",
	"resource": "",
	"access": "",
	"insufficient_scope": false,
}

tool_call := d if {
	d := tool_call_fast(input)
} else := object.union(
	{
		"allow": tool_call_allow,
		"reasons": tool_call_reasons,
		"public_reasons": tool_call_public_reasons,
		"tier": tier,
		"resource": tool_resource,
		"access": tool_access,
		"insufficient_scope": tool_call_insufficient_scope,
	},
	object.union(tool_call_extra, tool_call_approval_extra),
)
