package wasm

import "unicode/utf8"

// maxJSONDepth is encoding/json's nesting limit: json.Valid refuses a
// document nested deeper.
const maxJSONDepth = 10000

// validJSON reports whether doc is one JSON value (RFC 8259) in valid
// UTF-8, in a single pass: exactly utf8.Valid(doc) && json.Valid(doc),
// nesting limit included, at a fraction of their cost. Outside strings
// JSON is ASCII, so only string contents need decoding as UTF-8.
func validJSON(doc []byte) bool {
	ok, _ := checkJSON(doc, 0)
	return ok
}

// checkJSON is validJSON for a value that will sit nested depth levels
// deep in a document (the nesting limit is the whole document's), and says
// whether a string of doc holds an escaped surrogate (\uD800 to \uDFFF),
// which OPA's Wasm parser does not read as Go's does (decodeSurrogates).
func checkJSON(doc []byte, depth int) (ok, surrogates bool) {
	v := validator{doc: doc, max: maxJSONDepth - depth}
	v.space()
	if !v.value() {
		return false, false
	}
	v.space()
	return v.i == len(doc), v.surrogates
}

type validator struct {
	doc []byte
	i   int
	// The open containers, '{' or '[': the first ones in near, the
	// deeper in far, so the usual nesting allocates nothing.
	depth int
	near  [64]byte
	far   []byte
	max   int // the deepest nesting allowed
	// surrogates: an escape of a UTF-16 surrogate was read.
	surrogates bool
}

func (v *validator) push(c byte) {
	if v.depth < len(v.near) {
		v.near[v.depth] = c
	} else {
		v.far = append(v.far[:v.depth-len(v.near)], c)
	}
	v.depth++
}

// top is the innermost open container, 0 when none is.
func (v *validator) top() byte {
	switch d := v.depth - 1; {
	case d < 0:
		return 0
	case d < len(v.near):
		return v.near[d]
	default:
		return v.far[d-len(v.near)]
	}
}

func (v *validator) space() {
	for v.i < len(v.doc) {
		switch v.doc[v.i] {
		case ' ', '\t', '\n', '\r':
			v.i++
		default:
			return
		}
	}
}

// value reads one value, containers iteratively.
func (v *validator) value() bool {
	for {
		// A value starts here.
		if v.i >= len(v.doc) {
			return false
		}
		switch c := v.doc[v.i]; {
		case c == '{' || c == '[':
			if v.depth >= v.max {
				return false
			}
			v.push(c)
			v.i++
			v.space()
			if v.i >= len(v.doc) {
				return false
			}
			if (c == '{' && v.doc[v.i] == '}') || (c == '[' && v.doc[v.i] == ']') {
				v.i++
				v.depth--
				break // an empty container is a complete value
			}
			if c == '{' && !v.key() {
				return false
			}
			continue // its first value
		case c == '"':
			if !v.str() {
				return false
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if !v.number() {
				return false
			}
		case c == 't':
			if !v.literal("true") {
				return false
			}
		case c == 'f':
			if !v.literal("false") {
				return false
			}
		case c == 'n':
			if !v.literal("null") {
				return false
			}
		default:
			return false
		}
		// A value ended: close containers, or go on to the next member or
		// element.
		for {
			top := v.top()
			if top == 0 {
				return true
			}
			v.space()
			if v.i >= len(v.doc) {
				return false
			}
			c := v.doc[v.i]
			if c == ',' {
				v.i++
				v.space()
				if top == '{' && !v.key() {
					return false
				}
				break
			}
			if (top == '{' && c == '}') || (top == '[' && c == ']') {
				v.i++
				v.depth--
				continue
			}
			return false
		}
	}
}

// key reads an object member's name and its colon, up to the value.
func (v *validator) key() bool {
	if v.i >= len(v.doc) || v.doc[v.i] != '"' || !v.str() {
		return false
	}
	v.space()
	if v.i >= len(v.doc) || v.doc[v.i] != ':' {
		return false
	}
	v.i++
	v.space()
	return true
}

// str reads a string, its opening quote at v.i.
func (v *validator) str() bool {
	v.i++
	for v.i < len(v.doc) {
		c := v.doc[v.i]
		switch {
		case c == '"':
			v.i++
			return true
		case c == '\\':
			v.i++
			if v.i >= len(v.doc) {
				return false
			}
			switch v.doc[v.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				v.i++
			case 'u':
				if v.i+4 >= len(v.doc) {
					return false
				}
				for _, h := range v.doc[v.i+1 : v.i+5] {
					if !isHex(h) {
						return false
					}
				}
				if isSurrogateEscape(v.doc[v.i+1 : v.i+5]) {
					v.surrogates = true
				}
				v.i += 5
			default:
				return false
			}
		case c < 0x20:
			return false
		case c < utf8.RuneSelf:
			v.i++
		default:
			r, n := utf8.DecodeRune(v.doc[v.i:])
			if r == utf8.RuneError && n == 1 {
				return false
			}
			v.i += n
		}
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (v *validator) number() bool {
	d := v.doc
	if d[v.i] == '-' {
		v.i++
	}
	switch {
	case v.i < len(d) && d[v.i] == '0':
		v.i++
	case v.i < len(d) && d[v.i] >= '1' && d[v.i] <= '9':
		v.digits()
	default:
		return false
	}
	if v.i < len(d) && d[v.i] == '.' {
		v.i++
		if v.digits() == 0 {
			return false
		}
	}
	if v.i < len(d) && (d[v.i] == 'e' || d[v.i] == 'E') {
		v.i++
		if v.i < len(d) && (d[v.i] == '+' || d[v.i] == '-') {
			v.i++
		}
		if v.digits() == 0 {
			return false
		}
	}
	return true
}

func (v *validator) digits() int {
	start := v.i
	for v.i < len(v.doc) && v.doc[v.i] >= '0' && v.doc[v.i] <= '9' {
		v.i++
	}
	return v.i - start
}

func (v *validator) literal(lit string) bool {
	if len(v.doc)-v.i < len(lit) || string(v.doc[v.i:v.i+len(lit)]) != lit {
		return false
	}
	v.i += len(lit)
	return true
}
