package main

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/internal/sysmon"
)

// TestGoMonitor: pbac up and pbac asrv run themselves again with GODEBUG's
// schedtrace added when PBAC_GO_SYSMON=backoff asks for it, and no other
// command does; a failed exec is said and the process runs on; a value it
// does not know stops it.
func TestGoMonitor(t *testing.T) {
	if !sysmon.Supported {
		t.Skip("runs itself again on Linux only")
	}
	backoff := []string{"HOME=/h", "PBAC_GO_SYSMON=backoff"}
	ranWith := []string{"HOME=/h", "PBAC_GO_SYSMON=backoff", "GODEBUG=schedtrace=2147483647"}
	failed := errors.New("exec: permission denied")
	for _, tc := range []struct {
		name    string
		args    []string
		environ []string
		execErr error
		ran     []string // the environment it ran itself with; nil: not run
		said    string   // on stderr
		err     string
	}{
		{name: "up, backoff", args: []string{"pbac", "up"}, environ: backoff, ran: ranWith},
		{name: "asrv, backoff", args: []string{"pbac", "asrv", "--config", "x"}, environ: backoff, ran: ranWith},
		{name: "up, the runtime's default", args: []string{"pbac", "up"}, environ: []string{"HOME=/h"}},
		{name: "up, default asked", args: []string{"pbac", "up"}, environ: []string{"PBAC_GO_SYSMON=default"}},
		{name: "run again already", args: []string{"pbac", "up"}, environ: []string{"PBAC_GO_SYSMON=backoff", "GODEBUG=schedtrace=2147483647"}},
		{name: "flags before the command", args: []string{"pbac", "--config", "/etc/pbac/pbac.yaml", "up"}, environ: backoff, ran: ranWith},
		{name: "another command", args: []string{"pbac", "bench", "external"}, environ: backoff},
		{name: "a command of the same name below another", args: []string{"pbac", "conformance", "up"}, environ: backoff},
		{name: "help", args: []string{"pbac", "help", "up"}, environ: backoff},
		{name: "no command", args: []string{"pbac"}, environ: backoff},
		{name: "exec refused", args: []string{"pbac", "up"}, environ: backoff, execErr: failed, ran: ranWith,
			said: "pbac: PBAC_GO_SYSMON=backoff not in effect: exec: permission denied"},
		{name: "a value it does not know", args: []string{"pbac", "up"}, environ: []string{"PBAC_GO_SYSMON=on"},
			err: `PBAC_GO_SYSMON="on": want "backoff" or "default"`},
		{name: "not its business elsewhere", args: []string{"pbac", "policy", "build"}, environ: []string{"PBAC_GO_SYSMON=on"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ran []string
			var stderr bytes.Buffer
			err := goMonitor(newRootCommand(), tc.args, tc.environ, func(env []string) error { ran = env; return tc.execErr }, &stderr)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || ran != nil {
					t.Fatalf("err %v, ran with %q; want %q and no exec", err, ran, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(ran, tc.ran) || strings.TrimSpace(stderr.String()) != tc.said {
				t.Fatalf("err %v, ran with %q, said %q; want ran with %q, said %q", err, ran, stderr.String(), tc.ran, tc.said)
			}
		})
	}
}
