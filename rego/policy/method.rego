# pbac/method: may this caller make this MCP request that is not a call?
#
# The gateway asks on every request of a caller with a token other than
# tools/call, resources/read and prompts/get (pbac/tool_call decides those):
# initialize, ping, notifications, the lists,
# logging/setLevel, the client's answer to a server request (method
# "response") and the transport's bodiless GET and DELETE. Input as for
# pbac/tool_call without tool and arguments; request.backend absent (or "")
# means the aggregated server at /mcp.
#
# A method is allowed when the allow-list names it — data.methods, with
# data.backends[b].methods merged over it for backend b — and the caller
# holds the access it names there (tier ∩ role ∩ token scope, as pbac/list):
# "any" asks for at least one access on the backend's resource, so a caller
# with no grant on a backend cannot even open a session with it; an access
# name ("read") asks for that access. On the aggregated server the access may
# be on any resource. A tier whose data has a "methods" list may use only
# those methods. Everything else is denied: an unknown method never reaches
# a backend.
package pbac

method_name := m if {
	m := request.method
	is_string(m)
	m != ""
} else := ""

# The backend asked about, "" for the aggregated server; null when
# request.backend is there but not a string.
method_backend := b if {
	b := request.backend
	is_string(b)
} else := "" if {
	not method_backend_given
} else := null

method_backend_given if request.backend

method_backend_given if request.backend == false

# The resource whose grants decide a backend's requests: its data.backends
# entry's resource, else the backend's own name; "" (any resource) for the
# aggregated server.
method_resource := r if {
	is_string(method_backend)
	method_backend != ""
	r := data.backends[method_backend].resource
	is_string(r)
	r != ""
} else := method_backend if {
	is_string(method_backend)
} else := ""

# The access the method needs here: the backend's own entry when it names
# the method, else data.methods; "" when the method is not allowed at all.
method_access := a if {
	method_backend_names
	a := data.backends[method_backend].methods[method_name]
	is_string(a)
	a != ""
} else := a if {
	not method_backend_names
	a := data.methods[method_name]
	is_string(a)
	a != ""
} else := ""

method_backend_names if {
	is_string(method_backend)
	method_backend != ""
	_ = data.backends[method_backend].methods[method_name]
}

# The caller holds access need ("any": some access) on resource res (""
# for any resource), through a scope of its token.
method_grant(res, need) if {
	some sc in token_scopes
	parts := split(sc, ":")
	count(parts) == 2
	resource_matches(res, parts[0])
	access_matches(need, parts[1])
	effective(tier, subject, parts[0], parts[1])
}

resource_matches("", _)

resource_matches(res, r) if {
	res != ""
	r == res
}

access_matches("any", _)

access_matches(need, a) if {
	need != "any"
	a == need
}

tier_limits_methods if is_array(data.tiers[tier].methods)

tier_allows_method if not tier_limits_methods

tier_allows_method if method_name in data.tiers[tier].methods

call_methods := {"tools/call", "resources/read", "prompts/get", "resources/subscribe", "resources/unsubscribe", "completion/complete"}

method_deny contains msg if some msg in token_issues

method_deny contains msg if some msg in client_binding_issues

method_deny contains msg if some msg in subject_binding_issues

method_deny contains "request.backend is not a string" if method_backend == null

method_deny contains "no method named" if method_name == ""

method_deny contains msg if {
	method_name in call_methods
	msg := concat("", [method_name, " is decided by pbac/tool_call"])
}

method_deny contains msg if {
	method_name != ""
	not method_name in call_methods
	method_access == ""
	msg := concat("", ["method ", method_name, " is not allowed"])
}

method_deny contains msg if {
	method_access != ""
	not tier_allows_method
	msg := concat("", ["tier ", tier, " may not use ", method_name])
}

method_deny contains msg if {
	tok != null
	method_access != ""
	not method_grant(method_resource, method_access)
	msg := concat("", [
		"tier ", tier, " with roles ", roles_or_machine, " and this token's scopes holds ",
		access_text(method_access), method_place,
	])
}

access_text("any") := "no access"

access_text(a) := concat("", ["no ", a, " access"]) if a != "any"

method_place := concat("", [" on ", method_resource]) if method_resource != "" else := " on any resource"

method_where := concat("", [" on ", method_backend]) if {
	is_string(method_backend)
	method_backend != ""
} else := " on the aggregated server"

default method_allow := false

method_allow if {
	count(method_deny) == 0
	tok != null
	now != null
}

default method := {
	"allow": false,
	"reasons": ["policy produced no decision"],
	"tier": "unverified",
}

# What the agent is told equals the reasons: every method reason is about
# the caller's tier, roles, scopes or the method itself, never about data.
method := {
	"allow": method_allow,
	"reasons": method_reasons,
	"public_reasons": method_reasons,
	"tier": tier,
}

method_reasons := reasons_for(method_deny, concat("", [tier, " tier may use ", method_name, method_where]))
