# pbac/register: may this client register (RFC 7591), and in which tier?
# Every tier may register unless its data says may_register: false; the
# unverified tier registers but is granted nothing later.
package pbac

register_deny contains "client metadata is missing" if not input_client_is_object

input_client_is_object if is_object(input.client)

register_deny contains msg if {
	data.tiers[tier].may_register == false
	msg := concat("", ["tier ", tier, " may not register"])
}

register_deny contains msg if {
	p := client.agent_provider
	is_string(p)
	some b in data.agents.blocked_providers
	b == p
	msg := concat("", ["agent provider ", p, " is blocked"])
}

default register := {
	"allow": false,
	"reasons": ["policy produced no decision"],
	"tier": "unverified",
}

register := {
	"allow": count(register_deny) == 0,
	"reasons": reasons_for(register_deny, concat("", ["registered with tier ", tier])),
	"tier": tier,
}
