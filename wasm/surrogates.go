package wasm

import (
	"unicode/utf16"
	"unicode/utf8"
)

// OPA's Wasm JSON parser (OPA v1.22) decodes an escaped UTF-16 surrogate
// pair with an OR where an addition belongs, so "\udb40\udc01" (U+E0001,
// a character policy refuses) reads as U+D0001: a character of planes 2,
// 4, 6, ... 14 and 16 reads as the one 65,536 code points lower. An
// unpaired surrogate aborts the evaluation, or takes the escape after it
// along ("\ud800\u002f" reads as U+FFFD without its "/", "\ud800\udb0f"
// as U+FF0F). OPA's Go evaluator, the gateway and the backends read such
// strings with Go's decoder: a pair as its character, an unpaired
// surrogate as U+FFFD and the next escape on its own. So before an input
// or policy data goes into the module, decodeSurrogates rewrites the
// escapes of surrogates as Go reads them: the policy decides on the same
// characters whichever evaluator runs it (TestSurrogatesReadAsGoReadsThem,
// TestDataSurrogatesReadAsGoReadsThem).

// isSurrogateEscape reports whether hex, the four digits of a \u escape,
// names a surrogate (D800–DFFF).
func isSurrogateEscape(hex []byte) bool {
	return (hex[0] == 'd' || hex[0] == 'D') && hexValue(hex[1]) >= 8
}

// decodeSurrogates returns doc, a JSON document validJSON accepts, with
// every escaped surrogate pair written as its character in UTF-8 and every
// escaped unpaired surrogate as \ufffd; every other byte is kept. The
// result is never longer than doc.
func decodeSurrogates(doc []byte) []byte {
	out := make([]byte, 0, len(doc))
	inString := false
	for i := 0; i < len(doc); {
		c := doc[i]
		switch {
		case !inString:
			inString = c == '"'
			out = append(out, c)
			i++
		case c == '"':
			inString = false
			out = append(out, c)
			i++
		case c != '\\':
			out = append(out, c)
			i++
		case doc[i+1] != 'u':
			out = append(out, doc[i:i+2]...)
			i += 2
		case !isSurrogateEscape(doc[i+2 : i+6]):
			out = append(out, doc[i:i+6]...)
			i += 6
		default:
			hi := escapeValue(doc[i+2 : i+6])
			if i+12 <= len(doc) && doc[i+6] == '\\' && doc[i+7] == 'u' && isSurrogateEscape(doc[i+8:i+12]) {
				if r := utf16.DecodeRune(hi, escapeValue(doc[i+8:i+12])); r != utf8.RuneError {
					out = utf8.AppendRune(out, r)
					i += 12
					continue
				}
			}
			// Unpaired: Go reads U+FFFD, and the next escape on its own.
			out = append(out, `\ufffd`...)
			i += 6
		}
	}
	return out
}

func escapeValue(hex []byte) rune {
	var r rune
	for _, h := range hex {
		r = r<<4 | rune(hexValue(h))
	}
	return r
}

func hexValue(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}
