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

# tier_of(c) is the trust tier of client object c: the least-privileged
# (lowest rank, then name) tier listing a provider the client is known as
# (client_providers), or the default tier when nobody vouches for it. A
# person's word (attestation kind "user") counts only in tiers that allow
# it (tiers[t].user_attestation).
tier_of(c) := t if {
	ps := client_providers(c)
	names := [name |
		some name, provs in data.agents.trust_tiers
		is_array(provs)
		some p in ps
		p in provs
	]
	count(names) > 0
	t := least_tier(names)
	user_attestation_allowed(c, t)
} else := default_tier

# client_providers(c) is the set of providers client c is known as, by how
# it is attested (contract.Attestation), the strongest way first:
#   - a verified software statement names its provider, if the statement's
#     issuer may vouch for it (data.agents.statement_issuers);
#   - an operator who approved the registration assigned one;
#   - a client ID metadata document's URL is mapped to providers by
#     data.agents.cimd_providers (exact URL, or a prefix ending in "/");
#   - the person the client acts for vouched for it, and only for them.
client_providers(c) := {p} if {
	c.verified == true
	p := c.agent_provider
	is_string(p)
	issuer_may_vouch(statement_issuer(c), p)
} else := {p} if {
	c.attestation.kind == "operator"
	p := c.attestation.provider
	is_string(p)
} else := ps if {
	c.attestation.kind == "cimd"
	ps := cimd_providers(c.client_id)
} else := {p} if {
	c.attestation.kind == "user"
	p := c.attestation.provider
	is_string(p)
	subject != null
	subject.sub == c.attestation.by
} else := set()

# The statement issuer's name (attestation.by); a verified client without
# one was verified by the authorization server's own key, "local" (the only
# issuer before trusted issuers were configurable).
statement_issuer(c) := b if {
	c.attestation.kind == "software_statement"
	b := c.attestation.by
	is_string(b)
} else := "local"

# issuer_may_vouch(name, p): data.agents.statement_issuers lets the issuer
# vouch for provider p ("*": any). An issuer not listed vouches for nothing;
# without the map at all (data written before it), the local issuer
# vouches for any provider, as it did then.
issuer_may_vouch(name, p) if {
	some x in issuer_providers(name)
	x in {"*", p}
}

issuer_providers(name) := l if {
	l := data.agents.statement_issuers[name]
	is_array(l)
} else := ["*"] if {
	name == "local"
	not is_object(data.agents.statement_issuers)
} else := []

# cimd_providers(u) are the providers data.agents.cimd_providers maps the
# client id URL u to: its exact URL, or a prefix of it that ends in "/".
# The map is data, not caller input: the cost is one pass over it.
cimd_providers(u) := {p |
	is_string(u)
	some key, p in data.agents.cimd_providers
	is_string(key)
	is_string(p)
	cimd_url_matches(u, key)
}

cimd_url_matches(u, key) if u == key

cimd_url_matches(u, key) if {
	endswith(key, "/")
	startswith(u, key)
}

# operator_approved_for_people_only(c): an operator approved c without
# saying it may act for no person (attestation.machine): its approval
# covers tokens on a person's behalf, never a machine's (the
# client_credentials grant), whoever registered it with that grant.
operator_approved_for_people_only(c) if {
	c.verified != true
	c.attestation.kind == "operator"
	not c.attestation.machine == true
}

operator_not_for_machines := "an operator approved this client for use on a person's behalf, not for machine use (acting for no person): the operator must approve it again confirming machine use"

user_attested(c) if c.attestation.kind == "user"

user_attestation_allowed(c, _) if not user_attested(c)

user_attestation_allowed(c, t) if {
	user_attested(c)
	tier_setting_true(t, "user_attestation")
}

# The usual case, one tier, skips building and ordering the [rank, name] set.
least_tier(names) := names[0] if {
	count(names) == 1
} else := min({[tier_rank(n), n] | some n in names})[1] if {
	count(names) > 1
}

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

# The subject's roles: given by its source, and by its groups (identity.rego).
roles_of(s) := {r | some r in s.roles; is_string(r)} | group_roles_of(s)

