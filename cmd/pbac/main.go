// Command pbac is PBAC Gateway: one binary for the gateway, its
// authorization server, the policy tooling and the benchmarks.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pbac-gateway/pbac/internal/sysmon"
)

func main() {
	// First: pbac up and asrv may run themselves again with Go's monitor
	// thread set to back off (PBAC_GO_SYSMON), before anything is read,
	// started or handled, signals included.
	root := newRootCommand()
	if err := goMonitor(root, os.Args, os.Environ(), sysmon.Reexec, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pbac:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			os.Exit(exit.code)
		}
		fmt.Fprintln(os.Stderr, "pbac:", err)
		os.Exit(1)
	}
}

// exitError ends the command with a specific status after it has reported
// its outcome itself (a failing test run, say).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }
