package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/pbac-gateway/pbac/tooldefs"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Bounds of what one backend can make the store keep.
const (
	// MaxToolsPerBackend bounds the tool names kept per backend; the
	// tools of a backend past it are not kept (their hash is still
	// reported, so policy decides on them; they cannot be reviewed).
	MaxToolsPerBackend = 1024
	// keepVersions bounds the distinct definitions kept per tool besides
	// the pinned one.
	keepVersions = 4
)

// Review states an operator sets (Entry.Review.State).
const (
	// StateDismissed: an uncatalogued tool the operator chose not to
	// catalogue; it leaves the review list until its definition changes.
	StateDismissed = "dismissed"
	// StateRejected: a changed definition the operator refused; the tool
	// stays hidden and denied (its pin is not moved) and leaves the
	// review list until its definition changes again.
	StateRejected = "rejected"
)

// ErrNotFound is a tool the store has not seen.
var ErrNotFound = errors.New("tooldefs: no such tool")

// ErrStale is a review of a definition that is no longer the newest one
// seen: the operator must look again.
var ErrStale = errors.New("tooldefs: the definition changed since it was shown")

// Version is one definition a tool was seen with.
type Version struct {
	Hash       string          `json:"hash"`
	Definition json.RawMessage `json:"definition"` // canonical (Canonical)
	FirstSeen  time.Time       `json:"first_seen"`
	LastSeen   time.Time       `json:"last_seen"`
}

// Review is an operator's last word on a tool.
type Review struct {
	State string    `json:"state"`
	Hash  string    `json:"hash"` // the definition it was about
	By    string    `json:"by"`
	At    time.Time `json:"at"`
}

// Entry is one tool of one backend.
type Entry struct {
	Backend   string    `json:"backend"`
	Name      string    `json:"name"`
	Hash      string    `json:"hash"` // of the newest definition seen
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Versions are the distinct definitions seen, newest first.
	Versions []Version `json:"versions"`
	// Pinned is the definition kept because the catalogue pinned it
	// (Keep), however many others came after.
	Pinned *Version `json:"pinned,omitempty"`
	Review *Review  `json:"review,omitempty"`

	rev uint64 // counts the changes made in memory since Open
}

// Current is the newest definition seen.
func (e *Entry) Current() Version {
	if len(e.Versions) == 0 {
		return Version{}
	}
	return e.Versions[0]
}

// Version returns the kept definition of hash.
func (e *Entry) Version(hash string) (Version, bool) {
	if e.Pinned != nil && e.Pinned.Hash == hash {
		return *e.Pinned, true
	}
	for _, v := range e.Versions {
		if v.Hash == hash {
			return v, true
		}
	}
	return Version{}, false
}

func (e *Entry) clone() Entry {
	c := *e
	c.Versions = append([]Version(nil), e.Versions...)
	if e.Pinned != nil {
		p := *e.Pinned
		c.Pinned = &p
	}
	if e.Review != nil {
		r := *e.Review
		c.Review = &r
	}
	return c
}

// Store keeps the entries in Badger under the data dir, with every entry
// in memory for the request path (Hash is a map read). It is safe for
// concurrent use.
type Store struct {
	db     *badger.DB
	log    *slog.Logger
	now    func() time.Time
	mu     sync.RWMutex
	tools  map[string]*Entry // by key(backend, name)
	counts map[string]int    // tools kept per backend
	warned map[string]bool   // backends told they passed MaxToolsPerBackend

	// writing orders the writes, which a listing makes outside mu (the
	// request path's Hash never waits for the disk); written is the
	// newest revision of each entry written, so an older copy that comes
	// late is not written over a newer one.
	writing sync.Mutex
	written map[string]uint64
}

const entryPrefix = "tool/"

func key(backend, name string) string { return backend + "\x00" + name }

