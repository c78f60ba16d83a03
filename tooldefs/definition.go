// Package tooldefs reads the tool definitions backends serve in tools/list:
// each one strictly, into the canonical form the gateway forwards, with
// its hash and a reviewer's warnings. The catalogue pins a reviewed
// definition by its hash (contract.Tool.Pin); a backend that later serves
// another definition under the same name (a "rug pull") is caught by
// comparing the hash with the pin. Package tooldefs/store keeps what was
// seen.
//
// Definitions come from backends and are outside input: each is bounded
// in size, read once, and every check on it is linear in its length. A
// definition two readers could read differently (a key twice, two
// spellings of one key, a name outside the MCP tool-name characters) is
// refused, never forwarded.
package tooldefs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxDefinitionBytes bounds one tool definition as a backend serves it.
const MaxDefinitionBytes = 64 << 10

// ErrBadDefinition is a tool definition that cannot be kept: not a JSON
// object, no name, or too large.
var ErrBadDefinition = errors.New("tooldefs: bad tool definition")

// Canonical reads one tool of a tools/list result and returns its name and
// its canonical form: the JSON object with its keys sorted, no
// insignificant space, strings re-escaped one way, numbers as written. The
// canonical form is what the gateway forwards, so what was hashed (and
// reviewed) is what the client reads. _meta is part of it: hosts act on it
// (an app's UI resource, say). Refused (ErrBadDefinition): not one JSON
// object, larger than MaxDefinitionBytes, an object anywhere in it with a
// key twice or two keys equal but for case (clients resolve those
// differently), no name, or a name outside NamePattern.
func Canonical(tool []byte) (name string, canonical []byte, err error) {
	if len(tool) > MaxDefinitionBytes {
		return "", nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadDefinition, len(tool), MaxDefinitionBytes)
	}
	if err := CheckKeys(tool); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrBadDefinition, err)
	}
	dec := json.NewDecoder(bytes.NewReader(tool))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrBadDefinition, err)
	}
	if obj == nil {
		return "", nil, fmt.Errorf("%w: not a JSON object", ErrBadDefinition)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", nil, fmt.Errorf("%w: more than one JSON value", ErrBadDefinition)
	}
	name, _ = obj["name"].(string)
	if !NamePattern.MatchString(name) {
		return "", nil, fmt.Errorf("%w: name %q: want 1 to 128 of A-Z a-z 0-9 _ - . /", ErrBadDefinition, clip(name))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrBadDefinition, err)
	}
	return name, bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// NamePattern is a tool name the gateway forwards: the characters the MCP
// specification lists for tool names (2025-11-25), and "/".
var NamePattern = regexp.MustCompile(`^[A-Za-z0-9_./-]{1,128}$`)

// clip shortens outside text for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// CheckKeys walks raw JSON once and refuses an object with a key twice,
// or with two keys equal under Unicode case folding.
func CheckKeys(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool // folded
		key    bool            // the next token is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].key {
			if k, ok := tok.(string); ok {
				f := strings.ToLower(k)
				if stack[n-1].keys[f] {
					return fmt.Errorf("key %q twice (or spelt twice)", clip(k))
				}
				stack[n-1].keys[f] = true
				stack[n-1].key = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, keys: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ends: in an object, a key comes next.
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].key = true
		}
	}
}

// Tool is one tool object read by Read: its name, its canonical form and
// that form's hash.
type Tool struct {
	Name      string
	Canonical json.RawMessage
	Hash      string
}

// Read reads one tool object of a tools/list answer (Canonical) and
// hashes it.
func Read(raw []byte) (Tool, error) {
	name, canonical, err := Canonical(raw)
	if err != nil {
		return Tool{}, err
	}
	return Tool{Name: name, Canonical: canonical, Hash: Hash(canonical)}, nil
}

