# Roles from groups (identity.rego): a person whose identity source puts
# them in a group gets the roles data.identity.group_roles gives it.
package pbac_test

# dana is in the IdP group "engineering" and holds no role directly.
dana := {"sub": "dana", "roles": [], "groups": ["engineering"]}

# erin is in the IdP group "contractor".
erin := {"sub": "erin", "roles": [], "groups": ["contractor"]}

test_group_engineering_gets_the_engineering_seed_matrix if {
	wrong := [[row[0], row[1], d.reasons] |
		some row in matrix
		d := tool_call(human_call(row[0], dana, row[1], args_for(row[1])))
		d.allow != row[2]
	]
	count(wrong) == 0
}

test_group_engineering_decides_as_role_engineering if {
	differ := [[row[0], row[1]] |
		some row in matrix
		tool_call(human_call(row[0], dana, row[1], args_for(row[1]))).allow != tool_call(human_call(row[0], alice, row[1], args_for(row[1]))).allow
	]
	count(differ) == 0
}

test_group_contractor_reads_drive_only_under_public if {
	allowed(human_call("claude-code", erin, "drive.read_file", {"path": "/public/handbook.md"}))
	d := tool_call(human_call("claude-code", erin, "drive.read_file", {"path": "/docs/readme.md"}))
	not d.allow
	has_reason(d, "allow drive only with")
	denied(human_call("claude-code", erin, "slack.post_message", {"channel": "#eng", "text": "hi"}))
}

test_group_the_data_does_not_name_gives_nothing if {
	d := tool_call(human_call("claude-code", {"sub": "zed", "roles": [], "groups": ["marketing"]}, "jira.create_issue", {}))
	not d.allow
	d.reasons == ["roles none do not grant jira:write"]
}

test_moving_a_group_in_data_flips_the_next_call if {
	inp := human_call("claude-code", dana, "jira.create_issue", {})
	allowed(inp)
	d := data.pbac.tool_call with input as inp with data.identity.group_roles.engineering as ["analytics"]
	not d.allow
	d.reasons == ["roles analytics do not grant jira:write"]
	oncall := human_call("claude-code", object.union(dana, {"groups": ["engineering", "eng-oncall"]}), "jira.create_issue", {})
	e := data.pbac.tool_call with input as oncall with data.identity.group_roles as {"engineering": ["analytics"], "eng-oncall": ["engineering"]}
	e.allow
}

test_roles_and_groups_add_up if {
	both := {"sub": "bob", "roles": ["analytics"], "groups": ["engineering"]}
	allowed(human_call("claude-code", both, "jira.create_issue", {}))
	d := tool_call(human_call("claude-code", {"sub": "bob", "roles": ["analytics"], "groups": ["marketing"]}, "jira.create_issue", {}))
	d.reasons == ["roles analytics do not grant jira:write"]
}

test_token_scopes_from_groups if {
	d := tok_decision(token_input("claude-code", dana, "authorization_code", ["jira:write", "drive:read"]))
	d.allow
	d.scopes == ["drive:read", "jira:write"]
	c := tok_decision(token_input("claude-code", erin, "authorization_code", ["jira:write", "slack:write"]))
	c.scopes == ["jira:write"]
}

test_malformed_groups_give_nothing if {
	every groups in [null, "engineering", 7, {"engineering": true}, [1, null, ["engineering"]]] {
		d := tool_call(human_call("claude-code", {"sub": "mallory", "roles": [], "groups": groups}, "jira.create_issue", {}))
		d.allow == false
	}
	every mapping in ["engineering", {"engineering": "engineering"}, {"engineering": [1]}] {
		d := data.pbac.tool_call with input as human_call("claude-code", dana, "jira.create_issue", {})
			with data.identity.group_roles as mapping
		d.allow == false
	}
}

# Operating the dashboard (data.identity.operator_groups) is not a grant:
# an operator's agent gets what their roles give, and a group named only
# there gives no role. Nobody is an operator by group in the shipped data.
test_operator_groups_grant_nothing if {
	count(data.identity.operator_groups) == 0
	ops := {"sub": "olga", "roles": [], "groups": ["pbac-operators"]}
	d := data.pbac.tool_call with input as human_call("claude-code", ops, "jira.create_issue", {})
		with data.identity.operator_groups as ["pbac-operators"]
	not d.allow
	d.reasons == ["roles none do not grant jira:write"]
	t := data.pbac.token with input as token_input("claude-code", ops, "authorization_code", ["jira:read"])
		with data.identity.operator_groups as ["pbac-operators"]
	not t.allow
}
