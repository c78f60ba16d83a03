package pbac_test

# Prompts and resources are decided through the catalogue like tools:
# prompts by name, resources by exact URI or by the longest URI prefix.

prompt_get(provider, name, args) := json.patch(machine_call(provider, "jira.prompt:triage_issue", args), [
	{"op": "replace", "path": "/request/method", "value": "prompts/get"},
	{"op": "replace", "path": "/request/tool", "value": name},
])

resource_read(provider, name) := json.patch(machine_call(provider, "jira.get_issue", {}), [
	{"op": "replace", "path": "/request/method", "value": "resources/read"},
	{"op": "replace", "path": "/request/tool", "value": name},
	{"op": "remove", "path": "/request/arguments"},
])

test_prompt_catalogued_allowed if {
	d := tool_call(prompt_get("ci-bot", "jira.prompt:triage_issue", {"key": "SEC-12"}))
	d.allow
	d.resource == "jira"
	d.access == "read"
}

test_prompt_needs_the_tier_grant if {
	# slack:write is not the prompt's; the tier must grant jira:read.
	inp := json.patch(prompt_get("ci-bot", "jira.prompt:triage_issue", {}), [{"op": "replace", "path": "/token/scp", "value": ["slack:read"]}])
	d := tool_call(inp)
	not d.allow
	has_reason(d, "token lacks scope jira:read")
}

test_uncatalogued_prompt_denied if {
	d := tool_call(prompt_get("ci-bot", "jira.prompt:exfiltrate", {}))
	not d.allow
	has_reason(d, "jira.prompt:exfiltrate is not in the catalogue")
}

test_resource_under_a_prefix_allowed if {
	d := tool_call(resource_read("ci-bot", "jira.resource:jira://issue/SEC-12"))
	d.allow
	d.required_scope == "jira:read"
}

test_resource_outside_every_prefix_denied if {
	some name in [
		"jira.resource:jira://admin/keys",
		"jira.resource:jira://issue", # the prefix itself without its slash
		"jira.resource:jira://issuex/1",
	]
	d := tool_call(resource_read("ci-bot", name))
	not d.allow
	has_reason(d, "is not in the catalogue")
}

test_resource_uri_must_be_canonical_under_a_prefix if {
	every name in [
		"jira.resource:jira://issue/../admin/keys",
		"jira.resource:jira://issue/%2e%2e/admin",
		"jira.resource:jira://issue/a%2Fb",
		"jira.resource:jira://issue/a\\b",
		"jira.resource:jira://issue/./x",
		"jira.resource:jira://issue/SEC-12?raw=1",
		"jira.resource:jira://issue/SEC-12#x",
		"jira.resource:jira://issue/\u0000",
	] {
		not tool_call(resource_read("ci-bot", name)).allow
	}
}

test_longest_prefix_decides if {
	cat := object.union(data.catalogue, {"jira.resource:jira://issue/restricted/": {"resource": "jira", "access": "write", "uri_prefix": true}})
	d := data.pbac.tool_call with input as resource_read("security-scanner", "jira.resource:jira://issue/restricted/SEC-1") with data.catalogue as cat
	not d.allow
	d.required_scope == "jira:write"
	data.pbac.tool_call.allow with input as resource_read("security-scanner", "jira.resource:jira://issue/SEC-1") with data.catalogue as cat
}

test_a_prefix_key_without_its_slash_covers_nothing if {
	cat := object.union(data.catalogue, {"jira.resource:jira://board": {"resource": "jira", "access": "read", "uri_prefix": true}})
	not data.pbac.tool_call.allow with input as resource_read("ci-bot", "jira.resource:jira://board-secret") with data.catalogue as cat
	not data.pbac.tool_call.allow with input as resource_read("ci-bot", "jira.resource:jira://board") with data.catalogue as cat
}

test_method_must_match_what_is_named if {
	# A tool whose name starts with prompt: or resource: is never called;
	# a prompt is not read as a resource, nor a tool got as a prompt.
	every inp in [
		machine_call("ci-bot", "jira.prompt:triage_issue", {}),
		machine_call("ci-bot", "jira.resource:jira://issue/SEC-12", {}),
		resource_read("ci-bot", "jira.prompt:triage_issue"),
		prompt_get("ci-bot", "jira.get_issue", {}),
		prompt_get("ci-bot", "jira.resource:jira://issue/SEC-12", {}),
	] {
		d := tool_call(inp)
		not d.allow
		has_reason(d, " does not name ")
	}
}

test_list_shows_templates_under_a_prefix_only if {
	cat := object.union(data.catalogue, {
		"jira.resource:jira://issue/restricted/": {"resource": "jira", "access": "write", "uri_prefix": true},
		"jira.resource:jira://board/1": {"resource": "jira", "access": "read"},
	})
	d := data.pbac.list with input as list_input("security-scanner", alice, [
		"jira.template:jira://issue/", # covered, but a stricter prefix lies below: hidden
		"jira.template:jira://comment/", # no prefix
		"jira.template:jira://board/1", # an exact entry is no prefix
	]) with data.catalogue as cat
	d.tools == []
	d2 := lst(list_input("ci-bot", alice, ["jira.template:jira://issue/", "jira.template:jira://issue/SEC-"]))
	d2.tools == ["jira.template:jira://issue/", "jira.template:jira://issue/SEC-"]
}

