# Code generated from internal/canon by TestCanonicalRegoIsGenerated
# (rego/canonical_test.go); DO NOT EDIT. Regenerate with
#   go test ./rego -run TestCanonicalRegoIsGenerated -update-canonical
#
# The characters of the canonical form of path and name arguments (see
# internal/canon and rego/README.md): the gateway refuses every other
# spelling before policy, and canonical_value (tiers.rego) denies it.
package pbac

# A string of the ASCII characters a canonical value may hold (printable,
# but "\" and "%"): cheap to match, it decides almost every value.
canonical_ascii := `^[\x20-\x24\x26-\x5b\x5d-\x7e]*$`

# A character no path, name or argument name may hold: controls, "\",
# "%", format and separator characters other than the space, private use,
# U+FFFD, noncharacters, every character that NFKC or case folding turns
# into ASCII, and the symbols that look like "/", "\", "." or "%".
# Explicit ranges, so that every engine reads it alike. OPA's Wasm target
# compiles it on every call (about a millisecond): policy matches it only
# when canonical_ascii does not match.
canonical_refused := `[\x00-\x1f\x25\x5c\x7f-\x{a0}\x{a8}\x{aa}\x{ad}\x{af}\x{b2}-\x{b4}\x{b8}-\x{ba}\x{bc}-\x{be}\x{132}-\x{133}\x{13f}-\x{140}\x{149}\x{17f}\x{1c4}-\x{1cc}\x{1f1}-\x{1f3}\x{2b0}\x{2b2}-\x{2b3}\x{2b7}-\x{2b8}\x{2d8}-\x{2dd}\x{2e1}-\x{2e3}\x{37a}\x{37e}\x{384}-\x{385}\x{600}-\x{605}\x{61c}\x{66a}\x{6dd}\x{701}-\x{702}\x{70f}\x{890}-\x{891}\x{8e2}\x{1680}\x{1735}\x{180e}\x{1d2c}\x{1d2e}\x{1d30}-\x{1d31}\x{1d33}-\x{1d3a}\x{1d3c}\x{1d3e}-\x{1d43}\x{1d47}-\x{1d49}\x{1d4d}\x{1d4f}-\x{1d50}\x{1d52}\x{1d56}-\x{1d58}\x{1d5b}\x{1d62}-\x{1d65}\x{1d9c}\x{1da0}\x{1dbb}\x{1e9a}\x{1fbd}\x{1fbf}-\x{1fc1}\x{1fcd}-\x{1fcf}\x{1fdd}-\x{1fdf}\x{1fed}-\x{1fef}\x{1ffd}-\x{1ffe}\x{2000}-\x{200f}\x{2017}\x{2024}-\x{2026}\x{2028}-\x{202f}\x{203c}\x{203e}\x{2041}\x{2044}\x{2047}-\x{2049}\x{2052}\x{205f}-\x{2064}\x{2066}-\x{2071}\x{2074}-\x{207a}\x{207c}-\x{208a}\x{208c}-\x{208e}\x{2090}-\x{2093}\x{2095}-\x{209c}\x{20a8}\x{2100}-\x{2103}\x{2105}-\x{2106}\x{2109}-\x{210e}\x{2110}-\x{2113}\x{2115}-\x{2116}\x{2119}-\x{211d}\x{2120}-\x{2122}\x{2124}\x{2128}\x{212a}\x{212c}-\x{212d}\x{212f}-\x{2131}\x{2133}-\x{2134}\x{2139}\x{213b}\x{2145}-\x{2149}\x{2150}-\x{217f}\x{2189}\x{2215}-\x{2216}\x{2460}-\x{24ea}\x{2571}\x{27cb}\x{27cd}\x{29f5}\x{29f8}-\x{29f9}\x{2a74}-\x{2a76}\x{2c7c}-\x{2c7d}\x{3000}\x{3033}\x{309b}-\x{309c}\x{31d3}-\x{31d4}\x{3200}-\x{321e}\x{3220}-\x{3243}\x{3250}-\x{325f}\x{32b1}-\x{32cf}\x{3358}-\x{337a}\x{3380}-\x{33ff}\x{a60e}\x{a7f2}-\x{a7f4}\x{d800}-\x{f8ff}\x{fb00}-\x{fb06}\x{fb29}\x{fc5e}-\x{fc63}\x{fdd0}-\x{fdef}\x{fdfa}-\x{fdfb}\x{fe10}\x{fe13}-\x{fe16}\x{fe19}\x{fe30}\x{fe33}-\x{fe38}\x{fe47}-\x{fe50}\x{fe52}\x{fe54}-\x{fe57}\x{fe59}-\x{fe5c}\x{fe5f}-\x{fe66}\x{fe68}-\x{fe6b}\x{fe70}\x{fe72}\x{fe74}\x{fe76}\x{fe78}\x{fe7a}\x{fe7c}\x{fe7e}\x{feff}\x{ff01}-\x{ff5e}\x{ffe3}\x{fff9}-\x{fffb}\x{fffd}-\x{ffff}\x{107a5}\x{10a50}\x{110bd}\x{110cd}\x{13430}-\x{1343f}\x{1bca0}-\x{1bca3}\x{1d16d}\x{1d173}-\x{1d17a}\x{1d20f}\x{1d23a}-\x{1d23b}\x{1d400}-\x{1d454}\x{1d456}-\x{1d49c}\x{1d49e}-\x{1d49f}\x{1d4a2}\x{1d4a5}-\x{1d4a6}\x{1d4a9}-\x{1d4ac}\x{1d4ae}-\x{1d4b9}\x{1d4bb}\x{1d4bd}-\x{1d4c3}\x{1d4c5}-\x{1d505}\x{1d507}-\x{1d50a}\x{1d50d}-\x{1d514}\x{1d516}-\x{1d51c}\x{1d51e}-\x{1d539}\x{1d53b}-\x{1d53e}\x{1d540}-\x{1d544}\x{1d546}\x{1d54a}-\x{1d550}\x{1d552}-\x{1d6a3}\x{1d7ce}-\x{1d7ff}\x{1f100}-\x{1f10a}\x{1f110}-\x{1f12e}\x{1f130}-\x{1f14f}\x{1f16a}-\x{1f16c}\x{1f190}\x{1fbf0}-\x{1fbf9}\x{1fffe}-\x{1ffff}\x{2fffe}-\x{2ffff}\x{3fffe}-\x{3ffff}\x{4fffe}-\x{4ffff}\x{5fffe}-\x{5ffff}\x{6fffe}-\x{6ffff}\x{7fffe}-\x{7ffff}\x{8fffe}-\x{8ffff}\x{9fffe}-\x{9ffff}\x{afffe}-\x{affff}\x{bfffe}-\x{bffff}\x{cfffe}-\x{cffff}\x{dfffe}-\x{dffff}\x{e0001}\x{e0020}-\x{e007f}\x{efffe}-\x{10ffff}]`