# role_grants(s, r, a): subject s may use access a on resource r.
# Machine clients (no subject) are bounded by their tier alone.
role_grants(null, _, _) := true

role_grants(s, r, a) if {
	s != null
	some role in s.roles # the members of roles_of(s), without building the set
	is_string(role)
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

# token_has_scope(sc): sc, a non-empty string, is in token_scopes; checked
# on the scp array itself when it is one, without building the set.
token_has_scope(sc) if {
	scp := tok.scp
	is_array(scp)
	sc in scp
}

token_has_scope(sc) if {
	not token_scp_is_array
	sc in token_scopes
}

token_scp_is_array if is_array(tok.scp)

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

# Number of delegation hops (nested act claims) in token t: the length of
# the chain of nested act objects, capped at count(act_paths) (9). Walks the
# chain from the top, so a token without act costs one lookup.
act_depth(t) := 0 if {
	not act_object(t)
} else := 1 if {
	not act_object(t.act)
} else := 2 if {
	not act_object(t.act.act)
} else := 3 if {
	not act_object(t.act.act.act)
} else := 4 if {
	not act_object(t.act.act.act.act)
} else := 5 if {
	not act_object(t.act.act.act.act.act)
} else := 6 if {
	not act_object(t.act.act.act.act.act.act)
} else := 7 if {
	not act_object(t.act.act.act.act.act.act.act)
} else := 8 if {
	not act_object(t.act.act.act.act.act.act.act.act)
} else := 9

act_object(t) if is_object(t.act)

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
# Paths and names
#
# Policy decides on arguments exactly as the backend gets them, so it never
# cleans a path: a value two parsers could read differently (" /a", "a//b",
# "a/../b", "%2f", "\\", a fullwidth solidus, a zero-width space, ...) is not
# canonical, and every rule that compares a path denies it (the gateway
# refuses it before policy). canonical.rego holds the characters, generated
# from internal/canon; every check is linear in the value.

# canonical_value(kind, v): v is a string spelled canonically as kind:
# "path" ("/" or "/a/b"), "name" ("a" or "a/b") or "ref" (a path when it
# starts with "/", else a name).
canonical_value("path", v) if canonical_path_value(v)

canonical_value("name", v) if canonical_name_value(v)

canonical_value("ref", v) if {
	is_string(v)
	startswith(v, "/")
	canonical_path_value(v)
}

canonical_value("ref", v) if {
	is_string(v)
	not startswith(v, "/")
	canonical_name_value(v)
}

# "/" or "/" followed by segments joined by "/"; no segment is empty,
# starts or ends with a space, or ends with "." (so no "." or ".."). These
# contains checks are internal/canon's segment rules, one scan each.
canonical_path_value("/")

canonical_path_value(v) if {
	path_form(v)
	canonical_chars(v)
}

# Segments joined by "/", without a leading "/".
canonical_name_value(v) if {
	name_form(v)
	canonical_chars(v)
}

# path_form(v), name_form(v): the shape of a canonical path other than "/"
# and of a canonical name, their characters aside.
path_form(v) if {
	is_string(v)
	startswith(v, "/")
	v != "/"
	canonical_segments(v)
}

name_form(v) if {
	is_string(v)
	v != ""
	not startswith(v, "/")
	not startswith(v, " ")
	canonical_segments(v)
}

# canonical_form(kind, v): canonical_value(kind, v) for a string whose
# characters are vouched for already (the fast path's plain_ascii).
canonical_form("path", "/")

canonical_form("path", v) if path_form(v)

canonical_form("name", v) if name_form(v)

canonical_form("ref", "/")

canonical_form("ref", v) if path_form(v)

canonical_form("ref", v) if {
	is_string(v)
	not startswith(v, "/")
	name_form(v)
}

# canonical_as(kind, v, how): canonical_form when how is "vouched" (v is
# one of the strings the fast path found plain ASCII), else canonical_value
# ("checked"): any other word checks the characters too.
canonical_as(kind, v, how) if {
	how != "vouched"
	canonical_value(kind, v)
}

canonical_as(kind, v, "vouched") if canonical_form(kind, v)

# canonical_alone(kind, v): canonical_value(kind, v), decided without the
# call's checked_strings when v is plain ASCII. plain_ascii never holds for
# a string canonical_ascii does not match, so for such a string
# canonical_value is canonical_form; any other string is judged by
# canonical_value (which builds checked_strings). For a check that needs
# one string of the call, on the fast path as in the full rules (a role's
# argument constraint). plain_ascii is computed once.
canonical_alone(kind, v) if {
	is_string(v)
	canonical_as(kind, v, vouched_if_plain(v))
}

vouched_if_plain(s) := "vouched" if plain_ascii(s) else := "checked"

canonical_segments(v) if {
	not endswith(v, "/")
	not contains(v, "//")
	not contains(v, "/ ")
	not contains(v, " /")
	not contains(v, "./")
	not endswith(v, ".")
	not endswith(v, " ")
}

# canonical_chars(s): s holds no refused character. OPA's Wasm target
# compiles a regular expression on every call, and the full refused class
# costs it about a millisecond, so the strings policy checks in a call
# (checked_strings, tool_call.rego) are first checked together by
# plain_ascii, without a regular expression, once per decision; only when
# that cannot vouch for them is each judged, once (clean_checked_strings),
# by canonical_ascii and, for those that are not ASCII, the refused class.
# (The fast path, tool_call.rego's arguments_ok, checks the strings it
# relies on the same way by itself; when it falls back to the full rules,
# they are checked again here.)
canonical_chars(s) := true if {
	checked_ascii
	s in checked_strings
} else := true if {
	s in clean_checked_strings
} else := false if {
	s in checked_strings
} else := string_chars_ok(s)

checked_ascii if plain_ascii(checked_text)

# plain_ascii(s): s is printable ASCII without "%" or "\\" (what
# canonical_ascii matches), decided without a regular expression: as many
# bytes as characters (three copies encode to exactly four base64 bytes
# each), nothing JSON escapes (controls, "\\"; also the harmless '"', and
# in OPA's Go evaluator, not its Wasm module, "<", ">" and "&", which then
# take the slower path), and no "%" or DEL. It never holds for a
# string canonical_ascii does not match; it may fail for one it matches.
plain_ascii(s) if {
	count(base64.encode(concat("", [s, s, s]))) == 4 * count(s)
	count(json.marshal(s)) == count(s) + 2
	not contains(s, "%")
	not contains(s, "\u007f")
}

checked_text := concat("/", [s | some s in checked_strings])

clean_checked_strings := {s | some s in checked_strings; string_chars_ok(s)}

string_chars_ok(s) := true if {
	regex.match(canonical_ascii, s)
} else := false if {
	regex.match(any_ascii, s) # ASCII, so it holds a refused ASCII character
} else := true if {
	not regex.match(canonical_refused, s)
} else := false

any_ascii := `^[\x00-\x7f]*$`

rooted(s) := s if startswith(s, "/") else := concat("", ["/", s])

# folded(v): a canonical value as a rooted, lower-cased path, to compare
# with protected prefixes: a backend that ignores case is covered, and one
# that does not only loses what policy over-protects.
folded(v) := lower(rooted(v))

# prefix_path(pre): a prefix from data, rooted and lower-cased, without a
# trailing "/" (except "/" itself).
prefix_path(pre) := "/" if {
	pre == "/"
} else := lower(rooted(trim_suffix(pre, "/")))

# exact_prefix(pre): a prefix from data, rooted, case kept, without a
# trailing "/", for allow-list constraints (a case-sensitive backend must
# not be widened by case folding).
exact_prefix(pre) := "/" if {
	pre == "/"
} else := rooted(trim_suffix(pre, "/"))

# path_under(p, pre): the rooted path p is pre or below it (segment by
# segment: "/prod/secretsanta" is not under "/prod/secrets").
path_under(p, pre) if p == pre

path_under(p, pre) if {
	pre != "/"
	startswith(p, concat("", [pre, "/"]))
}

path_under(_, "/")

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
