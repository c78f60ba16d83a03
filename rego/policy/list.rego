# pbac/list: which of the backend's tools (tools/list), prompts
# (prompts/list: "<backend>.prompt:<name>") and resources (resources/list
# "<backend>.resource:<uri>", resources/templates/list:
# "<backend>.template:<literal part of its URI>") may this caller see?
# tier ∩ role ∩ token scope, catalogue default-deny; argument rules are not
# applied (they depend on the call).
package pbac

list_input := [t | some t in request.tools; is_string(t)]

list_visible(t) if {
	e := catalogue_entry(t)
	e != null
	not backend_mismatch(t)
	not definition_drift(t, listed_definition(t))
	effective(tier, subject, e.resource, e.access)
	concat(":", [e.resource, e.access]) in token_scopes
}

list_deny contains msg if some msg in token_issues

list_deny contains msg if some msg in client_binding_issues

list_deny contains msg if some msg in subject_binding_issues

default list_allow := false

list_allow if {
	count(list_deny) == 0
	tok != null
	now != null
}

list_tools := sort({t | some t in list_input; list_visible(t)}) if list_allow else := []

default list := {
	"allow": false,
	"reasons": ["policy produced no decision"],
	"tools": [],
}

list := {
	"allow": list_allow,
	"reasons": reasons_for(list_deny, concat("", [
		format_int(count(list_tools), 10), " of ",
		format_int(count(list_input), 10), " tools visible to tier ", tier,
	])),
	"tools": list_tools,
}
