// Package badger keeps approvals (approvals.Store) in one Badger database
// of their own, on disk under the data dir (synced on every write) or in
// memory. One process owns the directory: Transition is the store's mutex
// around one Badger transaction that reads, checks and writes. Only a
// binary that imports this package links Badger.
package badger

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/pbac-gateway/pbac/approvals"
)

// Store is the embedded approvals.Store. Key layout:
//
//	a/<id>                                    the approval (JSON; its arguments as base64)
//	t/<when><id>                              every approval, newest first
//	s/<status>\x00<when><id>                  by status, newest first
//	c/<len><client id><when><id>              by client, newest first
//	b/<len><binding><when><id>                by binding, newest first
//	p/<len><client id><len><subject><id>      the open (pending, granted) ones by client and person
//	e/<expires><id>                           the open ones by expiry, soonest first
//	x/<closed><id>                            the closed ones by ClosedAt, oldest first
//
// Index values are empty. <when> is ^CreatedAt in Unix microseconds, 8
// bytes big-endian (so ascending keys are newest first, and the order is
// the PostgreSQL store's: microseconds, then id); <expires> is ExpiresAt
// in Unix microseconds, <closed> ClosedAt likewise; <len> is the uvarint length of the string that
// follows, so no value is read as a prefix of a longer one. Every write
// deletes the index keys of the approval as it was and sets those of the
// approval as it is, in the same transaction.
//
// Stores before open approvals were bounded per person kept the open ones
// by client alone (o/<len><client id><id>); the first write of such an
// approval deletes its key, and CountOpen does not count it meanwhile.
//
// Closed approvals are kept (without their arguments, which Transition
// drops) until Prune deletes them; the indexes keep List, CountOpen and
// Expire from reading the closed ones they do not list.
type Store struct {
	db  *badger.DB
	now func() time.Time

	// mu orders every write (Create, Transition, Expire): one process owns
	// the directory, so the check of a compare-and-set and its write
	// cannot interleave with another.
	mu     sync.Mutex
	closed bool
}

var _ approvals.Store = (*Store)(nil)

// Option configures Open.
type Option func(*Store)

// WithClock sets the clock that stamps ClosedAt when a transition closes an
// approval without setting it (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

var errClosed = errors.New("approvals: badger store is closed")

// Open opens (creating) the store in dir; dir "" keeps it in memory (tests,
// the ephemeral demo). On disk every write is synced before it returns.
func Open(ctx context.Context, dir string, logger *slog.Logger, opts ...Option) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("approvals: open badger store: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Approvals are small (arguments up to approvals.MaxArgsLen), so every
	// value stays in the LSM tree and compaction reclaims rewritten ones.
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{l: logger.With("component", "approvals-badger")}).
		WithNumVersionsToKeep(1).
		WithMemTableSize(8 << 20).
		WithValueThreshold(1 << 20).
		WithBlockCacheSize(1 << 20).
		WithIndexCacheSize(1 << 20).
		WithNumCompactors(2)
	inMemory := dir == ""
	if inMemory {
		bo = bo.WithInMemory(true)
	} else {
		bo = bo.WithSyncWrites(true).WithValueLogFileSize(16 << 20)
	}
	db, err := badger.Open(bo)
	if err != nil {
		where := dir
		if inMemory {
			where = "memory"
		}
		return nil, fmt.Errorf("approvals: open badger store (%s): %w", where, err)
	}
	s := &Store{db: db, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Close closes the database; later calls fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("approvals: close badger store: %w", err)
	}
	return nil
}

// badgerLogger hands Badger's logs to slog; its informational chatter at
// debug level.
type badgerLogger struct{ l *slog.Logger }

func (g badgerLogger) Errorf(f string, a ...any)   { g.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...))) }
func (g badgerLogger) Warningf(f string, a ...any) { g.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...))) }
func (g badgerLogger) Infof(f string, a ...any)    { g.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...))) }
func (g badgerLogger) Debugf(f string, a ...any)   { g.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...))) }

