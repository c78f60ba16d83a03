package plugins

import (
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/pbac-gateway/pbac/contract"
)

// Memo bounds: a version remembers at most memoEntries decisions of
// memoBytes of input and result together, none of an input over
// memoInputMax; when full it forgets them all. Every call of a token asks
// pbac/introspect the same question until the second (input.now) turns, so
// a handful of entries per active token serve nearly every call.
const (
	memoEntries  = 4096
	memoBytes    = 8 << 20
	memoInputMax = 16 << 10
)

// memoized reports whether decisions of ep are remembered: pbac/introspect,
// which every call of a token asks with the same input within a second. A
// tools/call decision, whose input is the call's arguments, is made every
// time.
func memoized(ep contract.Entrypoint) bool { return ep == contract.Introspect }

// deterministic reports whether a module calling these host builtins
// decides the same way every time on the same input and data: none of them
// is one OPA marks nondeterministic (time.now_ns, rand.intn, uuid.rfc4122,
// the JWT verifiers that read the clock, ...) or one that reads the clock
// unmarked (clockReaders), and none is unknown. The builtins the module
// runs itself compute on their arguments alone.
func deterministic(builtins []string) bool {
	for _, name := range builtins {
		b, ok := ast.BuiltinMap[name]
		if !ok || b.Nondeterministic || clockReaders(name) {
			return false
		}
	}
	return true
}

// clockReaders are builtins that read the clock although OPA does not mark
// them nondeterministic: the certificate verifiers check validity against
// the time now.
func clockReaders(name string) bool {
	switch name {
	case "crypto.x509.parse_and_verify_certificates",
		"crypto.x509.parse_and_verify_certificates_with_options":
		return true
	}
	return false
}

// memo remembers one version's decisions of one entrypoint by their exact
// input. It is sound because the version is fixed (module and data; any
// change makes a new version with an empty memo), the module is
// deterministic, and the input holds everything else the decision reads,
// the time included: the same bytes get the same decision. Only decisions
// are remembered, never an error.
type memo struct {
	mu      sync.Mutex
	entries map[string]Decision
	bytes   int
}

func newMemo() *memo { return &memo{entries: make(map[string]Decision)} }

// get returns the decision made on input, if remembered: a copy, so the
// caller may keep or change it.
func (m *memo) get(input []byte) (Decision, bool) {
	m.mu.Lock()
	d, ok := m.entries[string(input)]
	m.mu.Unlock()
	if !ok {
		return Decision{}, false
	}
	d.Reasons = slices.Clone(d.Reasons)
	d.Result = slices.Clone(d.Result)
	return d, true
}

// put remembers d, made on input; the memo keeps copies of both.
func (m *memo) put(input []byte, d Decision) {
	if len(input) > memoInputMax {
		return
	}
	size := len(input) + len(d.Result)
	for _, r := range d.Reasons {
		size += len(r)
	}
	d.Reasons = slices.Clone(d.Reasons)
	d.Result = slices.Clone(d.Result)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[string(input)]; ok {
		return
	}
	if len(m.entries) >= memoEntries || m.bytes+size > memoBytes {
		clear(m.entries)
		m.bytes = 0
	}
	m.entries[string(input)] = d
	m.bytes += size
}

// len is how many decisions are remembered.
func (m *memo) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}
