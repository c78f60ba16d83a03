// Package index is the queryable audit store: audit records in a Badger
// database of their own, indexed by client, tool, decision, subject, kind
// and approval. It is an audit.Sink apart from package audit so that what
// records audits (the gateway) does not link Badger.
package index

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/pbac-gateway/pbac/audit"
)

// Index is a queryable audit store in its own Badger database. It is a Sink
// (give it to the Trail) and answers Query for the dashboard and admin API.
//
// Key layout (<id> = 8-byte big-endian unix nanos of Record.Time + 8-byte
// big-endian sequence number, so keys sort by time; the sequence is seeded
// from the clock at open and breaks ties between records of the same
// instant):
//
//	r/<id>                     the record (JSON)
//	c/<len><client id><id>     empty: client index
//	t/<len><tool><id>          empty: tool index
//	d/<len><decision><id>      empty: decision index
//	s/<len><subject><id>       empty: subject index
//	e/<len><event kind><id>    empty: kind index (not for decisions)
//	a/<len><approval id><id>   empty: approval index
//	x/<len><trace id><id>      empty: trace index
//
// <len> is the uvarint length of the value that follows (values longer than
// 256 bytes are replaced by their SHA-256). Every key of a record expires at
// Record.Time + retention (Badger TTL), so retention needs no sweeper.
//
// A filtered query walks the secondary indexes of its filters backwards in
// time and intersects them by leapfrogging (each iterator seeks to the
// newest id not newer than the others' current id), so it touches only
// index entries of matching records and the skips between them — never the
// whole store. A query with only a time range walks the primary keys in that
// range.
type Index struct {
	db        *badger.DB
	log       *slog.Logger
	retention time.Duration
	inMemory  bool
	seq       atomic.Uint64

	closeOnce sync.Once
	closeErr  error
	stopGC    chan struct{}
	gcDone    sync.WaitGroup
}

var _ audit.Sink = (*Index)(nil)

const (
	maxIndexValueLen    = 256
	indexGCInterval     = 10 * time.Minute
	indexGCDiscardRatio = 0.5
	idLen               = 16
)

// Option configures Open.
type Option func(*Index)

// WithLogger routes the index's and Badger's logs to l (Badger's
// informational messages at debug level).
func WithLogger(l *slog.Logger) Option {
	return func(ix *Index) {
		if l != nil {
			ix.log = l
		}
	}
}

// Open opens (creating) the audit index in dir; dir == "" keeps it in
// memory. retention > 0 makes every record expire retention after its
// Record.Time; retention <= 0 keeps records forever. Writes are not synced
// one by one (the JSON-lines file is the durable trail; the index is the
// query path); Close flushes everything.
func Open(ctx context.Context, dir string, retention time.Duration, opts ...Option) (*Index, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("audit: open index: %w", err)
	}
	ix := &Index{log: slog.Default(), retention: retention, inMemory: dir == "", stopGC: make(chan struct{})}
	for _, o := range opts {
		o(ix)
	}
	ix.log = ix.log.With("component", "audit-index")
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{l: ix.log}).
		WithNumVersionsToKeep(1)
	if ix.inMemory {
		bo = bo.WithInMemory(true).
			WithMemTableSize(8 << 20).
			WithBlockCacheSize(8 << 20).
			WithNumCompactors(2)
	} else {
		bo = bo.WithMemTableSize(16 << 20).
			WithBlockCacheSize(32 << 20).
			WithValueLogFileSize(128 << 20)
	}
	db, err := badger.Open(bo)
	if err != nil {
		where := dir
		if ix.inMemory {
			where = "memory"
		}
		return nil, fmt.Errorf("audit: open index (%s): %w", where, err)
	}
	ix.db = db
	ix.seq.Store(uint64(time.Now().UnixNano()))
	if !ix.inMemory {
		ix.gcDone.Add(1)
		go ix.gcLoop()
	}
	return ix, nil
}

var _ audit.LineSink = (*Index)(nil)

// Write stores recs with their index entries. Records already past their
// retention are skipped.
func (ix *Index) Write(ctx context.Context, recs []audit.Record) error {
	return ix.WriteLines(ctx, recs, nil)
}

