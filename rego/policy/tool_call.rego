# pbac/tool_call: may this client call this MCP tool with these arguments now?
package pbac

tool_name := t if {
	t := request.tool
	is_string(t)
	t != ""
} else := ""

tool_entry := e if {
	e := data.catalogue[tool_name]
	is_object(e)
	is_string(e.resource)
	is_string(e.access)
} else := null

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
# Argument protection (data.protected_arguments)

protected_hit(rule, v) if protected_hit_clean(rule, v, clean_path(v))

protected_hit_clean(rule, _, cv) if {
	some pre in rule.path_prefixes
	is_string(pre)
	path_under(cv, pre)
}

# Substrings are matched on the lower-cased value and on the cleaned path, so
# that "secr%2fets"-style tricks that only resolve after cleaning are caught.
protected_hit_clean(rule, v, cv) if {
	some sub in rule.substrings
	is_string(sub)
	sub != ""
	ls := lower(sub)
	substring_hit(v, cv, ls)
}

substring_hit(v, _, ls) if contains(lower(v), ls)

substring_hit(_, cv, ls) if contains(cv, ls)

protected_violations contains msg if {
	in_catalogue
	some rule in data.protected_arguments
	tool_resource in rule.resources
	some name in rule.args
	v := arguments[name]
	is_string(v)
	protected_hit(rule, v)
	msg := concat("", [
		"argument ", name, " is protected by rule ", rule.id,
		" (", object.get(rule, "description", rule.id), ")",
	])
}

protected_violations contains msg if {
	in_catalogue
	some rule in data.protected_arguments
	tool_resource in rule.resources
	some name in rule.args
	v := arguments[name]
	not is_string(v)
	msg := concat("", ["argument ", name, " must be a string (protected rule ", rule.id, ")"])
}

# ---------------------------------------------------------------------------
# Role argument constraints (data.roles[role].arg_constraints[resource])

# args is the call's arguments object. (Data is always read through full
# references such as data.roles[role].grants[r]: under the unit tests' `with
# data.x.y as v`, a parent object bound to a variable would still show the
# replaced keys merged with the original ones.)
role_constrains(role, r) if is_object(data.roles[role].arg_constraints[r])

role_constraint_ok(role, r, args) := true if {
	not role_constrains(role, r)
} else := true if {
	c := data.roles[role].arg_constraints[r]
	v := args[c.arg]
	is_string(v)
	some pre in c.path_prefixes
	is_string(pre)
	path_under(clean_path(v), pre)
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

# Identities of the calling agent and every agent in its delegation chain.
self_ids contains id if {
	id := client.client_id
	is_string(id)
}

self_ids contains id if {
	id := tok.client_id
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

# The tool's author argument names the caller or an agent in its chain.
self_approval if self_approval_in(tool_entry, arguments)

# ---------------------------------------------------------------------------
# Deny reasons

tool_call_deny contains msg if some msg in token_issues

tool_call_deny contains msg if some msg in client_binding_issues

tool_call_deny contains msg if some msg in subject_binding_issues

tool_call_deny contains "request method is not tools/call" if {
	m := request.method
	m != null
	m != "tools/call"
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

tool_call_deny contains msg if {
	in_catalogue
	self_approval
	msg := concat("", [
		"separation of duties: ", tool_name,
		" on a merge request authored by the same agent (self-approval)",
	])
}

# ---------------------------------------------------------------------------
# Decision

default tool_call_allow := false

tool_call_allow if {
	count(tool_call_deny) == 0
	tok != null
	now != null
	in_catalogue
	effective(tier, subject, tool_resource, tool_access)
	role_call_ok(subject, tool_resource, tool_access, arguments)
	required_scope in token_scopes
}

tool_call_reasons := [concat("", [tier, " tier may ", tool_access, " ", tool_resource])] if {
	tool_call_allow
} else := sort(tool_call_deny) if {
	count(tool_call_deny) > 0
} else := ["no rule allows this call"]

default tool_call_insufficient_scope := false

tool_call_insufficient_scope if {
	scope_missing
	count(tool_call_deny) == 1
}

tool_call_extra := {"required_scope": required_scope} if in_catalogue else := {}

# ---------------------------------------------------------------------------
# Fast allow path
#
# The decision is evaluated in full on every call, so the allowed case is
# decided first by one rule body of cheap positive checks on the raw input
# (no message strings, no sets, few rule lookups): the negation of every
# tool_call_deny rule plus the conditions of tool_call_allow. When any check
# fails, the full rules below compute allow and the sorted reasons; in a few
# rare shapes (a token without iat or client_id, a missing method, a subject
# on a machine token, ...) the fast path is stricter than the rules and the
# full rules decide. tool_call_fast_allow implies tool_call_allow and an
# empty tool_call_deny (asserted in tool_call_test.rego).

tool_call_fast(inp) := {
	"allow": true,
	"reasons": [concat("", [ti, " tier may ", a, " ", r])],
	"tier": ti,
	"resource": r,
	"access": a,
	"insufficient_scope": false,
	"required_scope": sc,
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
	r := e.resource
	is_string(r)
	a := e.access
	is_string(a)
	method_ok(req)
	backend_ok(req, tool)

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

	# protected arguments, self-approval
	not protected_violation_in(r, args)
	not self_approval_in(e, args)
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

method_ok(req) := true if {
	req.method == "tools/call"
} else := true if {
	object.get(req, "method", null) == null
} else := false

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

# Some protected_violations message exists for resource r and arguments args.
protected_violation_in(r, args) if {
	some rule in data.protected_arguments
	r in rule.resources
	some name in rule.args
	v := args[name]
	not protected_value_ok(rule, v)
}

protected_value_ok(rule, v) if {
	is_string(v)
	not protected_hit(rule, v)
}

self_approval_in(e, args) if {
	name := e.author_arg
	author := args[name]
	is_string(author)
	author in self_ids
}

default tool_call := {
	"allow": false,
	"reasons": ["policy produced no decision"],
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
		"tier": tier,
		"resource": tool_resource,
		"access": tool_access,
		"insufficient_scope": tool_call_insufficient_scope,
	},
	tool_call_extra,
)
