package pbac_test

# ---------------------------------------------------------------------------
# The seed trust-tier matrix, for machine clients and for alice/engineering.

# [provider, tool, allowed]
matrix := [
	["claude-code", "drive.read_file", true],
	["claude-code", "drive.write_file", true],
	["claude-code", "jira.get_issue", true],
	["claude-code", "jira.create_issue", true],
	["claude-code", "slack.read_history", true],
	["claude-code", "slack.post_message", true],
	["claude-code", "database.execute_ddl", false],
	["ci-bot", "drive.read_file", true],
	["ci-bot", "drive.write_file", false],
	["ci-bot", "jira.get_issue", true],
	["ci-bot", "jira.create_issue", true],
	["ci-bot", "slack.read_history", false],
	["ci-bot", "slack.post_message", false],
	["ci-bot", "database.execute_ddl", false],
	["security-scanner", "drive.read_file", true],
	["security-scanner", "drive.write_file", false],
	["security-scanner", "jira.get_issue", true],
	["security-scanner", "jira.create_issue", false],
	["security-scanner", "slack.read_history", false],
	["security-scanner", "slack.post_message", false],
	["security-scanner", "database.execute_ddl", false],
	["claude-code-trusted", "drive.read_file", true],
	["claude-code-trusted", "drive.write_file", true],
	["claude-code-trusted", "jira.get_issue", true],
	["claude-code-trusted", "jira.create_issue", true],
	["claude-code-trusted", "slack.read_history", true],
	["claude-code-trusted", "slack.post_message", true],
	["claude-code-trusted", "database.execute_ddl", false],
	["unknown-agent", "drive.read_file", false],
	["unknown-agent", "jira.get_issue", false],
]

test_seed_matrix_machine_clients if {
	wrong := [row |
		some row in matrix
		d := tool_call(machine_call(row[0], row[1], args_for(row[1])))
		d.allow != row[2]
	]
	print("wrong:", wrong)
	count(wrong) == 0
}

test_seed_matrix_alice_engineering if {
	wrong := [row |
		some row in matrix
		d := tool_call(human_call(row[0], alice, row[1], args_for(row[1])))
		d.allow != row[2]
	]
	print("wrong:", wrong)
	count(wrong) == 0
}

test_developer_may_write_jira if {
	d := tool_call(human_call("claude-code", alice, "jira.create_issue", {}))
	d.allow
	d.tier == "developer"
	d.resource == "jira"
	d.access == "write"
	d.required_scope == "jira:write"
	d.reasons == ["developer tier may write jira"]
	d.insufficient_scope == false
}

test_ci_agent_cannot_write_slack if {
	d := tool_call(machine_call("ci-bot", "slack.post_message", {}))
	not d.allow
	d.reasons == ["ci_agent tier does not grant slack:write"]
}

test_read_only_cannot_write_jira if {
	d := tool_call(machine_call("security-scanner", "jira.create_issue", {}))
	not d.allow
	has_reason(d, "read_only tier does not grant jira:write")
}

test_ddl_denied_for_every_tier if {
	every p in ["claude-code", "ci-bot", "security-scanner", "claude-code-trusted", "our-internal-scanner"] {
		d := tool_call(human_call(p, alice, "database.execute_ddl", {"sql": "drop table t"}))
		not d.allow
		has_reason(d, "does not grant database:ddl")
	}
}

test_unverified_client_gets_nothing if {
	inp := json.patch(machine_call("claude-code-trusted", "jira.get_issue", {}), [{"op": "replace", "path": "/client/verified", "value": false}])
	d := tool_call(inp)
	not d.allow
	d.tier == "unverified"
	d.reasons == ["unverified tier does not grant jira:read"]
}

test_missing_verified_flag_is_unverified if {
	inp := json.remove(machine_call("claude-code", "jira.get_issue", {}), ["client/verified"])
	tool_call(inp).tier == "unverified"
	denied(inp)
}

# ---------------------------------------------------------------------------
# Roles: an agent never exceeds its human.

test_analytics_role_cannot_write_jira_even_as_developer if {
	d := tool_call(human_call("claude-code", bob, "jira.create_issue", {}))
	not d.allow
	d.reasons == ["roles analytics do not grant jira:write"]
	d.insufficient_scope == false
}

test_analytics_role_may_post_slack if allowed(human_call("claude-code", bob, "slack.post_message", {}))

test_analytics_role_may_query_database if allowed(human_call("claude-code", bob, "database.query", {"sql": "select 1"}))