// WriteLines is Write with the records' lines already encoded (nil lines:
// none are, each is encoded here).
func (ix *Index) WriteLines(ctx context.Context, recs []audit.Record, lines [][]byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := audit.CheckLines(recs, lines); err != nil {
		return fmt.Errorf("audit: index: %w", err)
	}
	wb := ix.db.NewWriteBatch()
	defer wb.Cancel()
	now := time.Now()
	var errs []error
	for i := range recs {
		r := &recs[i]
		ts := r.Time
		if ts.IsZero() {
			ts = now
		}
		var expiresAt uint64
		if ix.retention > 0 {
			exp := ts.Add(ix.retention)
			if !exp.After(now) {
				continue
			}
			// Badger expiry has second granularity: round up so a record
			// lives at least its retention.
			expiresAt = uint64(exp.Unix())
			if exp.Nanosecond() != 0 {
				expiresAt++
			}
		}
		val, err := audit.LineOf(recs, lines, i)
		if err != nil {
			errs = append(errs, fmt.Errorf("audit: index: %w", err))
			continue
		}
		id := makeID(ts, ix.seq.Add(1))
		set := func(k, v []byte) {
			if err := wb.SetEntry(&badger.Entry{Key: k, Value: v, ExpiresAt: expiresAt}); err != nil {
				errs = append(errs, err)
			}
		}
		set(primaryKey(id), val)
		for _, f := range [...]struct {
			p byte
			v string
		}{{'c', r.ClientID}, {'t', r.Tool}, {'d', r.Decision}, {'s', r.Subject}, {'e', indexedKind(r.Kind())}, {'a', r.ApprovalID}, {'x', r.TraceID}} {
			if f.v != "" {
				set(append(indexPrefix(f.p, f.v), id...), nil)
			}
		}
	}
	if err := wb.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("audit: index: write: %w", err))
	}
	return errors.Join(errs...)
}

// Query returns the records matching f, newest first.
func (ix *Index) Query(ctx context.Context, f audit.Filter) ([]audit.Record, error) {
	recs, _, err := ix.query(ctx, f)
	return recs, err
}

