package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/conformance/official"
)

// findOfficialSuite finds the official suite `--suite` runs: under dir, or
// else in the conformance/ directory found from the working directory up.
func findOfficialSuite(dir string) (*official.Suite, error) {
	if dir == "" {
		var ok bool
		if dir, ok = conformanceDir(); !ok {
			return nil, errors.New("--suite needs the official MCP conformance suite (@modelcontextprotocol/conformance) and Node 22: " +
				"run `cd conformance && npm ci` in the pbac repository and run pbac from there, or pass --suite-dir")
		}
	}
	s, err := official.Find(dir)
	if err != nil {
		return nil, fmt.Errorf("--suite: %w", err)
	}
	return s, nil
}

// conformanceDir finds the repository's conformance/ directory (where
// package.json pins the suite), from the working directory up.
func conformanceDir() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		c := filepath.Join(dir, "conformance")
		if _, err := os.Stat(filepath.Join(c, "package.json")); err == nil {
			return c, true
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", false
		}
		dir = up
	}
}

// runOfficialClientSuite runs the official suite's client scenarios of
// suite against the client and merges their checks into rep (INFO checks,
// the suite's request log, left out).
func runOfficialClientSuite(ctx context.Context, s *official.Suite, suite string, spec clientSpec, timeout time.Duration, rep *ClientReport) error {
	dir, err := os.MkdirTemp("", "pbac-official-client-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	helper, err := browserHelper()
	if err != nil {
		return err
	}
	defer os.Remove(helper)
	// The scenarios run in parallel, each within timeout; the suite itself
	// gets some more to start and to stop its servers.
	sctx, cancel := context.WithTimeout(ctx, timeout+time.Minute)
	defer cancel()
	env := append([]string{"BROWSER=" + helper}, spec.env...)
	res, err := s.RunClient(sctx, spec.command, suite, env, timeout, dir)
	if err != nil {
		return fmt.Errorf("the official %s suite with %s: %w", suite, spec.name, err)
	}
	rep.OfficialSuite = suite
	rep.Official = []OfficialResult{}
	for _, c := range res {
		if c.Status == "INFO" {
			continue
		}
		msg := c.Description
		if c.ErrorMessage != "" {
			msg = c.ErrorMessage
		}
		rep.Official = append(rep.Official, OfficialResult{Scenario: c.Scenario, ID: c.ID, Name: c.Name, Status: c.Status, Message: msg})
		switch {
		case c.Passed():
			rep.Passed++
		case c.Failed():
			rep.Failed++
		default:
			rep.Warnings++
		}
	}
	return nil
}

// writeOfficialMarkdown adds one row per official scenario to the client ×
// check table: how many of its checks each client passed.
func writeOfficialMarkdown(out io.Writer, reps []ClientReport) {
	var scenarios []string
	seen := map[string]bool{}
	for _, r := range reps {
		for _, c := range r.Official {
			if !seen[c.Scenario] {
				seen[c.Scenario] = true
				scenarios = append(scenarios, c.Scenario)
			}
		}
	}
	for _, sc := range scenarios {
		fmt.Fprintf(out, "| official:%s | MCP conformance suite |", sc)
		for _, r := range reps {
			var pass, total int
			var bad []string
			for _, c := range r.Official {
				if c.Scenario != sc {
					continue
				}
				total++
				if c.Status == "SUCCESS" {
					pass++
				} else {
					bad = append(bad, strings.ToLower(c.Result())+" "+c.Name)
				}
			}
			cell := "—"
			switch {
			case total > 0 && len(bad) == 0:
				cell = fmt.Sprintf("✅ %d/%d", pass, total)
			case total > 0:
				cell = fmt.Sprintf("❌ %d/%d: %s", pass, total, strings.ReplaceAll(strings.Join(bad, "; "), "|", "\\|"))
			}
			fmt.Fprintf(out, " %s |", cell)
		}
		fmt.Fprintln(out)
	}
}

// oneLine keeps a message on one table row.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
