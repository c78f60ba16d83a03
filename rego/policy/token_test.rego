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
	d.scopes == ["database:read", "drive:read", "gitlab:read", "gitlab:write", "jenkins:build", "jenkins:deploy", "jenkins:read", "jira:read", "jira:write"]
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

# database:ddl only for a developer agent, and only for a person whose
# role grants it (each call then waits for a DBA: approval rule ddl-needs-dba).
test_ddl_scope_only_for_developer_agents_of_ddl_roles if {
	"database:ddl" in tok_decision(token_input("claude-code", alice, "authorization_code", [])).scopes
	not "database:ddl" in tok_decision(token_input("claude-code", bob, "authorization_code", [])).scopes
	every p in ["ci-bot", "security-scanner", "claude-code-trusted"] {
		d := tok_decision(token_input(p, alice, "authorization_code", []))
		not "database:ddl" in d.scopes
	}
}

test_unverified_client_token_denied if {
	inp := json.patch(token_input("claude-code", alice, "authorization_code", []), [{"op": "replace", "path": "/client/verified", "value": false}])
	d := tok_decision(inp)
	not d.allow
	d.tier == "unverified"
	has_reason(d, "client is not attested")
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

# refused_for_every_subject: what the authorization server may say on the
# first page, before anyone signs in (asked with no subject).

unverified_input(subj, scopes) := json.patch(token_input("claude-code", subj, "authorization_code", scopes), [{"op": "replace", "path": "/client/verified", "value": false}])

test_refused_for_every_subject_unverified_client if {
	d := tok_decision(unverified_input(null, []))
	d.refused_for_every_subject == ["client is not attested (no trusted statement, operator approval or known metadata document vouches for it); it gets the least tier, which grants nothing"]
}

test_refused_for_every_subject_is_not_read_from_the_subject if {
	every subj in [null, alice, bob, carol, {"sub": "x", "roles": ["engineering", "analytics", "contractor"]}, {"sub": "y", "roles": "garbage"}] {
		tok_decision(unverified_input(subj, [])).refused_for_every_subject == ["client is not attested (no trusted statement, operator approval or known metadata document vouches for it); it gets the least tier, which grants nothing"]
		tok_decision(token_input("claude-code", subj, "authorization_code", [])).refused_for_every_subject == []
	}
}

test_refused_for_every_subject_none_for_a_verified_client if {
	d := tok_decision(token_input("claude-code", null, "authorization_code", ["jira:read"]))
	not d.allow # no subject yet
	d.refused_for_every_subject == []
}

test_refused_for_every_subject_scopes_no_role_has if {
	# gitlab:merge: engineering holds it, but the developer tier does not grant it.
	d := tok_decision(token_input("claude-code", null, "authorization_code", ["gitlab:merge"]))
	d.refused_for_every_subject == ["none of the requested scopes are permitted for tier developer, whatever the person's role"]
	every subj in [alice, bob, carol] {
		not tok_decision(token_input("claude-code", subj, "authorization_code", ["gitlab:merge"])).allow
	}
}

test_refused_for_every_subject_tier_meets_no_role if {
	d := data.pbac.token with input as token_input("claude-code", null, "authorization_code", [])
		with data.roles as {"visitor": {"grants": {"wiki": ["read"]}}}
	d.refused_for_every_subject == ["tier developer grants no scopes to anyone"]
}

test_refused_for_every_subject_separation_of_duties if {
	# ci_agent may never approve or merge, whoever asks, even where its
	# grants would say so.
	d := tok_decision(token_input("ci-bot", null, "authorization_code", ["gitlab:approve", "gitlab:merge"])) with data.tiers.ci_agent.grants.gitlab as ["read", "write", "approve", "merge"]
	d.refused_for_every_subject == ["none of the requested scopes are permitted for tier ci_agent, whatever the person's role"]
	not tok_decision(token_input("ci-bot", alice, "authorization_code", ["gitlab:approve", "gitlab:merge"])).allow with data.tiers.ci_agent.grants.gitlab as ["read", "write", "approve", "merge"]

	# it may deploy (each deploy waits for release: approval rule deploy-needs-release)
	tok_decision(token_input("ci-bot", null, "authorization_code", ["jenkins:deploy"])).refused_for_every_subject == []
	tok_decision(token_input("ci-bot", alice, "authorization_code", ["jenkins:deploy"])).scopes == ["jenkins:deploy"]
}

test_refused_for_every_subject_one_role_is_enough if {
	# Only engineering grants gitlab:write: a person could be granted it.
	d := tok_decision(token_input("claude-code", null, "authorization_code", ["gitlab:write"]))
	d.refused_for_every_subject == []
	tok_decision(token_input("claude-code", alice, "authorization_code", ["gitlab:write"])).allow
	not tok_decision(token_input("claude-code", bob, "authorization_code", ["gitlab:write"])).allow
}

test_refused_for_every_subject_through_groups_only if {
	# A role no one holds directly, given by a group, still counts.
	d := data.pbac.token with input as token_input("claude-code", null, "authorization_code", ["wiki:read"])
		with data.roles as {"wiki_editor": {"grants": {"wiki": ["read"]}}}
		with data.tiers.developer.grants as {"wiki": ["read"]}
	d.refused_for_every_subject == []
	g := data.pbac.token with input as token_input("claude-code", {"sub": "dana", "roles": [], "groups": ["wiki"]}, "authorization_code", ["wiki:read"])
		with data.roles as {"wiki_editor": {"grants": {"wiki": ["read"]}}}
		with data.tiers.developer.grants as {"wiki": ["read"]}
		with data.identity.group_roles as {"wiki": ["wiki_editor"]}
	g.allow
}

test_refused_for_every_subject_only_for_human_grants if {
	inp := json.patch(token_input("ci-bot", null, "client_credentials", []), [{"op": "replace", "path": "/client/verified", "value": false}])
	tok_decision(inp).refused_for_every_subject == []
}

test_refused_for_every_subject_garbage if {
	every inp in [{}, [], "x", {"client": {"verified": "yes"}}, {"request": {"grant_type": 3}}] {
		is_array(tok_decision(inp).refused_for_every_subject)
	}
}
