package pbac_test

sub_agent := {"client_id": "sub-agent-1", "agent_provider": "claude-code", "verified": true}

exchange_input(actor_provider, scopes) := {
	"client": agent(actor_provider),
	"subject": alice,
	"token": human_token(actor_provider, alice),
	"request": {
		"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
		"scopes": scopes,
		"actor": agent(actor_provider),
		"audience_client": sub_agent,
	},
	"now": now,
}

exchange(inp) := d if {
	d := data.pbac.exchange with input as inp
}

test_developer_may_delegate_narrowed_scopes if {
	d := exchange(exchange_input("claude-code", ["jira:read", "drive:read"]))
	d.allow
	d.scopes == ["drive:read", "jira:read"]
	d.ttl_seconds == 200
}

test_delegation_empty_request_gets_token_scopes_within_audience_tier if {
	inp := json.patch(exchange_input("claude-code-trusted", []), [{"op": "replace", "path": "/request/audience_client/agent_provider", "value": "security-scanner"}])
	d := exchange(inp)
	d.allow
	d.scopes == ["database:read", "drive:read", "gitlab:read", "jenkins:read", "jira:read"]
}

test_delegation_scopes_must_be_subset_of_subject_token if {
	inp := json.patch(exchange_input("claude-code", ["jira:write"]), [{"op": "replace", "path": "/token/scp", "value": ["jira:read"]}])
	d := exchange(inp)
	not d.allow
	d.reasons == ["requested scope jira:write exceeds the subject token"]
}

test_ci_and_scanner_may_not_delegate if {
	every p in ["ci-bot", "security-scanner"] {
		d := exchange(exchange_input(p, ["jira:read"]))
		not d.allow
		has_reason(d, "may not delegate")
	}
}

test_delegation_to_unregistered_audience_denied if {
	d := exchange(json.remove(exchange_input("claude-code", ["jira:read"]), ["request/audience_client"]))
	d.reasons == ["audience client is not registered"]
}

test_delegation_to_unverified_audience_denied if {
	inp := json.patch(exchange_input("claude-code", ["jira:read"]), [{"op": "replace", "path": "/request/audience_client/verified", "value": false}])
	has_reason(exchange(inp), "audience client is not attested")
}

test_delegation_with_expired_subject_token_denied if {
	d := data.pbac.exchange with input as exchange_input("claude-code", ["jira:read"]) with input.now as 1700000300
	d.reasons == ["token has expired"]
}

test_delegation_subject_token_needs_sub if {
	inp := json.remove(exchange_input("claude-code", ["jira:read"]), ["token/sub", "subject"])
	d := exchange(inp)
	d.reasons == ["subject token has no sub"]
}

test_delegation_depth_limited_by_actor_tier if {
	# developer allows depth 2: one existing hop is fine, two are not.
	one := json.patch(exchange_input("claude-code", ["jira:read"]), [{"op": "add", "path": "/token/act", "value": {"sub": "x"}}])
	exchange(one).allow
	two := json.patch(exchange_input("claude-code", ["jira:read"]), [{"op": "add", "path": "/token/act", "value": {"sub": "x", "act": {"sub": "y"}}}])
	d := exchange(two)
	not d.allow
	d.reasons == ["actor tier developer allows delegation depth 2, not 3"]
}

test_delegation_depth_limited_globally if {
	three := json.patch(exchange_input("claude-code-trusted", ["jira:read"]), [{"op": "add", "path": "/token/act", "value": {"sub": "x", "act": {"sub": "y", "act": {"sub": "z"}}}}])
	d := exchange(three)
	not d.allow
	has_reason(d, "delegation chain depth 4 exceeds the maximum of 3")
}

test_delegation_subject_token_must_belong_to_actor if {
	inp := json.patch(exchange_input("claude-code", ["jira:read"]), [{"op": "replace", "path": "/token/client_id", "value": "someone-else"}])
	has_reason(exchange(inp), "subject token was not issued to the actor")
}

test_delegated_scopes_bounded_by_audience_tier if {
	inp := json.patch(exchange_input("claude-code", ["jira:write"]), [{"op": "replace", "path": "/request/audience_client/agent_provider", "value": "security-scanner"}])
	d := exchange(inp)
	not d.allow
	d.reasons == ["no requested scope is permitted for the audience client (tier read_only)"]
}

test_delegated_ttl_never_outlives_subject_token if {
	d := data.pbac.exchange with input as exchange_input("claude-code", ["jira:read"]) with input.now as 1700000290
	d.allow
	d.ttl_seconds == 10
}

test_delegated_token_tool_call_bounded_by_token_scopes if {
	inp := {
		"client": sub_agent,
		"subject": alice,
		"token": {"client_id": "sub-agent-1", "sub": "alice", "scp": ["jira:read"], "aud": ["https://gw.example/mcp"], "iat": 1700000000, "exp": 1700000300, "act": {"sub": client_id("claude-code")}},
		"request": {"backend": "jira", "method": "tools/call", "tool": "jira.get_issue", "arguments": {}},
		"now": now,
	}
	allowed(inp)
	d := tool_call(json.patch(inp, [{"op": "replace", "path": "/request/tool", "value": "jira.create_issue"}]))
	not d.allow
	d.insufficient_scope == true
}

test_exchange_garbage if {
	every inp in [{}, [], "x", {"token": {"sub": 1}, "request": {"actor": "me"}}] {
		d := exchange(inp)
		d.allow == false
		count(d.reasons) > 0
		d.scopes == []
	}
}
