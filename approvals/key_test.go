package approvals

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestLoadOrCreateStateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := LoadOrCreateStateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, StateKeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("key file mode %04o, want 0600", got)
		}
		if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("data dir: %v, %v; want mode 0700", di.Mode().Perm(), err)
		}
	}
	if fi.Size() != stateKeyLen {
		t.Errorf("key file holds %d bytes, want %d", fi.Size(), stateKeyLen)
	}
	k2, err := LoadOrCreateStateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.k, k2.k) {
		t.Fatal("second load made another key")
	}
	// A state signed before the "restart" verifies after it.
	s := signed(t, k1, deployCall())
	if _, err := VerifyState(k2, s, deployCall(), t0); err != nil {
		t.Fatalf("state across reload: %v", err)
	}
	other, err := LoadOrCreateStateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.k, k1.k) {
		t.Fatal("two data dirs got the same key")
	}
	if s := fmt.Sprintf("%v %+v %#v %s", k1, k1, k1, k1); strings.Contains(s, fmt.Sprint(k1.k)) || strings.Contains(s, string(k1.k)) {
		t.Fatalf("key printed: %s", s)
	}
}

func TestLoadStateKeyRefusesBadFiles(t *testing.T) {
	tests := []struct {
		name  string
		write func(path string) error
		want  string
	}{
		{"readable by others", func(p string) error { return os.WriteFile(p, make([]byte, 32), 0o644) }, "chmod 600"},
		{"too short", func(p string) error { return os.WriteFile(p, make([]byte, 16), 0o600) }, "16 bytes, want 32"},
		{"too long", func(p string) error { return os.WriteFile(p, make([]byte, 64), 0o600) }, "over 32 bytes, want 32"},
		{"empty", func(p string) error { return os.WriteFile(p, nil, 0o600) }, "0 bytes, want 32"},
		{"a directory", func(p string) error { return os.Mkdir(p, 0o700) }, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "readable by others" && runtime.GOOS == "windows" {
				t.Skip("no mode bits")
			}
			dir := t.TempDir()
			path := filepath.Join(dir, StateKeyFile)
			if err := tt.write(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			k, err := LoadOrCreateStateKey(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadOrCreateStateKey = %v, %v; want an error saying %q", k, err, tt.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Fatal("a refused key file was replaced")
			}
		})
	}
	if _, err := LoadOrCreateStateKey(""); err == nil {
		t.Fatal("no data dir accepted")
	}
	if _, err := NewStateKey(make([]byte, 31)); err == nil {
		t.Fatal("31-byte key accepted")
	}
}

func TestLoadOrCreateStateKeyConcurrentCreatorsAgree(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	keys := make([]*StateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreateStateKey(dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("creator %d: %v", i, errs[i])
		}
		if !bytes.Equal(keys[i].k, keys[0].k) {
			t.Fatalf("creator %d got another key than creator 0", i)
		}
	}
	left, err := filepath.Glob(filepath.Join(dir, ".*tmp-*"))
	if err != nil || len(left) != 0 {
		t.Fatalf("temporary files left: %v %v", left, err)
	}
}
