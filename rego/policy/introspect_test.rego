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
	d.scopes == ["database:read", "drive:read", "drive:write", "gitlab:approve", "gitlab:read", "gitlab:write", "jenkins:build", "jenkins:read", "jira:read", "jira:write", "slack:read", "slack:write"]
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
