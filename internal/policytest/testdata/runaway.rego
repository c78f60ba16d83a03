package pbac

# Added to the shipped policy by policytest.Runaway: decisions that run away
# on request, so tests can show what a decision that cannot be made does.
# runaway loops |data.runaway_big|^3 times allocating little: only a
# deadline stops it. (tool_call_deny is evaluated only off the fast allow
# path: for a tool the catalogue does not list, say.)

tool_call_deny contains "runaway" if {
	input.request.arguments.runaway == true
	runaway
}

token_deny contains "runaway" if {
	input.client.software_id == "runaway"
	runaway
}

runaway if {
	some x in data.runaway_big
	some y in data.runaway_big
	some z in data.runaway_big
	x == y
	y == z
	z == "never"
}
