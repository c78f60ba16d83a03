// Package canon is the canonical form of the path and name arguments that
// policy decides on: the one definition the gateway (which refuses any
// other spelling before policy), the shipped policy (whose regular
// expressions are generated from it, rego/policy/canonical.rego) and the
// demo backends (which refuse any other spelling themselves) share.
//
// Two parsers of a path disagree when one of them trims, decodes, folds or
// resolves what the other takes literally: " /prod/secrets" is a different
// string from "/prod/secrets" to a policy and the same file to a backend
// that trims. The canonical form is the spelling that every reasonable
// parser reads the same way, so a canonical value needs no interpretation:
//
//   - a path is "/" or "/" followed by segments joined by "/"; a name is
//     segments joined by "/" (no leading "/"), e.g. "platform/api";
//   - no segment is empty ("//", a trailing "/"), starts or ends with a
//     space, or ends with "." (so no "." or ".." segment, and no
//     "secrets." that some file systems read as "secrets");
//   - no refused character (Refused): controls, NUL, "\" and "%" (no
//     second separator, no percent-encoding to decode once or twice),
//     format characters (zero-width, bidi controls), separators other
//     than the ASCII space, private use, U+FFFD, noncharacters, and every
//     character that compatibility normalization (NFKC) or case folding
//     turns into ASCII (fullwidth "／", "ſ", the Kelvin sign, ...);
//   - the whole value is in NFC and unchanged by NFKC.
//
// Case is not canonicalized: "/Team" and "/team" are both canonical.
// Policy compares protected prefixes case-insensitively (a backend that
// ignores case is covered) and allow-list constraints exactly (a backend
// that does not ignore case is not widened).
package canon

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Kind is how an argument is spelled: a path or a name.
type Kind string

const (
	// KindPath is an absolute path: "/" or "/a/b".
	KindPath Kind = "path"
	// KindName is a relative name of one or more segments: "a" or "a/b".
	KindName Kind = "name"
	// KindRef is a path when it starts with "/" and a name otherwise: what
	// a protected argument that is not declared more precisely must be.
	KindRef Kind = "ref"
)

// ErrNotCanonical is wrapped by every error Check returns.
var ErrNotCanonical = errors.New("not in canonical form")

// Error says why a value is not canonical.
type Error struct {
	Kind   Kind
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("not a canonical %s: %s", e.Kind, e.Reason)
}

// Unwrap makes errors.Is(err, ErrNotCanonical) hold.
func (e *Error) Unwrap() error { return ErrNotCanonical }

// Valid tells whether k is a known kind.
func (k Kind) Valid() bool { return k == KindPath || k == KindName || k == KindRef }

// Check returns nil when s is a canonical value of kind k, else an *Error
// saying why not. It reads s once (plus the NFC and NFKC checks, which are
// linear too).
func Check(k Kind, s string) error {
	fail := func(format string, args ...any) error {
		kind := k
		if kind == KindRef {
			kind = KindName
			if strings.HasPrefix(s, "/") {
				kind = KindPath
			}
		}
		return &Error{Kind: kind, Reason: fmt.Sprintf(format, args...)}
	}
	switch k {
	case KindPath:
		if !strings.HasPrefix(s, "/") {
			return fail("it must start with /")
		}
	case KindName:
		if strings.HasPrefix(s, "/") {
			return fail("it must not start with /")
		}
	case KindRef:
	default:
		return fmt.Errorf("canon: unknown kind %q", k)
	}
	if s == "" {
		return fail("it is empty")
	}
	if s == "/" && k != KindName {
		return nil
	}
	rest := strings.TrimPrefix(s, "/")
	for seg := range strings.SplitSeq(rest, "/") {
		if err := checkSegment(seg); err != "" {
			return fail("%s", err)
		}
	}
	if !norm.NFC.IsNormalString(s) {
		return fail("it is not in Unicode normalization form C")
	}
	if !norm.NFKC.IsNormalString(s) {
		return fail("it changes under Unicode compatibility normalization (NFKC)")
	}
	return nil
}

// checkSegment returns why seg is not a canonical segment, or "".
func checkSegment(seg string) string {
	switch {
	case seg == "":
		return "it has an empty segment (// or a trailing /)"
	case seg == "." || seg == "..":
		return fmt.Sprintf("it has a %q segment", seg)
	case strings.HasPrefix(seg, " ") || strings.HasSuffix(seg, " "):
		return "a segment starts or ends with a space"
	case strings.HasSuffix(seg, "."):
		return "a segment ends with ."
	}
	for _, r := range seg { // invalid UTF-8 reads as utf8.RuneError, refused
		if Refused(r) {
			return fmt.Sprintf("it holds the refused character %U", r)
		}
	}
	return ""
}

// Refused tells whether r may not appear in a path, a name or an argument
// name: two parsers may read it differently (a separator, an escape, a
// character that normalizes or folds into another, or one that is not
// shown at all).
func Refused(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r == '\\', r == '%':
		return true
	case r < 0x80:
		return false
	case r > unicode.MaxRune, r >= 0xD800 && r <= 0xDFFF:
		return true
	case r == utf8.RuneError, isNoncharacter(r):
		return true
	case unicode.In(r, unicode.Cc, unicode.Cf, unicode.Z, unicode.Co):
		return true
	case isLookalike(r):
		return true
	}
	return normalizesToASCII(r) || foldsToASCII(r)
}

// isLookalike: the symbols and punctuation that Unicode's confusables
// (UTS #39) list for "/", "\\", "." and "%" and that NFKC keeps as they
// are; a transliterating backend (iconv //TRANSLIT, unidecode) or a person
// reading an audit record takes them for the separator. Letters that look
// alike (katakana "ノ", CJK characters) stay allowed.
func isLookalike(r rune) bool {
	switch r {
	case 0x1735, 0x2041, 0x2044, 0x2215, 0x2571, 0x27CB, 0x29F8, 0x31D3, 0x3033, 0x1D23A, // "/"
		0x2216, 0x27CD, 0x29F5, 0x29F9, 0x31D4, 0x1D20F, 0x1D23B, // "\\"
		0x0701, 0x0702, 0xA60E, 0x10A50, 0x1D16D, // "."
		0x066A, 0x2052: // "%"
		return true
	}
	return false
}

func isNoncharacter(r rune) bool {
	return (r >= 0xFDD0 && r <= 0xFDEF) || r&0xFFFE == 0xFFFE
}

// normalizesToASCII: the NFKC form of r holds an ASCII character (the
// fullwidth forms, "ſ" to "s", ligatures, circled and mathematical letters,
// superscript digits, ...).
func normalizesToASCII(r rune) bool {
	for _, c := range norm.NFKC.String(string(r)) {
		if c < 0x80 {
			return true
		}
	}
	return false
}

// foldsToASCII: simple case folding takes r to an ASCII letter (the Kelvin
// sign to "k", "ſ" to "s"), so a case-insensitive backend reads it as one.
func foldsToASCII(r rune) bool {
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < 0x80 {
			return true
		}
	}
	return false
}

// HasRefused tells whether s holds a refused character.
func HasRefused(s string) bool {
	for _, r := range s {
		if Refused(r) {
			return true
		}
	}
	return false
}
