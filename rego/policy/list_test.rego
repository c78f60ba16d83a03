package pbac_test

list_input(provider, subj, tools) := object.union(
	{
		"client": agent(provider),
		"token": human_token(provider, {"sub": object.get(subj, "sub", "")}),
		"request": {"method": "tools/list", "tools": tools},
		"now": now,
	},
	subject_part(subj),
)

lst(inp) := d if {
	d := data.pbac.list with input as inp
}

jira_tools := ["jira.add_comment", "jira.create_issue", "jira.get_issue", "jira.search_issues", "jira.transition_issue"]

test_list_developer_sees_all_jira if {
	d := lst(list_input("claude-code", alice, jira_tools))
	d.allow
	d.tools == jira_tools
}

test_list_scanner_sees_read_only if {
	d := lst(list_input("security-scanner", alice, jira_tools))
	d.allow
	d.tools == ["jira.get_issue", "jira.search_issues"]
}

# ci_agent never approves or merges; its deploys are listed (each call
# waits for an approval, which pbac/tool_call asks for).
test_list_ci_hides_approve_and_merge if {
	d := lst(list_input("ci-bot", alice, ["gitlab.create_merge_request", "gitlab.approve_merge_request", "gitlab.merge_merge_request", "jenkins.trigger_build", "jenkins.trigger_deploy"]))
	d.tools == ["gitlab.create_merge_request", "jenkins.trigger_build", "jenkins.trigger_deploy"]
}

test_list_drops_uncatalogued_tools if {
	d := lst(list_input("claude-code-trusted", alice, ["jira.get_issue", "jira.delete_project", 42]))
	d.tools == ["jira.get_issue"]
}

test_list_bounded_by_token_scope if {
	inp := json.patch(list_input("claude-code", alice, jira_tools), [{"op": "replace", "path": "/token/scp", "value": ["jira:read"]}])
	lst(inp).tools == ["jira.get_issue", "jira.search_issues"]
}

test_list_bounded_by_role if {
	lst(list_input("claude-code", bob, jira_tools)).tools == ["jira.get_issue", "jira.search_issues"]
}

test_list_unverified_sees_nothing if {
	inp := json.patch(list_input("claude-code", alice, jira_tools), [{"op": "replace", "path": "/client/verified", "value": false}])
	lst(inp).tools == []
}

test_list_backend_filter if {
	inp := json.patch(list_input("claude-code", alice, ["jira.get_issue", "drive.read_file"]), [{"op": "add", "path": "/request/backend", "value": "drive"}])
	lst(inp).tools == ["drive.read_file"]
}

test_list_expired_token_denied if {
	d := data.pbac.list with input as list_input("claude-code", alice, jira_tools) with input.now as 1800000000
	not d.allow
	d.tools == []
	d.reasons == ["token has expired"]
}

test_list_garbage if {
	every inp in [{}, [], "x", {"request": {"tools": "jira.get_issue"}}] {
		d := lst(inp)
		d.allow == false
		d.tools == []
	}
}
