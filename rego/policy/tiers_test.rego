package pbac_test

import data.pbac

# Every spelling two parsers could read differently is not canonical
# (issue 14, High #2); the canonical spellings are kept as they are.
test_canonical_paths if {
	every p in ["/", "/a", "/a/b.md", "/Team/Roadmap.md", "/.hidden/x", "/a b/c d", "/docs/café.md", "/a-b_c~d@e+f"] {
		pbac.canonical_value("path", p)
	}
}

non_canonical_paths := [
	"", "a/b", " /prod/secrets/db.env", "\t/prod/secrets/db.env", "\n/prod/secrets/db.env",
	"/prod/secrets/db.env ", "/prod/secrets/db.env\n", "/prod/secrets/db.env\u0000",
	"//prod/secrets", "/prod//secrets", "/prod/secrets/", "/prod/./secrets", "/docs/../prod/secrets",
	"/prod/secrets/.", "/prod/secrets/..", "/prod/secrets.", "/prod/secrets./db.env", "/prod /secrets",
	"/prod/ secrets", "\\prod\\secrets", "/prod\\secrets", "/prod%2fsecrets", "/prod%252fsecrets",
	"/prod/%2e%2e/x", "/prod\uff0fsecrets", "/prod\u2215secrets", "/prod\u2044secrets", "/prod/secr\u200bets",
	"/prod/\u202esterces", "/prod/\ufeffsecrets", "/prod/\u017fecrets", "/prod/s\u212aey",
	"/\uff50rod/secrets", "/prod/secrets\u00a0", "/prod\u3000/secrets", "/prod/\ufffd",
	"/prod/\ue000", "/prod/\u2028x", "/prod\ufe68secrets",
]

test_non_canonical_paths if {
	wrong := [p | some p in non_canonical_paths; pbac.canonical_value("path", p)]
	print("wrong:", wrong)
	count(wrong) == 0
}

test_non_string_is_not_canonical if {
	every v in [null, 1, true, ["/a"], {"path": "/a"}] {
		not pbac.canonical_value("path", v)
		not pbac.canonical_value("name", v)
		not pbac.canonical_value("ref", v)
	}
}

test_canonical_names if {
	every n in ["a", "platform/api", "credentials/aws-rotate", "#eng", "ci/bump-deps-1", "PLAT-102"] {
		pbac.canonical_value("name", n)
		pbac.canonical_value("ref", n)
	}
	every n in ["/a", "a/", "a//b", "../a", "a/..", " a", "a ", "a\\b", "a%2fb", ""] {
		not pbac.canonical_value("name", n)
	}
}

# The pathological path of issue 14, High #1 is refused by one linear match
# (a benchmark in rego/path_bench_test.go prints the cost per size).
test_pathological_path_is_not_canonical if {
	p := concat("", [concat("", [s | some _ in numbers.range(1, 1000); s := "/a"]), "/%"])
	not pbac.canonical_value("path", p)
	pbac.canonical_value("path", trim_suffix(p, "/%"))
}

test_path_under if {
	pbac.path_under("/prod/secrets", "/prod/secrets")
	pbac.path_under("/prod/secrets/x", pbac.prefix_path("/prod/secrets/"))
	pbac.path_under("/anything", "/")
	not pbac.path_under("/prod/secretsx", "/prod/secrets")
	not pbac.path_under("/prod", "/prod/secrets")
}

test_prefix_path if {
	pbac.prefix_path("/Prod/Secrets/") == "/prod/secrets"
	pbac.prefix_path("prod") == "/prod"
	pbac.prefix_path("/") == "/"
	pbac.exact_prefix("/Public/") == "/Public"
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

# Only developer grants DDL, and an approval rule holds every DDL it
# grants; ci_agent's deploys are held too, internal_trusted's are not.
test_ddl_and_agent_deploys_need_an_approval if {
	{t | some t, def in data.tiers; "ddl" in object.get(def.grants, "database", [])} == {"developer"}
	data.pbac.approval_gated("developer", "database", "ddl")
	data.pbac.approval_gated("ci_agent", "jenkins", "deploy")
	not data.pbac.approval_gated("internal_trusted", "jenkins", "deploy")
}

test_every_entrypoint_defined_on_empty_input if {
	every e in ["register", "token", "introspect", "exchange", "tool_call", "list"] {
		d := data.pbac[e] with input as {}
		is_boolean(d.allow)
		is_array(d.reasons)
		count(d.reasons) > 0
	}
}