// Open opens the store in dir, creating it when missing; dir "" keeps it
// in memory (tests, or no data dir).
func Open(ctx context.Context, dir string, logger *slog.Logger) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tooldefs: open: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithNumVersionsToKeep(1).
		WithMemTableSize(8 << 20).
		WithValueThreshold(1 << 20).
		WithBlockCacheSize(1 << 20).
		WithIndexCacheSize(1 << 20).
		WithNumCompactors(2)
	// Every entry stays in the LSM tree (the value threshold is above the
	// largest, every definition kept each up to MaxDefinitionBytes: a few
	// hundred KiB; Badger allows 1 MiB when a batch, 15% of a memtable,
	// holds it), so compaction reclaims the space of an entry rewritten by
	// a backend that changes its definitions: no value log to collect. In
	// memory there is no value log at all.
	if dir == "" {
		bo = bo.WithInMemory(true)
	} else {
		bo = bo.WithSyncWrites(true).WithValueLogFileSize(16 << 20)
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("tooldefs: open %q: %w", dir, err)
	}
	s := &Store{db: db, log: logger, now: time.Now, tools: map[string]*Entry{}, counts: map[string]int{}, warned: map[string]bool{},
		written: map[string]uint64{}}
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(entryPrefix), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var e Entry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return fmt.Errorf("read %q: %w", it.Item().Key(), err)
			}
			s.tools[key(e.Backend, e.Name)] = &e
			s.counts[e.Backend]++
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("tooldefs: load: %w", err)
	}
	for db.RunValueLogGC(0.5) == nil {
	}
	return s, nil
}

// Close writes the last-seen times a listing keeps in memory only, and
// closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	all := make([]Entry, 0, len(s.tools))
	for _, e := range s.tools {
		e.rev++
		all = append(all, e.clone())
	}
	s.mu.Unlock()
	err := s.write(all)
	if cerr := s.db.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("tooldefs: close: %w", cerr))
	}
	return err
}

// write writes copies of entries in one batch, skipping a copy older than
// one already written.
func (s *Store) write(entries []Entry) error {
	s.writing.Lock()
	defer s.writing.Unlock()
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for i := range entries {
		e := &entries[i]
		k := key(e.Backend, e.Name)
		if e.rev < s.written[k] {
			continue
		}
		raw, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("tooldefs: encode %s.%s: %w", e.Backend, e.Name, err)
		}
		if err := wb.Set([]byte(entryPrefix+k), raw); err != nil {
			return fmt.Errorf("tooldefs: write %s.%s: %w", e.Backend, e.Name, err)
		}
		s.written[k] = e.rev
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("tooldefs: write: %w", err)
	}
	return nil
}

// Observe records the tools of one tools/list answer of backend, each the
// JSON object the backend served; one that cannot be read
// (tooldefs.ErrBadDefinition) is not recorded. See ObserveRead.
func (s *Store) Observe(ctx context.Context, backend string, tools []json.RawMessage) {
	read := make([]tooldefs.Tool, 0, len(tools))
	for _, raw := range tools {
		t, err := tooldefs.Read(raw)
		if err != nil {
			s.log.Warn("tool definition not kept", "backend", backend, "err", err)
			continue
		}
		read = append(read, t)
	}
	s.ObserveRead(ctx, backend, read)
}

// ObserveRead records the tools of one tools/list answer of backend,
// already read by tooldefs.Read (the gateway reads each object once). What
// changed (a new tool, another definition) is written after the store is
// unlocked: the request path's Hash waits for a map update, never for the
// disk. A listing that changes nothing but the last-seen times writes
// nothing (they are written at Close). A failed write is logged: the next
// change writes the entry again.
func (s *Store) ObserveRead(_ context.Context, backend string, tools []tooldefs.Tool) {
	now := s.now().UTC()
	var changed []Entry
	s.mu.Lock()
	for _, t := range tools {
		if e := s.observe(backend, t.Name, t.Hash, t.Canonical, now); e != nil {
			changed = append(changed, e.clone())
		}
	}
	s.mu.Unlock()
	if len(changed) > 0 {
		if err := s.write(changed); err != nil {
			s.log.Warn("tool definitions not stored", "backend", backend, "err", err)
		}
	}
}

