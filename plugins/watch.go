package plugins

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/pbac-gateway/pbac/rego"
)

// settle is how long a bundle file must stay unchanged before it is loaded,
// so a bundle being copied in is not read half-written.
const settle = 250 * time.Millisecond

// ActivateFile reads a bundle file and activates it; source records the path.
func (r *Registry) ActivateFile(ctx context.Context, path string) (Info, error) {
	b, err := readBundleFile(path)
	if err != nil {
		r.mu.Lock()
		r.record(ctx, Event{Kind: "rejected", Previous: r.activeVersion(), Source: "file:" + path, Error: err.Error()})
		r.mu.Unlock()
		return Info{}, err
	}
	return r.Activate(ctx, b, "file:"+path)
}

func readBundleFile(path string) (*rego.Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: open bundle: %w", ErrValidation, err)
	}
	defer f.Close()
	b, err := rego.ReadTarGz(f)
	if err != nil {
		return nil, fmt.Errorf("%w: read bundle %s: %w", ErrValidation, path, err)
	}
	return b, nil
}

// isBundleName accepts visible *.tar.gz files, so writing to a dot-file and
// renaming it into place is the way to drop a bundle atomically.
func isBundleName(name string) bool {
	base := filepath.Base(name)
	return strings.HasSuffix(base, ".tar.gz") && !strings.HasPrefix(base, ".")
}

// WatchDir makes bundles dropped into dir live: at start the newest bundle
// already there is activated — unless the stored head version (HeadAt) is
// newer than the file, so a restart does not undo a later change made
// through the admin API or the dashboard —, then every bundle written or moved in is
// validated and activated. A bad bundle is rejected and logged; the active
// version stays. It returns when ctx is done, or at once if dir cannot be
// watched.
func (r *Registry) WatchDir(ctx context.Context, dir string) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	if newest, mod, ok := newestBundle(dir); ok {
		if head := r.HeadAt(); !head.IsZero() && !mod.After(head) {
			r.logger.Info("the stored policy version is newer than the newest bundle in the policy directory; it stays",
				"path", newest, "modified", mod, "stored", head)
		} else {
			r.activateFromDir(ctx, newest)
		}
	}

	var (
		mu      sync.Mutex
		pending = map[string]*time.Timer{}
	)
	defer func() {
		mu.Lock()
		for _, t := range pending {
			t.Stop()
		}
		mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.logger.Warn("policy directory watch", "dir", dir, "err", err)
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !isBundleName(ev.Name) || !ev.Has(fsnotify.Create|fsnotify.Write) {
				continue
			}
			path := ev.Name
			mu.Lock()
			if t, ok := pending[path]; ok {
				t.Reset(settle)
			} else {
				pending[path] = time.AfterFunc(settle, func() {
					mu.Lock()
					delete(pending, path)
					mu.Unlock()
					if ctx.Err() == nil {
						r.activateFromDir(ctx, path)
					}
				})
			}
			mu.Unlock()
		}
	}
}

func (r *Registry) activateFromDir(ctx context.Context, path string) {
	b, err := readBundleFile(path)
	if err == nil {
		if cur, ok := r.Active(); ok && cur.Version == revisionOf(b) {
			return // already live
		}
	}
	if _, err := r.ActivateFile(ctx, path); err != nil {
		r.logger.Error("policy bundle rejected; the active policy stays", "path", path, "err", err)
	}
}

func revisionOf(b *rego.Bundle) string {
	if b.Revision != "" {
		return b.Revision
	}
	return rego.Revision(b.Wasm, b.Data)
}

// newestBundle finds the most recently modified bundle in dir.
func newestBundle(dir string) (string, time.Time, bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", time.Time{}, false
	}
	type cand struct {
		path string
		mod  time.Time
	}
	var cs []cand
	for _, e := range entries {
		if e.IsDir() || !isBundleName(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		cs = append(cs, cand{filepath.Join(dir, e.Name()), info.ModTime()})
	}
	if len(cs) == 0 {
		return "", time.Time{}, false
	}
	c := slices.MaxFunc(cs, func(a, b cand) int {
		if c := a.mod.Compare(b.mod); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	return c.path, c.mod, true
}