test_list_shows_catalogued_prompts_and_resources if {
	d := lst(list_input("ci-bot", alice, [
		"jira.prompt:triage_issue", "jira.prompt:other",
		"jira.resource:jira://issue/SEC-12", "jira.resource:jira://issue/", "jira.resource:jira://admin/x",
		"jira.resource:jira://issue/../admin",
	]))
	d.tools == ["jira.prompt:triage_issue", "jira.resource:jira://issue/", "jira.resource:jira://issue/SEC-12"]
}

# The hostile review's spellings: under a prefix, the rest of the URI is a
# plain path, so no other spelling reaches what a stricter entry decides
# (or leaves the prefix on a server that resolves it).
test_other_spellings_do_not_dodge_a_stricter_prefix if {
	cat := object.union(data.catalogue, {"jira.resource:jira://issue/restricted/": {"resource": "jira", "access": "write", "uri_prefix": true}})
	every uri in [
		"jira://issue/restricted/x",
		"jira://issue/RESTRICTED/x", # prefixes compare case-insensitively: the stricter one decides
		"jira://issue//restricted/x",
		"jira://issue/%72estricted/x",
		"jira://issue/restricted./x",
		"jira://issue/restricted%20/x",
		"jira://issue/restricted /x",
		"jira://issue/..;/admin/keys",
		"jira://issue/%252e%252e/admin",
		"jira://issue/%c0%ae%c0%ae/admin",
		"jira://issue/\uff0e\uff0e/admin",
		"jira://issue/.. /admin",
		"jira://issue/%u002e%u002e/admin",
	] {
		not data.pbac.tool_call.allow with input as resource_read("security-scanner", concat("", ["jira.resource:", uri])) with data.catalogue as cat
	}
	data.pbac.tool_call.allow with input as resource_read("security-scanner", "jira.resource:jira://issue/SEC-1") with data.catalogue as cat
	data.pbac.tool_call.allow with input as resource_read("security-scanner", "jira.resource:jira://issue/folder/") with data.catalogue as cat
}

test_a_resource_is_read_without_arguments if {
	inp := json.patch(resource_read("ci-bot", "jira.resource:jira://issue/SEC-12"), [{"op": "add", "path": "/request/arguments", "value": {"path": "/public/x"}}])
	d := tool_call(inp)
	not d.allow
	has_reason(d, "a resource is read without arguments")
}

test_resources_of_a_resource_with_argument_rules_are_not_read if {
	# drive has protected_arguments (prod-secrets) and a role's
	# arg_constraints (contractor): a URI cannot be held to them.
	cat := object.union(data.catalogue, {"drive.resource:drive:///": {"resource": "drive", "access": "read", "uri_prefix": true}})
	inp := json.patch(human_call("claude-code", alice, "drive.read_file", {}), [
		{"op": "replace", "path": "/request/method", "value": "resources/read"},
		{"op": "replace", "path": "/request/tool", "value": "drive.resource:drive:///docs/readme.md"},
		{"op": "remove", "path": "/request/arguments"},
	])
	d := data.pbac.tool_call with input as inp with data.catalogue as cat
	not d.allow
	has_reason(d, "resource drive has argument rules")
}

test_a_prompt_or_resource_is_not_called_as_a_tool_without_a_method if {
	every name in ["jira.prompt:triage_issue", "jira.resource:jira://issue/SEC-12"] {
		inp := json.patch(machine_call("ci-bot", name, {}), [{"op": "remove", "path": "/request/method"}])
		d := tool_call(inp)
		not d.allow
		has_reason(d, "the call does not name")
	}
}

test_subscribe_is_decided_like_a_read if {
	sub := json.patch(resource_read("ci-bot", "jira.resource:jira://issue/SEC-12"), [{"op": "replace", "path": "/request/method", "value": "resources/subscribe"}])
	tool_call(sub).allow
	other := json.patch(resource_read("ci-bot", "jira.resource:jira://admin/keys"), [{"op": "replace", "path": "/request/method", "value": "resources/subscribe"}])
	not tool_call(other).allow
}

test_a_long_uri_is_under_no_prefix if {
	long := concat("/", [x | some _ in numbers.range(1, 70); x := "a"])
	not tool_call(resource_read("ci-bot", concat("", ["jira.resource:jira://issue/", long]))).allow
}

completion(provider, name) := json.patch(machine_call(provider, "jira.get_issue", {}), [
	{"op": "replace", "path": "/request/method", "value": "completion/complete"},
	{"op": "replace", "path": "/request/tool", "value": name},
	{"op": "remove", "path": "/request/arguments"},
])

test_completion_is_decided_by_what_it_completes if {
	tool_call(completion("ci-bot", "jira.prompt:triage_issue")).allow
	tool_call(completion("ci-bot", "jira.template:jira://issue/")).allow
	every name in [
		"jira.prompt:exfiltrate", # not catalogued
		"jira.template:jira://comment/", # under no prefix
		"jira.get_issue", # a tool is not completed
		"jira.resource:jira://issue/SEC-12", # a resource's arguments: a template's
	] {
		not tool_call(completion("ci-bot", name)).allow
	}
	cat := object.union(data.catalogue, {"jira.resource:jira://issue/restricted/": {"resource": "jira", "access": "write", "uri_prefix": true}})
	not data.pbac.tool_call.allow with input as completion("security-scanner", "jira.template:jira://issue/") with data.catalogue as cat
}
