package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestUpGoMonitor drives the real pbac up: with PBAC_GO_SYSMON=backoff it
// runs itself again with GODEBUG's schedtrace set, so the Go runtime's
// monitor thread backs off instead of sleeping until the next system call
// (internal/sysmon), and serves as the same process under its own name,
// reading its configuration after the exec (here from a pipe, which a
// read before it would have emptied); without it, or with default, the
// runtime's default stays; the operator's own schedtrace is left alone; a
// value it does not know stops it before anything starts.
func TestUpGoMonitor(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("runs itself again on Linux only")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build pbac: %v", err)
	}
	for _, tc := range []struct {
		name    string
		env     []string
		godebug string // in the serving process's environment
		mode    string // logged
		fails   string
	}{
		{name: "backoff asked", env: []string{"PBAC_GO_SYSMON=backoff"}, godebug: "GODEBUG=schedtrace=2147483647", mode: "mode=backoff"},
		{name: "the runtime's default", mode: "mode=default"},
		{name: "default asked", env: []string{"PBAC_GO_SYSMON=default"}, mode: "mode=default"},
		{name: "the operator's schedtrace", env: []string{"PBAC_GO_SYSMON=backoff", "GODEBUG=schedtrace=3600000"}, godebug: "GODEBUG=schedtrace=3600000", mode: "mode=operator"},
		{name: "a value it does not know", env: []string{"PBAC_GO_SYSMON=on"}, fails: `PBAC_GO_SYSMON="on": want "backoff" or "default"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, "up", "--config", "/dev/stdin", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-level", "info")
			cmd.Stdin = strings.NewReader("demo_agents: false\n")
			env := []string{}
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GODEBUG=") && !strings.HasPrefix(kv, "PBAC_GO_SYSMON=") {
					env = append(env, kv)
				}
			}
			cmd.Env = append(env, tc.env...)
			var stderr syncBuffer
			cmd.Stderr = &stderr
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			ready := make(chan bool, 1)
			var out syncBuffer
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					out.Write([]byte(sc.Text() + "\n"))
					if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
						ready <- true
					}
				}
				ready <- false
			}()
			if tc.fails != "" {
				err := cmd.Wait()
				if err == nil || !strings.Contains(stderr.String(), tc.fails) {
					t.Fatalf("pbac up: %v, stderr %q; want it to stop saying %s", err, stderr.String(), tc.fails)
				}
				return
			}
			defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
			select {
			case ok := <-ready:
				if !ok {
					t.Fatalf("pbac up ended before it served: %s", stderr.String())
				}
			case <-time.After(90 * time.Second):
				t.Fatalf("pbac up did not come up: %s", stderr.String())
			}
			if comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); err != nil || strings.TrimSpace(string(comm)) != filepath.Base(bin) {
				t.Errorf("process %d is named %q (%v), want %q", pid, comm, err, filepath.Base(bin))
			}
			if strings.Contains(out.String(), "client_id=") {
				t.Errorf("demo agents printed: the configuration from the pipe was not read after the exec:\n%s", out.String())
			}
			raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
			if err != nil {
				t.Fatal(err)
			}
			var godebug string
			for kv := range bytes.SplitSeq(raw, []byte{0}) {
				if bytes.HasPrefix(kv, []byte("GODEBUG=")) {
					godebug = string(kv)
				}
			}
			if godebug != tc.godebug {
				t.Errorf("process %d serves with %q, want %q", pid, godebug, tc.godebug)
			}
			if line := monitorLine(stderr.String()); !strings.Contains(line, tc.mode) {
				t.Errorf("logged %q, want %s", line, tc.mode)
			}
		})
	}
}

func monitorLine(log string) string {
	for line := range strings.Lines(log) {
		if strings.Contains(line, "go runtime monitor") {
			return line
		}
	}
	return ""
}

// syncBuffer is a bytes.Buffer a process writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
