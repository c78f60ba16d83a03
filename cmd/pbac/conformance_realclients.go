package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
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

// driveRealClients drives the real CLIs named (realclients.Drivers)
// through a `pbac up` of this binary.
func driveRealClients(cmd *cobra.Command, f conformanceClientFlags, names []string) ([]realclients.Row, error) {
	dir, ok := realClientsDir()
	if !ok {
		return nil, errors.New("conformance/realclients/node_modules not found from the working directory up: run npm ci in conformance/realclients of the pbac repository")
	}
	bin, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this binary to run pbac up: %w", err)
	}
	var log io.Writer
	if f.verbose {
		log = cmd.ErrOrStderr()
	}
	return realclients.Run(cmd.Context(), realclients.Config{Dir: dir, Binary: bin, Clients: names, Timeout: f.timeout, Log: log})
}

// printRealClients prints the real CLIs' table (or JSON); exit status 1
// when a core step failed.
func printRealClients(out io.Writer, f conformanceClientFlags, rows []realclients.Row) error {
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

// updateExpected writes what rows passed into conformance/realclients/
// testdata/expected.json (TestRealClients fails on a regression against
// it), replacing the entries of the drivers run and keeping the others.
func updateExpected(rows []realclients.Row) error {
	dir, ok := realClientsDir()
	if !ok {
		return errors.New("conformance/realclients not found from the working directory up")
	}
	path := filepath.Join(dir, "testdata", "expected.json")
	exp, err := realclients.ReadExpected(path)
	if errors.Is(err, os.ErrNotExist) {
		exp, err = realclients.Expected{}, nil
	}
	if err != nil {
		return err
	}
	maps.Copy(exp, realclients.ExpectedOf(rows))
	raw, err := json.MarshalIndent(exp, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write the expectations: %w", err)
	}
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the expectations: %w", err)
	}
	return nil
}

// allClients is --client's name for every client: the harness's and the
// real CLIs.
const allClients = "all"

// splitClients sorts --client's names into real CLIs and harness clients;
// "all" is every one of both.
func splitClients(names []string) (real, harness []string, err error) {
	for _, n := range names {
		switch {
		case n == allClients:
			real, harness = realclients.Names(), slices.Clone(harnessClients)
			return real, harness, nil
		case realclients.Drivers[n] != nil:
			real = append(real, n)
		case slices.Contains(harnessClients, n):
			harness = append(harness, n)
		default:
			return nil, nil, fmt.Errorf("unknown client %q (%s, or %s)", n, strings.Join(append(realclients.Names(), harnessClients...), ", "), allClients)
		}
	}
	return real, harness, nil
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
