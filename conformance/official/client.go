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
	"time"
)

// ClientSuites are the client suites `conformance client --suite` knows
// (0.1.16): "auth" is the 14 authorization scenarios of the current spec
// (2025-11-25 and 2025-06-18), "all" adds the core, back-compat, draft and
// extension scenarios.
var ClientSuites = []string{"all", "core", "extensions", "backcompat", "auth", "metadata", "draft", "sep-835"}

// clientWrapper is the command the suite is given. The suite runs
// `sh -c "<command> <url>"` with MCP_CONFORMANCE_SCENARIO (and, for some
// scenarios, MCP_CONFORMANCE_CONTEXT) set; the wrapper turns that into the
// convention `pbac conformance client` uses: $MCP_SERVER_URL is set and
// {url} in the command (in $PBAC_CLIENT_COMMAND) is replaced by the URL.
const clientWrapper = `#!/bin/sh
# pbac conformance client --suite: the official suite appends the scenario's
# MCP URL; run the client command with {url} replaced by it.
for MCP_SERVER_URL; do :; done
export MCP_SERVER_URL
cmd=$(printf '%s\n' "$PBAC_CLIENT_COMMAND" | sed "s|{url}|$MCP_SERVER_URL|g")
exec sh -c "$cmd"
`

// RunClient runs the suite's client scenarios of suite (one of
// ClientSuites) against a client: command is run with sh -c once per
// scenario (the suite runs them in parallel), with {url} replaced by the
// scenario's MCP URL, which is also in $MCP_SERVER_URL, and env added to
// its environment (the suite sets MCP_CONFORMANCE_SCENARIO itself). timeout
// limits one run of the client. The suite's files go under outDir. A run
// in which checks fail is not an error; a run that produced no result is,
// with the suite's output.
func (s *Suite) RunClient(ctx context.Context, command, suite string, env []string, timeout time.Duration, outDir string) (Results, error) {
	known := false
	for _, k := range ClientSuites {
		known = known || k == suite
	}
	if !known {
		return nil, fmt.Errorf("official: unknown client suite %q (%s)", suite, strings.Join(ClientSuites, ", "))
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("official: %w", err)
	}
	wrapper := filepath.Join(outDir, "client.sh")
	if err := os.WriteFile(wrapper, []byte(clientWrapper), 0o700); err != nil {
		return nil, fmt.Errorf("official: %w", err)
	}
	results := filepath.Join(outDir, "results")
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	cmd := exec.CommandContext(ctx, s.Node, s.CLI, "client", "--suite", suite,
		"--command", shellQuote(wrapper), "--timeout", strconv.FormatInt(timeout.Milliseconds(), 10), "-o", results)
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "PBAC_CLIENT_COMMAND="+command,
		"PATH="+filepath.Dir(s.Node)+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("official: the %s client suite: %w", suite, ctx.Err())
	}
	res, err := ReadClientResults(results)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("official: the %s client suite produced no result (%v):\n%s", suite, runErr, tail(out.String(), 4000))
	}
	return res, nil
}

// clientResultDir is the suite's folder for one client scenario, relative
// to the output dir: <scenario>-<ISO time with dashes>, the scenario
// possibly with a slash (auth/metadata-default).
var clientResultDir = regexp.MustCompile(`^(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)

// ReadClientResults reads every client scenario's checks.json under dir,
// sorted by scenario, each scenario's checks in the suite's order.
func ReadClientResults(dir string) (Results, error) {
	var out Results
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() != "checks.json" {
			return nil
		}
		rel, err := filepath.Rel(dir, filepath.Dir(p))
		if err != nil {
			return err
		}
		m := clientResultDir.FindStringSubmatch(filepath.ToSlash(rel))
		if m == nil {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var checks []Check
		if err := json.Unmarshal(raw, &checks); err != nil {
			return fmt.Errorf("official: results of %s: %w", m[1], err)
		}
		for _, c := range checks {
			c.Scenario = m[1]
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("official: results: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Scenario < out[j].Scenario })
	return out, nil
}

// shellQuote quotes s for sh. The suite splits its --command on spaces
// and joins the parts again for the shell, so quotes survive.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
