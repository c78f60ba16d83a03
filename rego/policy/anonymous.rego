# pbac/anonymous: may a caller without a token make this request?
#
# Default deny: only the backends listed in data.anonymous.backends admit
# callers without a token (the shipped data lists none). The gateway asks on
# every request that carries no bearer token, with the backend, the JSON-RPC
# method (GET or DELETE for the transport's bodiless requests, "response"
# for the client's answer to a server request such as sampling or
# elicitation) and, for a call, the tool as "<backend>.<tool>"; for tools/list it also sends the
# listed tool names and keeps only those in "tools". A deny is the usual 401
# challenge. Listing a backend opens every method and tool it serves to
# anyone who can reach the gateway, catalogued or not: meant for public
# backends and conformance tenants, never for a backend holding secrets.
package pbac

anonymous_backend := b if {
	b := request.backend
	is_string(b)
	b != ""
} else := ""

anonymous_admits(b) if {
	some x in data.anonymous.backends
	x == b
}

anonymous_deny contains "no backend named" if anonymous_backend == ""

anonymous_deny contains msg if {
	anonymous_backend != ""
	not anonymous_admits(anonymous_backend)
	msg := concat("", ["backend ", anonymous_backend, " does not admit anonymous callers"])
}

anonymous_deny contains "no method named" if not anonymous_method_ok

anonymous_method_ok if {
	m := request.method
	is_string(m)
	m != ""
}

anonymous_deny contains msg if {
	t := request.tool
	not anonymous_tool_ok(t)
	msg := "tool does not belong to the requested backend"
}

# A tool of this backend: "<backend>.<name>" with a non-empty name.
anonymous_tool_ok(t) if {
	is_string(t)
	anonymous_backend != ""
	startswith(t, concat("", [anonymous_backend, "."]))
	count(t) > count(anonymous_backend) + 1
}

# A catalogued tool pinned to a reviewed definition is held to its pin for
# anonymous callers too (definitions.rego).
anonymous_deny contains msg if {
	t := request.tool
	anonymous_tool_ok(t)
	definition_drift(t, called_definition)
	msg := concat("", ["the definition of tool ", t, " does not match the one an operator reviewed: it is blocked until reviewed again"])
}

anonymous_allow if count(anonymous_deny) == 0

anonymous_tools := sort({t |
	some t in request.tools
	anonymous_tool_ok(t)
	not definition_drift(t, listed_definition(t))
}) if anonymous_allow else := []

default anonymous := {
	"allow": false,
	"reasons": ["policy produced no decision"],
	"tools": [],
}

anonymous := {
	"allow": count(anonymous_deny) == 0,
	"reasons": reasons_for(anonymous_deny, concat("", ["backend ", anonymous_backend, " admits anonymous callers"])),
	"tools": anonymous_tools,
}
