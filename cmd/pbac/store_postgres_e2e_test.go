package main

import (
	"bufio"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/internal/logtest"
	"github.com/pbac-gateway/pbac/internal/pgtest"
)

// pgE2EDSN returns PBAC_TEST_POSTGRES with a fresh schema (dropped at the
// end) as its search_path and a password the server (trust on 127.0.0.1)
// ignores, so the test can check it never shows; or skips.
func pgE2EDSN(t *testing.T, password string) string {
	t.Helper()
	return pgtest.WithPassword(t, pgtest.FreshSchema(t), password)
}

// startAsrvOn runs `pbac asrv --store dsn`, logging at debug, and collects
// everything it prints.
func startAsrvOn(t *testing.T, dataDir, dsn string, out *logtest.Buffer, extra ...string) *proc {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build pbac: %v", err)
	}
	cmd := exec.Command(bin, append([]string{"asrv", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--store", dsn, "--log-level", "debug"}, extra...)...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			_, _ = out.Write(append(sc.Bytes(), '\n'))
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case base := <-found:
		return &proc{cmd: cmd, base: base}
	case <-time.After(60 * time.Second):
		t.Fatalf("pbac asrv --store postgres did not start:\n%s", out.String())
		return nil
	}
}

// TestAsrvReplicasOnPostgres runs two `pbac asrv` processes on one data dir
// (the same token secret and statement key) and one PostgreSQL schema: a
// token issued by one is active on the other, a single-use token introspected
// on both at once is active exactly once, a revocation on one is seen by the
// other on its next call, tokens outlive a replica killed with SIGKILL, and
// the DSN's password is never printed.
func TestAsrvReplicasOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const password = "pw-MUST-NOT-LEAK-7f3a"
	dsn := pgE2EDSN(t, password)
	dataDir := t.TempDir()
	var outA, outB logtest.Buffer
	conf, rsID, rsSecret := introspectorConfig(t, t.TempDir())
	a := startAsrvOn(t, dataDir, dsn, &outA, "--config", conf) // creates the data dir's secret and key
	b := startAsrvOn(t, dataDir, dsn, &outB, "--config", conf)
	key, err := asrv.LoadOrCreateIssuerKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}

	register := func(p *proc, provider string, singleUse bool) (string, string) {
		return p.registerMachine(t, key, provider, singleUse)
	}
	ciID, ciSecret := register(b, "ci-bot", false)
	scanID, scanSecret := register(a, "security-scanner", true)
	token := func(p *proc, id, secret, scope string) string {
		return p.postForm(t, asrv.PathToken, id, secret, url.Values{"grant_type": {"client_credentials"}, "scope": {scope}})["access_token"].(string)
	}
	active := func(p *proc, tok string) bool {
		return p.postForm(t, asrv.PathIntrospect, rsID, rsSecret, url.Values{"token": {tok}})["active"] == true
	}

	ci := token(a, ciID, ciSecret, "jira:read")
	if !active(b, ci) || !active(a, ci) {
		t.Fatal("a token issued by replica A is not active on both replicas")
	}

	for round := range 3 {
		single := token(b, scanID, scanSecret, "drive:read")
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		start := make(chan struct{})
		for i := range 16 {
			p := []*proc{a, b}[i%2]
			wg.Go(func() {
				<-start
				if active(p, single) {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if wins != 1 {
			t.Errorf("round %d: a single-use token was active %d times across two replicas, want exactly 1", round, wins)
		}
	}

	revoked := token(a, ciID, ciSecret, "jira:read")
	if !active(b, revoked) {
		t.Fatal("new token inactive on replica B")
	}
	a.postForm(t, asrv.PathRevoke, ciID, ciSecret, url.Values{"token": {revoked}})
	if active(b, revoked) {
		t.Error("a token revoked on replica A is still active on replica B")
	}

	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	if !active(b, ci) {
		t.Error("a token issued by a replica killed with SIGKILL is gone")
	}

	for name, out := range map[string]*logtest.Buffer{"A": &outA, "B": &outB} {
		if strings.Contains(out.String(), password) {
			t.Errorf("replica %s printed the DSN's password:\n%s", name, out.String())
		}
		if !strings.Contains(out.String(), "token store postgres://") {
			t.Errorf("replica %s does not say which token store it runs on:\n%s", name, out.String())
		}
	}
}

// TestAsrvRejectsUnknownStore: a --store that is neither empty nor a
// postgres URL is refused without echoing it.
func TestAsrvRejectsUnknownStore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	out, err := exec.Command(bin, "asrv", "--listen", addr, "--data-dir", t.TempDir(), "--store", "mysql://u:pw-LEAK@h/db").CombinedOutput()
	if err == nil {
		t.Fatalf("started with a mysql store: %s", out)
	}
	if !strings.Contains(string(out), "--store") || strings.Contains(string(out), "pw-LEAK") {
		t.Errorf("output %q: want a --store error without the password", out)
	}
}
