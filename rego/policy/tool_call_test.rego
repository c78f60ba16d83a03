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

# developer is the one tier that grants DDL, and every schema change it
# makes waits for a DBA (approval rule ddl-needs-dba); the other tiers are
# denied it outright, with no approval to ask for.
test_ddl_held_for_developer_denied_for_every_other_tier if {
	held := tool_call(human_call("claude-code", alice, "database.execute_ddl", {"sql": "drop table t"}))
	held.allow == false
	held.approval.rule == "ddl-needs-dba"
	held.reasons == ["approval required: schema changes need a DBA"]
	every p in ["ci-bot", "security-scanner", "claude-code-trusted", "our-internal-scanner"] {
		d := tool_call(human_call(p, alice, "database.execute_ddl", {"sql": "drop table t"}))
		not d.allow
		has_reason(d, "does not grant database:ddl")
		not d.approval
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

# A role's constraint on an argument the catalogue declares no kind for
# (folder on drive.read_file): the constraint alone judges the value's
# spelling (canonical_alone), on the fast path as in the full rules. A
# plain ASCII value is judged by its shape; any other by canonical_value.
folder_roles := object.union(data.roles, {"contractor": object.union(data.roles.contractor, {
	"arg_constraints": {"drive": {"arg": "folder", "path_prefixes": ["/public"], "required": true}},
})})

folder_call(v) := human_call("claude-code", carol, "drive.read_file", {"path": "/public/handbook.md", "folder": v})

test_role_constraint_judges_its_value_alone if {
	every v in ["/public", "/public/x", "public/x", "/public/a\"b", "/public/caf\u00e9", "/public/a<b>&c"] {
		tool_call(folder_call(v)).allow with data.roles as folder_roles
		tool_call(folder_call(v)) == full_decision(folder_call(v)) with data.roles as folder_roles
	}
	every v in [
		"/public/", "/public//x", "/public/./x", "/public/../eng", " /public/x", "/public/x ",
		"/public/\u200bx", "/public\uff0fx", "/public/%2e%2e/eng", "/public\\x", "/public/x\u007f",
		"/public/x\n", "/Public/x", "/publicx", "/eng", "", 7, null, ["/public/x"],
	] {
		not tool_call(folder_call(v)).allow with data.roles as folder_roles
		tool_call(folder_call(v)) == full_decision(folder_call(v)) with data.roles as folder_roles
	}
	# On the fast path too, a value plain_ascii cannot vouch for is judged by
	# canonical_value: folder is no argument the fast path checks by itself.
	every v in ["/public/x", "/public/a\"b", "/public/caf\u00e9"] {
		fast_allow(folder_call(v)) with data.roles as folder_roles
	}
}

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

# Canonical spellings are protected by the rule; the others are not
# canonical, which is denied before any prefix is compared.
test_prod_secrets_denied_for_every_tier if {
	every p in ["claude-code", "ci-bot", "security-scanner", "claude-code-trusted"] {
		every path in secret_paths {
			d := tool_call(machine_call(p, "drive.read_file", {"path": path}))
			not d.allow
			prod_secrets_reason(d)
		}
	}
}

prod_secrets_reason(d) if has_reason(d, "argument path is protected by rule prod-secrets")

prod_secrets_reason(d) if has_reason(d, "argument path is not a canonical path")

# Issue 14, High #2: every spelling a backend might read as a protected
# path — whitespace and controls around it, encodings, dot segments, other
# separators, Unicode look-alikes and invisible characters — is denied, for
# reads and writes alike, with a reason; the agent is told no rule id.
bypass_spellings := [
	" /prod/secrets/db.env", "\t/prod/secrets/db.env", "\n/prod/secrets/db.env", "\r\n/prod/secrets/db.env",
	"/prod/secrets/db.env ", "/prod/secrets/db.env\u0000", "\u0000/prod/secrets/db.env", "\u000b/prod/secrets/db.env",
	"/prod/secrets/db.env/", "/prod/secrets/db.env/.", "/prod/secrets./db.env", "/prod/secrets /db.env",
	"/prod/%73ecrets/db.env", "/prod%2Fsecrets/db.env", "/prod%252Fsecrets/db.env", "\\prod\\secrets\\db.env",
	"/prod\\secrets/db.env", "//prod/secrets/db.env", "/./prod/secrets/db.env", "/x/../prod/secrets/db.env",
	"/prod\uff0fsecrets/db.env", "/prod\u2215secrets/db.env", "/prod\u2044secrets/db.env", "/prod\u29f8secrets/db.env",
	"/prod/secr\u200bets/db.env", "/prod/\u200dsecrets/db.env", "\u202e/prod/secrets/db.env", "/prod/\ufeffsecrets/db.env",
	"/prod/\u017fecrets/db.env", "/\uff50rod/secrets/db.env", "\u00a0/prod/secrets/db.env", "\u3000/prod/secrets/db.env",
	"/prod/secrets/db\uff0eenv", "/prod/secrets\u2024/db.env", "/PROD/SECRETS/DB.ENV", "/Prod/Secrets",
]

test_bypass_spellings_denied if {
	wrong := [[tool, path] |
		some tool in ["drive.read_file", "drive.write_file", "drive.share_file", "drive.list_files", "drive.search_files"]
		some path in bypass_spellings
		d := tool_call(human_call("claude-code-trusted", alice, tool, {"path": path, "content": "x", "with": "bob"}))
		not denied_without_rule_id(d)
	]
	print("wrong:", wrong)
	count(wrong) == 0
}

denied_without_rule_id(d) if {
	not d.allow
	count(d.reasons) > 0
	every r in d.public_reasons {
		not contains(r, "prod-secrets")
		not contains(r, "rule")
	}
}

test_non_canonical_path_reason if {
	d := tool_call(machine_call("claude-code", "drive.read_file", {"path": " /prod/secrets/db.env"}))
	not d.allow
	has_reason(d, "argument path is not a canonical path")
	has_reason(d, "argument path is not canonical (protected rule prod-secrets)")
	"argument path is not a canonical path" in d.public_reasons
}

# An argument spelled with another case ("Path") that a case-insensitive
# decoder in the backend would read as "path", and argument names with
# refused characters ("ſql" folds to "sql"), are denied.
test_argument_name_spellings_denied if {
	every args in [
		{"Path": "/prod/secrets/db.env"},
		{"PATH": "/prod/secrets/db.env"},
		{"path": "/public/handbook.md", "Path": "/prod/secrets/db.env"},
		{"pa\u200bth": "/prod/secrets/db.env"},
		{"\uff50ath": "/prod/secrets/db.env"},
	] {
		d := tool_call(machine_call("claude-code", "drive.read_file", args))
		not d.allow
		has_reason(d, "argument name")
	}
	d := tool_call(machine_call("claude-code", "database.query", {"\u017fql": "SELECT * FROM pg_shadow"}))
	not d.allow
	has_reason(d, "argument name")
}

test_other_arguments_keep_their_names if allowed(machine_call("claude-code", "drive.write_file", {"path": "/docs/a.md", "content": "x", "Content-Type": "text/plain"}))

# Allow-list constraints compare exactly: "/Public" is not "/public" on a
# case-sensitive backend.
test_contractor_constraint_is_case_sensitive if {
	allowed(human_call("claude-code", carol, "drive.read_file", {"path": "/public/handbook.md"}))
	denied(human_call("claude-code", carol, "drive.read_file", {"path": "/Public/handbook.md"}))
	denied(human_call("claude-code", carol, "drive.read_file", {"path": " /public/handbook.md"}))
}

# Protected prefixes compare case-insensitively: a backend that ignores
# case is covered.
test_prod_secrets_any_case_denied if {
	d := tool_call(machine_call("claude-code", "drive.read_file", {"path": "/PROD/Secrets/db.env"}))
	not d.allow
	has_reason(d, "argument path is protected by rule prod-secrets")
}

test_prod_secrets_denied_for_internal_trusted_with_alice if {
	d := tool_call(human_call("claude-code-trusted", alice, "drive.read_file", {"path": "/prod/secrets/api-keys.json"}))
	not d.allow
	d.reasons == ["argument path is protected by rule prod-secrets (production secrets in Drive)"]
	d.public_reasons == ["the arguments name data protected by policy"]
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
	every job in ["credentials-rotate", "Prod-Secrets-Sync", "credentials/aws-rotate", "CREDENTIALS/aws-rotate"] {
		d := tool_call(human_call("claude-code-trusted", alice, "jenkins.get_build_log", {"job": job}))
		not d.allow
		has_reason(d, "protected by rule jenkins-credentials")
	}
	every job in ["deploy/../credentials", " credentials/aws-rotate", "/credentials/aws-rotate/", "credentials%2faws-rotate"] {
		d := tool_call(human_call("claude-code-trusted", alice, "jenkins.get_build_log", {"job": job}))
		not d.allow
		has_reason(d, "argument job is not a canonical name")
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

test_ci_agent_cannot_approve_or_merge if {
	every tool in ["gitlab.approve_merge_request", "gitlab.merge_merge_request"] {
		d := tool_call(human_call("ci-bot", alice, tool, {"iid": 7}))
		not d.allow
		has_reason(d, "separation of duties: ci_agent tier may not")
		d.insufficient_scope == false
		not d.approval
	}
}

# The CI bot's deploys, as itself or for a person, wait for someone in
# release (approval rule deploy-needs-release).
test_ci_agent_deploy_held_for_release if {
	every inp in [
		machine_call("ci-bot", "jenkins.trigger_deploy", {"job": "pbac-deploy"}),
		human_call("ci-bot", alice, "jenkins.trigger_deploy", {"job": "pbac-deploy"}),
	] {
		d := tool_call(inp)
		d.allow == false
		d.approval.rule == "deploy-needs-release"
		d.approval.approvers.groups == ["release"]
		d.reasons == ["approval required: deploys need someone from release who is not the requester"]
		d.insufficient_scope == false
	}
}

test_ci_agent_separation_of_duties_beats_grants if {
	# Even if someone adds approve to the CI tier's grants, SoD still denies.
	d := data.pbac.tool_call with input as mr_machine_call("ci-bot", "gitlab.approve_merge_request", "bob")
		with data.tiers.ci_agent.grants.gitlab as ["read", "write", "approve"]
	not d.allow
	d.reasons == ["separation of duties: ci_agent tier may not approve (gitlab.approve_merge_request)"]
}

# Issue 14, High #3: the rule compares the merge request's author as the
# backend knows it (looked up by the gateway: request.resource_attributes)
# with the caller, trimmed and lower-cased on both sides; the caller's own
# argument no longer decides it.
mr_call(provider, subj, tool, author) := json.patch(human_call(provider, subj, tool, {"project": "platform/api", "iid": 7}), [{"op": "add", "path": "/request/resource_attributes", "value": {"author": author}}])

mr_machine_call(provider, tool, author) := json.patch(machine_call(provider, tool, {"project": "platform/api", "iid": 7}), [{"op": "add", "path": "/request/resource_attributes", "value": {"author": author}}])

test_no_self_approval if {
	me := client_id("claude-code-trusted")
	every author in [me, concat("", [" ", me]), upper(me), concat("", [me, "\t"]), "alice", " Alice "] {
		d := tool_call(mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", author))
		not d.allow
		has_reason(d, "self-approval")
	}
	allowed(mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", "bob"))
}

test_no_self_merge if {
	me := client_id("claude-code-trusted")
	denied(mr_machine_call("claude-code-trusted", "gitlab.merge_merge_request", me))
	allowed(mr_machine_call("claude-code-trusted", "gitlab.merge_merge_request", "bob"))
}

test_no_self_approval_through_delegation if {
	inp := json.patch(mr_machine_call("claude-code-trusted", "gitlab.approve_merge_request", "Planner-1"), [{"op": "add", "path": "/token/act", "value": {"sub": "planner-1"}}])
	d := tool_call(inp)
	not d.allow
	has_reason(d, "self-approval")
}

test_unknown_author_denied if {
	d := tool_call(human_call("claude-code-trusted", alice, "gitlab.approve_merge_request", {"project": "platform/api", "iid": 7}))
	not d.allow
	has_reason(d, "could not be determined")
	denied(mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", ""))
	denied(mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", 7))
}

# The author argument names who acts (the approver of record): it must be
# the caller exactly — the human for a human's agent, else the agent — or be
# left out (the gateway fills it in). Any other spelling is denied.
test_actor_argument_must_be_the_caller if {
	allowed(json.patch(mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", "bob"), [{"op": "add", "path": "/request/arguments/author", "value": "alice"}]))
	every actor in [" alice", "Alice", "ALICE", "alice\n", "bob", client_id("claude-code-trusted"), 7, null] {
		d := tool_call(json.patch(mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", "bob"), [{"op": "add", "path": "/request/arguments/author", "value": actor}]))
		not d.allow
		has_reason(d, "argument author must name the caller")
	}
	me := client_id("ci-bot")
	allowed(machine_call("ci-bot", "gitlab.create_merge_request", {"project": "platform/api", "author": me}))
	denied(machine_call("ci-bot", "gitlab.create_merge_request", {"project": "platform/api", "author": "bob"}))
}

test_developer_may_approve_others_but_not_merge if {
	allowed(mr_call("claude-code", alice, "gitlab.approve_merge_request", "bob-agent"))
	denied(mr_call("claude-code", alice, "gitlab.merge_merge_request", "bob-agent"))
}

# Issue 14, Medium #4: list and search tools read a whole subtree (their
# reach, catalogue "reach"); one that covers a protected prefix is denied,
# whatever its query.
test_search_and_list_over_protected_data_denied if {
	every c in [
		["drive.search_files", {"query": "password"}],
		["drive.search_files", {"query": "x", "path": "/"}],
		["drive.search_files", {"query": "x", "path": "/prod"}],
		["drive.search_files", {"query": "x", "path": "/prod/secrets/db.env"}],
		["drive.list_files", {}],
		["drive.list_files", {"path": "/prod"}],
		["drive.list_files", {"path": "/PROD"}],
		["drive.list_files", {"path": "/prod/secrets"}],
	] {
		d := tool_call(machine_call("claude-code-trusted", c[0], c[1]))
		not d.allow
		has_reason(d, "which covers data protected by rule prod-secrets")
		some r in d.public_reasons
		contains(r, "would reach protected data")
	}
}

test_search_and_list_elsewhere_allowed if {
	allowed(machine_call("claude-code-trusted", "drive.search_files", {"query": "password", "path": "/team"}))
	allowed(machine_call("claude-code-trusted", "drive.list_files", {"path": "/public"}))
	allowed(machine_call("claude-code-trusted", "drive.list_files", {"path": "/prod/public"}))
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
		"public_reasons": public,
	},
	extra,
) if {
	allow := data.pbac.tool_call_allow with input as inp
	reasons := data.pbac.tool_call_reasons with input as inp
	tier := data.pbac.tier with input as inp
	resource := data.pbac.tool_resource with input as inp
	access := data.pbac.tool_access with input as inp
	insufficient := data.pbac.tool_call_insufficient_scope with input as inp
	scope_extra := data.pbac.tool_call_extra with input as inp
	approval_extra := data.pbac.tool_call_approval_extra with input as inp
	extra := object.union(scope_extra, approval_extra)
	public := data.pbac.tool_call_public_reasons with input as inp
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
		mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", client_id("claude-code-trusted")),
		mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", " ALICE"),
		mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", "bob"),
		mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", 7),
		patched(mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", "bob"), [{"op": "add", "path": "/request/arguments/author", "value": "alice"}]),
		patched(mr_call("claude-code-trusted", alice, "gitlab.approve_merge_request", "bob"), [{"op": "add", "path": "/request/arguments/author", "value": " alice"}]),
		patched(mr_machine_call("claude-code-trusted", "gitlab.approve_merge_request", "planner-1"), [{"op": "add", "path": "/token/act", "value": {"sub": "planner-1"}}]),
		patched(mr_machine_call("claude-code-trusted", "gitlab.approve_merge_request", "x"), [{"op": "add", "path": "/token/act", "value": {"sub": "planner-1"}}]),
		machine_call("ci-bot", "gitlab.create_merge_request", {"project": "platform/api", "author": client_id("ci-bot")}),
		machine_call("ci-bot", "gitlab.create_merge_request", {"project": "platform/api", "author": "ci-bot"}),
		machine_call("claude-code", "drive.read_file", {"path": " /prod/secrets/db.env"}),
		machine_call("claude-code", "drive.read_file", {"path": "/prod\uff0fsecrets/db.env"}),
		machine_call("claude-code", "drive.read_file", {"Path": "/prod/secrets/db.env"}),
		machine_call("claude-code", "drive.read_file", {"pa\u200bth": "/docs/a.md"}),
		machine_call("claude-code", "drive.write_file", {"path": "/docs/a.md", "content": "x", "Content-Type": "text/plain"}),
		machine_call("claude-code", "database.query", {"\u017fql": "select 1"}),
		machine_call("claude-code", "database.query", {"sql": "select * from t where a like '%x%'\n"}),
		machine_call("claude-code", "database.query", {"sql": "select * from pg_authid -- 100%"}),
		machine_call("claude-code", "jira.create_issue", {"project": "ENG/", "summary": "s"}),
		machine_call("claude-code", "jira.create_issue", {"project": "EN\u200bG", "summary": "s"}),
		machine_call("claude-code", "jira.create_issue", {"Project": "ENG", "summary": "s"}),
		machine_call("claude-code", "jira.create_issue", {"project": "ENG", "summary": "s", "Summary": "t"}),
		machine_call("claude-code", "drive.list_files", {"path": "/public", "PATH": "/prod"}),
		machine_call("claude-code", "drive.list_files", {"path": "/prod/secrets/keys"}),
		machine_call("claude-code", "drive.list_files", {"path": 7}),
		machine_call("claude-code", "drive.search_files", {"query": "password"}),
		machine_call("claude-code", "drive.search_files", {"query": "password", "path": "/team"}),
		machine_call("claude-code", "drive.list_files", {"path": "/prod"}),
		machine_call("claude-code", "drive.list_files", {"path": "/public"}),
		machine_call("claude-code", "drive.list_files", {"path": "/public/"}),
		machine_call("claude-code-trusted", "jenkins.get_build_log", {"job": " credentials/aws-rotate"}),
		machine_call("claude-code-trusted", "jenkins.get_build_log", {"job": "build-api"}),
		human_call("claude-code", carol, "drive.read_file", {"path": "/Public/handbook.md"}),
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
	# A canonical value or name that is not plain ASCII: the fast path
	# cannot vouch for its characters without a regular expression.
	accented := machine_call("claude-code", "jira.create_issue", {"project": "ENG", "summary": "Caf\u00e9", "r\u00e9sum\u00e9": "x"})
	not fast_allow(accented)
	allowed(accented)
	tool_call(accented) == full_decision(accented)
	accented_value := machine_call("claude-code", "jira.create_issue", {"project": "CAF\u00c9", "summary": "s"})
	not fast_allow(accented_value)
	allowed(accented_value)
	tool_call(accented_value) == full_decision(accented_value)
	# Methods other than tools/call (a prompt here) are the full rules'.
	prompt := prompt_get("ci-bot", "jira.prompt:triage_issue", {"key": "SEC-12"})
	not fast_allow(prompt)
	allowed(prompt)
	tool_call(prompt) == full_decision(prompt)
}

# The kind of call, on the fast path as in the full rules: a tool named
# like a prompt, resource or template is never called, and a tool is not
# got as a prompt. The resource and the template are catalogued exactly
# (not as URI prefixes, which the fast path leaves to the full rules), so
# only the kind check stands between them and the fast path.
test_fast_path_refuses_other_kinds if {
	cat := object.union(data.catalogue, {
		"jira.resource:jira://issue/SEC-12": {"resource": "jira", "access": "read"},
		"jira.template:jira://issue/": {"resource": "jira", "access": "read"},
	})
	every inp in [
		machine_call("ci-bot", "jira.prompt:triage_issue", {}),
		machine_call("ci-bot", "jira.resource:jira://issue/SEC-12", {}),
		machine_call("ci-bot", "jira.template:jira://issue/", {}),
		prompt_get("ci-bot", "jira.get_issue", {}),
	] {
		not data.pbac.tool_call_fast_allow with input as inp with data.catalogue as cat
		not data.pbac.tool_call.allow with input as inp with data.catalogue as cat
	}
}

# A list tool's reach comes from data when the call gives none (the
# shipped default, "/", covers protected data): the fast path checks the
# default's characters too (it is not among the strings of the call), and
# leaves a default it cannot vouch for to the full rules.
reach_default_catalogue(def) := json.patch(data.catalogue, [{"op": "replace", "path": "/drive.list_files/reach/default", "value": def}])

test_fast_path_checks_the_reach_default if {
	inp := machine_call("claude-code", "drive.list_files", {})
	data.pbac.tool_call_fast_allow with input as inp with data.catalogue as reach_default_catalogue("/public")
	every def in ["/pub\u200blic", "public", "/docs/", "/prod", 7] {
		not data.pbac.tool_call_fast_allow with input as inp with data.catalogue as reach_default_catalogue(def)
		not data.pbac.tool_call.allow with input as inp with data.catalogue as reach_default_catalogue(def)
	}
	cafe := reach_default_catalogue("/caf\u00e9")
	not data.pbac.tool_call_fast_allow with input as inp with data.catalogue as cafe
	data.pbac.tool_call.allow with input as inp with data.catalogue as cafe
}

# A declared name in mixed case ("filePath"): its other spellings are found
# on the fast path as in the full rules.
test_fast_path_finds_other_spellings_of_mixed_case_names if {
	cat := json.patch(data.catalogue, [{"op": "add", "path": "/drive.read_file/arguments/filePath", "value": "path"}])
	ok := machine_call("claude-code", "drive.read_file", {"path": "/docs/a.md", "filePath": "/docs/b.md"})
	data.pbac.tool_call_fast_allow with input as ok with data.catalogue as cat
	every args in [{"path": "/docs/a.md", "filepath": "/docs/b.md"}, {"path": "/docs/a.md", "FILEPATH": "/docs/b.md"}] {
		inp := machine_call("claude-code", "drive.read_file", args)
		not data.pbac.tool_call_fast_allow with input as inp with data.catalogue as cat
		not data.pbac.tool_call.allow with input as inp with data.catalogue as cat
	}
}

# A protected rule with path prefixes names an argument the catalogue
# gives no kind: its value's characters are checked on the fast path too,
# so a zero-width space cannot slip a protected path past the prefix.
test_fast_path_checks_protected_path_arguments if {
	rules := array.concat(data.protected_arguments, [{
		"id": "jira-secret", "description": "secret queries", "resources": ["jira"],
		"args": ["query"], "path_prefixes": ["/secret"], "substrings": [],
	}])
	ok := machine_call("claude-code", "jira.search_issues", {"query": "/public/x"})
	data.pbac.tool_call_fast_allow with input as ok with data.protected_arguments as rules
	every q in ["/sec\u200bret/x", "/Secret/x", "/secret/../public"] {
		inp := machine_call("claude-code", "jira.search_issues", {"query": q})
		not data.pbac.tool_call_fast_allow with input as inp with data.protected_arguments as rules
		not data.pbac.tool_call.allow with input as inp with data.protected_arguments as rules
	}
}
