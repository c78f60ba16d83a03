package tooldefs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// lastSeenEvery is how stale a kept "last seen" may grow before a
	// listing that changes nothing else writes it.
	lastSeenEvery = time.Minute
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

	written time.Time // LastSeen as last written
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
		WithMemTableSize(4 << 20).
		WithValueThreshold(1 << 10).
		WithBlockCacheSize(1 << 20).
		WithIndexCacheSize(1 << 20).
		WithNumCompactors(2)
	if dir == "" {
		// In memory there is no value log: an entry must fit under the
		// value threshold, and the largest one (every definition kept, each
		// up to MaxDefinitionBytes) is hundreds of KiB. Badger allows a
		// threshold up to 1 MiB when a batch (15% of a memtable) holds it.
		bo = bo.WithInMemory(true).WithMemTableSize(8 << 20).WithValueThreshold(1 << 20)
	} else {
		bo = bo.WithSyncWrites(true).WithValueLogFileSize(16 << 20)
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("tooldefs: open %q: %w", dir, err)
	}
	s := &Store{db: db, log: logger, now: time.Now, tools: map[string]*Entry{}, counts: map[string]int{}, warned: map[string]bool{}}
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(entryPrefix), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var e Entry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return fmt.Errorf("read %q: %w", it.Item().Key(), err)
			}
			e.written = e.LastSeen
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

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("tooldefs: close: %w", err)
	}
	return nil
}

// put writes e; the caller holds s.mu.
func (s *Store) put(e *Entry) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(entryPrefix+key(e.Backend, e.Name)), raw)
	}); err != nil {
		return fmt.Errorf("tooldefs: write %s.%s: %w", e.Backend, e.Name, err)
	}
	e.written = e.LastSeen
	return nil
}

// Observe records the tools of one tools/list answer of backend (each the
// JSON object the backend served) and returns each tool's hash by name. A
// tool that cannot be read (ErrBadDefinition) has no hash: a pinned tool
// it names then matches no pin. A failed write is logged and the hashes
// are still returned: the next listing tries again.
func (s *Store) Observe(_ context.Context, backend string, tools []json.RawMessage) map[string]string {
	hashes := make(map[string]string, len(tools))
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, raw := range tools {
		name, canonical, err := Canonical(raw)
		if err != nil {
			s.log.Warn("tool definition not kept", "backend", backend, "err", err)
			continue
		}
		hash := Hash(canonical)
		hashes[name] = hash
		if err := s.observe(backend, name, hash, canonical, now); err != nil {
			s.log.Warn("tool definition not stored", "backend", backend, "tool", name, "err", err)
		}
	}
	return hashes
}

func (s *Store) observe(backend, name, hash string, canonical []byte, now time.Time) error {
	k := key(backend, name)
	e, ok := s.tools[k]
	if ok && e.Hash == hash {
		e.LastSeen = now
		e.Versions[0].LastSeen = now
		if now.Sub(e.written) < lastSeenEvery {
			return nil
		}
		return s.put(e)
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
	return s.put(e)
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
// review state. It is ErrStale when hash is not the newest definition
// seen.
func (s *Store) Keep(backend, name, hash string) (Entry, error) {
	return s.update(backend, name, hash, func(e *Entry, v Version) {
		e.Pinned = &v
		e.Review = nil
	})
}

// SetReview records an operator's state (StateDismissed, StateRejected)
// for the newest definition of a tool, which must be hash.
func (s *Store) SetReview(backend, name, hash, state, by string) (Entry, error) {
	if state != StateDismissed && state != StateRejected {
		return Entry{}, fmt.Errorf("tooldefs: unknown review state %q", state)
	}
	return s.update(backend, name, hash, func(e *Entry, _ Version) {
		e.Review = &Review{State: state, Hash: hash, By: by, At: s.now().UTC()}
	})
}

func (s *Store) update(backend, name, hash string, f func(*Entry, Version)) (Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.tools[key(backend, name)]
	if !ok {
		return Entry{}, fmt.Errorf("%w: %s.%s", ErrNotFound, backend, name)
	}
	if e.Hash != hash {
		return Entry{}, fmt.Errorf("%w: %s.%s is now %s, not %s", ErrStale, backend, name, short(e.Hash), short(hash))
	}
	prev := e.clone()
	f(e, e.Versions[0])
	if err := s.put(e); err != nil {
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
