package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/canon"
	"github.com/pbac-gateway/pbac/jsonrpc"
)

// A call's arguments are checked before policy sees them, in one place
// whose result is both what policy decides on and the bytes the backend
// gets: their size and shape (ArgumentLimits), and what the active policy
// data's catalogue declares about the tool (path and name arguments must be
// canonical, argument names must not be another spelling of one policy
// looks at, the actor argument must be the caller). A call that fails is
// refused with invalid params (-32602, HTTP 400); policy, which makes the
// same checks itself, never sees it. See internal/canon and rego/README.md.

// ArgumentLimits bound a call's arguments (params.arguments); a call over
// any of them is refused before policy. Zero fields take the defaults.
type ArgumentLimits struct {
	// MaxBytes bounds the arguments object, as sent (default 256 KiB).
	MaxBytes int
	// MaxStringBytes bounds every string, value or name (default 64 KiB).
	MaxStringBytes int
	// MaxPathBytes bounds a path or name argument (default 1 KiB).
	MaxPathBytes int
	// MaxPathSegments bounds the "/"-separated segments of one (default 64).
	MaxPathSegments int
	// MaxDepth bounds nesting inside the arguments object (default 16).
	MaxDepth int
	// MaxKeys bounds the object members of the arguments, at every depth
	// (default 512).
	MaxKeys int
}

// DefaultArgumentLimits are the limits a zero field takes.
func DefaultArgumentLimits() ArgumentLimits {
	return ArgumentLimits{MaxBytes: 256 << 10, MaxStringBytes: 64 << 10, MaxPathBytes: 1 << 10, MaxPathSegments: 64,
		MaxDepth: 16, MaxKeys: 512}
}

func (l ArgumentLimits) withDefaults() ArgumentLimits {
	d := DefaultArgumentLimits()
	for _, f := range []struct{ v, def *int }{{&l.MaxBytes, &d.MaxBytes}, {&l.MaxStringBytes, &d.MaxStringBytes},
		{&l.MaxPathBytes, &d.MaxPathBytes}, {&l.MaxPathSegments, &d.MaxPathSegments}, {&l.MaxDepth, &d.MaxDepth},
		{&l.MaxKeys, &d.MaxKeys}} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return l
}

// errArguments is wrapped by every refusal of a call's arguments.
var errArguments = errors.New("invalid arguments")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errArguments, fmt.Sprintf(format, args...))
}

// check reads args (a JSON object the message parser has validated) once
// and refuses it when it is over a limit.
func (l ArgumentLimits) check(args []byte) error {
	if len(args) > l.MaxBytes {
		return refuse("the arguments are %d bytes, more than %d", len(args), l.MaxBytes)
	}
	dec := jsontext.NewDecoder(bytes.NewBuffer(args))
	keys := 0
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return refuse("the arguments are not JSON: %v", err)
		}
		switch tok.Kind() {
		case '{', '[':
			// The arguments object itself is depth 1.
			if d := dec.StackDepth(); d > l.MaxDepth {
				return refuse("the arguments are nested more than %d deep", l.MaxDepth)
			}
		case '"':
			if s := tok.String(); len(s) > l.MaxStringBytes {
				return refuse("a string of the arguments is %d bytes, more than %d", len(s), l.MaxStringBytes)
			}
			if kind, n := dec.StackIndex(dec.StackDepth()); kind == '{' && n%2 == 1 {
				if keys++; keys > l.MaxKeys {
					return refuse("the arguments have more than %d names", l.MaxKeys)
				}
			}
		}
	}
}

// toolRules is what the active policy data says about one tool's
// arguments.
type toolRules struct {
	// kinds are the arguments that must be canonical, with their kind:
	// the catalogue's declared ones, a reach argument (a path), and the
	// arguments of protected rules with path prefixes and of role
	// constraints (a path or a name).
	kinds map[string]canon.Kind
	// names are every argument name policy looks at for the tool.
	names []string
	// actor is the argument naming who acts ("" for none).
	actor string
	// lookup, when set, is the backend call that finds the author of what
	// the tool acts on.
	lookup *authorLookup
	// pin is the hash of the reviewed definition ("" for none).
	pin string
}

// authorLookup is a catalogue entry's author_lookup.
type authorLookup contract.AuthorLookup

// catalogue is the tools' rules of one policy version.
type catalogue struct {
	revision string
	tools    map[string]*toolRules
	// tiers are the data's tier names: the values the metrics' tier label
	// takes besides "other" and "none".
	tiers map[string]bool
}

