package canon

import (
	"fmt"
	"strings"
	"unicode"
)

// ASCIIPattern is an RE2 expression matching a string made only of the
// ASCII characters a canonical value may hold (printable, but "\\" and
// "%"). Policy decides most values with it: compiling it is cheap, where
// the full RefusedPattern costs OPA's Wasm target about a millisecond per
// call.
func ASCIIPattern() string {
	return "^" + class(func(r rune) bool { return r < 0x80 && !Refused(r) }) + "*$"
}

// RefusedPattern is an RE2 character class matching exactly the characters
// Refused refuses, written as explicit code point ranges so that every
// regular expression engine reads it the same way whatever Unicode version
// its own tables follow. Computing it walks every code point (about 0.1 s):
// the policy holds a generated copy (rego/policy/canonical.rego).
func RefusedPattern() string { return class(Refused) }

// class is an RE2 character class of the code points in, as ranges.
func class(in func(rune) bool) string {
	var b strings.Builder
	b.WriteString("[")
	for lo := rune(0); lo <= unicode.MaxRune; lo++ {
		if !in(lo) {
			continue
		}
		hi := lo
		for hi+1 <= unicode.MaxRune && in(hi+1) {
			hi++
		}
		b.WriteString(classChar(lo))
		if hi > lo {
			b.WriteString("-" + classChar(hi))
		}
		lo = hi
	}
	b.WriteString("]")
	return b.String()
}

func classChar(r rune) string {
	if r < 0x80 {
		return fmt.Sprintf(`\x%02x`, r)
	}
	return fmt.Sprintf(`\x{%x}`, r)
}
