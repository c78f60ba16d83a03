# How a client is known (contract.Attestation) and the tier it gets:
# tiers.rego, tier_of and client_providers.
package pbac_test

import data.pbac

stated(provider, issuer) := object.union(agent(provider), {"attestation": {
	"kind": "software_statement", "by": issuer, "provider": provider,
}})

approved(provider) := {
	"client_id": "dcr-client", "verified": false,
	"attestation": {"kind": "operator", "by": "admin", "provider": provider},
}

vouched(provider, sub) := {
	"client_id": "dcr-client", "verified": false,
	"attestation": {"kind": "user", "by": sub, "provider": provider},
}

cimd(url) := {
	"client_id": url, "verified": false,
	"attestation": {"kind": "cimd", "by": "https://agents.example", "origin": "https://agents.example"},
}

vendor_issuers := {"local": ["*"], "vendor": ["claude-code"]}

cimd_map := {
	"https://agents.example/claude-code.json": "claude-code",
	"https://agents.example/ci/": "ci-bot",
	"https://agents.example/scan": "security-scanner",
}

test_statement_of_the_local_issuer_names_any_provider if {
	pbac.tier_of(stated("claude-code", "local")) == "developer"
	pbac.tier_of(stated("claude-code-trusted", "local")) == "internal_trusted"

	# verified before issuers had names: the local key
	pbac.tier_of(agent("ci-bot")) == "ci_agent"
}

test_statement_issuer_vouches_only_for_its_providers if {
	pbac.tier_of(stated("claude-code", "vendor")) == "developer" with data.agents.statement_issuers as vendor_issuers
	pbac.tier_of(stated("claude-code-trusted", "vendor")) == "unverified" with data.agents.statement_issuers as vendor_issuers
	pbac.tier_of(stated("claude-code", "unlisted")) == "unverified" with data.agents.statement_issuers as vendor_issuers
}

test_statement_issuers_missing_from_data_trusts_only_local if {
	pbac.tier_of(stated("claude-code", "local")) == "developer" with data.agents.statement_issuers as null
	pbac.tier_of(stated("claude-code", "vendor")) == "unverified" with data.agents.statement_issuers as null
}

test_unverified_statement_counts_for_nothing if {
	c := object.union(stated("claude-code", "local"), {"verified": false})
	pbac.tier_of(c) == "unverified"
}

test_operator_approval_assigns_the_provider if {
	pbac.tier_of(approved("claude-code")) == "developer"
	pbac.tier_of(approved("security-scanner")) == "read_only"
	pbac.tier_of(approved("nobody")) == "unverified"
	pbac.tier_of(approved(7)) == "unverified"
}

test_cimd_url_maps_to_providers if {
	pbac.tier_of(cimd("https://agents.example/claude-code.json")) == "developer" with data.agents.cimd_providers as cimd_map
	pbac.tier_of(cimd("https://agents.example/ci/bot-7.json")) == "ci_agent" with data.agents.cimd_providers as cimd_map
}

test_cimd_url_without_a_mapping_is_unverified if {
	# no map, another URL, a longer URL than an exact key, a key without "/" is not a prefix
	pbac.tier_of(cimd("https://agents.example/claude-code.json")) == "unverified"
	pbac.tier_of(cimd("https://agents.example/other.json")) == "unverified" with data.agents.cimd_providers as cimd_map
	pbac.tier_of(cimd("https://agents.example/claude-code.json.evil")) == "unverified" with data.agents.cimd_providers as cimd_map
	pbac.tier_of(cimd("https://agents.example/scanner.json")) == "unverified" with data.agents.cimd_providers as cimd_map
	pbac.tier_of(cimd("https://agents.example/ci")) == "unverified" with data.agents.cimd_providers as cimd_map
}

test_cimd_url_of_two_providers_gets_the_least_tier if {
	m := object.union(cimd_map, {"https://agents.example/": "security-scanner"})
	pbac.tier_of(cimd("https://agents.example/claude-code.json")) == "read_only" with data.agents.cimd_providers as m
}

test_cimd_attestation_is_about_the_url_not_a_claimed_provider if {
	c := object.union(cimd("https://agents.example/other.json"), {"agent_provider": "claude-code-trusted"})
	pbac.tier_of(c) == "unverified" with data.agents.cimd_providers as cimd_map
}

test_user_attestation_off_by_default if {
	pbac.tier_of(vouched("claude-code", "alice")) == "unverified" with input.subject as alice
}

test_user_attestation_counts_for_that_person_in_tiers_that_allow_it if {
	pbac.tier_of(vouched("claude-code", "alice")) == "developer" with input.subject as alice
		with data.tiers.developer.user_attestation as true

	# another person, no person, a tier that does not allow it
	pbac.tier_of(vouched("claude-code", "alice")) == "unverified" with input.subject as bob
		with data.tiers.developer.user_attestation as true
	pbac.tier_of(vouched("claude-code", "alice")) == "unverified" with data.tiers.developer.user_attestation as true
	pbac.tier_of(vouched("claude-code-trusted", "alice")) == "unverified" with input.subject as alice
		with data.tiers.developer.user_attestation as true
}

