# Approval required (data.approval_rules, contract version 3), with the
# shipped data: ci_agent's deploys wait for release (deploy-needs-release),
# developer's DDL for a DBA (ddl-needs-dba).
package pbac_test

deploy_args := {"job": "pbac-deploy", "environment": "production"}

ci_deploy := machine_call("ci-bot", "jenkins.trigger_deploy", deploy_args)

alice_ddl := human_call("claude-code", alice, "database.execute_ddl", args_for("database.execute_ddl"))

release_bob := {"sub": "bob", "roles": ["analytics", "release"], "groups": []}

dba_dave := {"sub": "dave", "roles": ["dba"], "groups": []}

granted(rule, approver, via) := {
	"id": "apr_1",
	"rule": rule,
	"granted": true,
	"approver": approver,
	"via": via,
	"granted_at": now - 10,
}

with_approval(inp, a) := object.union(inp, {"approval": a})

test_ci_deploy_held if {
	d := tool_call(ci_deploy)
	d.allow == false
	d.approval == {
		"required": true,
		"rule": "deploy-needs-release",
		"reason": "deploys need someone from release who is not the requester",
		"approvers": {"groups": ["release"], "not": ["ci-bot-client"], "requester": false},
		"ttl_seconds": 900,
	}
	d.reasons == ["approval required: deploys need someone from release who is not the requester"]
	d.public_reasons == d.reasons
	d.insufficient_scope == false
}

test_ci_deploy_granted_by_release if {
	d := tool_call(with_approval(ci_deploy, granted("deploy-needs-release", release_bob, "dashboard")))
	d.allow == true
	not d.approval
	d.reasons == ["ci_agent tier may deploy jenkins"]
}

test_release_through_identity_group if {
	erin := {"sub": "erin", "roles": [], "groups": ["release"]}
	tool_call(with_approval(ci_deploy, granted("deploy-needs-release", erin, "link"))).allow == true

	# a group identity.group_roles maps to the release role
	frank := {"sub": "frank", "roles": [], "groups": ["rel-team"]}
	d := tool_call(with_approval(ci_deploy, granted("deploy-needs-release", frank, "admin"))) with data.identity.group_roles as {"rel-team": ["release"]}
	d.allow == true
}

# The shipped identity.group_roles gives the release and dba roles to the
# groups of those names: a person of a users file or single sign-on in them
# approves, and their agents get the roles' grants.
test_shipped_groups_give_the_approver_roles if {
	data.identity.group_roles.release == ["release"]
	data.identity.group_roles.dba == ["dba"]
	rita := {"sub": "rita", "roles": [], "groups": ["release"]}
	allowed(human_call("claude-code", rita, "jenkins.get_build_log", args_for("jenkins.get_build_log")))
	tool_call(with_approval(ci_deploy, granted("deploy-needs-release", rita, "dashboard"))).allow == true
}

test_requester_cannot_approve_own_ddl if {
	held := tool_call(alice_ddl)
	held.allow == false
	held.approval.rule == "ddl-needs-dba"
	held.approval.approvers.not == ["alice", "claude-code-client"]

	# alice is a DBA too, but the call is her agent's: still held
	alice_dba := {"sub": " Alice ", "roles": ["engineering", "dba"], "groups": []}
	d := tool_call(with_approval(alice_ddl, granted("ddl-needs-dba", alice_dba, "dashboard")))
	d.allow == false
	d.approval.rule == "ddl-needs-dba"

	# the agent itself cannot approve either
	agent_dba := {"sub": "claude-code-client", "roles": ["dba"]}
	tool_call(with_approval(alice_ddl, granted("ddl-needs-dba", agent_dba, "admin"))).allow == false

	# another DBA can
	tool_call(with_approval(alice_ddl, granted("ddl-needs-dba", dba_dave, "dashboard"))).allow == true
}

test_grant_for_other_rule_ignored if {
	d := tool_call(with_approval(ci_deploy, granted("ddl-needs-dba", release_bob, "dashboard")))
	d.allow == false
	d.approval.rule == "deploy-needs-release"
}

test_approver_outside_group_ignored if {
	d := tool_call(with_approval(ci_deploy, granted("deploy-needs-release", carol, "dashboard")))
	d.allow == false
	d.approval.required == true
}

test_unusable_grants_ignored if {
	no_sub := {"roles": ["release"]}
	blank_sub := {"sub": "  ", "roles": ["release"]}
	not_granted := object.union(granted("deploy-needs-release", release_bob, "dashboard"), {"granted": false})
	held := [a |
		some a in [
			granted("deploy-needs-release", no_sub, "dashboard"),
			granted("deploy-needs-release", blank_sub, "dashboard"),
			not_granted,
			object.remove(granted("deploy-needs-release", release_bob, "dashboard"), ["approver"]),
			"yes",
			true,
		]
		tool_call(with_approval(ci_deploy, a)).approval.required == true
	]
	count(held) == 6
}

