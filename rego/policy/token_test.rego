package pbac_test


token_input(provider, subj, grant, scopes) := object.union(
	{"client": agent(provider), "request": {"grant_type": grant, "scopes": scopes}, "now": now},
	subject_part(subj),
)

subject_part(null) := {}

subject_part(s) := {"subject": s} if s != null

tok_decision(inp) := d if {
	d := data.pbac.token with input as inp
}

test_developer_token_gets_requested_scopes if {
	d := tok_decision(token_input("claude-code", alice, "authorization_code", ["jira:write", "drive:read"]))
	d.allow
	d.tier == "developer"
	d.scopes == ["drive:read", "jira:write"]
	d.ttl_seconds == 3600
	d.single_use == false
}

test_empty_request_gets_all_permitted_scopes if {
	d := tok_decision(token_input("ci-bot", null, "client_credentials", []))
	d.allow
	d.scopes == ["database:read", "drive:read", "gitlab:read", "gitlab:write", "jenkins:build", "jenkins:read", "jira:read", "jira:write"]
}

test_token_scopes_bounded_by_role if {
	d := tok_decision(token_input("claude-code", bob, "authorization_code", []))
	d.scopes == ["database:read", "drive:read", "jira:read", "slack:read", "slack:write"]
}

test_token_unpermitted_requested_scopes_dropped if {
	d := tok_decision(token_input("security-scanner", null, "client_credentials", ["jira:read", "jira:write", "database:ddl"]))
	d.allow
	d.scopes == ["jira:read"]
}

test_token_nothing_grantable_denied if {
	d := tok_decision(token_input("security-scanner", null, "client_credentials", ["slack:write"]))
	not d.allow
	d.scopes == []
	d.reasons == ["none of the requested scopes are permitted for tier read_only with roles (machine client)"]
}

test_ddl_scope_never_granted if {
	every p in ["claude-code", "ci-bot", "security-scanner", "claude-code-trusted"] {
		d := tok_decision(token_input(p, alice, "authorization_code", []))
		not "database:ddl" in d.scopes
	}
}

test_unverified_client_token_denied if {
	inp := json.patch(token_input("claude-code", alice, "authorization_code", []), [{"op": "replace", "path": "/client/verified", "value": false}])
	d := tok_decision(inp)
	not d.allow
	d.tier == "unverified"
	has_reason(d, "client is not verified")
}

test_authorization_code_requires_subject if {
	d := tok_decision(token_input("claude-code", null, "authorization_code", []))
	not d.allow
	d.reasons == ["grant_type authorization_code requires a subject"]
}

test_token_exchange_grant_goes_to_exchange if {
	d := tok_decision(token_input("claude-code", alice, "urn:ietf:params:oauth:grant-type:token-exchange", []))
	d.reasons == ["token exchange is decided by pbac/exchange"]
}

test_unsupported_grant_type_denied if {
	d := tok_decision(token_input("claude-code", alice, "password", []))
	d.reasons == ["unsupported grant_type password"]
}

test_refresh_never_widens if {
	inp := object.union(token_input("claude-code", alice, "refresh_token", []), {"token": human_token("claude-code", alice)})
	d := tok_decision(json.patch(inp, [{"op": "replace", "path": "/token/scp", "value": ["jira:read"]}]))
	d.allow
	d.scopes == ["jira:read"]
}

# Failure mode 3: scanner tokens are short-lived (and single use on request).
test_scanner_token_ttl_is_short if {
	d := tok_decision(token_input("security-scanner", null, "client_credentials", ["drive:read"]))
	d.allow
	d.ttl_seconds == 300
}

test_single_use_tokens_when_statement_says_so if {
	inp := json.patch(token_input("security-scanner", null, "client_credentials", []), [{"op": "replace", "path": "/client/single_use_access_tokens", "value": true}])
	d := tok_decision(inp)
	d.allow
	d.single_use == true
}

test_tier_single_use_setting if {
	d := data.pbac.token with input as token_input("security-scanner", null, "client_credentials", [])
		with data.tiers.read_only.single_use_tokens as true
	d.single_use == true
}

test_scope_string_space_delimited if {
	d := tok_decision(token_input("claude-code", alice, "authorization_code", "jira:read slack:write"))
	d.scopes == ["jira:read", "slack:write"]
}

test_token_garbage_denied if {
	every inp in [{}, [], "x", {"client": {"verified": "yes"}}, {"request": {"grant_type": 3}}] {
		d := tok_decision(inp)
		d.allow == false
		count(d.reasons) > 0
		d.scopes == []
	}
}

test_identity_assertion_grant_is_decided_as_a_sign_in if {
	jwt := "urn:ietf:params:oauth:grant-type:jwt-bearer"
	d := tok_decision(token_input("claude-code", alice, jwt, ["jira:write", "drive:read"]))
	d.allow
	d.tier == "developer"
	d.scopes == ["drive:read", "jira:write"]
	m := tok_decision(token_input("claude-code", null, jwt, ["jira:read"]))
	not m.allow
	m.reasons == ["grant_type urn:ietf:params:oauth:grant-type:jwt-bearer requires a subject"]
}
