package realclients

import (
	"slices"
	"strings"
	"testing"
)

// TestExpectedFile: the committed expectations name only drivers and
// steps there are, and every driver.
func TestExpectedFile(t *testing.T) {
	exp, err := ReadExpected("testdata/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range Names() {
		if _, ok := exp[n]; !ok {
			t.Logf("testdata/expected.json has no %s: its regressions go unnoticed until it is added", n)
		}
	}
}

// TestCompare: only a step that passed before and fails now is a
// regression; a step that passes now though it failed before, and a
// step or driver the file does not know, are news.
func TestCompare(t *testing.T) {
	pass := "pass (x)"
	row := Row{Driver: "opencode", Version: "1", Discovery: pass, Registration: pass, SignIn: pass, Token: pass, ToolsList: pass,
		Allowed: pass, Denied: pass, Refresh: "no refresh: the expired token was refused", StepUp: pass, NewSession: pass}
	all := func(v bool) map[string]bool {
		m := map[string]bool{}
		for _, n := range stepNames() {
			m[n] = v
		}
		return m
	}
	with := func(m map[string]bool, step string, v bool) map[string]bool {
		m[step] = v
		return m
	}
	without := func(m map[string]bool, step string) map[string]bool {
		delete(m, step)
		return m
	}
	for _, tc := range []struct {
		name        string
		exp         Expected
		regressions []string // a word of each
		news        []string
		row         func(Row) Row // the row changed; nil: row
	}{
		{name: "as documented", exp: Expected{"opencode": with(all(true), "refresh", false)}},
		{name: "refresh regressed", exp: Expected{"opencode": all(true)}, regressions: []string{"(refresh): no refresh"}},
		{name: "denied now passes", exp: Expected{"opencode": with(with(all(true), "refresh", false), "denied", false)}, news: []string{"(denied) passes now"}},
		{name: "a step unknown to the file", exp: Expected{"opencode": without(with(all(true), "refresh", false), "token")}, news: []string{"token: no expectation (it passes)"}},
		{name: "a driver unknown to the file", exp: Expected{}, news: []string{"opencode: not in the expectations"}},
		// The probes' steps are compared like the others: a step-up that
		// passed and fails now is a regression.
		{name: "step-up regressed", exp: Expected{"opencode": with(all(true), "refresh", false)}, regressions: []string{"(step-up): no new authorization"},
			row: func(r Row) Row { r.StepUp = "no new authorization after the 403"; return r }},
		{name: "a session step unknown to the file", exp: Expected{"opencode": without(with(all(true), "refresh", false), "session")}, news: []string{"session: no expectation (it passes)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := row
			if tc.row != nil {
				r = tc.row(r)
			}
			reg, news := tc.exp.Compare([]Row{r})
			check := func(what string, got, want []string) {
				if len(got) != len(want) {
					t.Fatalf("%s = %q, want %d", what, got, len(want))
				}
				for i := range want {
					if !strings.Contains(got[i], want[i]) {
						t.Errorf("%s[%d] = %q, want it to say %q", what, i, got[i], want[i])
					}
				}
			}
			check("regressions", reg, tc.regressions)
			check("news", news, tc.news)
		})
	}
	if got := ExpectedOf([]Row{row})["opencode"]; !got["denied"] || got["refresh"] || len(got) != len(stepNames()) {
		t.Errorf("ExpectedOf = %v", got)
	}
	if !slices.Equal(stepNames(), []string{"discovery", "registration", "sign-in", "token", "tools/list", "allowed", "denied", "refresh", "step-up", "session"}) {
		t.Errorf("steps %v", stepNames())
	}
}
