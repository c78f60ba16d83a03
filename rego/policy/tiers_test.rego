package pbac_test

import data.pbac

test_clean_path if {
	every row in [
		["/a/b", "/a/b"],
		["a//b/", "/a/b"],
		["/A/./B", "/a/b"],
		["/a/../b", "/b"],
		["/../../b", "/b"],
		["/a/b/c/../../d", "/a/d"],
		["\\a\\b", "/a/b"],
		["/a%2Fb", "/a/b"],
		["/a/%2e%2e/b", "/b"],
		["", "/"],
		["..", "/"],
	] {
		pbac.clean_path(row[0]) == row[1]
	}
}

test_path_under if {
	pbac.path_under("/prod/secrets", "/prod/secrets")
	pbac.path_under("/prod/secrets/x", "/prod/secrets/")
	not pbac.path_under("/prod/secretsx", "/prod/secrets")
	not pbac.path_under("/prod", "/prod/secrets")
}

test_act_depth if {
	pbac.act_depth({}) == 0
	pbac.act_depth({"act": {"sub": "a"}}) == 1
	pbac.act_depth({"act": {"sub": "a", "act": {"sub": "b"}}}) == 2
	pbac.act_depth({"act": "not-an-object"}) == 0
	pbac.act_depth("garbage") == 0
}

test_tier_of if {
	pbac.tier_of(agent("claude-code")) == "developer"
	pbac.tier_of(agent("ci-bot")) == "ci_agent"
	pbac.tier_of(agent("security-scanner")) == "read_only"
	pbac.tier_of(agent("claude-code-trusted")) == "internal_trusted"
	pbac.tier_of(agent("our-internal-scanner")) == "internal_trusted"
	pbac.tier_of(agent("nobody")) == "unverified"
	pbac.tier_of({"agent_provider": "claude-code", "verified": "true"}) == "unverified"
	pbac.tier_of({"agent_provider": "claude-code"}) == "unverified"
	pbac.tier_of({}) == "unverified"
	pbac.tier_of("x") == "unverified"
}

test_default_tier_is_data_driven if {
	t := pbac.tier_of(agent("nobody")) with data.agents.default_tier as "quarantine"
	t == "quarantine"
}

test_trust_tiers_exact if {
	data.agents.trust_tiers == {
		"internal_trusted": ["claude-code-trusted", "our-internal-scanner"],
		"developer": ["claude-code"],
		"ci_agent": ["ci-bot"],
		"read_only": ["security-scanner"],
	}
}

test_no_tier_grants_ddl if {
	every t in data.tiers {
		not "ddl" in object.get(t.grants, "database", [])
	}
}

test_every_entrypoint_defined_on_empty_input if {
	every e in ["register", "token", "introspect", "exchange", "tool_call", "list"] {
		d := data.pbac[e] with input as {}
		is_boolean(d.allow)
		is_array(d.reasons)
		count(d.reasons) > 0
	}
}
