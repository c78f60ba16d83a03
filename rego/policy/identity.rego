# Roles from groups. A person's groups (subject.groups: from the
# organisation's identity provider or the users file, recorded with each
# grant) give roles by policy data:
#
#   "identity": {"group_roles": {"eng-team": ["engineering"], "contractors": ["contractor"]}}
#
# A subject's roles are the ones its source gives (subject.roles: the demo
# users) and the ones its groups give. Moving a group in the data is a data
# change, so the very next decision reflects it, for tokens already issued
# too. A group the data does not name gives nothing; a malformed groups
# field gives nothing and never raises an error.
package pbac

# group_roles_of(s): the roles data.identity.group_roles gives the groups
# of subject s.
group_roles_of(s) := {role |
	some g in s.groups
	is_string(g)
	some role in data.identity.group_roles[g]
	is_string(role)
}

# role_grants (tiers.rego) through a role one of the subject's groups
# gives. Walks the groups without building the set, like the roles body.
role_grants(s, r, a) if {
	s != null
	some g in s.groups
	is_string(g)
	some role in data.identity.group_roles[g]
	is_string(role)
	accs := data.roles[role].grants[r]
	is_array(accs)
	a in accs
}

# role_call_ok (tool_call.rego) through a role one of the subject's groups
# gives: the role's argument constraints apply as to a role the subject
# holds directly.
role_call_ok(s, r, a, args) if {
	s != null
	some g in s.groups
	is_string(g)
	some role in data.identity.group_roles[g]
	is_string(role)
	accs := data.roles[role].grants[r]
	is_array(accs)
	a in accs
	role_constraint_ok(role, r, args)
}
