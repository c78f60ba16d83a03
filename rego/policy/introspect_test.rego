package pbac_test

introspect_input(provider, subj, tok) := object.union(
	{"client": agent(provider), "token": tok, "now": now},
	subject_part(subj),
)

introspect(inp) := d if {
	d := data.pbac.introspect with input as inp
}

test_valid_token_active if {
	d := introspect(introspect_input("claude-code", alice, human_token("claude-code", alice)))
	d.allow
	d.tier == "developer"
	d.jit_single_use == false
	d.scopes == ["database:ddl", "database:read", "drive:read", "drive:write", "gitlab:approve", "gitlab:read", "gitlab:write", "jenkins:build", "jenkins:read", "jira:read", "jira:write", "slack:read", "slack:write"]
}

# Failure mode 3.
test_expired_token_inactive if {
	d := data.pbac.introspect with input as introspect_input("security-scanner", null, machine_token("security-scanner"))
		with input.now as 1700000300
	not d.allow
	d.reasons == ["token has expired"]
	d.scopes == []
}

test_scanner_token_living_for_days_inactive if {
	long := object.union(machine_token("security-scanner"), {"exp": 1700000000 + 3 * 86400})
	d := introspect(introspect_input("security-scanner", null, long))
	not d.allow
	d.reasons == ["token lifetime 259200s exceeds the read_only tier maximum of 300s"]
}

test_lifetime_checked_against_current_data if {
	inp := introspect_input("claude-code", alice, object.union(human_token("claude-code", alice), {"exp": 1700001800}))
	introspect(inp).allow
	d := data.pbac.introspect with input as inp with data.tiers.developer.max_token_ttl_seconds as 600
	not d.allow
	has_reason(d, "exceeds the developer tier maximum of 600s")
}

test_jit_single_use_from_software_statement if {
	inp := json.patch(introspect_input("security-scanner", null, machine_token("security-scanner")), [{"op": "replace", "path": "/client/single_use_access_tokens", "value": true}])
	d := introspect(inp)
	d.allow
	d.jit_single_use == true
	d.scopes == ["database:read", "drive:read", "gitlab:read", "jenkins:read", "jira:read"]
}

test_unverified_client_token_inactive if {
	inp := json.patch(introspect_input("claude-code", null, machine_token("claude-code")), [{"op": "replace", "path": "/client/verified", "value": false}])
	d := introspect(inp)
	not d.allow
	d.tier == "unverified"
	has_reason(d, "none of the token's scopes is permitted now for tier unverified")
}

test_introspect_missing_token if {
	d := introspect({"client": agent("claude-code"), "now": now})
	d.reasons == ["no access token"]
}

test_introspect_garbage if {
	every inp in [{}, [], 1, {"token": {"exp": "never"}, "now": now}] {
		d := introspect(inp)
		d.allow == false
		count(d.reasons) > 0
	}
}

# ---------------------------------------------------------------------------
# The fast allow path (introspect_fast) against the full rules.

introspect_fast_allow(inp) := x if {
	x := data.pbac.introspect_fast_allow with input as inp
} else := false

introspect_full_allow(inp) := x if {
	deny := data.pbac.introspect_deny with input as inp
	count(deny) == 0
	x := data.pbac.introspect_allow with input as inp
} else := false

# What introspect returned before the fast path, when the full rules allow.
introspect_full_decision(inp) := {
	"allow": true,
	"reasons": [concat("", ["token active for tier ", tier])],
	"tier": tier,
	"jit_single_use": jit,
	"scopes": sort(scopes),
} if {
	tier := data.pbac.tier with input as inp
	jit := data.pbac.jit_single_use with input as inp
	scopes := data.pbac.introspect_scopes with input as inp
}

