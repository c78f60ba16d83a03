# Common helpers: trust tiers, role grants, scopes, tokens, paths.
#
# Every helper is written so that a missing or mistyped input field makes it
# undefined or falls back to the least-privileged value; nothing here may
# raise a runtime error (a conflict or a builtin type error) on any input.
# Builtins used are all implemented natively by OPA's Wasm target.
package pbac

# ---------------------------------------------------------------------------
# Input accessors (never undefined)

client := c if {
	c := input.client
	is_object(c)
} else := {}

# The human subject, or null for machine clients (client_credentials).
# A subject key that is present but not a usable object still counts as a
# human flow (with no roles), so a broken subject never widens a grant.
subject := s if {
	s := input.subject
	s != null
} else := null

request := r if {
	r := input.request
	is_object(r)
} else := {}

tok := t if {
	t := input.token
	is_object(t)
} else := null

now := n if {
	n := input.now
	is_number(n)
} else := null

# ---------------------------------------------------------------------------
# Trust tiers

default_tier := t if {
	t := data.agents.default_tier
	is_string(t)
} else := "unverified"

tier_rank(t) := r if {
	r := data.tiers[t].rank
	is_number(r)
} else := 0

# tier_of(c) is the trust tier of client object c: the tier listing its
# agent_provider, but only when the client is verified. A provider listed
# under several tiers gets the least-privileged (lowest rank) one.
tier_of(c) := t if {
	c.verified == true
	p := c.agent_provider
	is_string(p)
	cands := {[tier_rank(name), name] |
		some name, provs in data.agents.trust_tiers
		is_array(provs)
		p in provs
	}
	count(cands) > 0
	t := min(cands)[1]
} else := default_tier

tier_settings(t) := s if {
	s := data.tiers[t]
	is_object(s)
} else := {}

tier := tier_of(client)

# tier_grants(t, r, a): tier t grants access a on resource r.
tier_grants(t, r, a) if {
	accs := data.tiers[t].grants[r]
	is_array(accs)
	a in accs
}

# Accesses the tier may never use, whatever its grants (separation of duties).
sod_blocked(t, a) if {
	l := data.tiers[t].separation_of_duties
	is_array(l)
	a in l
}

tier_setting_number(t, key) := n if {
	n := data.tiers[t][key]
	is_number(n)
} else := 0

tier_setting_true(t, key) if data.tiers[t][key] == true

# ---------------------------------------------------------------------------
# Roles

roles_of(s) := {r | some r in s.roles; is_string(r)}

# role_grants(s, r, a): subject s may use access a on resource r.
# Machine clients (no subject) are bounded by their tier alone.
role_grants(null, _, _) := true

role_grants(s, r, a) if {
	s != null
	some role in roles_of(s)
	accs := data.roles[role].grants[r]
	is_array(accs)
	a in accs
}

roles_text(s) := "none" if {
	count(roles_of(s)) == 0
} else := concat(",", sort(roles_of(s)))

# effective(t, s, r, a): tier t ∩ subject role grant, minus separation of duties.
effective(t, s, r, a) if {
	tier_grants(t, r, a)
	role_grants(s, r, a)
	not sod_blocked(t, a)
}

# Every scope "<resource>:<access>" the tier ∩ role allows.
permitted_scopes(t, s) := {sc |
	some r, accs in data.tiers[t].grants
	is_array(accs)
	some a in accs
	is_string(a)
	effective(t, s, r, a)
	sc := concat(":", [r, a])
}

# ---------------------------------------------------------------------------
# Scopes and tokens

# A scope list given as a JSON array of strings or as an OAuth
# space-delimited string.
scope_set(x) := {s | some s in split(x, " "); s != ""} if {
	is_string(x)
} else := {s | some s in x; is_string(s); s != ""}

token_scopes := scope_set(tok.scp) if {
	tok != null
} else := set()

has_audience(t) if {
	is_string(t.aud)
	t.aud != ""
}

has_audience(t) if {
	is_array(t.aud)
	some a in t.aud
	is_string(a)
	a != ""
}

