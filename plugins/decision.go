package plugins

import (
	"errors"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/pbac-gateway/pbac/contract"
)

// Decision is the outcome of one policy entrypoint (contract.Decision).
type Decision = contract.Decision

// parseDecision reads a result object. A result that is not an object with a
// boolean allow is a policy bug; it is reported as ErrMalformedDecision so the
// caller denies.
//
// It is stricter than encoding/json where a decision needs it: the result
// must be I-JSON (RFC 7493: valid UTF-8, no duplicate name in any object,
// which jsontext checks first), and member names match exactly ("Allow" is
// not allow; encoding/json would let an "ALLOW": true after "allow": false
// decide). Then it reads the top-level members itself, allow and reasons,
// without reflection: every call's decision is read here, and with the
// CPU's caches cold between calls encoding/json/v2's reflective decoder
// took about 8 µs of it, the check and this scan about 3
// (BenchmarkParseDecision); it reads what v2 read (FuzzParseDecision).
func parseDecision(version string, raw []byte) (Decision, error) {
	if !jsontext.Value(raw).IsValid() {
		return Decision{}, fmt.Errorf("%w: not one I-JSON value: %.200s", ErrMalformedDecision, raw)
	}
	allow, reasons, err := scanDecision(raw)
	if err != nil {
		return Decision{}, fmt.Errorf("%w: %w", ErrMalformedDecision, err)
	}
	if allow == nil {
		return Decision{}, fmt.Errorf("%w: no boolean allow in %.200s", ErrMalformedDecision, raw)
	}
	return Decision{Allow: *allow, Reasons: reasons, Version: version, Result: raw}, nil
}

// scanDecision reads allow and reasons from raw, a valid JSON value
// (checked by the caller): it must be an object; allow a boolean or null,
// reasons an array of strings (a null element reads as "", as v2 reads it)
// or null; other members are skipped.
func scanDecision(raw []byte) (allow *bool, reasons []string, err error) {
	s := decisionScanner{b: raw}
	s.space()
	if !s.take('{') {
		return nil, nil, errors.New("the result is not an object")
	}
	for s.space(); !s.take('}'); s.space() {
		s.take(',') // between members; the value is valid JSON
		s.space()
		name, err := s.str()
		if err != nil {
			return nil, nil, err
		}
		s.space()
		s.take(':')
		s.space()
		switch string(name) {
		case "allow":
			switch {
			case s.literal("true"):
				t := true
				allow = &t
			case s.literal("false"):
				f := false
				allow = &f
			case s.literal("null"):
				allow = nil
			default:
				return nil, nil, errors.New("allow is not a boolean")
			}
		case "reasons":
			if s.literal("null") {
				reasons = nil
				break
			}
			if !s.take('[') {
				return nil, nil, errors.New("reasons is not an array")
			}
			reasons = []string{}
			for s.space(); !s.take(']'); s.space() {
				s.take(',')
				s.space()
				if s.literal("null") {
					// encoding/json/v2 leaves a null element its zero value
					reasons = append(reasons, "")
					continue
				}
				if s.peek() != '"' {
					return nil, nil, errors.New("a reason is not a string")
				}
				r, err := s.str()
				if err != nil {
					return nil, nil, err
				}
				reasons = append(reasons, string(r))
			}
		default:
			s.skip()
		}
	}
	return allow, reasons, nil
}

// decisionScanner walks a JSON value that is known to be valid.
type decisionScanner struct {
	b []byte
	i int
}

func (s *decisionScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *decisionScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// take consumes c if it is next.
func (s *decisionScanner) take(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// literal consumes lit (true, false, null) if it is next.
func (s *decisionScanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// str consumes a string and returns its value: the bytes between the
// quotes when it has no escape, else unquoted.
func (s *decisionScanner) str() ([]byte, error) {
	start := s.i
	s.i++ // the opening quote
	escaped := false
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i += 2
			continue
		case '"':
			s.i++
			if !escaped {
				return s.b[start+1 : s.i-1], nil
			}
			return jsontext.AppendUnquote(nil, s.b[start:s.i])
		}
		s.i++
	}
	return nil, errors.New("unterminated string")
}

// skip consumes one value of any kind.
func (s *decisionScanner) skip() {
	depth := 0
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case '"':
			_, _ = s.str()
			if depth == 0 {
				return
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return // the end of the enclosing object: not this value's
			}
			depth--
			if depth == 0 {
				s.i++
				return
			}
		case ',':
			if depth == 0 {
				return
			}
		}
		s.i++
	}
}

// ParseDecision reads an entrypoint's result object as a Decision made by
// version, for deciders outside the registry (an OPA server over HTTP, say).
// A result that is not an object with a boolean allow is an error wrapping
// ErrMalformedDecision; the caller must deny.
func ParseDecision(version string, raw []byte) (Decision, error) {
	return parseDecision(version, raw)
}