test_user_attested_provider_in_two_tiers_needs_the_least_to_allow_it if {
	tiers := {"developer": ["claude-code"], "read_only": ["claude-code"]}
	pbac.tier_of(vouched("claude-code", "alice")) == "unverified" with input.subject as alice
		with data.agents.trust_tiers as tiers
		with data.tiers.developer.user_attestation as true
	pbac.tier_of(vouched("claude-code", "alice")) == "read_only" with input.subject as alice
		with data.agents.trust_tiers as tiers
		with data.tiers.read_only.user_attestation as true
}

test_malformed_attestations_are_unverified if {
	every a in [null, "operator", 1, [], {}, {"kind": "operator"}, {"kind": "cimd"}, {"kind": "user", "provider": "claude-code"}, {"kind": "nope", "provider": "claude-code"}] {
		pbac.tier_of({"client_id": "x", "attestation": a}) == "unverified" with input.subject as alice
			with data.tiers.developer.user_attestation as true
	}
}

# A client an operator approved, or a person vouched for where policy
# allows it, reaches its tier's grants through tool_call, which reads the
# tier from the same client object.
test_attested_clients_call_tools if {
	call := human_call("claude-code", alice, "jira.create_issue", {})
	base := object.union(call, {"token": object.union(call.token, {"client_id": "dcr-client"})})
	d := tool_call(object.union(base, {"client": approved("claude-code")}))
	d.allow
	d.tier == "developer"
	not tool_call(object.union(base, {"client": vouched("claude-code", "alice")})).allow
	v := tool_call(object.union(base, {"client": vouched("claude-code", "alice")})) with data.tiers.developer.user_attestation as true
	v.allow
	not tool_call(object.union(base, {"client": approved("security-scanner")})).allow
}

attested_token_input(client, subj) := object.union(token_input("claude-code", subj, "authorization_code", ["jira:write"]), {"client": client})

test_token_for_attested_clients if {
	d := tok_decision(attested_token_input(approved("claude-code"), alice))
	d.allow
	d.tier == "developer"
	d.scopes == ["jira:write"]
	d.refused_for_every_subject == []

	m := tok_decision(attested_token_input(cimd("https://agents.example/claude-code.json"), alice)) with data.agents.cimd_providers as cimd_map
	m.allow
	m.tier == "developer"

	not tok_decision(attested_token_input(cimd("https://agents.example/claude-code.json"), alice)).allow
}

test_token_for_a_user_attested_client_is_that_persons if {
	c := vouched("claude-code", "alice")
	a := tok_decision(attested_token_input(c, alice)) with data.tiers.developer.user_attestation as true
	a.allow
	a.tier == "developer"
	b := tok_decision(attested_token_input(c, bob)) with data.tiers.developer.user_attestation as true
	not b.allow
	has_reason(b, "client is not attested")
}

# The first page refuses an unattested client only when no person could
# vouch for it at sign-in; a vouched client is never refused for everyone.
test_refused_for_every_subject_and_user_attestation if {
	unattested := {"client_id": "dcr-client", "verified": false}
	count(tok_decision(attested_token_input(unattested, null)).refused_for_every_subject) == 1
	tok_decision(attested_token_input(unattested, null)).refused_for_every_subject == [] with data.tiers.developer.user_attestation as true
	tok_decision(attested_token_input(vouched("claude-code", "alice"), null)).refused_for_every_subject == [] with data.tiers.developer.user_attestation as true
	tok_decision(attested_token_input(approved("security-scanner"), null)).refused_for_every_subject == ["none of the requested scopes are permitted for tier read_only, whatever the person's role"]
}

# A token acting for no person (client_credentials): an operator's
# approval covers it only when it says machine use; a person's word never
# does (it counts only for its person); a metadata document's client may
# (asrv/cimd holds such a document to private_key_jwt).
machine_token_input(c) := object.union(token_input("claude-code", null, "client_credentials", ["jira:read"]), {"client": c})

test_client_credentials_by_attestation_kind if {
	d := tok_decision(machine_token_input(approved("claude-code")))
	not d.allow
	has_reason(d, "not for machine use")

	m := tok_decision(machine_token_input(object.union(approved("claude-code"), {"attestation": {"machine": true}})))
	m.allow
	m.tier == "developer"

	# a machine approval in a string, or of another shape, is no approval for machine use
	not tok_decision(machine_token_input(object.union(approved("claude-code"), {"attestation": {"machine": "true"}}))).allow

	u := tok_decision(machine_token_input(vouched("claude-code", "alice"))) with data.tiers.developer.user_attestation as true
	not u.allow
	has_reason(u, "client is not attested")

	c := tok_decision(machine_token_input(cimd("https://agents.example/claude-code.json"))) with data.agents.cimd_providers as cimd_map
	c.allow

	# a verified statement's client is known by its statement, not the approval
	s := object.union(agent("claude-code"), {"attestation": {"kind": "operator", "by": "admin", "provider": "claude-code"}})
	tok_decision(machine_token_input(s)).allow
}