// Hash is "sha256:<hex>" of a canonical definition: the form of
// contract.Tool.Pin and contract.ToolDefinition.Hash.
func Hash(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// HashPattern is what a hash looks like (the data schema's pin pattern).
var HashPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// A Flag is text in a definition a reviewer should read twice: where it
// is (a JSON path such as description or
// inputSchema.properties.path.description) and what it looks like.
type Flag struct {
	Path string `json:"path"`
	What string `json:"what"`
}

// maxFlags bounds the flags of one definition.
const maxFlags = 20

// modelDirected are phrases that speak to the model rather than describe
// the tool: the shape of a prompt injection in a description.
var modelDirected = []string{
	"ignore previous", "ignore all", "ignore the above", "disregard", "forget your",
	"you must", "you should always", "always call", "before using this tool", "before calling",
	"do not tell", "don't tell", "do not mention", "don't mention", "without telling", "without asking",
	"do not inform", "the user must not", "system prompt", "<important>", "<system>", "[inst]",
	"also send", "send the contents", "send it to", "exfiltrate",
	"~/.ssh", "id_rsa", ".env", "api key", "api_key", "password", "private key", "credentials",
}

// link finds a URL or a bare web address.
var link = regexp.MustCompile(`(?i)\b(?:https?|ftp|file|data|javascript):|\bwww\.[a-z0-9-]+\.`)

// Flags reads every string of a canonical definition (keys included, as
// schema property names reach the model too) and flags hidden characters
// (format and private-use characters: zero-width spaces, bidi controls,
// Unicode tags), links and phrases addressed to the model. It is a
// reviewer's aid, not a verdict: a clean definition may still mislead.
func Flags(canonical []byte) []Flag {
	var v any
	dec := json.NewDecoder(bytes.NewReader(canonical))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return nil
	}
	var out []Flag
	more := 0
	add := func(path, what string) {
		if len(out) < maxFlags {
			out = append(out, Flag{Path: path, What: what})
		} else {
			more++
		}
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case string:
			for _, what := range textFlags(v, schemaURI(path)) {
				add(path, what)
			}
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				p := k
				if path != "" {
					p = path + "." + k
				}
				for _, what := range textFlags(k, false) {
					add(p+" (the key)", what)
				}
				walk(p, v[k])
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		}
	}
	walk("", v)
	if more > 0 {
		out = append(out, Flag{What: fmt.Sprintf("and %d more not shown", more)})
	}
	return out
}

// schemaURI tells whether path names a JSON Schema keyword whose value is
// a URI by definition ($schema, $id, $ref): not a link to flag.
func schemaURI(path string) bool {
	i := strings.LastIndexByte(path, '.')
	switch path[i+1:] {
	case "$schema", "$id", "$ref":
		return true
	}
	return false
}

// hiddenRune is a character a reader does not see: format and private-use
// characters (zero-width, bidi controls, Unicode tags), controls but tab and
// newlines, variation selectors, and the blank fillers some fonts draw as
// nothing.
func hiddenRune(r rune) bool {
	switch {
	case r == utf8.RuneError, unicode.Is(unicode.Cf, r), unicode.Is(unicode.Co, r),
		unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r',
		unicode.Is(unicode.Variation_Selector, r),
		r == 0x115F, r == 0x1160, r == 0x2800, r == 0x3164, r == 0xFFA0:
		return true
	}
	return false
}

// textFlags is what Flags says of one string; uri: the string is a
// schema's own URI, so a link in it is not flagged.
func textFlags(s string, uri bool) []string {
	var out []string
	hidden := map[rune]bool{}
	for _, r := range s {
		if hiddenRune(r) {
			if len(hidden) < 4 {
				hidden[r] = true
			}
		}
	}
	if len(hidden) > 0 {
		codes := make([]string, 0, len(hidden))
		for r := range hidden {
			codes = append(codes, fmt.Sprintf("U+%04X", r))
		}
		sort.Strings(codes)
		out = append(out, "hidden characters ("+strings.Join(codes, ", ")+")")
	}
	if m := link.FindString(s); m != "" && !uri {
		out = append(out, fmt.Sprintf("a link (%s…)", m))
	}
	lower := strings.ToLower(s)
	for _, p := range modelDirected {
		if strings.Contains(lower, p) {
			out = append(out, fmt.Sprintf("text addressed to the model or naming secrets (%q)", p))
			break
		}
	}
	return out
}

// CheckObjectKeys refuses a JSON object whose own keys (not those of the
// values in it) repeat or differ only in case; the values are skipped,
// not checked. Not an object is an error too.
func CheckObjectKeys(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := tok.(string)
		f := strings.ToLower(k)
		if seen[f] {
			return fmt.Errorf("key %q twice (or spelt twice)", clip(k))
		}
		seen[f] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}
