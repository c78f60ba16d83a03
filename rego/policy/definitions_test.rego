package pbac_test

pin_a := "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

pin_b := "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

pinned_catalogue := object.union(data.catalogue, {"jira.get_issue": object.union(data.catalogue["jira.get_issue"], {"pin": pin_a})})

call_with(def) := object.union(human_call("claude-code", alice, "jira.get_issue", {}), {"request": {"tool_definition": def}})

test_pinned_tool_serving_its_pin_is_allowed if {
	d := data.pbac.tool_call with input as call_with({"hash": pin_a, "pinned": true, "matches": true})
		with data.catalogue as pinned_catalogue
	d.allow
}

test_pinned_tool_serving_another_definition_is_denied if {
	d := data.pbac.tool_call with input as call_with({"hash": pin_b, "pinned": true, "matches": false})
		with data.catalogue as pinned_catalogue
	not d.allow
	has_reason(d, "changed since an operator reviewed it")
	some r in d.public_reasons
	contains(r, "blocked until reviewed again")
}

# The policy decides on the pin of its own data and the served hash, not
# on the gateway's "matches" (computed against the version it read).
test_pinned_tool_is_judged_by_the_hash_not_the_gateways_flag if {
	d := data.pbac.tool_call with input as call_with({"hash": pin_b, "pinned": true, "matches": true})
		with data.catalogue as pinned_catalogue
	not d.allow
}

test_pinned_tool_never_seen_is_denied if {
	d := data.pbac.tool_call with input as human_call("claude-code", alice, "jira.get_issue", {})
		with data.catalogue as pinned_catalogue
	not d.allow
	has_reason(d, "has not seen the one jira serves now")
}

test_unpinned_tool_is_not_checked if {
	allowed(call_with({"hash": pin_b, "pinned": false, "matches": false}))
	allowed(human_call("claude-code", alice, "jira.get_issue", {}))
}

test_backend_may_allow_drift if {
	d := data.pbac.tool_call with input as call_with({"hash": pin_b})
		with data.catalogue as pinned_catalogue
		with data.backends as {"jira": {"allow_definition_drift": true}}
	d.allow
}

test_drift_allowance_is_per_backend if {
	d := data.pbac.tool_call with input as call_with({"hash": pin_b})
		with data.catalogue as pinned_catalogue
		with data.backends as {"drive": {"allow_definition_drift": true}}
	not d.allow
}

list_with(defs) := object.union(list_input("claude-code", alice, ["jira.get_issue", "jira.search_issues"]), {"request": {"tool_definitions": defs}})

test_list_hides_a_drifted_pinned_tool if {
	d := data.pbac.list with input as list_with({"jira.get_issue": {"hash": pin_b}, "jira.search_issues": {"hash": pin_b}})
		with data.catalogue as pinned_catalogue
	d.tools == ["jira.search_issues"]
}

test_list_shows_a_pinned_tool_serving_its_pin if {
	d := data.pbac.list with input as list_with({"jira.get_issue": {"hash": pin_a}})
		with data.catalogue as pinned_catalogue
	d.tools == ["jira.get_issue", "jira.search_issues"]
}

test_list_hides_a_pinned_tool_without_a_hash if {
	d := data.pbac.list with input as list_with({})
		with data.catalogue as pinned_catalogue
	d.tools == ["jira.search_issues"]
}

test_list_with_drift_allowed if {
	d := data.pbac.list with input as list_with({"jira.get_issue": {"hash": pin_b}})
		with data.catalogue as pinned_catalogue
		with data.backends as {"jira": {"allow_definition_drift": true}}
	d.tools == ["jira.get_issue", "jira.search_issues"]
}

anon_pinned(req) := d if {
	d := data.pbac.anonymous with input as {"request": req}
		with data.anonymous.backends as ["everything"]
		with data.catalogue as {"everything.echo": {"resource": "everything", "access": "read", "pin": pin_a}}
}

test_anonymous_call_held_to_the_pin if {
	anon_pinned({"backend": "everything", "method": "tools/call", "tool": "everything.echo", "tool_definition": {"hash": pin_a}}).allow
	d := anon_pinned({"backend": "everything", "method": "tools/call", "tool": "everything.echo", "tool_definition": {"hash": pin_b}})
	not d.allow
	has_reason(d, "does not match the one an operator reviewed")
	not anon_pinned({"backend": "everything", "method": "tools/call", "tool": "everything.echo"}).allow
}

test_anonymous_uncatalogued_tools_are_not_pinned if {
	anon_pinned({"backend": "everything", "method": "tools/call", "tool": "everything.add"}).allow
}

test_anonymous_list_hides_a_drifted_pinned_tool if {
	d := anon_pinned({
		"backend": "everything", "method": "tools/list",
		"tools": ["everything.echo", "everything.add"],
		"tool_definitions": {"everything.echo": {"hash": pin_b}},
	})
	d.tools == ["everything.add"]
}