// --- keys -------------------------------------------------------------------

const (
	pApproval = "a/"
	pTime     = "t/"
	pStatus   = "s/"
	pClient   = "c/"
	pBinding  = "b/"
	pOpen     = "p/"
	pExpiry   = "e/"
	pClosed   = "x/"
)

// pOpenByClient is the open index of earlier stores, never written (see
// Store).
const pOpenByClient = "o/"

func approvalKey(id string) []byte { return []byte(pApproval + id) }

// lenPrefixed is prefix, the uvarint length of v, and v.
func lenPrefixed(prefix, v string) []byte {
	b := binary.AppendUvarint([]byte(prefix), uint64(len(v)))
	return append(b, v...)
}

func when(t time.Time) []byte { return binary.BigEndian.AppendUint64(nil, ^uint64(t.UnixMicro())) }

func statusPrefix(st approvals.Status) []byte { return []byte(pStatus + string(st) + "\x00") }

// openPrefix is where the open approvals of client for subject are.
func openPrefix(client, subject string) []byte {
	b := lenPrefixed(pOpen, client)
	b = binary.AppendUvarint(b, uint64(len(subject)))
	return append(b, subject...)
}

// indexKeys are the index keys of a.
func indexKeys(a *approvals.Approval) [][]byte {
	w := when(a.CreatedAt)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	keys := [][]byte{
		cat([]byte(pTime), w, []byte(a.ID)),
		cat(statusPrefix(a.Status), w, []byte(a.ID)),
		cat(lenPrefixed(pClient, a.ClientID), w, []byte(a.ID)),
		cat(lenPrefixed(pBinding, a.Binding), w, []byte(a.ID)),
	}
	if a.Status.Open() {
		keys = append(keys,
			cat(openPrefix(a.ClientID, a.Subject), []byte(a.ID)),
			cat(binary.BigEndian.AppendUint64([]byte(pExpiry), uint64(a.ExpiresAt.UnixMicro())), []byte(a.ID)))
	} else {
		keys = append(keys, cat(binary.BigEndian.AppendUint64([]byte(pClosed), uint64(a.ClosedAt.UnixMicro())), []byte(a.ID)))
	}
	return keys
}

// --- reading ----------------------------------------------------------------

func (s *Store) view(ctx context.Context, fn func(txn *badger.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.View(fn)
	if errors.Is(err, badger.ErrDBClosed) {
		return errClosed
	}
	return err
}

func read(txn *badger.Txn, id string) (approvals.Approval, error) {
	item, err := txn.Get(approvalKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return approvals.Approval{}, fmt.Errorf("approval %s: %w", id, approvals.ErrNotFound)
	}
	if err != nil {
		return approvals.Approval{}, fmt.Errorf("read approval %s: %w", id, err)
	}
	var r record
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
		return approvals.Approval{}, fmt.Errorf("decode approval %s: %w", id, err)
	}
	r.Approval.Args = r.Args
	return r.Approval, nil
}

// record is an approval as stored: its arguments as bytes (base64 in the
// JSON), so they read back byte for byte, not re-encoded.
type record struct {
	approvals.Approval
	Args []byte `json:"args,omitempty"`
}

// Get returns the approval id, or approvals.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (approvals.Approval, error) {
	var a approvals.Approval
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		a, err = read(txn, id)
		return err
	})
	if err != nil {
		return approvals.Approval{}, fmt.Errorf("approvals: get: %w", err)
	}
	return a, nil
}

