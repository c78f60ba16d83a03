package pbac_test

# A request that is not a call, by a machine agent carrying every scope.
machine_method(provider, backend, m) := {
	"client": agent(provider),
	"token": machine_token(provider),
	"request": {"backend": backend, "method": m},
	"now": now,
}

human_method(provider, subj, backend, m) := object.union(machine_method(provider, backend, m), {
	"subject": subj,
	"token": human_token(provider, subj),
})

method(inp) := d if {
	d := data.pbac.method with input as inp
}

session_methods := [
	"initialize", "notifications/initialized", "ping", "notifications/cancelled",
	"notifications/progress", "notifications/roots/list_changed", "response",
	"GET", "DELETE", "server/discover", "tools/list", "logging/setLevel",
]

read_methods := ["resources/list", "resources/templates/list", "prompts/list"]

test_method_empty_input_denied if {
	d := data.pbac.method with input as {}
	not d.allow
	has_reason(d, "no access token")
	has_reason(d, "no method named")
}

test_method_ci_agent_cannot_open_a_slack_session if {
	every m in session_methods {
		d := method(machine_method("ci-bot", "slack", m))
		not d.allow
		d.reasons == ["tier ci_agent with roles (machine client) and this token's scopes holds no access on slack"]
	}
	every m in read_methods {
		d := method(machine_method("ci-bot", "slack", m))
		not d.allow
		d.reasons == ["tier ci_agent with roles (machine client) and this token's scopes holds no read access on slack"]
	}
}

test_method_ci_agent_reads_jira_lists if {
	every m in array.concat(session_methods, read_methods) {
		d := method(machine_method("ci-bot", "jira", m))
		d.allow
		d.reasons == [concat("", ["ci_agent tier may use ", m, " on jira"])]
		d.tier == "ci_agent"
	}
}

test_method_unknown_method_denied if {
	every m in ["sampling/createMessage", "tasks/list", "Initialize", "admin/shutdown", "x"] {
		d := method(machine_method("claude-code-trusted", "jira", m))
		not d.allow
		d.reasons == [concat("", ["method ", m, " is not allowed"])]
	}
}

test_method_calls_belong_to_tool_call if {
	every m in ["tools/call", "resources/read", "prompts/get", "resources/subscribe", "resources/unsubscribe", "completion/complete"] {
		d := method(machine_method("claude-code-trusted", "jira", m))
		not d.allow
		d.reasons == [concat("", [m, " is decided by pbac/tool_call"])]
	}
}

test_method_bounded_by_token_scope if {
	inp := json.patch(machine_method("ci-bot", "drive", "initialize"), [{"op": "replace", "path": "/token/scp", "value": ["jira:read"]}])
	not method(inp).allow
	inp2 := json.patch(machine_method("ci-bot", "jira", "initialize"), [{"op": "replace", "path": "/token/scp", "value": ["jira:read"]}])
	method(inp2).allow
}

test_method_read_methods_need_read if {
	# a token with jira:write only may open a session but not list resources
	inp := json.patch(machine_method("ci-bot", "jira", "resources/list"), [{"op": "replace", "path": "/token/scp", "value": ["jira:write"]}])
	d := method(inp)
	not d.allow
	d.reasons == ["tier ci_agent with roles (machine client) and this token's scopes holds no read access on jira"]
	method(json.patch(inp, [{"op": "replace", "path": "/request/method", "value": "ping"}])).allow
}

test_method_bounded_by_role if {
	# carol (contractor) has no slack grant, whatever her agent's tier
	not method(human_method("claude-code", carol, "slack", "initialize")).allow
	method(human_method("claude-code", alice, "slack", "initialize")).allow
	method(human_method("claude-code", bob, "slack", "initialize")).allow
}

test_method_separation_of_duties_is_no_grant if {
	# a token with just gitlab:approve, which ci_agent's separation of
	# duties blocks even when its grants name it, holds nothing on gitlab
	inp := json.patch(machine_method("ci-bot", "gitlab", "initialize"), [{"op": "replace", "path": "/token/scp", "value": ["gitlab:approve"]}])
	not method(inp).allow with data.tiers.ci_agent.grants.gitlab as ["read", "write", "approve"]
	method(inp).allow with data.tiers.ci_agent.grants.gitlab as ["read", "write", "approve"]
		with data.tiers.ci_agent.separation_of_duties as []
}

