# The catalogue: what a call names, and the entry that decides it.
#
# A call names a tool ("<backend>.<tool>", tools/call), a prompt
# ("<backend>.prompt:<name>", prompts/get) or a resource
# ("<backend>.resource:<uri>", resources/read). Tools and prompts are
# catalogued by their exact name. A resource is catalogued by its exact URI,
# or by a prefix: an entry with "uri_prefix": true whose key ends in "/"
# covers every canonical URI under it (the longest such prefix decides).
package pbac

# The kind of thing each call method names, and the prefix of its local
# name after "<backend>.".
call_kind_prefix := {"prompts/get": "prompt:", "resources/read": "resource:"}

# local_name(t): t without its "<backend>." prefix.
local_name(t) := substring(t, indexof(t, ".") + 1, -1) if contains(t, ".") else := ""

# names_other_kind(t): the local name is a prompt's or a resource's.
names_other_kind(t) if {
	some p in ["prompt:", "resource:"]
	startswith(local_name(t), p)
}

# call_kind_ok(m, t): method m (absent: tools/call) names the kind of
# thing t is. A tool whose name starts with "prompt:" or "resource:" is
# never called: its name would be a prompt's or a resource's catalogue key.
call_kind_ok(null, t) if not names_other_kind(t)

call_kind_ok("tools/call", t) if not names_other_kind(t)

call_kind_ok(m, t) if {
	p := call_kind_prefix[m]
	startswith(local_name(t), p)
}

# catalogue_entry(t): the entry deciding name t, or null.
catalogue_entry(t) := e if {
	e := data.catalogue[t]
	is_object(e)
	is_string(e.resource)
	is_string(e.access)
	not object.get(e, "uri_prefix", false) == true
} else := e if {
	startswith(local_name(t), "resource:")
	canonical_uri(substring(local_name(t), count("resource:"), -1))
	keys := [k | some k, v in data.catalogue; uri_prefix_covers(k, v, t)]
	count(keys) > 0
	longest := max({count(k) | some k in keys})
	some k in keys
	count(k) == longest
	e := data.catalogue[k]
} else := null

# uri_prefix_covers(k, v, t): entry v at key k is a URI prefix covering the
# resource name t, on a segment boundary (k ends in "/").
uri_prefix_covers(k, v, t) if {
	is_object(v)
	v.uri_prefix == true
	is_string(v.resource)
	is_string(v.access)
	startswith(local_name(k), "resource:")
	endswith(k, "/")
	startswith(t, k)
}

# canonical_uri(u): a URI a prefix may decide on: no dot segments, no
# backslash, no control character, no percent-encoded dot, slash or
# backslash, no query or fragment — nothing a server could resolve to
# somewhere outside the prefix it sits under.
canonical_uri(u) if {
	is_string(u)
	u != ""
	not contains(u, "\\")
	not contains(u, "?")
	not contains(u, "#")
	not regex.match(`(^|/)\.\.?(/|$)`, u)
	not regex.match(`(?i)%(2e|2f|5c)`, u)
	not regex.match(`[\x00-\x1f\x7f]`, u)
}
