package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MarshalInput encodes in as encoding/json's Marshal does, byte for byte
// (TestMarshalInputMatchesEncodingJSON, TestMarshalInputWritesEveryField,
// FuzzMarshalInput), without reflection: every call the gateway and the
// authorization server decide encodes one, and under load, with the CPU's
// caches cold between calls, encoding/json's reflective encoder took about
// 7 µs of it (BenchmarkMarshalInput). The maps of a request (resource
// attributes, tool definitions), which only some calls carry, are left to
// encoding/json. (Built with GOEXPERIMENT=jsonv2, encoding/json writes a
// byte that is not UTF-8 as U+FFFD itself, where this writes \ufffd: the
// same string.)
func MarshalInput(in *Input) ([]byte, error) {
	if in == nil {
		return []byte("null"), nil
	}
	e := inputEncoder{buf: make([]byte, 0, 768)}
	e.input(in)
	if e.err != nil {
		return nil, e.err
	}
	return e.buf, nil
}

// Member is one top-level member of a policy input given apart from the
// rest of it: its name and its value, JSON.
type Member struct {
	Name  string
	Value []byte
}

// SharedDecider is a Decider that also takes an input in two parts
// (*plugins.Registry does): shared, the members of the token's part, which
// a run of calls by one token have in common, and rest, a JSON object of
// the others. The decision is the one Decide makes on the object of rest's
// members and shared's; the policy engine parses the shared members once
// for the run instead of on every call.
type SharedDecider interface {
	Decider
	DecideShared(ctx context.Context, entrypoint Entrypoint, shared []Member, rest []byte) (Decision, error)
}

// MarshalInputParts encodes in as MarshalInput does, in two parts: shared,
// the token's part (client, subject and token, those that are set, in that
// order), and rest, the object of the other members. The object of rest's
// members and shared's is the input MarshalInput writes, in another order
// of members (TestMarshalInputParts).
func MarshalInputParts(in *Input) (shared []Member, rest []byte, err error) {
	if in == nil {
		return nil, nil, errors.New("encode the policy input: no input")
	}
	// The values go one after another into one buffer; each member's is
	// cut from it once all are written (the buffer may move until then).
	e := inputEncoder{buf: make([]byte, 0, 640)}
	var ends [3]int
	written := func(name string) {
		ends[len(shared)] = len(e.buf)
		shared = append(shared, Member{Name: name})
	}
	if in.Client != nil {
		e.client(in.Client)
		written("client")
	}
	if in.Subject != nil {
		e.subject(in.Subject)
		written("subject")
	}
	if in.Token != nil {
		e.token(in.Token)
		written("token")
	}
	if e.err != nil {
		return nil, nil, e.err
	}
	start := 0
	for i := range shared {
		shared[i].Value = e.buf[start:ends[i]:ends[i]]
		start = ends[i]
	}
	r := inputEncoder{buf: make([]byte, 0, 256)}
	r.open()
	r.rest(in)
	r.close()
	if r.err != nil {
		return nil, nil, r.err
	}
	return shared, r.buf, nil
}

// inputEncoder appends an Input's JSON to buf; the first error stops it.
type inputEncoder struct {
	buf []byte
	err error
	// first says no member has been written in the open object yet.
	first bool
}

func (e *inputEncoder) open() { e.buf, e.first = append(e.buf, '{'), true }

func (e *inputEncoder) close() { e.buf, e.first = append(e.buf, '}'), false }

// name starts a member: the comma before it, its quoted name (names here
// need no escaping) and the colon.
func (e *inputEncoder) name(n string) {
	if !e.first {
		e.buf = append(e.buf, ',')
	}
	e.first = false
	e.buf = append(e.buf, '"')
	e.buf = append(e.buf, n...)
	e.buf = append(e.buf, '"', ':')
}

func (e *inputEncoder) str(n, v string) {
	e.name(n)
	e.buf = appendString(e.buf, v)
}

// strOmit is a string member tagged omitempty.
func (e *inputEncoder) strOmit(n, v string) {
	if v != "" {
		e.str(n, v)
	}
}

func (e *inputEncoder) boolean(n string, v bool) {
	e.name(n)
	e.buf = strconv.AppendBool(e.buf, v)
}

func (e *inputEncoder) integer(n string, v int64) {
	e.name(n)
	e.buf = strconv.AppendInt(e.buf, v, 10)
}

// strings is a []string member: null when nil, as encoding/json writes it.
func (e *inputEncoder) strings(n string, v []string) {
	e.name(n)
	if v == nil {
		e.buf = append(e.buf, "null"...)
		return
	}
	e.buf = append(e.buf, '[')
	for i, s := range v {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = appendString(e.buf, s)
	}
	e.buf = append(e.buf, ']')
}

// stringsOmit is a []string member tagged omitempty: left out when empty.
func (e *inputEncoder) stringsOmit(n string, v []string) {
	if len(v) > 0 {
		e.strings(n, v)
	}
}

// reflected appends v as encoding/json encodes it, for the members this
// encoder does not spell out.
func (e *inputEncoder) reflected(n string, v any) {
	if e.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		e.err = fmt.Errorf("encode the policy input's %s: %w", n, err)
		return
	}
	e.name(n)
	e.buf = append(e.buf, b...)
}

func (e *inputEncoder) input(in *Input) {
	e.open()
	if in.Client != nil {
		e.name("client")
		e.client(in.Client)
	}
	if in.Subject != nil {
		e.name("subject")
		e.subject(in.Subject)
	}
	if in.Token != nil {
		e.name("token")
		e.token(in.Token)
	}
	e.rest(in)
	e.close()
}

