package plugins_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// lockedBuffer is a log sink the watch goroutine writes while the test
// reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestWatchDirRefusesBadData: a bundle dropped in the watched directory
// whose data its own schema refuses is rejected — logged with the
// problem's JSON path — and the active version stays; each of the shared
// bad documents alike.
func TestWatchDirRefusesBadData(t *testing.T) {
	shipped, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig().WithEvalTimeout(plugins.DefaultDecisionTimeout))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	r := plugins.New(engine, plugins.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	t.Cleanup(func() {
		_ = r.Close(context.Background())
		_ = engine.Close(context.Background())
	})
	if _, err := r.Activate(ctx, shipped, "shipped"); err != nil {
		t.Fatal(err)
	}
	before, _ := r.Active()

	dir := t.TempDir()
	done := make(chan error, 1)
	go func() { done <- r.WatchDir(ctx, dir) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	bad := policytest.BadDataDocuments(t)
	names := make([]string, len(bad))
	for i, tc := range bad {
		b := &rego.Bundle{Wasm: shipped.Wasm, Data: tc.Data, Schema: shipped.Schema, Vectors: shipped.Vectors, ContractVersion: shipped.ContractVersion}
		b.Revision = rego.Revision(b.Wasm, b.Data)
		var buf bytes.Buffer
		if err := b.WriteTarGz(&buf); err != nil {
			t.Fatal(err)
		}
		names[i] = fmt.Sprintf("bad-%02d.tar.gz", i)
		tmp := filepath.Join(dir, "."+names[i])
		if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, names[i])); err != nil {
			t.Fatal(err)
		}
	}
	rejected := func(name string) (plugins.Event, bool) {
		for _, e := range r.Events() {
			if e.Kind == "rejected" && strings.HasSuffix(e.Source, name) {
				return e, true
			}
		}
		return plugins.Event{}, false
	}
	waitFor(t, "every bad bundle to be rejected", func() bool {
		for _, n := range names {
			if _, ok := rejected(n); !ok {
				return false
			}
		}
		return true
	})
	for i, tc := range bad {
		e, _ := rejected(names[i])
		if !strings.Contains(e.Error, tc.Path+": ") {
			t.Errorf("%s: the rejection does not name %q: %s", tc.Name, tc.Path, e.Error)
		}
		if !strings.Contains(logs.String(), names[i]) {
			t.Errorf("%s: the rejection of %s is not logged", tc.Name, names[i])
		}
	}
	if !strings.Contains(logs.String(), "/tiers/developer/grants/files/0") {
		t.Errorf("the log does not name the problem's path:\n%s", logs.String())
	}
	if now, _ := r.Active(); now.Version != before.Version {
		t.Fatalf("a refused bundle became active: %s, was %s", now.Version, before.Version)
	}
}

// TestEveryDataPathIsChecked: Activate, SetData and SetShadow refuse the
// same document with the same DataError, wrapped in ErrValidation.
func TestEveryDataPathIsChecked(t *testing.T) {
	r := policytest.Registry(t)
	shipped, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	bad := []byte(`{"agents":{}}`)
	b := &rego.Bundle{Wasm: shipped.Wasm, Data: bad, Schema: shipped.Schema, ContractVersion: shipped.ContractVersion}
	b.Revision = rego.Revision(b.Wasm, b.Data)
	var want string
	for name, change := range map[string]func() error{
		"activate": func() error { _, err := r.Activate(t.Context(), b, "test"); return err },
		"set data": func() error { _, err := r.SetData(t.Context(), bad, "test"); return err },
		"shadow":   func() error { _, err := r.SetShadow(t.Context(), b, "test"); return err },
	} {
		err := change()
		de, ok := errors.AsType[*rego.DataError](err)
		if !ok || !errors.Is(err, plugins.ErrValidation) {
			t.Fatalf("%s: %v, want a DataError wrapped in ErrValidation", name, err)
		}
		if want == "" {
			want = de.Error()
		} else if de.Error() != want {
			t.Fatalf("%s: %s, want %s", name, de, want)
		}
	}
}
