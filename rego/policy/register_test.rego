package pbac_test

register(inp) := d if {
	d := data.pbac.register with input as inp
}

test_register_verified_agent_gets_tier if {
	every row in [["claude-code", "developer"], ["ci-bot", "ci_agent"], ["security-scanner", "read_only"], ["claude-code-trusted", "internal_trusted"], ["our-internal-scanner", "internal_trusted"]] {
		d := register({"client": agent(row[0])})
		d.allow
		d.tier == row[1]
	}
}

test_register_unverified_allowed_with_least_tier if {
	d := register({"client": {"agent_provider": "claude-code-trusted", "verified": false}})
	d.allow
	d.tier == "unverified"
	d.reasons == ["registered with tier unverified"]
}

test_register_unknown_provider_unverified if {
	register({"client": agent("mystery-agent")}).tier == "unverified"
}

test_register_without_client_denied if {
	d := register({})
	not d.allow
	d.reasons == ["client metadata is missing"]
}

test_register_blocked_provider if {
	d := data.pbac.register with input as {"client": agent("claude-code")} with data.agents.blocked_providers as ["claude-code"]
	not d.allow
	d.reasons == ["agent provider claude-code is blocked"]
}

test_register_tier_may_not_register if {
	d := data.pbac.register with input as {"client": agent("ci-bot")} with data.tiers.ci_agent.may_register as false
	not d.allow
}

test_register_provider_in_two_tiers_gets_least if {
	tiers := object.union(data.agents.trust_tiers, {"read_only": ["security-scanner", "claude-code"]})
	d := data.pbac.register with input as {"client": agent("claude-code")} with data.agents.trust_tiers as tiers
	d.tier == "read_only"
}
