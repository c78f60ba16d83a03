# pbac/token: which scopes, for how long, may the token endpoint issue?
package pbac

grant_type := g if {
	g := request.grant_type
	is_string(g)
} else := ""

token_exchange_grant := "urn:ietf:params:oauth:grant-type:token-exchange"

# RFC 7523 with an identity assertion grant (ID-JAG) of the organisation's
# identity provider: enterprise-managed authorization, decided as a
# person's sign-in.
jwt_bearer_grant := "urn:ietf:params:oauth:grant-type:jwt-bearer"

token_grant_types := {"authorization_code", "client_credentials", "refresh_token", jwt_bearer_grant}

human_grant_types := {"authorization_code", "refresh_token", jwt_bearer_grant}

requested_scopes := scope_set(request.scopes)

client_scopes := permitted_scopes(tier, subject)

token_candidate_scopes := requested_scopes & client_scopes if {
	count(requested_scopes) > 0
} else := client_scopes

# A refresh never widens the refreshed token.
token_granted_scopes := token_candidate_scopes & token_scopes if {
	grant_type == "refresh_token"
	tok != null
} else := token_candidate_scopes

token_deny contains "grant_type is missing" if grant_type == ""

token_deny contains "token exchange is decided by pbac/exchange" if {
	grant_type == token_exchange_grant
}

token_deny contains msg if {
	grant_type != ""
	grant_type != token_exchange_grant
	not grant_type in token_grant_types
	msg := concat("", ["unsupported grant_type ", grant_type])
}

token_deny contains msg if {
	grant_type in human_grant_types
	subject == null
	msg := concat("", ["grant_type ", grant_type, " requires a subject"])
}

# A machine token acts for nobody: an operator's approval must say it
# covers that. A person's word (kind "user") never does (it needs its
# person: client_providers); a metadata document's client_credentials
# client authenticates with private_key_jwt (asrv/cimd refuses any other).
token_deny contains operator_not_for_machines if {
	grant_type == "client_credentials"
	operator_approved_for_people_only(client)
}

token_deny contains "client is not attested (no trusted statement, operator approval or known metadata document vouches for it); it gets the least tier, which grants nothing" if {
	not client_attested
}

# client_attested: somebody vouches for the client as a provider of some
# tier (tiers.rego, client_providers), for this subject.
client_attested if count(client_providers(client)) > 0

# client_may_be_attested: whoever the person is, the client is attested
# for some subject: known without a person, or vouched for by a person
# (for them only), or a person could still vouch for it at sign-in
# because some tier allows user attestation. Read without input.subject.
client_may_be_attested if count(client_providers(client)) > 0 with input.subject as null

client_may_be_attested if user_attested(client)

client_may_be_attested if {
	some t in object.keys(data.tiers)
	tier_setting_true(t, "user_attestation")
}

# The tier is the same for every subject unless a person vouches.
tier_fixed if {
	count(client_providers(client)) > 0 with input.subject as null
	not user_attested(client)
}

token_deny contains msg if {
	count(client_scopes) == 0
	msg := concat("", ["tier ", tier, " with roles ", roles_or_machine, " grants no scopes"])
}

token_deny contains msg if {
	count(client_scopes) > 0
	count(token_granted_scopes) == 0
	msg := concat("", ["none of the requested scopes are permitted for tier ", tier, " with roles ", roles_or_machine])
}

roles_or_machine := "(machine client)" if subject == null else := roles_text(subject)

default token_allow := false

token_allow if {
	count(token_deny) == 0
	count(token_granted_scopes) > 0
}

# What a person could be granted at most, whoever they are: the tier's
# grants that some role of data.roles also grants, minus separation of
# duties. Every role a subject holds — its own or one its groups give —
# grants only through data.roles, so the subject holding every role there
# gets exactly this set and nobody gets more (permitted_scopes).
any_person_scopes := {sc |
	some r, accs in data.tiers[tier].grants
	is_array(accs)
	some a in accs
	is_string(a)
	not sod_blocked(tier, a)
	some role_def in data.roles
	role_accs := role_def.grants[r]
	is_array(role_accs)
	a in role_accs
	sc := concat(":", [r, a])
}

# token_refused_for_every_subject: the reasons this decision denies a human
# grant of this client and request whoever the person is. The rules read
# the client and the request, never input.subject, so the authorization
# server asks before anyone signs in (with no subject) and refuses on the
# first page. Each rule implies a token_deny reason for every subject: an
# client nobody vouches for, or could, is denied outright; a tier whose any_person_scopes is
# empty, or meets none of the requested scopes, leaves token_granted_scopes
# empty for every subject.
token_refused_for_every_subject contains "client is not attested (no trusted statement, operator approval or known metadata document vouches for it); it gets the least tier, which grants nothing" if {
	grant_type in human_grant_types
	not client_may_be_attested
}

token_refused_for_every_subject contains msg if {
	grant_type in human_grant_types
	tier_fixed
	count(any_person_scopes) == 0
	msg := concat("", ["tier ", tier, " grants no scopes to anyone"])
}

token_refused_for_every_subject contains msg if {
	grant_type in human_grant_types
	tier_fixed
	count(any_person_scopes) > 0
	count(requested_scopes) > 0
	count(requested_scopes & any_person_scopes) == 0
	msg := concat("", ["none of the requested scopes are permitted for tier ", tier, ", whatever the person's role"])
}

default token_single_use := false

token_single_use if client.single_use_access_tokens == true

token_single_use if tier_setting_true(tier, "single_use_tokens")

default token := {
	"allow": false,
	"reasons": ["policy produced no decision"],
	"tier": "unverified",
	"scopes": [],
	"ttl_seconds": 0,
	"single_use": false,
	"refused_for_every_subject": [],
}

token := {
	"allow": true,
	"reasons": [concat("", ["tier ", tier, " granted ", format_int(count(token_granted_scopes), 10), " scope(s)"])],
	"tier": tier,
	"scopes": sort(token_granted_scopes),
	"ttl_seconds": tier_setting_number(tier, "token_ttl_seconds"),
	"single_use": token_single_use,
	"refused_for_every_subject": sort(token_refused_for_every_subject),
} if {
	token_allow
} else := {
	"allow": false,
	"reasons": reasons_for(token_deny, "no scope is grantable"),
	"tier": tier,
	"scopes": [],
	"ttl_seconds": tier_setting_number(tier, "token_ttl_seconds"),
	"single_use": token_single_use,
	"refused_for_every_subject": sort(token_refused_for_every_subject),
}