test_contractor_reads_public_drive_only if {
	allowed(human_call("claude-code", carol, "drive.read_file", {"path": "/public/handbook.md"}))
	d := tool_call(human_call("claude-code", carol, "drive.read_file", {"path": "/eng/design.md"}))
	not d.allow
	d.reasons == ["roles contractor allow drive only with path under /public"]
}

test_contractor_needs_path_argument if denied(human_call("claude-code", carol, "drive.list_files", {}))

test_contractor_cannot_escape_public_with_traversal if {
	denied(human_call("claude-code", carol, "drive.read_file", {"path": "/public/../eng/design.md"}))
}

test_contractor_writes_jira if allowed(human_call("claude-code", carol, "jira.create_issue", {}))

test_contractor_cannot_write_drive if denied(human_call("claude-code", carol, "drive.write_file", {"path": "/public/x"}))

test_subject_without_roles_gets_nothing if {
	d := tool_call(human_call("claude-code", {"sub": "dave"}, "jira.get_issue", {}))
	not d.allow
	d.reasons == ["roles none do not grant jira:read"]
}

test_unknown_role_gets_nothing if denied(human_call("claude-code", {"sub": "eve", "roles": ["ceo"]}, "jira.get_issue", {}))

test_several_roles_union if allowed(human_call("claude-code", {"sub": "fay", "roles": ["contractor", "analytics"]}, "slack.post_message", {}))

# ---------------------------------------------------------------------------
# Failure mode 1: production secrets through arguments.

secret_paths := [
	"/prod/secrets/db.env",
	"/prod/secrets",
	"prod/secrets/db.env",
	"/PROD/Secrets/db.env",
	"//prod//secrets//db.env",
	"/prod/./secrets/db.env",
	"/docs/../prod/secrets/db.env",
	"/../../prod/secrets/db.env",
	"/public/a/b/../../../prod/secrets/x",
	"\\prod\\secrets\\db.env",
	"/prod%2fsecrets/db.env",
	"/prod/%2e%2e/prod/secrets/db.env",
]

test_prod_secrets_denied_for_every_tier if {
	every p in ["claude-code", "ci-bot", "security-scanner", "claude-code-trusted"] {
		every path in secret_paths {
			d := tool_call(machine_call(p, "drive.read_file", {"path": path}))
			not d.allow
			has_reason(d, "argument path is protected by rule prod-secrets")
		}
	}
}

test_prod_secrets_denied_for_internal_trusted_with_alice if {
	d := tool_call(human_call("claude-code-trusted", alice, "drive.read_file", {"path": "/prod/secrets/api-keys.json"}))
	not d.allow
	d.reasons == ["argument path is protected by rule prod-secrets (production secrets in Drive)"]
	d.insufficient_scope == false
}

test_prod_secrets_write_and_share_denied if {
	denied(human_call("claude-code", alice, "drive.write_file", {"path": "/prod/secrets/x", "content": "y"}))
	denied(human_call("claude-code", alice, "drive.share_file", {"path": "/prod/secrets/x", "with": "mallory"}))
}

test_similar_but_unprotected_paths_allowed if {
	every path in ["/prod/secretsanta.md", "/prod/public/secrets.md", "/docs/prod/secrets-howto.md"] {
		allowed(machine_call("claude-code", "drive.read_file", {"path": path}))
	}
}

test_non_string_protected_argument_denied if {
	d := tool_call(machine_call("claude-code", "drive.read_file", {"path": ["/prod/secrets/x"]}))
	not d.allow
	has_reason(d, "argument path must be a string (protected rule prod-secrets)")
}

test_jenkins_credentials_denied if {
	every job in ["credentials-rotate", "Prod-Secrets-Sync", "deploy/../credentials"] {
		d := tool_call(human_call("claude-code-trusted", alice, "jenkins.get_build_log", {"job": job}))
		not d.allow
		has_reason(d, "protected by rule jenkins-credentials")
	}
}

test_jenkins_credential_path_denied if {
	d := tool_call(machine_call("claude-code-trusted", "jenkins.get_build_log", {"job": "pbac-ci", "path": "/var/jenkins_home/secrets/master.key"}))
	not d.allow
	has_reason(d, "argument path is protected by rule jenkins-credentials")
}

test_database_credential_tables_denied if {
	d := tool_call(machine_call("claude-code", "database.query", {"sql": "SELECT * FROM pg_shadow"}))
	not d.allow
	has_reason(d, "database-credential-tables")
}

test_protected_rules_are_data_driven if {
	inp := machine_call("claude-code", "drive.read_file", {"path": "/hr/salaries.xlsx"})
	allowed(inp)
	rules := array.concat(data.protected_arguments, [{"id": "hr", "resources": ["drive"], "args": ["path"], "path_prefixes": ["/hr"], "substrings": []}])
	d := data.pbac.tool_call with input as inp with data.protected_arguments as rules
	not d.allow
	has_reason(d, "protected by rule hr")
}

