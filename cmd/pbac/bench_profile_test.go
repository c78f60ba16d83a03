package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchProfiles checks --cpuprofile, --mutexprofile and --blockprofile
// write profiles go tool pprof reads (gzip-compressed protobuf), and that a
// path that cannot be written fails before the run.
func TestBenchProfiles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the demo backend and sends calls")
	}
	dir := t.TempDir()
	files := map[string]string{}
	args := []string{"bench", "--rate", "100", "--duration", "300ms", "--warmup", "0s", "--modes", "direct", "--json"}
	for _, flag := range []string{"--cpuprofile", "--mutexprofile", "--blockprofile"} {
		files[flag] = filepath.Join(dir, strings.TrimPrefix(flag, "--")+".pprof")
		args = append(args, flag, files[flag])
	}
	if stdout, stderr, err := run(t, "", args...); err != nil {
		t.Fatalf("pbac bench: %v\n%s\n%s", err, stderr, stdout)
	}
	for flag, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", flag, err)
		}
		if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			t.Fatalf("%s wrote %d bytes that are not a gzip-compressed profile", flag, len(b))
		}
	}

	_, _, err := run(t, "", "bench", "--modes", "direct", "--duration", "1s", "--cpuprofile", filepath.Join(dir, "missing", "cpu.pprof"))
	if err == nil || !strings.Contains(err.Error(), "--cpuprofile") {
		t.Fatalf("an unwritable --cpuprofile: %v, want an error naming the flag", err)
	}
}
