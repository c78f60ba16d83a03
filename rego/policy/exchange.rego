# pbac/exchange: RFC 8693 token exchange (delegation to a sub-agent).
#
# input.token is the subject token, input.subject its human (if any),
# input.request.actor the delegating agent and input.request.audience_client
# the registered client the delegated token is for.
package pbac

actor := a if {
	a := request.actor
	is_object(a)
} else := null

audience_client := a if {
	a := request.audience_client
	is_object(a)
} else := null

actor_tier := tier_of(actor) if actor != null else := default_tier

audience_tier := tier_of(audience_client) if audience_client != null else := default_tier

# Depth of the delegated token's act chain.
exchange_depth := act_depth(tok) + 1

exchange_requested := requested_scopes & token_scopes if {
	count(requested_scopes) > 0
} else := token_scopes

exchange_scopes := exchange_requested & permitted_scopes(audience_tier, subject)

exchange_deny contains msg if some msg in token_issues

exchange_deny contains msg if some msg in subject_binding_issues

exchange_deny contains "subject token has no sub" if {
	tok != null
	not subject_token_has_sub
}

subject_token_has_sub if {
	s := tok.sub
	is_string(s)
	s != ""
}

exchange_deny contains "actor is missing" if actor == null

exchange_deny contains msg if {
	actor != null
	not tier_setting_true(actor_tier, "may_delegate")
	msg := concat("", ["actor tier ", actor_tier, " may not delegate"])
}

exchange_deny contains "subject token was not issued to the actor" if {
	is_string(tok.client_id)
	is_string(actor.client_id)
	tok.client_id != actor.client_id
}

exchange_deny contains "audience client is not registered" if audience_client == null

exchange_deny contains "audience client is not attested" if {
	audience_client != null
	not audience_attested
}

audience_attested if count(client_providers(audience_client)) > 0

exchange_deny contains msg if {
	some s in exchange_excess
	msg := concat("", ["requested scope ", s, " exceeds the subject token"])
}

exchange_excess := requested_scopes - token_scopes

exchange_deny contains msg if {
	exchange_depth > max_chain_depth
	msg := concat("", [
		"delegation chain depth ", format_int(exchange_depth, 10),
		" exceeds the maximum of ", format_int(max_chain_depth, 10),
	])
}

exchange_deny contains msg if {
	actor != null
	tier_setting_true(actor_tier, "may_delegate")
	exchange_depth > tier_setting_number(actor_tier, "max_delegation_depth")
	msg := concat("", [
		"actor tier ", actor_tier, " allows delegation depth ",
		format_int(tier_setting_number(actor_tier, "max_delegation_depth"), 10),
		", not ", format_int(exchange_depth, 10),
	])
}

exchange_deny contains msg if {
	tok != null
	audience_client != null
	count(exchange_scopes) == 0
	count(exchange_excess) == 0
	msg := concat("", ["no requested scope is permitted for the audience client (tier ", audience_tier, ")"])
}

# The delegated token never outlives the subject token.
exchange_ttl := min({tier_setting_number(audience_tier, "token_ttl_seconds"), tok.exp - now}) if {
	is_number(tok.exp)
	now != null
} else := 0

default exchange_allow := false

exchange_allow if {
	count(exchange_deny) == 0
	tok != null
	count(exchange_scopes) > 0
	exchange_ttl > 0
}

default exchange := {
	"allow": false,
	"reasons": ["policy produced no decision"],
	"scopes": [],
	"ttl_seconds": 0,
}

exchange := {
	"allow": true,
	"reasons": [concat("", ["actor tier ", actor_tier, " may delegate to tier ", audience_tier])],
	"scopes": sort(exchange_scopes),
	"ttl_seconds": exchange_ttl,
} if {
	exchange_allow
} else := {
	"allow": false,
	"reasons": reasons_for(exchange_deny, "delegated token would have no lifetime"),
	"scopes": [],
	"ttl_seconds": 0,
}