test_method_unverified_client_holds_nothing if {
	inp := json.patch(machine_method("claude-code", "jira", "initialize"), [{"op": "replace", "path": "/client/verified", "value": false}])
	d := method(inp)
	not d.allow
	d.tier == "unverified"
}

test_method_token_checks if {
	expired := json.patch(machine_method("ci-bot", "jira", "ping"), [{"op": "replace", "path": "/now", "value": 1700000300}])
	has_reason(method(expired), "token has expired")
	other := json.patch(machine_method("ci-bot", "jira", "ping"), [{"op": "replace", "path": "/token/client_id", "value": "someone-else"}])
	has_reason(method(other), "token was issued to another client")
	no_token := json.remove(machine_method("ci-bot", "jira", "ping"), ["token"])
	has_reason(method(no_token), "no access token")
	human := json.remove(human_method("claude-code", alice, "jira", "ping"), ["subject"])
	has_reason(method(human), "input.subject is missing")
}

test_method_aggregated_server_needs_some_grant if {
	agg := json.remove(machine_method("ci-bot", "", "initialize"), ["request/backend"])
	d := method(agg)
	d.allow
	d.reasons == ["ci_agent tier may use initialize on the aggregated server"]
	method(machine_method("ci-bot", "", "initialize")).allow
	nothing := json.patch(agg, [{"op": "replace", "path": "/token/scp", "value": ["slack:read"]}])
	d2 := method(nothing)
	not d2.allow
	d2.reasons == ["tier ci_agent with roles (machine client) and this token's scopes holds no access on any resource"]
}

test_method_backend_must_be_a_string if {
	every b in [42, null, ["jira"], {"a": 1}, true, false] {
		inp := json.patch(machine_method("ci-bot", "jira", "ping"), [{"op": "replace", "path": "/request/backend", "value": b}])
		d := method(inp)
		not d.allow
		has_reason(d, "request.backend is not a string")
	}
}

test_method_method_must_be_a_string if {
	every m in [42, null, "", ["ping"]] {
		inp := json.patch(machine_method("ci-bot", "jira", "ping"), [{"op": "replace", "path": "/request/method", "value": m}])
		d := method(inp)
		not d.allow
		has_reason(d, "no method named")
	}
}

test_method_backend_resource_and_methods if {
	# a configured backend "tickets" served under the jira resource, with a
	# method of its own and a stricter logging/setLevel
	backends := {"tickets": {"resource": "jira", "methods": {"tickets/export": "read", "logging/setLevel": "write"}}}
	method(machine_method("ci-bot", "tickets", "initialize")) with data.backends as backends
	d := method(machine_method("ci-bot", "tickets", "tickets/export")) with data.backends as backends
	d.allow
	not method(machine_method("ci-bot", "jira", "tickets/export")).allow with data.backends as backends
	sec := method(machine_method("security-scanner", "tickets", "logging/setLevel")) with data.backends as backends
	not sec.allow
	sec.reasons == ["tier read_only with roles (machine client) and this token's scopes holds no write access on jira"]
	method(machine_method("security-scanner", "jira", "logging/setLevel")).allow with data.backends as backends
}

test_method_unknown_backend_without_grants_denied if {
	# a backend nobody has grants on (its resource is its name)
	d := method(machine_method("claude-code-trusted", "everything", "initialize"))
	not d.allow
	d.reasons == ["tier internal_trusted with roles (machine client) and this token's scopes holds no access on everything"]
}

test_method_tier_allow_list if {
	d := method(machine_method("security-scanner", "jira", "logging/setLevel")) with data.tiers.read_only.methods as ["initialize", "ping"]
	not d.allow
	d.reasons == ["tier read_only may not use logging/setLevel"]
	method(machine_method("security-scanner", "jira", "ping")).allow with data.tiers.read_only.methods as ["initialize", "ping"]
}

test_method_data_change_withdraws_the_session if {
	# the next request of an open session is decided by the data of now
	method(machine_method("ci-bot", "jira", "ping")).allow
	not method(machine_method("ci-bot", "jira", "ping")).allow with data.tiers.ci_agent.grants.jira as []
}

test_method_never_errors_on_garbage if {
	every inp in [[], "x", 1, {"request": "x"}, {"request": {"method": {}}}, {"token": [], "request": {"backend": "jira", "method": "ping"}, "now": "x"}] {
		d := data.pbac.method with input as inp
		not d.allow
		count(d.reasons) > 0
	}
}