# The requester's own confirmation in the client counts only where the
# rule says requester: true, and only from the person the agent acts for.
test_requester_confirms_in_client if {
	rules := [{
		"id": "ddl-confirm", "resources": ["database"], "access": ["ddl"],
		"approver_groups": ["dba"], "requester": true, "ttl_seconds": 60,
		"reason": "confirm schema changes",
	}]
	held := tool_call(alice_ddl) with data.approval_rules as rules
	held.approval.approvers == {"groups": ["dba"], "not": [], "requester": true}

	tool_call(with_approval(alice_ddl, granted("ddl-confirm", alice, "client"))).allow == true with data.approval_rules as rules

	# bob is not the person the agent acts for
	tool_call(with_approval(alice_ddl, granted("ddl-confirm", release_bob, "client"))).allow == false with data.approval_rules as rules

	# outside the client, alice needs the approver group
	tool_call(with_approval(alice_ddl, granted("ddl-confirm", alice, "dashboard"))).allow == false with data.approval_rules as rules

	# without requester: true her confirmation is nothing
	tool_call(with_approval(alice_ddl, granted("ddl-needs-dba", alice, "client"))).allow == false

	# and a DBA's "client" confirmation is not an approval
	tool_call(with_approval(alice_ddl, granted("ddl-needs-dba", dba_dave, "client"))).allow == false
}

test_denied_call_has_no_approval if {
	# a deploy the rule would hold, of a job whose name is protected data
	d := tool_call(machine_call("ci-bot", "jenkins.trigger_deploy", {"job": "credentials/aws-rotate", "environment": "production"}))
	d.allow == false
	has_reason(d, "jenkins-credentials")
	not d.approval
	not has_reason(d, "approval required")

	# DDL by bob's agent: the developer tier grants it, bob's roles do not
	b := tool_call(human_call("claude-code", bob, "database.execute_ddl", args_for("database.execute_ddl")))
	b.allow == false
	b.reasons == ["roles analytics do not grant database:ddl"]
	not b.approval

	# ci_agent may not approve at all (separation of duties): nothing to approve
	sod := tool_call(machine_call("ci-bot", "gitlab.approve_merge_request", {"project": "platform/api", "iid": 7}))
	has_reason(sod, "separation of duties")
	not sod.approval

	# granted, but the token lacks the scope: a deny, not a hold
	no_scope := object.union(ci_deploy, {"token": object.union(machine_token("ci-bot"), {"scp": ["jenkins:read"]})})
	s := tool_call(no_scope)
	s.allow == false
	s.insufficient_scope == true
	not s.approval
	not has_reason(s, "approval required")

	# security-scanner (read_only) is not granted DDL: a deny
	r := tool_call(machine_call("security-scanner", "database.execute_ddl", args_for("database.execute_ddl")))
	r.allow == false
	not r.approval
}

test_first_matching_rule_wins if {
	rules := [
		{"id": "a", "resources": ["jenkins"], "access": ["build"], "approver_groups": ["x"], "ttl_seconds": 1, "reason": "a"},
		{"id": "b", "resources": ["jenkins"], "access": ["deploy"], "tiers": ["developer"], "approver_groups": ["x"], "ttl_seconds": 1, "reason": "b"},
		{"id": "c", "resources": ["jenkins"], "access": ["deploy"], "approver_groups": ["release"], "ttl_seconds": 1, "reason": "c"},
		{"id": "d", "resources": ["jenkins"], "access": ["deploy"], "approver_groups": ["x"], "ttl_seconds": 1, "reason": "d"},
	]
	tool_call(ci_deploy).approval.rule == "c" with data.approval_rules as rules
}

test_trusted_planner_deploys_unasked if {
	d := tool_call(machine_call("claude-code-trusted", "jenkins.trigger_deploy", deploy_args))
	d.allow == true
	not d.approval
}

test_no_approval_rules_no_hold if {
	tool_call(ci_deploy).allow == true with data.approval_rules as []
	d := tool_call(ci_deploy) with data.approval_rules as null
	d.allow == true
}

fast_allows(inp) if {
	data.pbac.tool_call_fast_allow with input as inp
}

test_fast_path_never_allows_gated_call if {
	not fast_allows(ci_deploy)
	not fast_allows(with_approval(ci_deploy, granted("deploy-needs-release", release_bob, "dashboard")))
	not fast_allows(alice_ddl)

	# an ungated call still takes it
	fast_allows(machine_call("ci-bot", "jenkins.trigger_build", args_for("jenkins.trigger_build")))
}

approval_inputs := [with_approval(inp, a) |
	some inp in [
		ci_deploy, alice_ddl,
		human_call("claude-code", bob, "database.execute_ddl", args_for("database.execute_ddl")),
		machine_call("claude-code-trusted", "jenkins.trigger_deploy", deploy_args),
		machine_call("ci-bot", "jenkins.trigger_build", args_for("jenkins.trigger_build")),
	]
	some a in [
		null,
		granted("deploy-needs-release", release_bob, "dashboard"),
		granted("ddl-needs-dba", dba_dave, "dashboard"),
		granted("ddl-needs-dba", alice, "client"),
		granted("nope", release_bob, "link"),
	]
]

test_approval_required_implies_deny if {
	count(approval_inputs) == 25
	wrong := [inp |
		some inp in approval_inputs
		some rules in [data.approval_rules, [{
			"id": "all", "resources": ["jenkins", "database"], "access": ["deploy", "ddl", "build"],
			"approver_groups": ["release"], "requester": true, "ttl_seconds": 5, "reason": "all",
		}]]
		d := tool_call(inp) with data.approval_rules as rules
		d.approval.required == true
		d.allow != false
	]
	count(wrong) == 0

	# and some of them are held
	held := [inp |
		some inp in approval_inputs
		tool_call(inp).approval.required == true
	]
	count(held) > 0
}