# Paths of the nested act claims, deepest first counted. Chains longer than
# this are counted as this long, which exceeds any sane configured maximum.
act_paths := [
	["act"],
	["act", "act"],
	["act", "act", "act"],
	["act", "act", "act", "act"],
	["act", "act", "act", "act", "act"],
	["act", "act", "act", "act", "act", "act"],
	["act", "act", "act", "act", "act", "act", "act"],
	["act", "act", "act", "act", "act", "act", "act", "act"],
	["act", "act", "act", "act", "act", "act", "act", "act", "act"],
]

# Number of delegation hops (nested act claims) in token t.
act_depth(t) := count([p | some p in act_paths; is_object(object.get(t, p, null))]) if {
	is_object(t.act)
} else := 0

max_chain_depth := n if {
	n := data.delegation.max_chain_depth
	is_number(n)
} else := 0

# Problems with input.token shared by introspect, tool_call, list and
# exchange (where it is the subject token).
token_issues contains "no access token" if tok == null

token_issues contains "request time (now) is missing" if now == null

token_issues contains "token has no exp" if {
	tok != null
	not token_has_exp
}

token_has_exp if is_number(tok.exp)

token_issues contains "token has expired" if {
	is_number(tok.exp)
	now != null
	now >= tok.exp
}

token_issues contains "token was issued in the future" if {
	is_number(tok.iat)
	now != null
	tok.iat > now + 60
}

token_issues contains "token has no audience" if {
	tok != null
	not has_audience(tok)
}

token_issues contains msg if {
	tok != null
	d := act_depth(tok)
	d > max_chain_depth
	msg := concat("", [
		"delegation chain depth ", format_int(d, 10),
		" exceeds the maximum of ", format_int(max_chain_depth, 10),
	])
}

# ---------------------------------------------------------------------------
# Paths

# Clean path segments: lower-cased, separators unified ("\\", "%2f", "%5c"),
# empty and "." segments dropped, ".." resolved (clamped at the root).
path_segments(p) := [seg |
	some i, seg in parts
	seg != ".."
	not popped(steps, i)
] if {
	s0 := lower(p)
	s1 := replace(replace(replace(s0, "\\", "/"), "%2f", "/"), "%5c", "/")
	s2 := replace(s1, "%2e", ".")
	parts := [x | some x in split(s2, "/"); x != ""; x != "."]
	steps := [v | some x in parts; v := path_step(x)]
}

path_step("..") := -1

path_step(x) := 1 if x != ".."

# Segment i is removed by a later ".." when some running sum of the steps
# after it reaches -1.
popped(steps, i) if {
	n := count(steps)
	i + 1 < n
	some j in numbers.range(i + 1, n - 1)
	sum(array.slice(steps, i + 1, j + 1)) < 0
}

clean_path(p) := concat("", ["/", concat("/", path_segments(p))])

path_under(norm, prefix) if {
	pre := clean_path(prefix)
	norm == pre
}

path_under(norm, prefix) if {
	pre := clean_path(prefix)
	pre != "/"
	startswith(norm, concat("", [pre, "/"]))
}

path_under(_, prefix) if clean_path(prefix) == "/"

# ---------------------------------------------------------------------------
# Output helpers

# reasons_for(deny, ok): the sorted deny reasons, or [ok] when there are none.
reasons_for(deny, ok) := sort(deny) if {
	count(deny) > 0
} else := [ok]

# ---------------------------------------------------------------------------
# Binding of the token to the calling client and subject

# The token's human subject, when it names one (machine tokens carry no sub,
# or their own client_id as sub).
token_human_sub := s if {
	s := tok.sub
	is_string(s)
	s != ""
	s != tok.client_id
}

client_binding_issues contains "token was issued to another client" if {
	is_string(tok.client_id)
	is_string(client.client_id)
	tok.client_id != client.client_id
}

subject_binding_issues contains "token subject does not match the request subject" if {
	is_string(tok.sub)
	is_string(subject.sub)
	tok.sub != subject.sub
}

subject_binding_issues contains "token names a human subject but input.subject is missing" if {
	token_human_sub
	subject == null
}
