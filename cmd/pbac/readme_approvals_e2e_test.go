package main

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestREADMEAskAPersonFirst runs the README's "Ask a person first" as
// written — its two shell blocks, verbatim but for the data dir and the
// two addresses — against the real `pbac up` demo, and checks that what it
// prints is what the README's comments say it prints: the deploy held with
// the approval page, alice refused, bob's approval granted, the retry
// deploying once and refused the second time, and the approval's story in
// the audit trail.
func TestREADMEAskAPersonFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is needed: %v", tool, err)
		}
	}
	blocks := readmeBlocks(t, "## Ask a person first")
	if len(blocks) != 2 {
		t.Fatalf("the section has %d shell blocks, want 2", len(blocks))
	}
	data := filepath.Join(t.TempDir(), "data")
	_, gw, adm := startUpArgs(t, nil, "--data-dir", data)
	addrs := strings.NewReplacer("~/.local/share/pbac", data, "http://127.0.0.1:8080", gw, "http://127.0.0.1:8081", adm)
	script := addrs.Replace("set -e -o pipefail\n" + blocks[0] + blocks[1])
	// The audit index is written a moment after each request: before the
	// README's audit query, the test (not the README) waits until the
	// approval's seven records are indexed, at most 5 s.
	const query = `curl -s -H "Authorization: Bearer $(cat $D/admin-token)" "$ADMIN/admin/audit?approval_id=$ID"`
	if !strings.Contains(script, query) {
		t.Fatalf("the README's audit query is not %s", query)
	}
	script = strings.Replace(script, query, `for i in $(seq 50); do [ "$(`+query+` | jq '.records | length')" -ge 7 ] && break; sleep 0.1; done
`+query, 1)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	sh := exec.CommandContext(ctx, "bash", "-c", script)
	var out bytes.Buffer
	sh.Stdout, sh.Stderr = &out, &out
	if err := sh.Run(); err != nil {
		t.Fatalf("the README's commands failed: %v\n%s", err, out.String())
	}
	got := out.Bytes()
	t.Logf("the README's commands printed:\n%s", got)
	// Every "# …" comment line of the blocks is a line the commands print,
	// with "…" for what differs from run to run.
	var want []string
	for _, b := range blocks {
		sc := bufio.NewScanner(strings.NewReader(b))
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "# "); ok {
				want = append(want, addrs.Replace(line))
			}
		}
	}
	printed := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(printed) != len(want) {
		t.Fatalf("the commands printed %d lines, the README shows %d:\n%s", len(printed), len(want), got)
	}
	for i, w := range want {
		pattern := "^" + strings.ReplaceAll(regexp.QuoteMeta(strings.Join(strings.Fields(w), " ")), "…", ".*") + "$"
		if !regexp.MustCompile(pattern).MatchString(strings.Join(strings.Fields(printed[i]), " ")) {
			t.Errorf("line %d printed %q, the README shows %q", i+1, printed[i], w)
		}
	}
}
