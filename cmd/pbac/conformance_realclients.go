package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/conformance/realclients"
)

// harnessClients are the clients --client names that run in the recording
// harness (the rest are real CLIs, conformance/realclients).
var harnessClients = []string{"go-sdk", "ts-sdk", "mcp-remote"}

// clientSpecsByName are the harness's clients named by --client.
func clientSpecsByName(cmd *cobra.Command, names []string) ([]clientSpec, func(), error) {
	var specs []clientSpec
	cleanup := func() {}
	for _, n := range names {
		switch n {
		case "go-sdk":
			bin, c, err := buildGoSDKClient(cmd.Context())
			if err != nil {
				return nil, cleanup, err
			}
			cleanup = c
			specs = append(specs, goSDKClient(bin))
		case "ts-sdk", "mcp-remote":
			dir, ok := nodeClientsDir()
			if !ok {
				return nil, cleanup, errors.New("conformance/clients/node_modules not found: run npm ci there")
			}
			specs = append(specs, nodeClients(dir)[slices.Index(harnessClients, n)-1])
		}
	}
	return specs, cleanup, nil
}

// runRealClients drives the real CLIs named (realclients.Drivers)
// through a `pbac up` of this binary and prints their table.
func runRealClients(cmd *cobra.Command, f conformanceClientFlags) error {
	dir, ok := realClientsDir()
	if !ok {
		return errors.New("conformance/realclients/node_modules not found from the working directory up: run npm ci in conformance/realclients of the pbac repository")
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary to run pbac up: %w", err)
	}
	var log io.Writer
	if f.verbose {
		log = cmd.ErrOrStderr()
	}
	rows, err := realclients.Run(cmd.Context(), realclients.Config{Dir: dir, Binary: bin, Clients: f.clients, Timeout: f.timeout, Log: log})
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f.jsonOut {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		fmt.Fprint(out, realclients.Markdown(rows))
	}
	for _, r := range rows {
		if len(r.Failed()) > 0 {
			return exitError{code: 1}
		}
	}
	return nil
}

// splitClients checks --client's names: all real CLIs or all harness
// clients.
func splitClients(names []string) (real bool, err error) {
	var r, h []string
	for _, n := range names {
		switch {
		case realclients.Drivers[n] != nil:
			r = append(r, n)
		case slices.Contains(harnessClients, n):
			h = append(h, n)
		default:
			return false, fmt.Errorf("unknown client %q (%s)", n, strings.Join(append(realclients.Names(), harnessClients...), ", "))
		}
	}
	if len(r) > 0 && len(h) > 0 {
		return false, fmt.Errorf("run the real CLIs (%s) and the harness's clients (%s) in separate commands", strings.Join(r, ", "), strings.Join(h, ", "))
	}
	return len(r) > 0, nil
}

// realClientsDir finds conformance/realclients with its node_modules
// installed, from the working directory up.
func realClientsDir() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		c := filepath.Join(dir, "conformance", "realclients")
		if realclients.Installed(c) == nil {
			return c, true
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", false
		}
		dir = up
	}
}