func (e *inputEncoder) subject(s *Subject) {
	e.open()
	e.str("sub", s.Sub)
	e.strings("roles", s.Roles)
	e.stringsOmit("groups", s.Groups)
	e.close()
}

func (e *inputEncoder) token(t *TokenClaims) {
	e.open()
	e.str("client_id", t.ClientID)
	e.strOmit("sub", t.Sub)
	e.strings("scp", t.Scp)
	e.strings("aud", t.Aud)
	e.integer("iat", t.Iat)
	e.integer("exp", t.Exp)
	if t.Act != nil {
		e.name("act")
		e.actor(t.Act)
	}
	e.close()
}

// rest appends the members after the token's part: request, now and
// approval, into the open object.
func (e *inputEncoder) rest(in *Input) {
	e.name("request")
	e.request(&in.Request)
	e.integer("now", in.Now)
	if a := in.Approval; a != nil {
		e.name("approval")
		e.open()
		e.str("id", a.ID)
		e.str("rule", a.Rule)
		e.boolean("granted", a.Granted)
		e.name("approver")
		e.open()
		e.str("sub", a.Approver.Sub)
		e.strings("roles", a.Approver.Roles)
		e.strings("groups", a.Approver.Groups)
		e.close()
		e.str("via", a.Via)
		e.integer("granted_at", a.GrantedAt)
		e.close()
	}
}

func (e *inputEncoder) client(c *Client) {
	e.open()
	e.str("client_id", c.ClientID)
	e.strOmit("agent_provider", c.AgentProvider)
	e.strOmit("agent_model", c.AgentModel)
	e.boolean("single_use_access_tokens", c.SingleUseAccessTokens)
	e.strOmit("software_id", c.SoftwareID)
	e.boolean("verified", c.Verified)
	if a := c.Attestation; a != nil {
		e.name("attestation")
		e.open()
		e.str("kind", a.Kind)
		e.strOmit("by", a.By)
		e.strOmit("provider", a.Provider)
		e.strOmit("origin", a.Origin)
		if a.Machine {
			e.boolean("machine", true)
		}
		e.close()
	}
	e.close()
}

// actor appends a delegation chain (exchange bounds its depth). Like
// encoding/json it refuses a chain that loops, once past cycleCheckDepth
// links, instead of writing for ever.
func (e *inputEncoder) actor(a *Actor) {
	var seen map[*Actor]bool
	depth := 0
	for ; a != nil; a = a.Act {
		if depth++; depth > cycleCheckDepth {
			if seen == nil {
				seen = map[*Actor]bool{}
			}
			if seen[a] {
				e.err = errors.New("encode the policy input's token: the delegation chain loops")
				return
			}
			seen[a] = true
		}
		e.open()
		e.str("sub", a.Sub)
		if a.Act != nil {
			e.name("act")
		}
	}
	for range depth {
		e.close()
	}
}

// cycleCheckDepth is the depth past which actor looks for a loop, as
// encoding/json does past the same depth of pointers.
const cycleCheckDepth = 1000

func (e *inputEncoder) request(r *Request) {
	e.open()
	e.strOmit("backend", r.Backend)
	e.strOmit("method", r.Method)
	e.strOmit("tool", r.Tool)
	if len(r.Arguments) > 0 {
		e.name("arguments")
		e.raw("arguments", r.Arguments)
	}
	if len(r.ResourceAttributes) > 0 {
		e.reflected("resource_attributes", r.ResourceAttributes)
	}
	e.stringsOmit("tools", r.Tools)
	if d := r.ToolDefinition; d != nil {
		e.name("tool_definition")
		e.open()
		e.str("hash", d.Hash)
		e.boolean("pinned", d.Pinned)
		e.boolean("matches", d.Matches)
		e.close()
	}
	if len(r.ToolDefinitions) > 0 {
		e.reflected("tool_definitions", r.ToolDefinitions)
	}
	e.strOmit("grant_type", r.GrantType)
	e.stringsOmit("scopes", r.Scopes)
	e.stringsOmit("resource", r.Resource)
	if r.Actor != nil {
		e.name("actor")
		e.client(r.Actor)
	}
	if r.AudienceClient != nil {
		e.name("audience_client")
		e.client(r.AudienceClient)
	}
	e.close()
}

// raw appends JSON as encoding/json appends a json.RawMessage: compacted,
// with <, >, &, U+2028 and U+2029 escaped in its strings; JSON that is
// not valid is an error.
func (e *inputEncoder) raw(n string, v []byte) {
	if e.err != nil {
		return
	}
	start := len(e.buf)
	out := bytes.NewBuffer(e.buf)
	if err := json.Compact(out, v); err != nil {
		e.err = fmt.Errorf("encode the policy input's %s: %w", n, err)
		return
	}
	e.buf = out.Bytes()
	// Those characters can only be in strings; most arguments have none.
	if i := bytes.IndexAny(e.buf[start:], "<>&\u2028\u2029"); i >= 0 {
		compact := bytes.Clone(e.buf[start:])
		out := bytes.NewBuffer(e.buf[:start])
		json.HTMLEscape(out, compact)
		e.buf = out.Bytes()
	}
}

// appendString appends s quoted as encoding/json quotes a string (with
// its default HTML escaping): \b, \f, \n, \r, \t, \" and \\ by their short
// escapes, other control characters and <, > and & as \u00XX, U+2028 and
// U+2029 escaped, and each byte that is not UTF-8 as \ufffd.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