# ---------------------------------------------------------------------------
# Failure mode 2: CI creates a merge request, then approves / merges / deploys.

test_ci_agent_may_create_merge_request_and_build if {
	allowed(machine_call("ci-bot", "gitlab.create_merge_request", {"title": "t"}))
	allowed(machine_call("ci-bot", "jenkins.trigger_build", {"job": "pbac-ci"}))
}

test_ci_agent_cannot_approve_merge_or_deploy if {
	every tool in ["gitlab.approve_merge_request", "gitlab.merge_merge_request", "jenkins.trigger_deploy"] {
		d := tool_call(human_call("ci-bot", alice, tool, {"job": "pbac-deploy", "iid": 7}))
		not d.allow
		has_reason(d, "separation of duties: ci_agent tier may not")
		d.insufficient_scope == false
	}
}

test_ci_agent_separation_of_duties_beats_grants if {
	# Even if someone adds approve to the CI tier's grants, SoD still denies.
	d := data.pbac.tool_call with input as machine_call("ci-bot", "gitlab.approve_merge_request", {})
		with data.tiers.ci_agent.grants.gitlab as ["read", "write", "approve"]
	not d.allow
	d.reasons == ["separation of duties: ci_agent tier may not approve (gitlab.approve_merge_request)"]
}

test_no_self_approval if {
	me := client_id("claude-code-trusted")
	d := tool_call(human_call("claude-code-trusted", alice, "gitlab.approve_merge_request", {"iid": 7, "author": me}))
	not d.allow
	has_reason(d, "self-approval")
	allowed(human_call("claude-code-trusted", alice, "gitlab.approve_merge_request", {"iid": 7, "author": "someone-else"}))
	allowed(human_call("claude-code-trusted", alice, "gitlab.approve_merge_request", {"iid": 7}))
}

test_no_self_merge if {
	me := client_id("claude-code-trusted")
	denied(machine_call("claude-code-trusted", "gitlab.merge_merge_request", {"author": me}))
}

test_no_self_approval_through_delegation if {
	inp := json.patch(machine_call("claude-code-trusted", "gitlab.approve_merge_request", {"author": "planner-1"}), [{"op": "add", "path": "/token/act", "value": {"sub": "planner-1"}}])
	d := tool_call(inp)
	not d.allow
	has_reason(d, "self-approval")
}

test_developer_may_approve_others_but_not_merge if {
	allowed(human_call("claude-code", alice, "gitlab.approve_merge_request", {"author": "bob-agent"}))
	denied(human_call("claude-code", alice, "gitlab.merge_merge_request", {"author": "bob-agent"}))
}

test_only_internal_trusted_deploys if {
	allowed(human_call("claude-code-trusted", alice, "jenkins.trigger_deploy", {"job": "pbac-deploy"}))
	denied(human_call("claude-code", alice, "jenkins.trigger_deploy", {"job": "pbac-deploy"}))
}

# ---------------------------------------------------------------------------
# Failure mode 4: catalogue default-deny.

test_tool_not_in_catalogue_denied_even_for_internal_trusted if {
	d := tool_call(human_call("claude-code-trusted", alice, "drive.delete_everything", {}))
	not d.allow
	d.reasons == ["tool drive.delete_everything is not in the catalogue"]
	not d.required_scope
	d.resource == ""
	d.insufficient_scope == false
}

test_new_backend_not_in_catalogue_denied if {
	denied(machine_call("claude-code-trusted", "k8s.exec", {}))
}

test_catalogue_entry_enables_tool if {
	inp := machine_call("claude-code", "jira.bulk_delete", {})
	denied(inp)
	d := data.pbac.tool_call with input as inp with data.catalogue["jira.bulk_delete"] as {"resource": "jira", "access": "write"}
	d.allow
}

# ---------------------------------------------------------------------------
# Token checks on every call.

test_expired_token_denied if {
	d := data.pbac.tool_call with input as machine_call("claude-code", "jira.get_issue", {}) with input.now as 1700000300
	not d.allow
	d.reasons == ["token has expired"]
}

test_missing_token_denied if {
	d := tool_call(json.remove(machine_call("claude-code", "jira.get_issue", {}), ["token"]))
	not d.allow
	d.reasons == ["no access token"]
}

