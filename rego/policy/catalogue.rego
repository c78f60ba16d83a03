# The catalogue: what a call names, and the entry that decides it.
#
# A call names a tool ("<backend>.<tool>", tools/call), a prompt
# ("<backend>.prompt:<name>", prompts/get) or a resource
# ("<backend>.resource:<uri>", resources/read, resources/subscribe and
# resources/unsubscribe). Tools and prompts are catalogued by their exact
# name. A resource is catalogued by its exact URI, or by a prefix: an entry
# with "uri_prefix": true whose key ends in "/" covers every URI under it
# whose rest is a canonical path (uri_rest_canonical); prefix keys are
# written in lower case and compared with the URI lower-cased, and the
# longest decides, so a stricter prefix below a wider one is not avoided by
# another letter case.
package pbac

# The kind of thing each call method names: the prefix of its local name
# after "<backend>.".
call_kind_prefix := {
	"prompts/get": "prompt:",
	"resources/read": "resource:",
	"resources/subscribe": "resource:",
	"resources/unsubscribe": "resource:",
}

# local_name(t): t without its "<backend>." prefix.
local_name(t) := substring(t, indexof(t, ".") + 1, -1) if contains(t, ".") else := ""

# names_other_kind(t): the local name is a prompt's, a resource's or a
# resource template's.
names_other_kind(t) if other_kind_local(local_name(t))

# other_kind_local(ln): local name ln is a prompt's, a resource's or a
# resource template's. (One rule body per prefix: with the prefixes in a
# list the Wasm plan built the list and the local name for each.)
other_kind_local(ln) if startswith(ln, "prompt:")

other_kind_local(ln) if startswith(ln, "resource:")

other_kind_local(ln) if startswith(ln, "template:")

# names_resource(t): t names a resource or a resource template.
names_resource(t) if startswith(local_name(t), "resource:")

names_resource(t) if startswith(local_name(t), "template:")

# call_kind_ok(m, t): method m (null: tools/call) names the kind of thing t
# is. A tool whose name starts with "prompt:" or "resource:" is never
# called: its name would be a prompt's or a resource's catalogue key.
call_kind_ok(m, t) if {
	tools_call_method(m)
	not names_other_kind(t)
}

# tools_call_method(m): m is tools/call (null: the method was not given).
tools_call_method(null)

tools_call_method("tools/call")

call_kind_ok(m, t) if {
	p := call_kind_prefix[m]
	startswith(local_name(t), p)
}

# completion/complete completes an argument of a prompt
# ("<backend>.prompt:<name>") or of a resource template
# ("<backend>.template:<literal part of its URI>").
call_kind_ok("completion/complete", t) if {
	some p in ["prompt:", "template:"]
	startswith(local_name(t), p)
}

# The longest URI (in bytes) and the most segments a prefix decides on.
max_uri_bytes := 2048

max_uri_segments := 64

# catalogue_entry(t): the entry deciding name t, or null.
catalogue_entry(t) := e if {
	e := data.catalogue[t]
	is_object(e)
	not object.get(e, "uri_prefix", false) == true
	is_string(e.resource)
	is_string(e.access)
} else := e if {
	k := uri_prefix_of(t)
	e := data.catalogue[k]
} else := e if {
	# A resource template ("<backend>.template:<literal>"): the prefix
	# entry covering its literal part — never an exact entry — when no
	# resource entry lies below that literal (a stricter prefix or URI its
	# expansions would reach).
	startswith(local_name(t), "template:")
	r := concat("", [split(t, ".")[0], ".resource:", substring(local_name(t), count("template:"), -1)])
	k := uri_prefix_of(r)
	not resource_entry_below(r)
	e := data.catalogue[k]
} else := null

# resource_entry_below(r): a resource entry's key starts with r
# (case-insensitively) and is longer.
resource_entry_below(r) if {
	lr := lower(r)
	some k in resource_keys_lower
	count(k) > count(lr)
	startswith(k, lr)
}

resource_keys_lower := {lower(k) |
	some k, _ in data.catalogue
	startswith(local_name(k), "resource:")
}

# uri_prefix_of(t): the key of the longest prefix entry covering resource
# name t case-insensitively (prefix keys are written in lower case; one
# that is not covers nothing) whose rest after it is a canonical path. The
# candidates are t's own prefixes ending in "/": a keyed lookup each, not a
# walk through the catalogue.
uri_prefix_of(t) := k if {
	startswith(local_name(t), "resource:")
	count(t) <= max_uri_bytes
	low := lower(t)
	parts := split(low, "/")
	count(parts) <= max_uri_segments + 3
	found := [n |
		some i, _ in parts
		i < count(parts) - 1
		p := concat("", [concat("/", array.slice(parts, 0, i + 1)), "/"])
		is_uri_prefix(data.catalogue[p])
		n := count(p)
	]
	count(found) > 0
	longest := max(found)
	k := substring(low, 0, longest)
	uri_rest_canonical(substring(t, longest, -1))
}

is_uri_prefix(v) if {
	is_object(v)
	v.uri_prefix == true
	is_string(v.resource)
	is_string(v.access)
}

# uri_rest_canonical(r): the part of a URI below its prefix is a plain
# path: segments of RFC 3986 characters (no "%" escapes, no ";" path
# parameters, no "?" or "#"), none empty (a trailing "/" names a
# directory), "." or "..", none ending in "." or holding a space — nothing a server could resolve to somewhere outside
# the prefix, or to another spelling of a path a stricter entry decides.
uri_rest_canonical(r) if {
	regex.match(`^[A-Za-z0-9._~!$&'()*+,=:@/-]*$`, r)
	not regex.match(`^/|//`, r)
	not regex.match(`(^|/)\.\.?(/|$)`, r)
	not regex.match(`\.(/|$)`, r)
}

uri_rest_canonical("")
