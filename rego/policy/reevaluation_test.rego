# Failure mode 5: a broad scope granted once does not persist. The same token
# is re-evaluated against the data in force at each call.
package pbac_test

test_same_token_denied_after_tier_grant_removed if {
	inp := human_call("claude-code", alice, "slack.post_message", {"channel": "#eng", "text": "hi"})
	allowed(inp)
	d := data.pbac.tool_call with input as inp with data.tiers.developer.grants.slack as ["read"]
	not d.allow
	d.reasons == ["developer tier does not grant slack:write"]
}

test_same_token_denied_after_role_changed if {
	inp := human_call("claude-code", alice, "jira.create_issue", {})
	allowed(inp)
	d := data.pbac.tool_call with input as inp with data.roles.engineering.grants.jira as ["read"]
	not d.allow
	d.reasons == ["roles engineering do not grant jira:write"]
}

test_same_token_denied_after_provider_moved_tier if {
	inp := machine_call("claude-code", "drive.write_file", {"path": "/docs/a", "content": "b"})
	allowed(inp)
	tiers := {
		"internal_trusted": ["claude-code-trusted", "our-internal-scanner"],
		"developer": [],
		"ci_agent": ["ci-bot"],
		"read_only": ["security-scanner", "claude-code"],
	}
	d := data.pbac.tool_call with input as inp with data.agents.trust_tiers as tiers
	not d.allow
	d.tier == "read_only"
}

test_introspect_scopes_shrink_with_data if {
	inp := introspect_input("claude-code", alice, human_token("claude-code", alice))
	before := introspect(inp)
	after := data.pbac.introspect with input as inp with data.tiers.developer.grants as {"jira": ["read"], "drive": ["read"]}
	"slack:write" in before.scopes
	after.allow
	after.scopes == ["drive:read", "jira:read"]
}

test_introspect_inactive_when_all_grants_removed if {
	inp := introspect_input("claude-code", alice, human_token("claude-code", alice))
	d := data.pbac.introspect with input as inp with data.roles.engineering.grants as {}
	not d.allow
	d.scopes == []
}

test_list_shrinks_with_data if {
	inp := list_input("claude-code", alice, ["slack.list_channels", "slack.read_history", "slack.post_message"])
	lst(inp).tools == ["slack.list_channels", "slack.post_message", "slack.read_history"]
	d := data.pbac.list with input as inp with data.roles.engineering.grants.slack as ["read"]
	d.tools == ["slack.list_channels", "slack.read_history"]
}
