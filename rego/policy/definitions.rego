# Pinned tool definitions (the "rug pull" defence): a catalogue entry's pin
# is the hash of the definition an operator reviewed. A pinned tool whose
# backend serves another definition now, or whose definition the gateway
# has not seen, is hidden from tools/list (list.rego) and its calls are
# denied (tool_call.rego), unless data.backends lets that backend drift.
# The gateway sends the hash it saw (request.tool_definition on a call,
# request.tool_definitions by tool on a list); the pin is this version's.
package pbac

definition_pin(t) := p if {
	p := data.catalogue[t].pin
	is_string(p)
}

drift_allowed(t) if data.backends[tool_prefix(t)].allow_definition_drift == true

served_hash(def) := h if {
	is_object(def)
	h := def.hash
	is_string(h)
	h != ""
} else := ""

definition_drift(t, def) if {
	pin := definition_pin(t)
	not drift_allowed(t)
	served_hash(def) != pin
}

called_definition := d if {
	d := request.tool_definition
} else := null

listed_definitions := d if {
	d := request.tool_definitions
	is_object(d)
} else := {}

listed_definition(t) := d if {
	d := listed_definitions[t]
} else := null

tool_call_deny contains msg if {
	in_catalogue
	definition_drift(tool_name, called_definition)
	served_hash(called_definition) == ""
	msg := concat("", [
		"tool ", tool_name, " is pinned to a reviewed definition and the gateway has not seen the one ",
		tool_prefix(tool_name), " serves now: list the tools first",
	])
}

tool_call_deny contains msg if {
	in_catalogue
	definition_drift(tool_name, called_definition)
	served := served_hash(called_definition)
	served != ""
	msg := concat("", [
		"the definition of tool ", tool_name, " changed since an operator reviewed it (pinned ",
		definition_pin(tool_name), ", served ", served, "): it is blocked until reviewed again",
	])
}