// List returns what f selects, newest first. It walks the narrowest index
// f allows (binding, else one walk per status merged, else client, else
// every approval) in order, reading an approval only when its index key
// is reached, and stops at the limit.
func (s *Store) List(ctx context.Context, f approvals.Filter) ([]approvals.Approval, error) {
	limit := f.EffectiveLimit()
	var prefixes [][]byte
	switch {
	case f.Binding != "":
		prefixes = [][]byte{lenPrefixed(pBinding, f.Binding)}
	case len(f.Statuses) > 0:
		seen := map[approvals.Status]bool{}
		for _, st := range f.Statuses {
			if !seen[st] {
				seen[st] = true
				prefixes = append(prefixes, statusPrefix(st))
			}
		}
	case f.ClientID != "":
		prefixes = [][]byte{lenPrefixed(pClient, f.ClientID)}
	default:
		prefixes = [][]byte{[]byte(pTime)}
	}
	var out []approvals.Approval
	err := s.view(ctx, func(txn *badger.Txn) error {
		// Each walk yields its matches newest first; keep at most limit
		// of each, then merge.
		for _, p := range prefixes {
			n := 0
			it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
			for it.Rewind(); it.Valid() && n < limit; it.Next() {
				if err := ctx.Err(); err != nil {
					it.Close()
					return err
				}
				id := string(it.Item().Key()[len(p)+8:])
				a, err := read(txn, id)
				if err != nil {
					it.Close()
					return err
				}
				if f.Match(a) {
					out = append(out, a)
					n++
				}
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("approvals: list: %w", err)
	}
	slices.SortFunc(out, newestFirst)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// newestFirst orders as the index keys do: CreatedAt in microseconds,
// newest first, then id.
func newestFirst(a, b approvals.Approval) int {
	if c := b.CreatedAt.UnixMicro() - a.CreatedAt.UnixMicro(); c != 0 {
		if c < 0 {
			return -1
		}
		return 1
	}
	return strings.Compare(a.ID, b.ID)
}

// CountOpen counts the open approvals of clientID for subject (of
// everyone when clientID is ""), from the keys of an index only.
func (s *Store) CountOpen(ctx context.Context, clientID, subject string) (int, error) {
	var prefixes [][]byte
	if clientID != "" {
		prefixes = [][]byte{openPrefix(clientID, subject)}
	} else {
		prefixes = [][]byte{statusPrefix(approvals.Pending), statusPrefix(approvals.Granted)}
	}
	n := 0
	err := s.view(ctx, func(txn *badger.Txn) error {
		for _, p := range prefixes {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("approvals: count open: %w", err)
	}
	return n, nil
}

// --- writing ----------------------------------------------------------------

// update runs fn in one read-write transaction under s.mu.
func (s *Store) update(ctx context.Context, fn func(txn *badger.Txn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(fn)
}

// put writes a, replacing the index keys of was (nil: a is new).
func put(txn *badger.Txn, was, a *approvals.Approval) error {
	raw, err := json.Marshal(record{Approval: *a, Args: a.Args})
	if err != nil {
		return fmt.Errorf("encode approval %s: %w", a.ID, err)
	}
	if was != nil {
		old := indexKeys(was)
		if was.Status.Open() {
			old = append(old, append(lenPrefixed(pOpenByClient, was.ClientID), was.ID...))
		}
		for _, k := range old {
			if err := txn.Delete(k); err != nil {
				return fmt.Errorf("write approval %s: %w", a.ID, err)
			}
		}
	}
	for _, k := range indexKeys(a) {
		if err := txn.Set(k, nil); err != nil {
			return fmt.Errorf("write approval %s: %w", a.ID, err)
		}
	}
	if err := txn.Set(approvalKey(a.ID), raw); err != nil {
		return fmt.Errorf("write approval %s: %w", a.ID, err)
	}
	return nil
}

// Create stores a new pending approval with Rev 1; approvals.ErrExists if
// the id is taken.
func (s *Store) Create(ctx context.Context, a approvals.Approval) error {
	if err := approvals.CheckNew(&a); err != nil {
		return fmt.Errorf("approvals: create: %w", err)
	}
	err := s.update(ctx, func(txn *badger.Txn) error {
		if _, err := txn.Get(approvalKey(a.ID)); err == nil {
			return fmt.Errorf("approval %s: %w", a.ID, approvals.ErrExists)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("read approval %s: %w", a.ID, err)
		}
		return put(txn, nil, &a)
	})
	if err != nil {
		return fmt.Errorf("approvals: create: %w", err)
	}
	return nil
}

// Transition is the compare-and-set (approvals.Store): under s.mu, one
// transaction reads the approval, checks its status against from, lets
// change edit a copy, checks and stamps the result and writes it.
func (s *Store) Transition(ctx context.Context, id string, from []approvals.Status, change func(*approvals.Approval) error) (approvals.Approval, error) {
	var out approvals.Approval
	err := s.update(ctx, func(txn *badger.Txn) error {
		var err error
		out, err = s.transition(txn, id, from, change)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("approvals: transition %s: %w", id, err)
	}
	return out, nil
}

// transition is Transition within txn; it returns the approval as stored
// (changed, or as it was when refused).
func (s *Store) transition(txn *badger.Txn, id string, from []approvals.Status, change func(*approvals.Approval) error) (approvals.Approval, error) {
	was, err := read(txn, id)
	if err != nil {
		return approvals.Approval{}, err
	}
	if !slices.Contains(from, was.Status) {
		return was, fmt.Errorf("%w: it is %s", approvals.ErrStatus, was.Status)
	}
	a, err := approvals.ApplyChange(was, change, s.now())
	if err != nil {
		return was, err
	}
	if err := put(txn, &was, &a); err != nil {
		return was, err
	}
	return a, nil
}

// Expire moves every open approval whose ExpiresAt is not after now to
// Expired (ClosedAt now), walking the expiry index, and returns them as
// stored. Each is its own transaction; one that fails stops the walk and
// the ones done are returned with the error.
func (s *Store) Expire(ctx context.Context, now time.Time) ([]approvals.Approval, error) {
	var due []string
	end := binary.BigEndian.AppendUint64([]byte(pExpiry), uint64(now.UnixMicro()))
	err := s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pExpiry)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if bytes.Compare(k[:len(end)], end) > 0 {
				break
			}
			due = append(due, string(k[len(end):]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("approvals: expire: %w", err)
	}
	var out []approvals.Approval
	for _, id := range due {
		a, err := s.Transition(ctx, id, []approvals.Status{approvals.Pending, approvals.Granted}, approvals.ExpireChange(now))
		switch {
		case errors.Is(err, approvals.ErrStatus) || errors.Is(err, approvals.ErrNotExpired):
			// closed, or its expiry moved, meanwhile
		case err != nil:
			return out, fmt.Errorf("approvals: expire: %w", err)
		default:
			out = append(out, a)
		}
	}
	return out, nil
}

// pruneBatch bounds the approvals one Prune transaction deletes, far below
// Badger's transaction size limit.
const pruneBatch = 256

// Prune deletes the closed approvals whose ClosedAt is before closedBefore,
// walking the closed index oldest first, pruneBatch per transaction.
func (s *Store) Prune(ctx context.Context, closedBefore time.Time) (int, error) {
	n := 0
	for {
		done := 0
		more := false
		err := s.update(ctx, func(txn *badger.Txn) error {
			done, more = 0, false
			var due []string
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pClosed)})
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().Key()
				if len(due) == pruneBatch {
					more = true
					break
				}
				if int64(binary.BigEndian.Uint64(k[len(pClosed):])) >= closedBefore.UnixMicro() {
					break
				}
				due = append(due, string(k[len(pClosed)+8:]))
			}
			it.Close()
			for _, id := range due {
				a, err := read(txn, id)
				if err != nil {
					return err
				}
				if a.Status.Open() || !a.ClosedAt.Before(closedBefore) {
					continue // by the microsecond only
				}
				for _, k := range append(indexKeys(&a), approvalKey(id)) {
					if err := txn.Delete(k); err != nil {
						return fmt.Errorf("delete approval %s: %w", id, err)
					}
				}
				done++
			}
			return nil
		})
		n += done
		if err != nil {
			return n, fmt.Errorf("approvals: prune: %w", err)
		}
		if !more || done == 0 {
			return n, nil
		}
	}
}
