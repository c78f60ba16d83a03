package t

default allow := false

allow if input.user == "alice"

# sprintf is not native to OPA's Wasm target: it exercises the builtin bridge.
result := {"allow": allow, "items": count(data.items), "greeting": sprintf("hello %s", [input.user])}

# A runaway evaluation for the deadline test: |big|^3 iterations that
# allocate little, so only the deadline can stop it.
default slow := false

slow if {
	some x in data.big
	some y in data.big
	some z in data.big
	x == y
	y == z
	z == "never"
}

# Allocates until the memory cap stops it.
hog := count([x | some i in numbers.range(1, 100000000); x := concat("", ["padding-padding-padding", format_int(i, 10)])])

echo := input
