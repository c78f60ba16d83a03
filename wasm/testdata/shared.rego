package s

default allow := false

allow if input.user == "alice"

# Undefined unless input.x is 1.
maybe if input.x == 1

echo := input
