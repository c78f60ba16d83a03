// Package tooldefs keeps the tool definitions the gateway has seen its
// backends serve in tools/list: per backend and tool name, the definition
// (name, title, description, input and output schema, annotations), its
// hash, when it was first and last seen, and an operator's review of it.
// The catalogue pins a reviewed definition by its hash (contract.Tool.Pin);
// a backend that later serves another definition under the same name (a
// "rug pull") is caught by comparing the hash the gateway saw last with the
// pin.
//
// Definitions come from backends and are outside input: each is bounded
// in size, read once into its canonical form, and every check on it is
// linear in its length.
package tooldefs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
// its canonical form: the JSON object without _meta (which carries
// per-response data, not what the model is told), keys sorted, no
// insignificant space, numbers as written. Two servings of the same
// definition, however formatted, have the same canonical form.
func Canonical(tool []byte) (name string, canonical []byte, err error) {
	if len(tool) > MaxDefinitionBytes {
		return "", nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadDefinition, len(tool), MaxDefinitionBytes)
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
	if dec.More() {
		return "", nil, fmt.Errorf("%w: more than one JSON value", ErrBadDefinition)
	}
	name, _ = obj["name"].(string)
	if name == "" {
		return "", nil, fmt.Errorf("%w: no name", ErrBadDefinition)
	}
	delete(obj, "_meta")
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrBadDefinition, err)
	}
	return name, bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
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
	add := func(path, what string) {
		if len(out) < maxFlags {
			out = append(out, Flag{Path: path, What: what})
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

// textFlags is what Flags says of one string; uri: the string is a
// schema's own URI, so a link in it is not flagged.
func textFlags(s string, uri bool) []string {
	var out []string
	hidden := map[rune]bool{}
	for _, r := range s {
		if r == utf8.RuneError || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Co, r) ||
			(unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r') {
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
