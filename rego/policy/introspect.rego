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

# A machine token (no human subject) of a client whose operator approval
# does not cover machine use, e.g. narrowed since the token was issued.
introspect_deny contains operator_not_for_machines if {
	tok != null
	not token_human_sub
	operator_approved_for_people_only(client)
}

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

# Fast allow path (cf. tool_call_fast): one rule body of positive checks,
# the negation of every introspect_deny rule; when it fails, the full rules
# decide. introspect_fast(input) implies introspect_allow with the same
# output (asserted in introspect_test.rego).
introspect_fast(inp) := {
	"allow": true,
	"reasons": [concat("", ["token active for tier ", ti])],
	"tier": ti,
	"jit_single_use": single_use_for(c, ti),
	"scopes": sort(scopes),
} if {
	# token_issues, client_binding_issues, subject_binding_issues, no iat
	c := inp.client
	is_object(c)
	t := inp.token
	token_valid_for(t, c, inp.now)
	subject_bound(inp, t)

	# a machine token needs an approval that covers machine use
	machine_use_covered(c, t)

	# lifetime within the tier maximum (max_token_ttl)
	ti := tier # tier_of(c): c is input.client, an object
	t.exp - t.iat <= max_token_ttl(ti)

	# the token's scopes still permitted (introspect_scopes), not empty
	s := subject
	scopes := {sc |
		some sc in scope_list(t.scp)
		is_string(sc)
		sc != ""
		scope_permitted(ti, s, sc)
	}
	count(scopes) > 0
}

introspect_fast_allow if introspect_fast(input)

# machine_use_covered(c, t): the operator_not_for_machines introspect_deny
# rule does not apply to token t of client c.
machine_use_covered(c, t) := true if {
	human_sub(t)
} else := true if {
	not operator_approved_for_people_only(c)
} else := false

# subject_bound(inp, t): subject_binding_issues is empty.
subject_bound(inp, t) := true if {
	s := inp.subject
	s != null
	t.sub == s.sub
} else := true if {
	object.get(inp, "subject", null) == null
	not human_sub(t)
} else := false

# The scopes of scope_set(x), before the string and empty filters.
scope_list(x) := split(x, " ") if is_string(x) else := x

# scope_permitted(ti, s, sc): sc is in permitted_scopes(ti, s). A scope with one ":" splits into its only possible
# [resource, access]; any other shape is looked up in the full set.
scope_permitted(ti, s, sc) if {
	parts := split(sc, ":")
	count(parts) == 2
	effective(ti, s, parts[0], parts[1])
}

scope_permitted(ti, s, sc) if {
	count(split(sc, ":")) != 2
	sc in permitted_scopes(ti, s)
}

# jit_single_use for client object c of tier ti.
single_use_for(c, ti) := true if {
	c.single_use_access_tokens == true
} else := true if {
	tier_setting_true(ti, "single_use_tokens")
} else := false

introspect := d if {
	d := introspect_fast(input)
} else := {
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
