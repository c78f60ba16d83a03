package sysmon

import (
	"slices"
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	const ours = "schedtrace=2147483647"
	for _, tc := range []struct {
		name    string
		want    Mode
		environ []string
		mode    Mode
		reexec  bool
		godebug string // GODEBUG in the environment to run again with
	}{
		{name: "nothing set", environ: []string{"HOME=/h"}, mode: Backoff, reexec: true, godebug: ours},
		{name: "other GODEBUG settings kept", environ: []string{"GODEBUG=http2client=0,madvdontneed=1"}, mode: Backoff, reexec: true,
			godebug: "http2client=0,madvdontneed=1," + ours},
		{name: "empty GODEBUG", environ: []string{"GODEBUG="}, mode: Backoff, reexec: true, godebug: ours},
		{name: "run again already", environ: []string{"GODEBUG=" + ours}, mode: Backoff},
		{name: "run again, other settings", environ: []string{"GODEBUG=madvdontneed=1," + ours}, mode: Backoff},
		{name: "the runtime's default", want: Default, environ: []string{"HOME=/h"}, mode: Default},
		{name: "the operator's schedtrace", environ: []string{"GODEBUG=schedtrace=1000"}, mode: Operator},
		{name: "the operator's, last wins", environ: []string{"GODEBUG=" + ours + ",schedtrace=0"}, mode: Operator},
		{name: "ours, but default asked", want: Default, environ: []string{"GODEBUG=" + ours}, mode: Operator},
		{name: "two GODEBUGs, the first read", environ: []string{"GODEBUG=madvdontneed=1", "GODEBUG=schedtrace=5"}, mode: Backoff, reexec: true,
			godebug: "madvdontneed=1," + ours},
		{name: "a key that only starts the same", environ: []string{"GODEBUG=schedtracex=1"}, mode: Backoff, reexec: true,
			godebug: "schedtracex=1," + ours},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == "" {
				tc.want = Backoff
			}
			mode, reexec, env := Plan(tc.want, tc.environ)
			if mode != tc.mode || reexec != tc.reexec {
				t.Fatalf("mode %q, run again %v; want %q, %v", mode, reexec, tc.mode, tc.reexec)
			}
			if !reexec {
				if env != nil {
					t.Errorf("an environment %q without running again", env)
				}
				return
			}
			var godebugs []string
			for _, kv := range env {
				if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
					godebugs = append(godebugs, v)
				} else if !slices.Contains(tc.environ, kv) {
					t.Errorf("%q is not in the environment given", kv)
				}
			}
			if len(godebugs) != 1 || godebugs[0] != tc.godebug {
				t.Errorf("GODEBUG %q, want one, %q", godebugs, tc.godebug)
			}
			if len(env) != len(tc.environ)+1-countGodebug(tc.environ) {
				t.Errorf("environment %q from %q: something lost or added", env, tc.environ)
			}
			// What it runs again with, it runs as it is.
			if m, again, _ := Plan(tc.want, env); again || m != Backoff {
				t.Errorf("the new environment plans %q, again %v; want backoff, not again", m, again)
			}
		})
	}
}

func countGodebug(environ []string) int {
	n := 0
	for _, kv := range environ {
		if strings.HasPrefix(kv, "GODEBUG=") {
			n++
		}
	}
	return n
}

func TestInEffect(t *testing.T) {
	for _, tc := range []struct {
		environ []string
		want    Mode
	}{
		{[]string{"HOME=/h"}, Default},
		{[]string{"GODEBUG=madvdontneed=1"}, Default},
		{[]string{"GODEBUG=schedtrace=2147483647"}, Backoff},
		{[]string{"GODEBUG=schedtrace=1000"}, Operator},
	} {
		if got := InEffect(tc.environ); got != tc.want {
			t.Errorf("InEffect(%q) = %q, want %q", tc.environ, got, tc.want)
		}
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Default, "backoff": Backoff, "default": Default} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"operator", "Backoff", "on", " default"} {
		if got, err := ParseMode(in); err == nil || !strings.Contains(err.Error(), `PBAC_GO_SYSMON="`+in+`": want "backoff" or "default"`) {
			t.Errorf("ParseMode(%q) = %q, %v; want an error", in, got, err)
		}
	}
}

func TestWanted(t *testing.T) {
	for _, tc := range []struct {
		environ []string
		want    Mode
		err     bool
	}{
		{nil, Default, false},
		{[]string{"HOME=/h"}, Default, false},
		{[]string{Env + "=backoff"}, Backoff, false},
		{[]string{Env + "=default"}, Default, false},
		{[]string{Env + "=backoff", Env + "=default"}, Backoff, false}, // the first, as os.Getenv reads it
		{[]string{Env + "X=backoff"}, Default, false},
		{[]string{Env + "=on"}, "", true},
	} {
		got, err := Wanted(tc.environ)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("Wanted(%q) = %q, %v; want %q, error %v", tc.environ, got, err, tc.want, tc.err)
		}
	}
}
