package rego

import (
	"errors"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// SourceError is a problem in a policy source file, located by row and
// column (both 1-based; 0 when unknown).
type SourceError struct {
	File    string
	Row     int
	Col     int
	Message string
}

// Error renders the error as "file:row:col: message".
func (e *SourceError) Error() string {
	switch {
	case e.File == "" && e.Row == 0:
		return e.Message
	case e.File == "":
		return fmt.Sprintf("%d:%d: %s", e.Row, e.Col, e.Message)
	default:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Row, e.Col, e.Message)
	}
}

// SourceErrors is a list of SourceError, as returned by Build for parse and
// compile errors. Use errors.As to get at it.
type SourceErrors []*SourceError

// Error renders one error per line.
func (es SourceErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual errors to errors.Is/As.
func (es SourceErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sourceErrors converts OPA AST errors found anywhere in err's chain into
// SourceErrors. It returns nil when err carries none.
func sourceErrors(err error) SourceErrors {
	var out SourceErrors
	add := func(e *ast.Error) {
		se := &SourceError{Message: e.Message}
		if e.Location != nil {
			se.File = e.Location.File
			se.Row = e.Location.Row
			se.Col = e.Location.Col
		}
		if se.Message == "" {
			se.Message = e.Code
		} else if e.Code != "" && !strings.HasPrefix(se.Message, e.Code) {
			se.Message = e.Code + ": " + se.Message
		}
		out = append(out, se)
	}
	var many ast.Errors
	var one *ast.Error
	switch {
	case errors.As(err, &many):
		for _, e := range many {
			add(e)
		}
	case errors.As(err, &one):
		add(one)
	}
	return out
}

// asSourceError returns err as SourceErrors when it carries locations,
// otherwise err unchanged.
func asSourceError(err error) error {
	if err == nil {
		return nil
	}
	if se := sourceErrors(err); len(se) > 0 {
		return se
	}
	return err
}
