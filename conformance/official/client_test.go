package official

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadClientResults(t *testing.T) {
	dir := t.TempDir()
	writeChecks(t, dir, "auth/metadata-default-2026-11-23T21-55-28-014Z", []Check{
		{ID: "prm", Name: "PRM", Status: "SUCCESS"}, {ID: "req", Name: "Incoming", Status: "INFO"}, {ID: "tok", Name: "Token", Status: "FAILURE", ErrorMessage: "no token"},
	})
	writeChecks(t, dir, "initialize-2026-11-23T21-55-28-014Z", []Check{{ID: "init", Status: "WARNING"}})
	writeChecks(t, dir, "not-a-result", []Check{{ID: "ignored", Status: "SUCCESS"}})
	res, err := ReadClientResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range res {
		keys = append(keys, c.Key())
	}
	if got := strings.Join(keys, " "); got != "auth/metadata-default/prm auth/metadata-default/req auth/metadata-default/tok initialize/init" {
		t.Fatalf("keys: %s", got)
	}
	if p, f := res.Counts(); p != 1 || f != 1 {
		t.Fatalf("counts %d passed, %d failed", p, f)
	}
}

// TestRunClientCommand runs one suite of the official client scenarios
// against a shell "client" that only records what it was given: the
// wrapper must hand it the scenario's URL for {url} and in
// $MCP_SERVER_URL, the scenario and the extra environment.
func TestRunClientCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the official suite")
	}
	s, err := Find("..")
	if err != nil {
		t.Skip(err)
	}
	rec := filepath.Join(t.TempDir(), "rec")
	if err := os.MkdirAll(rec, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := `echo "{url} $MCP_SERVER_URL $EXTRA" > "` + rec + `/$(echo $MCP_CONFORMANCE_SCENARIO | tr / _)"`
	res, err := s.RunClient(ctx, cmd, "metadata", []string{"EXTRA=x"}, 10*time.Second, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The client does nothing, so the scenarios fail, but each reports.
	if _, failed := res.Counts(); failed == 0 {
		t.Errorf("a client that does nothing failed no check: %v", res)
	}
	raw, err := os.ReadFile(filepath.Join(rec, "auth_metadata-default"))
	if err != nil {
		t.Fatalf("the client did not run for auth/metadata-default: %v", err)
	}
	f := strings.Fields(string(raw))
	if len(f) != 3 || f[0] != f[1] || !strings.HasPrefix(f[0], "http://") || f[2] != "x" {
		t.Fatalf("the client got %q", raw)
	}
	if _, err := s.RunClient(ctx, cmd, "nope", nil, time.Second, t.TempDir()); err == nil {
		t.Error("unknown suite accepted")
	}
}