test_token_without_audience_denied if {
	d := tool_call(json.patch(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/token/aud", "value": []}]))
	d.reasons == ["token has no audience"]
}

test_missing_now_denied if {
	d := tool_call(json.remove(machine_call("claude-code", "jira.get_issue", {}), ["now"]))
	d.reasons == ["request time (now) is missing"]
}

test_token_of_another_client_denied if {
	d := tool_call(json.patch(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/token/client_id", "value": "other"}]))
	d.reasons == ["token was issued to another client"]
}

test_human_token_without_subject_denied if {
	inp := json.remove(human_call("claude-code", alice, "jira.get_issue", {}), ["subject"])
	has_reason(tool_call(inp), "input.subject is missing")
}

test_token_scope_missing_is_insufficient_scope if {
	inp := json.patch(machine_call("claude-code", "jira.create_issue", {}), [{"op": "replace", "path": "/token/scp", "value": ["jira:read"]}])
	d := tool_call(inp)
	not d.allow
	d.reasons == ["token lacks scope jira:write"]
	d.insufficient_scope == true
	d.required_scope == "jira:write"
}

test_scope_missing_and_tier_denies_is_not_insufficient_scope if {
	inp := json.patch(machine_call("ci-bot", "slack.post_message", {}), [{"op": "replace", "path": "/token/scp", "value": ["jira:read"]}])
	d := tool_call(inp)
	not d.allow
	d.insufficient_scope == false
}

test_space_delimited_scope_string_accepted if {
	inp := json.patch(machine_call("claude-code", "jira.create_issue", {}), [{"op": "replace", "path": "/token/scp", "value": "jira:read jira:write"}])
	allowed(inp)
}

test_backend_must_match_tool_prefix if {
	inp := json.patch(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/request/backend", "value": "drive"}])
	d := tool_call(inp)
	d.reasons == ["backend drive does not serve tool jira.get_issue"]
}

test_method_must_be_tools_call if {
	inp := json.patch(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/request/method", "value": "tools/list"}])
	denied(inp)
}

test_delegation_chain_too_deep_denied if {
	deep := {"sub": "a1", "act": {"sub": "a2", "act": {"sub": "a3", "act": {"sub": "a4"}}}}
	inp := json.patch(machine_call("claude-code", "jira.get_issue", {}), [{"op": "add", "path": "/token/act", "value": deep}])
	d := tool_call(inp)
	not d.allow
	d.reasons == ["delegation chain depth 4 exceeds the maximum of 3"]
}

test_garbage_inputs_deny_with_reasons if {
	every inp in [{}, [], "x", 1, null, {"client": "x", "token": 7, "request": [], "now": "soon"}, {"request": {"tool": 5, "arguments": "a"}}] {
		d := tool_call(inp)
		d.allow == false
		count(d.reasons) > 0
	}
}

# ---------------------------------------------------------------------------
# The fast allow path (tool_call_fast) against the full rules.

fast_allow(inp) := x if {
	x := data.pbac.tool_call_fast_allow with input as inp
} else := false

# The full rules: no deny reason and tool_call_allow.
full_allow(inp) if {
	count(data.pbac.tool_call_deny) == 0 with input as inp
	data.pbac.tool_call_allow with input as inp
}

full_allow_bool(inp) := true if full_allow(inp) else := false

# The decision the full rules build (what tool_call returned before the fast path).
full_decision(inp) := object.union(
	{
		"allow": allow,
		"reasons": reasons,
		"tier": tier,
		"resource": resource,
		"access": access,
		"insufficient_scope": insufficient,
	},
	extra,
) if {
	allow := data.pbac.tool_call_allow with input as inp
	reasons := data.pbac.tool_call_reasons with input as inp
	tier := data.pbac.tier with input as inp
	resource := data.pbac.tool_resource with input as inp
	access := data.pbac.tool_access with input as inp
	insufficient := data.pbac.tool_call_insufficient_scope with input as inp
	extra := data.pbac.tool_call_extra with input as inp
}

patched(inp, ops) := json.patch(inp, ops)

# Vector-like inputs: both allowed and denied, across every rule.
fast_path_inputs := array.concat(
	array.concat(
		[machine_call(row[0], row[1], args_for(row[1])) | some row in matrix],
		[human_call(row[0], alice, row[1], args_for(row[1])) | some row in matrix],
	),
	[
		human_call("claude-code", bob, "jira.create_issue", {}),
		human_call("claude-code", bob, "slack.post_message", {}),
		human_call("claude-code", carol, "drive.read_file", {"path": "/public/handbook.md"}),
		human_call("claude-code", carol, "drive.read_file", {"path": "/Public/./a//b.md"}),
		human_call("claude-code", carol, "drive.read_file", {"path": "/eng/design.md"}),
		human_call("claude-code", carol, "drive.read_file", {"path": "/public/../eng/design.md"}),
		human_call("claude-code", carol, "drive.list_files", {}),
		human_call("claude-code", {"sub": "dave"}, "jira.get_issue", {}),
		human_call("claude-code", {"sub": "fay", "roles": ["contractor", "analytics"]}, "slack.post_message", {}),
		machine_call("claude-code", "drive.read_file", {"path": "/prod/secrets/db.env"}),
		machine_call("claude-code", "drive.read_file", {"path": "/docs/../prod/secrets/db.env"}),
		machine_call("claude-code", "drive.read_file", {"path": "/prod%2fsecrets/db.env"}),
		machine_call("claude-code", "drive.read_file", {"path": "/prod/secretsanta.md"}),
		machine_call("claude-code", "drive.read_file", {"path": ["/prod/secrets/x"]}),
		machine_call("claude-code-trusted", "jenkins.get_build_log", {"job": "pbac-ci", "path": "/var/jenkins_home/secrets/master.key"}),
		machine_call("claude-code-trusted", "jenkins.get_build_log", {"job": "Prod-Secrets-Sync"}),
		machine_call("claude-code", "database.query", {"sql": "SELECT * FROM pg_shadow"}),
		machine_call("claude-code", "database.query", {"sql": "select 1"}),
		human_call("claude-code-trusted", alice, "gitlab.approve_merge_request", {"iid": 7, "author": client_id("claude-code-trusted")}),
		human_call("claude-code-trusted", alice, "gitlab.approve_merge_request", {"iid": 7, "author": "someone-else"}),
		patched(machine_call("claude-code-trusted", "gitlab.approve_merge_request", {"author": "planner-1"}), [{"op": "add", "path": "/token/act", "value": {"sub": "planner-1"}}]),
		patched(machine_call("claude-code-trusted", "gitlab.approve_merge_request", {"author": "x"}), [{"op": "add", "path": "/token/act", "value": {"sub": "planner-1"}}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "add", "path": "/token/act", "value": {"sub": "a1", "act": {"sub": "a2", "act": {"sub": "a3", "act": {"sub": "a4"}}}}}]),
		human_call("ci-bot", alice, "gitlab.merge_merge_request", {}),
		human_call("claude-code-trusted", alice, "drive.delete_everything", {}),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/now", "value": 1700000300}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/token/iat", "value": 1700000161}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/token/iat", "value": 1700000160}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/token/aud", "value": []}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/token/aud", "value": "https://gw.example/mcp"}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/token/client_id", "value": "other"}]),
		patched(machine_call("claude-code", "jira.create_issue", {}), [{"op": "replace", "path": "/token/scp", "value": ["jira:read"]}]),
		patched(machine_call("claude-code", "jira.create_issue", {}), [{"op": "replace", "path": "/token/scp", "value": "jira:read jira:write"}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/request/backend", "value": "drive"}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/request/backend", "value": 7}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "remove", "path": "/request/backend"}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/request/method", "value": "tools/list"}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "remove", "path": "/request/method"}]),
		patched(machine_call("claude-code", "jira.get_issue", {}), [{"op": "replace", "path": "/client/verified", "value": false}]),
		patched(human_call("claude-code", alice, "jira.get_issue", {}), [{"op": "remove", "path": "/subject"}]),
		patched(human_call("claude-code", alice, "jira.get_issue", {}), [{"op": "replace", "path": "/subject/sub", "value": "mallory"}]),
		{},
		{"request": {"tool": 5, "arguments": "a"}},
	],
)

test_fast_path_agrees_with_full_rules if {
	wrong := [inp |
		some inp in fast_path_inputs
		fast_allow(inp) != full_allow_bool(inp)
	]
	print("wrong:", wrong)
	count(wrong) == 0
	# both kinds are covered
	some a in fast_path_inputs
	fast_allow(a)
	some d in fast_path_inputs
	not fast_allow(d)
}

test_fast_path_decision_equals_full_decision if {
	wrong := [[d, full_decision(inp)] |
		some inp in fast_path_inputs
		d := tool_call(inp)
		d != full_decision(inp)
	]
	print("wrong:", wrong)
	count(wrong) == 0
}

# Where the fast path is stricter than the rules (rare shapes), the full
# rules still allow: a token without iat, a client without client_id.
test_fast_path_stricter_shapes_fall_back if {
	no_iat := json.remove(machine_call("claude-code", "jira.get_issue", {}), ["token/iat"])
	not fast_allow(no_iat)
	allowed(no_iat)
	no_id := json.remove(machine_call("claude-code", "jira.get_issue", {}), ["client/client_id"])
	not fast_allow(no_id)
	allowed(no_id)
}