// query also reports how many index/primary keys it visited (tests use it
// to check that filtered queries do not scan).
func (ix *Index) query(ctx context.Context, f audit.Filter) ([]audit.Record, int, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = audit.DefaultQueryLimit
	}
	limit = min(limit, audit.MaxQueryLimit)
	lower := makeID(f.Since, 0)
	var upper []byte
	if f.Until.IsZero() {
		upper = makeIDRaw(math.MaxUint64, math.MaxUint64)
	} else {
		upper = makeID(f.Until, 0)
		if !decrementID(upper) {
			return nil, 0, nil // nothing is before the epoch
		}
	}
	if !f.Since.IsZero() && bytes.Compare(lower, upper) > 0 {
		return nil, 0, nil
	}
	var prefixes [][]byte
	for _, c := range [...]struct {
		p byte
		v string
	}{{'s', f.Subject}, {'c', f.ClientID}, {'t', f.Tool}, {'d', f.Decision}, {'e', indexedKind(f.Event)}, {'a', f.ApprovalID}, {'x', f.TraceID}} {
		if c.v != "" {
			prefixes = append(prefixes, indexPrefix(c.p, c.v))
		}
	}

	var out []audit.Record
	visited := 0
	err := ix.db.View(func(txn *badger.Txn) error {
		emit := func(val []byte) error {
			var r audit.Record
			if err := json.Unmarshal(val, &r); err != nil {
				return fmt.Errorf("audit: index: decode record: %w", err)
			}
			if f.Matches(&r) { // guards against hashed-key collisions
				out = append(out, r)
			}
			return nil
		}
		if len(prefixes) == 0 {
			opt := badger.DefaultIteratorOptions
			opt.Reverse = true
			opt.Prefix = []byte("r/")
			opt.PrefetchSize = min(limit, 100)
			it := txn.NewIterator(opt)
			defer it.Close()
			for it.Seek(primaryKey(upper)); it.ValidForPrefix(opt.Prefix) && len(out) < limit; it.Next() {
				visited++
				if visited%256 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				if bytes.Compare(it.Item().Key()[2:], lower) < 0 {
					break
				}
				if err := it.Item().Value(emit); err != nil {
					return err
				}
			}
			return nil
		}

		its := make([]*badger.Iterator, len(prefixes))
		for i, p := range prefixes {
			opt := badger.DefaultIteratorOptions
			opt.Reverse = true
			opt.Prefix = p
			opt.PrefetchValues = false
			its[i] = txn.NewIterator(opt)
			defer its[i].Close()
		}
		// seek positions iterator i on the newest id <= cand; ok is false
		// when it has none at or after lower.
		seek := func(i int, cand []byte) (id []byte, ok bool) {
			visited++
			key := append(append(make([]byte, 0, len(prefixes[i])+idLen), prefixes[i]...), cand...)
			its[i].Seek(key)
			if !its[i].ValidForPrefix(prefixes[i]) {
				return nil, false
			}
			k := its[i].Item().Key()
			id = k[len(prefixes[i]):]
			if len(id) != idLen || bytes.Compare(id, lower) < 0 {
				return nil, false
			}
			return bytes.Clone(id), true
		}
		cand := bytes.Clone(upper)
		for len(out) < limit {
			if err := ctx.Err(); err != nil {
				return err
			}
			// Leapfrog: every iterator must land on the same id.
			agree := 0
			for i := 0; agree < len(its); i = (i + 1) % len(its) {
				id, ok := seek(i, cand)
				if !ok {
					return nil
				}
				if bytes.Equal(id, cand) {
					agree++
				} else {
					cand, agree = id, 1
				}
			}
			item, err := txn.Get(primaryKey(cand))
			switch {
			case errors.Is(err, badger.ErrKeyNotFound): // expired between the index and the record
			case err != nil:
				return err
			default:
				if err := item.Value(emit); err != nil {
					return err
				}
			}
			if !decrementID(cand) {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, visited, err
	}
	return out, visited, nil
}

// indexedKind is the kind a record is indexed under: every kind but
// decisions. Decisions are most records, and those written before records
// had a kind have no entry; a query for them scans and filters by
// Filter.Matches instead.
func indexedKind(kind string) string {
	if kind == audit.EventDecision {
		return ""
	}
	return kind
}

// Close stops value-log GC and closes the database. It is idempotent.
func (ix *Index) Close() error {
	ix.closeOnce.Do(func() {
		close(ix.stopGC)
		ix.gcDone.Wait()
		if err := ix.db.Close(); err != nil {
			ix.closeErr = fmt.Errorf("audit: close index: %w", err)
		}
	})
	return ix.closeErr
}

func (ix *Index) gcLoop() {
	defer ix.gcDone.Done()
	t := time.NewTicker(indexGCInterval)
	defer t.Stop()
	for {
		select {
		case <-ix.stopGC:
			return
		case <-t.C:
			for {
				select {
				case <-ix.stopGC:
					return
				default:
				}
				err := ix.db.RunValueLogGC(indexGCDiscardRatio)
				if err == nil {
					continue
				}
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					ix.log.Warn("badger value log GC failed", "err", err)
				}
				break
			}
		}
	}
}

// --- keys ------------------------------------------------------------------

func makeID(t time.Time, seq uint64) []byte {
	var ns uint64
	if !t.IsZero() {
		if n := t.UnixNano(); n > 0 {
			ns = uint64(n)
		}
	}
	return makeIDRaw(ns, seq)
}

func makeIDRaw(ns, seq uint64) []byte {
	id := make([]byte, idLen)
	binary.BigEndian.PutUint64(id[:8], ns)
	binary.BigEndian.PutUint64(id[8:], seq)
	return id
}

// decrementID subtracts one from the 128-bit big-endian id in place; it
// returns false when id was zero.
func decrementID(id []byte) bool {
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] > 0 {
			id[i]--
			return true
		}
		id[i] = 0xff
	}
	for i := range id {
		id[i] = 0
	}
	return false
}

func primaryKey(id []byte) []byte {
	k := make([]byte, 0, 2+idLen)
	return append(append(k, 'r', '/'), id...)
}

func indexPrefix(p byte, v string) []byte {
	if len(v) > maxIndexValueLen {
		sum := sha256.Sum256([]byte(v))
		v = "\x00sha256:" + string(sum[:])
	}
	k := make([]byte, 0, 2+binary.MaxVarintLen64+len(v)+idLen)
	k = append(k, p, '/')
	k = binary.AppendUvarint(k, uint64(len(v)))
	return append(k, v...)
}

// badgerLogger adapts slog to badger.Logger; Badger's info messages go to
// debug so the index is quiet at info.
type badgerLogger struct{ l *slog.Logger }

func (g badgerLogger) Errorf(f string, a ...any)   { g.l.Error(logMsg(f, a)) }
func (g badgerLogger) Warningf(f string, a ...any) { g.l.Warn(logMsg(f, a)) }
func (g badgerLogger) Infof(f string, a ...any)    { g.l.Debug(logMsg(f, a)) }
func (g badgerLogger) Debugf(f string, a ...any)   { g.l.Debug(logMsg(f, a)) }

func logMsg(f string, a []any) string { return strings.TrimSpace(fmt.Sprintf(f, a...)) }
