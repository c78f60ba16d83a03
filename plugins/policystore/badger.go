// Package policystore keeps the policy registry's activated versions
// (plugins.Store) in Badger under the data dir, so the active version and
// its history survive a restart or a crash.
//
// Keys: "rec/" + the big-endian seq holds a record's description (JSON),
// "bun/" + seq its bundle (tar.gz). A record and its bundle are written in
// one transaction, synced to disk before Append returns. The newest Keep
// records are kept; older ones are deleted with the append that passes
// the bound, and their space in the value log is reclaimed at the next
// Open.
//
// A Store is safe for concurrent use; appends are serialised by the
// registry (one process owns a data dir: Badger locks it).
package policystore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/pbac-gateway/pbac/plugins"
)

// Keep is how many versions a Store keeps by default: far more than the
// registry's rollback history, few enough that whole bundles stay small.
const Keep = 64

var (
	recPrefix = []byte("rec/")
	bunPrefix = []byte("bun/")
)

// ErrNotFound means no bundle is stored under the seq asked for.
var ErrNotFound = errors.New("policystore: no such version")

// Store is the Badger-backed plugins.Store.
type Store struct {
	db   *badger.DB
	keep int
}

var _ plugins.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithKeep bounds the records kept (n < 1 keeps Keep).
func WithKeep(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.keep = n
		}
	}
}

// Open opens the store in dir, creating it when missing; dir "" is an
// in-memory store (tests). logger gets Badger's own messages (its info at
// debug).
func Open(ctx context.Context, dir string, logger *slog.Logger, opts ...Option) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("policystore: open: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{l: logger.With("component", "policystore")}).
		WithNumVersionsToKeep(1).
		WithMemTableSize(16 << 20).
		WithValueThreshold(64 << 10).
		WithBlockCacheSize(4 << 20).
		WithNumCompactors(2)
	if dir == "" {
		bo = bo.WithInMemory(true)
	} else {
		bo = bo.WithSyncWrites(true).WithValueLogFileSize(64 << 20)
	}
	db, err := badger.Open(bo)
	if err != nil {
		where := dir
		if dir == "" {
			where = "memory"
		}
		return nil, fmt.Errorf("policystore: open (%s): %w", where, err)
	}
	s := &Store{db: db, keep: Keep}
	for _, o := range opts {
		o(s)
	}
	if dir != "" {
		// Dropped versions leave their bundles in the value log; versions
		// change by hand, rarely, so reclaiming at start is enough and
		// needs no goroutine.
		for db.RunValueLogGC(0.5) == nil {
		}
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("policystore: close: %w", err)
	}
	return nil
}

func key(prefix []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), seq)
}

// Append stores rec (with its bundle) as the newest record, seq one past
// the newest, and drops the records beyond the bound; the transaction is
// synced before it returns.
func (s *Store) Append(ctx context.Context, rec plugins.Record) (plugins.Record, error) {
	if err := ctx.Err(); err != nil {
		return plugins.Record{}, fmt.Errorf("policystore: append %s: %w", rec.Version, err)
	}
	if len(rec.Bundle) == 0 {
		return plugins.Record{}, fmt.Errorf("policystore: append %s: no bundle", rec.Version)
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		seqs, err := recordSeqs(txn)
		if err != nil {
			return err
		}
		rec.Seq = 1
		if n := len(seqs); n > 0 {
			rec.Seq = seqs[n-1] + 1
		}
		meta, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := txn.Set(key(recPrefix, rec.Seq), meta); err != nil {
			return err
		}
		if err := txn.Set(key(bunPrefix, rec.Seq), rec.Bundle); err != nil {
			return err
		}
		for len(seqs)+1 > s.keep {
			if err := txn.Delete(key(recPrefix, seqs[0])); err != nil {
				return err
			}
			if err := txn.Delete(key(bunPrefix, seqs[0])); err != nil {
				return err
			}
			seqs = seqs[1:]
		}
		return nil
	})
	if err != nil {
		return plugins.Record{}, fmt.Errorf("policystore: append %s: %w", rec.Version, err)
	}
	rec.Bundle = nil
	return rec, nil
}

// recordSeqs lists the stored seqs, oldest first.
func recordSeqs(txn *badger.Txn) ([]uint64, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: recPrefix})
	defer it.Close()
	var out []uint64
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != len(recPrefix)+8 {
			return nil, fmt.Errorf("policystore: malformed key %q", k)
		}
		out = append(out, binary.BigEndian.Uint64(k[len(recPrefix):]))
	}
	return out, nil
}

// History returns the kept records, oldest first, without their bundles.
func (s *Store) History(ctx context.Context) ([]plugins.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("policystore: history: %w", err)
	}
	var out []plugins.Record
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: recPrefix, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var rec plugins.Record
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return fmt.Errorf("record %x: %w", it.Item().Key(), err)
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policystore: history: %w", err)
	}
	return out, nil
}

// Bundle returns the bundle of record seq (ErrNotFound when there is none).
func (s *Store) Bundle(ctx context.Context, seq uint64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("policystore: bundle %d: %w", seq, err)
	}
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key(bunPrefix, seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("policystore: bundle %d: %w", seq, err)
	}
	return out, nil
}

// badgerLogger adapts slog to badger.Logger; Badger's info goes to debug.
type badgerLogger struct{ l *slog.Logger }

func (g badgerLogger) Errorf(f string, a ...any)   { g.l.Error(logMsg(f, a)) }
func (g badgerLogger) Warningf(f string, a ...any) { g.l.Warn(logMsg(f, a)) }
func (g badgerLogger) Infof(f string, a ...any)    { g.l.Debug(logMsg(f, a)) }
func (g badgerLogger) Debugf(f string, a ...any)   { g.l.Debug(logMsg(f, a)) }

func logMsg(f string, a []any) string { return strings.TrimSpace(fmt.Sprintf(f, a...)) }
