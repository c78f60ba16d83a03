# The conformance tenant's policy (pbac conformance client): a throwaway
# tenant where any client that registers may get the tenant's two scopes for
# the signed-in user, and test-tool needs the write scope, so a client first
# offered only the read scope must step up. It keeps the policy contract:
# every entrypoint denies the empty input.
package pbac

tenant_scopes := {"conformance:read", "conformance:write"}

# tool -> the scope a call needs
tenant_catalogue := {
	"conformance.test-tool": "conformance:write",
	"conformance.echo": "conformance:read",
}

has_client if is_string(input.client.client_id)

has_token if is_object(input.token)

register := {"allow": true, "reasons": ["the conformance tenant admits every client"], "tier": "conformance"} if {
	has_client
} else := {"allow": false, "reasons": ["no client"]}

asked := {s | some s in input.request.scopes; s in tenant_scopes}

granted := asked if count(asked) > 0

else := {"conformance:read"}

token := {
	"allow": true,
	"reasons": ["the conformance tenant grants its scopes to a signed-in user's client"],
	"tier": "conformance",
	"scopes": sort(granted),
	"ttl_seconds": 0,
	"single_use": false,
} if {
	has_client
	is_object(input.subject)
} else := {"allow": false, "reasons": ["the conformance tenant issues tokens only for a signed-in user"]}

token_scp := {s | some s in input.token.scp; is_string(s)}

introspect := {
	"allow": true,
	"reasons": ["token active"],
	"tier": "conformance",
	"jit_single_use": false,
	"scopes": sort(token_scp),
} if {
	has_client
	has_token
} else := {"allow": false, "reasons": ["no token"]}

exchange := {"allow": false, "reasons": ["the conformance tenant allows no delegation"]}

required_scope := tenant_catalogue[input.request.tool]

tool_call := {"allow": true, "reasons": [concat("", ["the token has ", required_scope])]} if {
	has_token
	required_scope in token_scp
} else := {
	"allow": false,
	"reasons": [concat("", ["token lacks scope ", required_scope])],
	"insufficient_scope": true,
	"required_scope": required_scope,
} if {
	has_token
	required_scope
} else := {"allow": false, "reasons": ["no token, or a tool the tenant does not know"]}

list := {
	"allow": true,
	"reasons": ["every catalogued tool is listed"],
	"tools": sort([t | some t in input.request.tools; is_string(t); tenant_catalogue[t]]),
} if {
	has_token
} else := {"allow": false, "reasons": ["no token"], "tools": []}

anonymous := {"allow": false, "reasons": ["the conformance tenant admits no anonymous callers"], "tools": []}

# Every request that is not a call (initialize, ping, the lists, the GET
# stream …) of a client holding one of the tenant's scopes: the clients under
# test must reach the tenant's one backend to be checked at all.
method := {"allow": true, "reasons": ["a token with a tenant scope may use every method"], "tier": "conformance"} if {
	has_token
	is_string(input.request.method)
	some s in token_scp
	s in tenant_scopes
} else := {"allow": false, "reasons": ["no token with a tenant scope"], "tier": "conformance"}
