package pbac_test

anon(req) := d if {
	d := data.pbac.anonymous with input as {"request": req}
}

# The conformance tenant: one backend open to callers without a token.
anon_open(req) := d if {
	d := data.pbac.anonymous with input as {"request": req} with data.anonymous.backends as ["everything"]
}

test_anonymous_shipped_data_admits_nobody if {
	every backend in ["drive", "jira", "slack", "gitlab", "jenkins", "database", "everything"] {
		d := anon({"backend": backend, "method": "initialize"})
		not d.allow
		d.reasons == [concat("", ["backend ", backend, " does not admit anonymous callers"])]
		d.tools == []
	}
}

test_anonymous_empty_input_denied if {
	d := data.pbac.anonymous with input as {}
	not d.allow
	d.reasons == ["no backend named", "no method named"]
}

test_anonymous_listed_backend_admitted if {
	every method in ["initialize", "notifications/initialized", "ping", "logging/setLevel", "completion/complete", "GET", "DELETE", "response"] {
		d := anon_open({"backend": "everything", "method": method})
		d.allow
		d.reasons == ["backend everything admits anonymous callers"]
	}
}

test_anonymous_call_on_listed_backend if {
	d := anon_open({"backend": "everything", "method": "tools/call", "tool": "everything.test_simple_text"})
	d.allow
}

test_anonymous_other_backend_still_denied if {
	d := anon_open({"backend": "jira", "method": "tools/call", "tool": "jira.create_issue"})
	not d.allow
	d.reasons == ["backend jira does not admit anonymous callers"]
}

test_anonymous_tool_of_another_backend_denied if {
	every tool in ["jira.create_issue", "everything.", "everything", "", 7, null, "xeverything.t"] {
		d := anon_open({"backend": "everything", "method": "tools/call", "tool": tool})
		not d.allow
		d.reasons == ["tool does not belong to the requested backend"]
	}
}

test_anonymous_mistyped_fields_denied if {
	every req in [
		{"backend": ["everything"], "method": "ping"},
		{"backend": "", "method": "ping"},
		{"backend": "everything", "method": 1},
		{"backend": "everything"},
		"everything",
	] {
		not anon_open(req).allow
	}
}

test_anonymous_backends_not_an_array_admits_nobody if {
	every backends in ["everything", {"everything": true}, null, 1] {
		d := data.pbac.anonymous with input as {"request": {"backend": "everything", "method": "ping"}} with data.anonymous.backends as backends
		not d.allow
	}
}

test_anonymous_no_anonymous_data_admits_nobody if {
	d := data.pbac.anonymous with input as {"request": {"backend": "everything", "method": "ping"}} with data.anonymous as null
	not d.allow
}

test_anonymous_tools_list_keeps_the_backend_tools if {
	d := anon_open({"backend": "everything", "method": "tools/list", "tools": ["everything.b", "everything.a", "jira.get_issue", "everything.", 3]})
	d.allow
	d.tools == ["everything.a", "everything.b"]
}

test_anonymous_tools_list_denied_lists_nothing if {
	d := anon({"backend": "everything", "method": "tools/list", "tools": ["everything.a"]})
	not d.allow
	d.tools == []
}

# Anonymous access never leaks into the token decisions: a listed backend
# still needs a token for pbac/tool_call and pbac/list.
test_anonymous_backends_do_not_open_tool_call if {
	d := data.pbac.tool_call with input as {"request": {"backend": "jira", "method": "tools/call", "tool": "jira.get_issue"}, "now": now}
		with data.anonymous.backends as ["jira"]
	not d.allow
}
