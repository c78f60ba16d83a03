package pbac

# A minimal policy that honours the contract: every entrypoint is an object
# with allow and reasons, denies the empty input, and reports data.marker so
# tests can tell which version decided.

decision := {"allow": allow, "reasons": [reason], "marker": marker}

default marker := -1

marker := data.marker

default allow := false

allow if input.user in data.allowed

default reason := "user not allowed"

reason := "user allowed" if allow

register := decision

token := decision

introspect := decision

exchange := decision

tool_call := decision

list := decision

anonymous := decision

method := decision
