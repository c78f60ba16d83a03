package rego

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult is the outcome of one Rego unit test.
type TestResult struct {
	Package string // e.g. "data.pbac_test"
	Name    string // e.g. "test_ci_agent_cannot_write_slack"
	File    string
	Row     int
	Pass    bool
	Skip    bool
	Error   string // evaluation error, if any
	Output  string // print() output
}

// Test runs the *_test.rego unit tests of fsys (together with its policy
// modules and data.json) with OPA's tester, writes a human report to w (nil
// for none) and returns the number of passed and failed tests. Tests that
// error count as failed. err is non-nil only when the tests could not run
// (parse or compile errors, as SourceErrors).
func Test(ctx context.Context, fsys fs.FS, w io.Writer, verbose bool) (passed, failed int, err error) {
	results, err := RunTests(ctx, fsys)
	if err != nil {
		return 0, 0, err
	}
	if w == nil {
		w = io.Discard
	}
	for _, r := range results {
		switch {
		case r.Skip:
			if verbose {
				fmt.Fprintf(w, "SKIP %s.%s\n", r.Package, r.Name)
			}
			continue
		case r.Pass:
			passed++
			if verbose {
				fmt.Fprintf(w, "PASS %s.%s\n", r.Package, r.Name)
			}
		default:
			failed++
			fmt.Fprintf(w, "FAIL %s.%s (%s:%d)\n", r.Package, r.Name, r.File, r.Row)
			if r.Error != "" {
				fmt.Fprintf(w, "     error: %s\n", r.Error)
			}
		}
		if r.Output != "" && (verbose || !r.Pass) {
			for _, line := range strings.Split(strings.TrimRight(r.Output, "\n"), "\n") {
				fmt.Fprintf(w, "     | %s\n", line)
			}
		}
	}
	fmt.Fprintf(w, "rego unit tests: %d passing, %d failing\n", passed, failed)
	return passed, failed, nil
}

// testTimeout bounds one Rego test.
const testTimeout = 2 * time.Minute

// RunTests runs the *_test.rego unit tests of fsys and returns one result
// per test, sorted by package and name.
func RunTests(ctx context.Context, fsys fs.FS) ([]TestResult, error) {
	src, err := loadSources(fsys, true)
	if err != nil {
		return nil, err
	}
	mods := make(map[string]*ast.Module, len(src.modules)+len(src.tests))
	maps.Copy(mods, src.modules)
	maps.Copy(mods, src.tests)

	store := inmem.NewFromObject(src.data)
	runner := tester.NewRunner().
		// OPA's default of 5 s per test is a speed bound the heavier tests
		// (every bypass spelling, the fast path against the full rules)
		// miss under the race detector on two busy cores; the bound is
		// there to stop a test that never ends, not to time the policy
		// (benchmarks do that).
		SetTimeout(testTimeout).
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(store).
		CapturePrintOutput(true).
		SetModules(mods)
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		return nil, asSourceError(err)
	}
	var out []TestResult
	for r := range ch {
		tr := TestResult{
			Package: r.Package,
			Name:    r.Name,
			Pass:    r.Pass(),
			Skip:    r.Skip,
			Output:  string(r.Output),
		}
		if r.Location != nil {
			tr.File, tr.Row = r.Location.File, r.Location.Row
		}
		if r.Error != nil {
			tr.Pass = false
			tr.Error = r.Error.Error()
		}
		out = append(out, tr)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Package != out[j].Package {
			return out[i].Package < out[j].Package
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
