# pbac/introspect: is this token still active, and with which scopes, under
# the policy data in force now?
package pbac

# The longest lifetime (exp - iat) a token of tier t may have.
max_token_ttl(t) := n if {
	n := data.tiers[t].max_token_ttl_seconds
	is_number(n)
} else := tier_setting_number(t, "token_ttl_seconds")

# The token's scopes that tier ∩ role still permit now.
introspect_scopes := token_scopes & permitted_scopes(tier, subject)

introspect_deny contains msg if some msg in token_issues

introspect_deny contains msg if some msg in client_binding_issues

introspect_deny contains msg if some msg in subject_binding_issues

introspect_deny contains msg if {
	is_number(tok.exp)
	is_number(tok.iat)
	life := tok.exp - tok.iat
	life > max_token_ttl(tier)
	msg := concat("", [
		"token lifetime ", format_int(life, 10), "s exceeds the ", tier,
		" tier maximum of ", format_int(max_token_ttl(tier), 10), "s",
	])
}

introspect_deny contains "token has no iat" if {
	tok != null
	not token_has_iat
}

token_has_iat if is_number(tok.iat)

introspect_deny contains msg if {
	tok != null
	count(introspect_scopes) == 0
	msg := concat("", ["none of the token's scopes is permitted now for tier ", tier])
}

default introspect_allow := false

introspect_allow if {
	count(introspect_deny) == 0
	tok != null
	now != null
	count(introspect_scopes) > 0
}

default jit_single_use := false

jit_single_use if client.single_use_access_tokens == true

jit_single_use if tier_setting_true(tier, "single_use_tokens")

default introspect := {
	"allow": false,
	"reasons": ["policy produced no decision"],
	"tier": "unverified",
	"jit_single_use": false,
	"scopes": [],
}

introspect := {
	"allow": true,
	"reasons": [concat("", ["token active for tier ", tier])],
	"tier": tier,
	"jit_single_use": jit_single_use,
	"scopes": sort(introspect_scopes),
} if {
	introspect_allow
} else := {
	"allow": false,
	"reasons": reasons_for(introspect_deny, "token is not active"),
	"tier": tier,
	"jit_single_use": jit_single_use,
	"scopes": [],
}
