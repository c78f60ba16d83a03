package realclients

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
)

// Expected is, per driver, which steps passed when conformance/CLIENTS.md
// was last regenerated (testdata/expected.json): a step expected to pass
// that fails is a regression; one expected to fail that passes is news
// for the file, not a failure — a client that never worked is a
// documented row, not a red build.
type Expected map[string]map[string]bool

// stepNames are the names Row.Steps gives, in order.
func stepNames() []string {
	var out []string
	for _, s := range (Row{}).Steps() {
		out = append(out, s.Name)
	}
	return out
}

// ReadExpected reads an expectations file and checks that it names only
// drivers and steps there are.
func ReadExpected(path string) (Expected, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the expectations: %w", err)
	}
	var exp Expected
	if err := json.Unmarshal(raw, &exp); err != nil {
		return nil, fmt.Errorf("read the expectations %s: %w", path, err)
	}
	steps := stepNames()
	for driver, m := range exp {
		if Drivers[driver] == nil {
			return nil, fmt.Errorf("%s: no driver %q (%v)", path, driver, Names())
		}
		for step := range m {
			if !slices.Contains(steps, step) {
				return nil, fmt.Errorf("%s: %s: no step %q (%v)", path, driver, step, steps)
			}
		}
	}
	return exp, nil
}

// Compare holds rows to the expectations: regressions are steps expected
// to pass that did not; news are steps that now pass though expected to
// fail, and steps or drivers the file does not mention (update it).
func (exp Expected) Compare(rows []Row) (regressions, news []string) {
	for _, r := range rows {
		m, ok := exp[r.Driver]
		if !ok {
			news = append(news, fmt.Sprintf("%s: not in the expectations; add it", r.Driver))
			continue
		}
		for _, s := range r.Steps() {
			want, ok := m[s.Name]
			switch {
			case !ok:
				news = append(news, fmt.Sprintf("%s %s: no expectation (it %s); add one", r.Driver, s.Name, passWord(s.Passed())))
			case want && !s.Passed():
				regressions = append(regressions, fmt.Sprintf("%s %s (%s): %s, which passed before", r.Driver, r.Version, s.Name, s.Result))
			case !want && s.Passed():
				news = append(news, fmt.Sprintf("%s %s (%s) passes now (%s): set it to true in the expectations", r.Driver, r.Version, s.Name, s.Result))
			}
		}
	}
	sort.Strings(news)
	return regressions, news
}

// ExpectedOf is rows as expectations: what a regenerated CLIENTS.md
// documents.
func ExpectedOf(rows []Row) Expected {
	exp := Expected{}
	for _, r := range rows {
		m := map[string]bool{}
		for _, s := range r.Steps() {
			m[s.Name] = s.Passed()
		}
		exp[r.Driver] = m
	}
	return exp
}

func passWord(ok bool) string {
	if ok {
		return "passes"
	}
	return "fails"
}
