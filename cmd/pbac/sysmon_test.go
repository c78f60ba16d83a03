package main

import (
	"errors"
	"slices"
	"testing"

	"github.com/pbac-gateway/pbac/internal/sysmon"
)

// TestGoMonitor: pbac up and pbac asrv run themselves again with GODEBUG's
// schedtrace added unless told not to; when that fails they run on with
// the runtime's default and say why.
func TestGoMonitor(t *testing.T) {
	if !sysmon.Supported {
		t.Skip("runs itself again on Linux only")
	}
	failed := errors.New("exec: permission denied")
	for _, tc := range []struct {
		name     string
		want     sysmon.Mode
		environ  []string
		execErr  error
		mode     sysmon.Mode
		ran      []string // the environment it ran itself with; nil: not run
		reexecOK bool
	}{
		{name: "backoff", want: sysmon.Backoff, environ: []string{"HOME=/h"}, mode: sysmon.Backoff,
			ran: []string{"HOME=/h", "GODEBUG=schedtrace=2147483647"}, reexecOK: true},
		{name: "run again already", want: sysmon.Backoff, environ: []string{"GODEBUG=schedtrace=2147483647"}, mode: sysmon.Backoff, reexecOK: true},
		{name: "the runtime's default", want: sysmon.Default, environ: []string{"HOME=/h"}, mode: sysmon.Default, reexecOK: true},
		{name: "exec refused", want: sysmon.Backoff, environ: []string{"HOME=/h"}, execErr: failed, mode: sysmon.Default,
			ran: []string{"HOME=/h", "GODEBUG=schedtrace=2147483647"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ran []string
			mode, err := goMonitor(tc.want, tc.environ, func(env []string) error { ran = env; return tc.execErr })
			if mode != tc.mode || (err == nil) != tc.reexecOK || !slices.Equal(ran, tc.ran) {
				t.Fatalf("mode %q, err %v, ran with %q; want %q, error %v, %q", mode, err, ran, tc.mode, !tc.reexecOK, tc.ran)
			}
			if err != nil && !errors.Is(err, failed) {
				t.Errorf("err %v does not wrap the exec's", err)
			}
		})
	}
}