// newCatalogue derives the argument rules of every catalogued tool from
// the policy data's view.
func newCatalogue(revision string, d *contract.Data) *catalogue {
	cat := &catalogue{revision: revision, tools: make(map[string]*toolRules, len(d.Catalogue)), tiers: make(map[string]bool, len(d.Tiers))}
	for t := range d.Tiers {
		cat.tiers[t] = true
	}
	for tool, e := range d.Catalogue {
		r := &toolRules{kinds: map[string]canon.Kind{}, actor: e.ActorArg, lookup: (*authorLookup)(e.AuthorLookup), pin: e.Pin}
		seen := map[string]bool{}
		addName := func(n string) {
			if n != "" && !seen[n] {
				seen[n] = true
				r.names = append(r.names, n)
			}
		}
		setKind := func(n string, k canon.Kind) {
			if _, ok := r.kinds[n]; !ok || k != canon.KindRef {
				r.kinds[n] = k
			}
			addName(n)
		}
		for _, p := range d.ProtectedArguments {
			if !contains(p.Resources, e.Resource) {
				continue
			}
			for _, a := range p.Args {
				if len(p.PathPrefixes) > 0 {
					setKind(a, canon.KindRef)
				}
				addName(a)
			}
		}
		for _, role := range d.Roles {
			if c, ok := role.ArgConstraints[e.Resource]; ok && c.Arg != "" {
				setKind(c.Arg, canon.KindRef)
			}
		}
		for a, k := range e.Arguments {
			if kind := canon.Kind(k); kind.Valid() {
				setKind(a, kind)
			}
			addName(a)
		}
		if e.Reach != nil && e.Reach.Arg != "" {
			setKind(e.Reach.Arg, canon.KindPath)
		}
		addName(e.ActorArg)
		cat.tools[tool] = r
	}
	return cat
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// activePolicy is what a Decider that runs bundles (*plugins.Registry)
// shows of its active version: the version, and the typed view of its
// data (nil when none is active).
type activePolicy interface {
	ActivePolicy() (version string, data *contract.Data, err error)
}

// catalogues keeps the catalogue of the active policy version, parsed once
// per version.
type catalogues struct {
	current atomic.Pointer[catalogue]
}

// rules returns the active policy's rules for tool, or nil when the tool
// is not catalogued or the Decider does not show its data (then policy
// alone checks the arguments).
func (cs *catalogues) rules(policy Decider, tool string) (*toolRules, error) {
	ap, ok := policy.(activePolicy)
	if !ok {
		return nil, nil
	}
	cat := cs.current.Load()
	version, data, err := ap.ActivePolicy()
	switch {
	case err != nil:
		return nil, fmt.Errorf("read the catalogue of policy %s: %w", version, err)
	case data == nil:
		return nil, nil
	}
	if cat == nil || cat.revision != version {
		cat = newCatalogue(version, data)
		cs.current.Store(cat)
	}
	return cat.tools[tool], nil
}

// checkArguments refuses a call whose arguments (the members of the
// arguments object) break the tool's rules. identity is the caller as
// actor arguments must name it ("" for a caller without a token). It
// returns whether the actor argument is missing and should be filled in.
func (r *toolRules) checkArguments(members []jsonrpc.Member, identity string, lim ArgumentLimits) (fillActor bool, err error) {
	present := make(map[string]bool, len(members))
	for _, m := range members {
		present[m.Key] = true
		if canon.HasRefused(m.Key) {
			return false, refuse("argument name %q holds a refused character", m.Key)
		}
		for _, n := range r.names {
			if m.Key != n && strings.EqualFold(m.Key, n) {
				return false, refuse("argument %q is another spelling of %q", m.Key, n)
			}
		}
		if kind, ok := r.kinds[m.Key]; ok {
			s, isString := jsonrpc.Unquote(m.Raw)
			if !isString {
				return false, refuse("argument %s must be a string", m.Key)
			}
			if len(s) > lim.MaxPathBytes {
				return false, refuse("argument %s is %d bytes, more than %d", m.Key, len(s), lim.MaxPathBytes)
			}
			if n := strings.Count(s, "/") + 1; n > lim.MaxPathSegments {
				return false, refuse("argument %s has %d segments, more than %d", m.Key, n, lim.MaxPathSegments)
			}
			if err := canon.Check(kind, s); err != nil {
				return false, refuse("argument %s is %v", m.Key, err)
			}
		}
		if m.Key == r.actor {
			if s, ok := jsonrpc.Unquote(m.Raw); !ok || identity == "" || s != identity {
				return false, refuse("argument %s names who acts: it must be the caller (%s) or be left out", r.actor, orDefault(identity, "no one: the call has no token"))
			}
		}
	}
	return r.actor != "" && identity != "" && !present[r.actor], nil
}

// withArgument returns a copy of msg whose arguments object has name set to
// value as its first member, re-read from the new body (what policy then
// sees and the backend gets).
func withArgument(msg *jsonrpc.Message, name, value string, maxDepth int) (*jsonrpc.Message, error) {
	args := msg.Arguments
	off := cap(msg.Raw) - cap(args)
	if len(args) == 0 || off < 0 || off+len(args) > len(msg.Raw) || &msg.Raw[off] != &args[0] {
		return nil, errors.New("the arguments are not part of the message")
	}
	k, _ := json.Marshal(name)
	v, _ := json.Marshal(value)
	member := append(append(k, ':'), v...)
	if len(bytes.TrimSpace(args[1:len(args)-1])) > 0 {
		member = append(member, ',')
	}
	body := make([]byte, 0, len(msg.Raw)+len(member))
	body = append(body, msg.Raw[:off+1]...)
	body = append(body, member...)
	body = append(body, msg.Raw[off+1:]...)
	return jsonrpc.Parse(body, maxDepth)
}

// lookupParams are the params of the author lookup's tools/call: its tool
// and the named arguments of the call, as sent.
func (l *authorLookup) params(members []jsonrpc.Member) map[string]any {
	args := map[string]json.RawMessage{}
	for _, m := range members {
		if contains(l.Arguments, m.Key) {
			args[m.Key] = json.RawMessage(m.Raw)
		}
	}
	return map[string]any{"name": l.Tool, "arguments": args}
}

// author reads the looked-up field from a tools/call result; "" when the
// backend answered an error or no such string.
func (l *authorLookup) author(result json.RawMessage) string {
	var res struct {
		IsError           bool                       `json:"isError"`
		StructuredContent map[string]json.RawMessage `json:"structuredContent"`
	}
	if json.Unmarshal(result, &res) != nil || res.IsError {
		return ""
	}
	s, _ := jsonrpc.Unquote(res.StructuredContent[l.Field])
	return s
}