introspect_fast_inputs := [
	introspect_input("claude-code", alice, human_token("claude-code", alice)),
	introspect_input("claude-code", bob, human_token("claude-code", bob)),
	introspect_input("claude-code", carol, human_token("claude-code", carol)),
	introspect_input("claude-code", {"sub": "dave"}, human_token("claude-code", {"sub": "dave"})),
	introspect_input("claude-code", {"sub": "eve", "roles": ["ceo"]}, human_token("claude-code", {"sub": "eve"})),
	introspect_input("ci-bot", null, machine_token("ci-bot")),
	introspect_input("security-scanner", null, machine_token("security-scanner")),
	introspect_input("claude-code-trusted", alice, human_token("claude-code-trusted", alice)),
	introspect_input("nobody", null, machine_token("nobody")),
	introspect_input("security-scanner", null, object.union(machine_token("security-scanner"), {"exp": 1700000000 + 3 * 86400})),
	introspect_input("security-scanner", null, object.union(machine_token("security-scanner"), {"exp": 1700000099})),
	introspect_input("security-scanner", null, object.union(machine_token("security-scanner"), {"iat": 1700000161, "exp": 1700000300})),
	introspect_input("claude-code", alice, object.union(human_token("claude-code", alice), {"scp": "jira:read slack:write"})),
	introspect_input("claude-code", alice, object.union(human_token("claude-code", alice), {"scp": ["jira:read", "x:y:z", "", 7]})),
	introspect_input("claude-code", alice, object.union(human_token("claude-code", alice), {"scp": ["database:ddl"]})),
	introspect_input("claude-code", alice, object.union(human_token("claude-code", alice), {"client_id": "other"})),
	introspect_input("claude-code", alice, object.union(human_token("claude-code", alice), {"sub": "mallory"})),
	introspect_input("claude-code", alice, object.union(human_token("claude-code", alice), {"aud": ""})),
	introspect_input("claude-code", alice, object.union(human_token("claude-code", alice), {"act": {"sub": "a", "act": {"sub": "b", "act": {"sub": "c", "act": {"sub": "d"}}}}})),
	introspect_input("claude-code", null, human_token("claude-code", alice)),
	json.patch(introspect_input("security-scanner", null, machine_token("security-scanner")), [{"op": "replace", "path": "/client/single_use_access_tokens", "value": true}]),
	object.union(introspect_input("ci-bot", null, machine_token("ci-bot")), {"client": approved_client("ci-bot", false)}),
	object.union(introspect_input("ci-bot", null, machine_token("ci-bot")), {"client": approved_client("ci-bot", true)}),
	object.union(introspect_input("claude-code", alice, human_token("claude-code", alice)), {"client": approved_client("claude-code", false)}),
	{},
	{"token": {"exp": "never"}, "now": now},
]

# approved_client(provider, machine): the client of agent(provider) known
# by an operator's approval, covering machine use or not.
approved_client(provider, machine) := {
	"client_id": agent(provider).client_id, "verified": false,
	"attestation": {"kind": "operator", "by": "admin", "provider": provider, "machine": machine},
}

test_introspect_machine_token_needs_an_approval_for_machine_use if {
	base := introspect_input("ci-bot", null, machine_token("ci-bot"))
	d := introspect(object.union(base, {"client": approved_client("ci-bot", false)}))
	not d.allow
	has_reason(d, "not for machine use")
	introspect(object.union(base, {"client": approved_client("ci-bot", true)})).allow

	# a person's token of the same approval is not a machine's
	h := introspect_input("claude-code", alice, human_token("claude-code", alice))
	introspect(object.union(h, {"client": approved_client("claude-code", false)})).allow
}

test_introspect_fast_path_agrees_with_full_rules if {
	wrong := [inp |
		some inp in introspect_fast_inputs
		introspect_fast_allow(inp) != introspect_full_allow(inp)
	]
	print("wrong:", wrong)
	count(wrong) == 0
	some a in introspect_fast_inputs
	introspect_fast_allow(a)
	some d in introspect_fast_inputs
	not introspect_fast_allow(d)
}

test_introspect_fast_path_decision_equals_full_decision if {
	wrong := [[d, introspect_full_decision(inp)] |
		some inp in introspect_fast_inputs
		introspect_fast_allow(inp)
		d := introspect(inp)
		d != introspect_full_decision(inp)
	]
	print("wrong:", wrong)
	count(wrong) == 0
}