// observe records one tool in memory and returns its entry when it
// changed (nil when only its last-seen time did); the caller holds s.mu.
func (s *Store) observe(backend, name, hash string, canonical []byte, now time.Time) *Entry {
	k := key(backend, name)
	e, ok := s.tools[k]
	if ok && e.Hash == hash {
		e.LastSeen = now
		e.Versions[0].LastSeen = now
		return nil
	}
	if !ok {
		if s.counts[backend] >= MaxToolsPerBackend {
			if !s.warned[backend] {
				s.warned[backend] = true
				s.log.Warn("tool definitions: backend lists more tools than are kept; the rest cannot be reviewed",
					"backend", backend, "kept", MaxToolsPerBackend)
			}
			return nil
		}
		e = &Entry{Backend: backend, Name: name, FirstSeen: now}
		s.tools[k] = e
		s.counts[backend]++
	}
	v := Version{Hash: hash, Definition: append(json.RawMessage(nil), canonical...), FirstSeen: now, LastSeen: now}
	if old, ok := e.Version(hash); ok {
		v.FirstSeen = old.FirstSeen // a definition served again
	}
	versions := []Version{v}
	for _, o := range e.Versions {
		if o.Hash != hash && len(versions) < keepVersions {
			versions = append(versions, o)
		}
	}
	e.Hash, e.LastSeen, e.Versions = hash, now, versions
	e.rev++
	return e
}

// Hash is the hash of the newest definition of backend's tool name seen,
// false when none was.
func (s *Store) Hash(backend, name string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.tools[key(backend, name)]
	if !ok {
		return "", false
	}
	return e.Hash, true
}

// Entry returns a copy of one tool's entry.
func (s *Store) Entry(backend, name string) (Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.tools[key(backend, name)]
	if !ok {
		return Entry{}, fmt.Errorf("%w: %s.%s", ErrNotFound, backend, name)
	}
	return e.clone(), nil
}

// List returns a copy of every entry, by backend then name.
func (s *Store) List() []Entry {
	s.mu.RLock()
	out := make([]Entry, 0, len(s.tools))
	for _, e := range s.tools {
		out = append(out, e.clone())
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Backend != out[j].Backend {
			return out[i].Backend < out[j].Backend
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Keep marks the definition hash of a tool as the one the catalogue pins
// now (it is kept however many definitions follow), and clears the
// review state. The definition need not be the newest one seen (the
// backend may have served another since the operator looked), only one
// still kept: else ErrStale.
func (s *Store) Keep(backend, name, hash string) (Entry, error) {
	return s.update(backend, name, hash, false, func(e *Entry, v Version) {
		e.Pinned = &v
		e.Review = nil
	})
}

// SetReview records an operator's state (StateDismissed, StateRejected)
// for the newest definition of a tool, which must be hash (ErrStale).
func (s *Store) SetReview(backend, name, hash, state, by string) (Entry, error) {
	if state != StateDismissed && state != StateRejected {
		return Entry{}, fmt.Errorf("tooldefs: unknown review state %q", state)
	}
	return s.update(backend, name, hash, true, func(e *Entry, _ Version) {
		e.Review = &Review{State: state, Hash: hash, By: by, At: s.now().UTC()}
	})
}

// update changes one entry with f, given the kept definition of hash
// (newest: the newest one seen), and writes it before it returns.
func (s *Store) update(backend, name, hash string, newest bool, f func(*Entry, Version)) (Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.tools[key(backend, name)]
	if !ok {
		return Entry{}, fmt.Errorf("%w: %s.%s", ErrNotFound, backend, name)
	}
	v, kept := e.Version(hash)
	if !kept || (newest && e.Hash != hash) {
		return Entry{}, fmt.Errorf("%w: %s.%s is now %s, not %s", ErrStale, backend, name, short(e.Hash), short(hash))
	}
	prev := e.clone()
	f(e, v)
	e.rev++
	if err := s.write([]Entry{e.clone()}); err != nil {
		*e = prev
		return Entry{}, err
	}
	return e.clone(), nil
}

// short is a hash as a person reads it.
func short(hash string) string {
	h := strings.TrimPrefix(hash, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}
