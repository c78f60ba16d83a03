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
	not required_scope in token_scopes
}

# ---------------------------------------------------------------------------
# Argument protection (data.protected_arguments)

protected_hit(rule, v) if {
	some pre in rule.path_prefixes
	is_string(pre)
	path_under(clean_path(v), pre)
}

protected_hit(rule, v) if {
	some sub in rule.substrings
	is_string(sub)
	sub != ""
	contains(lower(v), lower(sub))
}

protected_hit(rule, v) if {
	# substrings are also matched on the cleaned path, so that
	# "secr%2fets"-style tricks that only resolve after cleaning are caught.
	some sub in rule.substrings
	is_string(sub)
	sub != ""
	contains(clean_path(v), lower(sub))
}

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

role_has_constraint(role, r) if is_object(data.roles[role].arg_constraints[r])

role_constraint_ok(role, r) if not role_has_constraint(role, r)

role_constraint_ok(role, r) if {
	c := data.roles[role].arg_constraints[r]
	v := arguments[c.arg]
	is_string(v)
	some pre in c.path_prefixes
	is_string(pre)
	path_under(clean_path(v), pre)
}

role_constraint_ok(role, r) if {
	c := data.roles[role].arg_constraints[r]
	object.get(c, "required", false) != true
	object.get(arguments, c.arg, null) == null
}

role_call_ok(null, _, _) := true

role_call_ok(s, r, a) if {
	s != null
	some role in roles_of(s)
	accs := data.roles[role].grants[r]
	is_array(accs)
	a in accs
	role_constraint_ok(role, r)
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
	not role_call_ok(subject, tool_resource, tool_access)
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
	name := tool_entry.author_arg
	author := arguments[name]
	is_string(author)
	author in self_ids
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
	role_call_ok(subject, tool_resource, tool_access)
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

default tool_call := {
	"allow": false,
	"reasons": ["policy produced no decision"],
	"tier": "unverified",
	"resource": "",
	"access": "",
	"insufficient_scope": false,
}

tool_call := object.union(
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
