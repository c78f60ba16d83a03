// Package badger is the embedded token store: an asrv.Store in one Badger
// database, on disk (synced on every write) or in memory. It is the
// default; asrv/store/postgres is the one replicas share. Only a binary
// that imports this package links Badger.
package badger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store"
)

// Store is the embedded asrv.Store: one Badger database holding clients,
// authorization codes, PKCE requests, access and refresh tokens (by
// signature only), two indexes and the client-assertion JTI replay cache.
//
// Key layout (all values are JSON unless noted):
//
//	client/<id>                                  Client
//	pending/<id>                                 registration time (unix seconds, 8 bytes): an
//	                                             unverified client with no code or token yet
//	                                             and not approved by an operator
//	code/<sig>  pkce/<sig>  at/<sig>  rt/<sig>   store.Record (TTL = the token's expiry)
//	idx/req/<len><request id><token key>         empty (request-id index, same TTL)
//	idx/client/<len><client id><token key>       empty (client index, same TTL; a delegated
//	                                             token is also indexed under every actor's id)
//	idx/anc/<len><request id><token key>         empty (a delegated token under every grant it
//	                                             descends from, same TTL)
//	grant/<len><request id>                      empty: read and written by every delegation from
//	                                             the grant and every revocation of it, so that the
//	                                             two always conflict (see badgerTouchGrant)
//	jti/<hex sha256(jti)>                        expiry (TTL = exp)
//	revoked/<len><subject>                       the time everything acting for the person was
//	                                             revoked (TTL = until; see subject.go)
//
// <len> is the uvarint length of the id that follows, so an id can never be
// confused with a prefix of a longer one.
//
// Requests read back from the store are always *fosite.Request values whose
// Client is an *asrv.Client loaded from the client store (a token of a
// deleted client reads as fosite.ErrNotFound) and whose Session is a freshly
// decoded *asrv.Session. The session argument of the Get* methods is
// ignored: fosite's handlers only ever use the session of the returned
// request (Merge / SetSession), and the revocation handler passes nil.
type Store struct {
	db       *badger.DB
	cfg      badgerConfig
	inMemory bool

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	stopGC    chan struct{}
	gcDone    sync.WaitGroup

	cache *accessCache
}

var (
	_ asrv.Store             = (*Store)(nil)
	_ asrv.AccessTokenViewer = (*Store)(nil)
)

type badgerConfig struct {
	logger     *slog.Logger
	gcInterval time.Duration
	clock      func() time.Time
}

// Option configures Open.
type Option func(*badgerConfig)

// WithLogger routes the store's and Badger's logs to l. Badger's own
// informational chatter is logged at debug level.
func WithLogger(l *slog.Logger) Option {
	return func(c *badgerConfig) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithGCInterval sets how often value-log garbage collection runs
// (default 10 minutes; <= 0 disables it). In-memory stores never run it.
func WithGCInterval(d time.Duration) Option {
	return func(c *badgerConfig) { c.gcInterval = d }
}

// WithClock sets the clock expiry is judged by (default time.Now). Badger's
// own TTLs always use the real clock; an entry reads as expired when either
// says so.
func WithClock(now func() time.Time) Option {
	return func(c *badgerConfig) {
		if now != nil {
			c.clock = now
		}
	}
}

const (
	badgerDefaultGCInterval = 10 * time.Minute
	badgerGCDiscardRatio    = 0.5
	// badgerMaxConflictRetries bounds the retries of a transaction that lost a
	// write conflict.
	badgerMaxConflictRetries = 16
	// badgerSweepBatch is how many index entries one DeleteClient transaction
	// removes, keeping transactions far below Badger's size limit.
	badgerSweepBatch = 256
)

var errBadgerClosed = errors.New("asrv: badger store is closed")

// Open opens (creating) a Badger store in dir; dir == "" opens an
// in-memory store (tests, ephemeral demo). On-disk stores sync every write
// before it returns.
func Open(ctx context.Context, dir string, opts ...Option) (*Store, error) {
	cfg := badgerConfig{
		logger:     slog.Default(),
		gcInterval: badgerDefaultGCInterval,
		clock:      time.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("asrv: open badger store: %w", err)
	}
	inMemory := dir == ""
	bo := badger.DefaultOptions(dir).
		WithLogger(slogBadgerLogger{l: cfg.logger.With("component", "badger")}).
		WithNumVersionsToKeep(1)
	if inMemory {
		bo = bo.WithInMemory(true).
			WithMemTableSize(8 << 20).
			WithBlockCacheSize(8 << 20).
			WithNumCompactors(2)
	} else {
		bo = bo.WithSyncWrites(true).
			WithMemTableSize(16 << 20).
			WithBlockCacheSize(32 << 20).
			WithValueLogFileSize(128 << 20)
	}
	db, err := badger.Open(bo)
	if err != nil {
		where := dir
		if inMemory {
			where = "memory"
		}
		return nil, fmt.Errorf("asrv: open badger store (%s): %w", where, err)
	}
	s := &Store{db: db, cfg: cfg, inMemory: inMemory, stopGC: make(chan struct{}), cache: newAccessCache()}
	if !inMemory && cfg.gcInterval > 0 {
		s.gcDone.Add(1)
		go s.gcLoop()
	}
	return s, nil
}

func (s *Store) gcLoop() {
	defer s.gcDone.Done()
	t := time.NewTicker(s.cfg.gcInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
			for {
				select {
				case <-s.stopGC:
					return
				default:
				}
				err := s.db.RunValueLogGC(badgerGCDiscardRatio)
				if err == nil {
					continue // a file was rewritten; try the next one
				}
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					s.cfg.logger.Warn("badger value log GC failed", "err", err)
				}
				break
			}
		}
	}
}

// Close stops garbage collection and closes the database. It is idempotent:
// later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stopGC)
		s.gcDone.Wait()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("asrv: close badger store: %w", err)
		}
	})
	return s.closeErr
}

// slogBadgerLogger adapts slog to badger.Logger; Badger's info messages
// (compaction, flushes, replay) go to debug so the store is quiet at info.
type slogBadgerLogger struct{ l *slog.Logger }

func (g slogBadgerLogger) Errorf(f string, a ...any) { g.l.Error(badgerLogMsg(f, a)) }
func (g slogBadgerLogger) Warningf(f string, a ...any) {
	g.l.Warn(badgerLogMsg(f, a))
}
func (g slogBadgerLogger) Infof(f string, a ...any)  { g.l.Debug(badgerLogMsg(f, a)) }
func (g slogBadgerLogger) Debugf(f string, a ...any) { g.l.Debug(badgerLogMsg(f, a)) }

func badgerLogMsg(f string, a []any) string { return strings.TrimSpace(fmt.Sprintf(f, a...)) }

// --- transactions ---------------------------------------------------------

func (s *Store) view(ctx context.Context, fn func(txn *badger.Txn) error) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	return s.db.View(fn)
}

// update runs fn in a read-write transaction and commits it (synced to disk
// for on-disk stores), retrying when it loses a write conflict. fn learns
// whether it is a retry. When the retries run out the error wraps
// fosite.ErrSerializationFailure, which fosite turns into "retry".
func (s *Store) update(ctx context.Context, fn func(txn *writeTxn, retry bool) error) error {
	for attempt := 0; ; attempt++ {
		if err := s.usable(ctx); err != nil {
			return err
		}
		w := &writeTxn{}
		err := s.db.Update(func(txn *badger.Txn) error {
			w.Txn = txn
			return fn(w, attempt > 0)
		})
		// Forgotten whether or not the commit went through: a failed one
		// loses at most some cache hits.
		s.cache.forget(w.access, w.clients)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		if attempt >= badgerMaxConflictRetries {
			return fmt.Errorf("%w: %w", fosite.ErrSerializationFailure, err)
		}
	}
}

// Ping fails once the store is closed (or Badger has closed itself on a
// fatal error); it reads nothing.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if s.db.IsClosed() {
		return errBadgerClosed
	}
	return nil
}

func (s *Store) usable(ctx context.Context) error {
	if s.closed.Load() {
		return errBadgerClosed
	}
	return ctx.Err()
}

func (s *Store) now() time.Time { return s.cfg.clock() }

// --- keys -----------------------------------------------------------------

type badgerKind struct {
	prefix string
	typ    fosite.TokenType // which session expiry bounds it
	name   string
}

var (
	badgerKindCode    = badgerKind{"code/", fosite.AuthorizeCode, "authorization code"}
	badgerKindPKCE    = badgerKind{"pkce/", fosite.AuthorizeCode, "PKCE request"}
	badgerKindAccess  = badgerKind{"at/", fosite.AccessToken, "access token"}
	badgerKindRefresh = badgerKind{"rt/", fosite.RefreshToken, "refresh token"}
)

const (
	badgerPrefixClient   = "client/"
	badgerPrefixPending  = "pending/"
	badgerPrefixReqIndex = "idx/req/"
	badgerPrefixCliIndex = "idx/client/"
	badgerPrefixAncIndex = "idx/anc/"
	badgerPrefixGrant    = "grant/"
	badgerPrefixJTI      = "jti/"
)

func (k badgerKind) key(sig string) []byte { return []byte(k.prefix + sig) }

func badgerClientKey(id string) []byte { return []byte(badgerPrefixClient + id) }

// badgerIndexBase is prefix + uvarint(len(id)) + id.
func badgerIndexBase(prefix, id string) []byte {
	b := make([]byte, 0, len(prefix)+binary.MaxVarintLen64+len(id))
	b = append(b, prefix...)
	b = binary.AppendUvarint(b, uint64(len(id)))
	return append(b, id...)
}

func badgerIndexKey(prefix, id string, tokenKey []byte) []byte {
	return append(badgerIndexBase(prefix, id), tokenKey...)
}

func badgerJTIKey(jti string) []byte {
	h := sha256.Sum256([]byte(jti))
	return []byte(badgerPrefixJTI + hex.EncodeToString(h[:]))
}

// badgerExpiresAt converts t to Badger's ExpiresAt (unix seconds, 0 = never),
// rounding up so an entry never disappears before t.
func badgerExpiresAt(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	if sec <= 0 {
		return 1 // already expired
	}
	return uint64(sec)
}

// --- clients --------------------------------------------------------------

// CreateClient registers c; asrv.ErrClientExists if the id is taken.
func (s *Store) CreateClient(ctx context.Context, c *asrv.Client) error {
	if c == nil || !store.ValidID(c.ID) {
		return fmt.Errorf("asrv: create client: invalid client id")
	}
	val, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("asrv: create client %q: encode: %w", c.ID, err)
	}
	err = s.update(ctx, func(txn *writeTxn, _ bool) error {
		_, err := txn.Get(badgerClientKey(c.ID))
		switch {
		case err == nil:
			return asrv.ErrClientExists
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		if err := txn.Set(badgerClientKey(c.ID), val); err != nil {
			return err
		}
		if c.Agent.Verified {
			return nil
		}
		return txn.Set(badgerPendingKey(c.ID), binary.BigEndian.AppendUint64(nil, uint64(c.CreatedAt.Unix())))
	})
	if err != nil {
		return fmt.Errorf("asrv: create client %q: %w", c.ID, err)
	}
	return nil
}

func badgerPendingKey(id string) []byte { return []byte(badgerPrefixPending + id) }

// badgerClientUsed clears id's pending mark, in the transaction that
// issues it a code or token.
func badgerClientUsed(txn *writeTxn, id string) error {
	k := badgerPendingKey(id)
	if _, err := txn.Get(k); errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	return txn.Delete(k)
}

// CountClients counts the registered and the pending clients (keys only).
func (s *Store) CountClients(ctx context.Context) (total, pending int, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		total = badgerCountKeys(txn, []byte(badgerPrefixClient))
		pending = badgerCountKeys(txn, []byte(badgerPrefixPending))
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("asrv: count clients: %w", err)
	}
	return total, pending, nil
}

func badgerCountKeys(txn *badger.Txn, prefix []byte) int {
	o := badger.DefaultIteratorOptions
	o.PrefetchValues = false
	o.Prefix = prefix
	it := txn.NewIterator(o)
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		n++
	}
	return n
}

// DeletePendingClients deletes the pending clients registered before the
// cutoff. Each is deleted in a transaction that reads its pending mark, so
// one whose first token was issued meanwhile (clearing the mark) conflicts
// and survives.
func (s *Store) DeletePendingClients(ctx context.Context, registeredBefore time.Time) (int, error) {
	var ids []string
	err := s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(badgerPrefixPending), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var at int64
			_ = it.Item().Value(func(v []byte) error {
				if len(v) == 8 {
					at = int64(binary.BigEndian.Uint64(v))
				}
				return nil
			})
			if at < registeredBefore.Unix() {
				ids = append(ids, strings.TrimPrefix(string(it.Item().Key()), badgerPrefixPending))
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("asrv: delete pending clients: %w", err)
	}
	n := 0
	for _, id := range ids {
		deleted, err := s.deleteClient(ctx, id, true)
		if err != nil {
			return n, fmt.Errorf("asrv: delete pending clients: %w", err)
		}
		if deleted {
			n++
		}
	}
	return n, nil
}

// Client returns the registered client, or fosite.ErrNotFound.
func (s *Store) Client(ctx context.Context, id string) (*asrv.Client, error) {
	var c *asrv.Client
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		c, err = badgerLoadClient(txn, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("asrv: get client %q: %w", id, err)
	}
	return c, nil
}

// Clients lists the registered clients, ordered by id.
func (s *Store) Clients(ctx context.Context) ([]*asrv.Client, error) {
	var out []*asrv.Client
	err := s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(badgerPrefixClient), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var c asrv.Client
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &c) }); err != nil {
				return fmt.Errorf("decode client %q: %w", it.Item().Key(), err)
			}
			out = append(out, &c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("asrv: list clients: %w", err)
	}
	return out, nil
}

// UpdateClient changes the stored client in one transaction, retried on a
// write conflict (update then runs again on the client as stored then).
// The commit empties the access cache, so the next introspection of any
// token of the client sees the change.
func (s *Store) UpdateClient(ctx context.Context, id string, update func(*asrv.Client) error) (*asrv.Client, error) {
	var out *asrv.Client
	err := s.update(ctx, func(txn *writeTxn, _ bool) error {
		c, err := badgerLoadClient(txn.Txn, id)
		if err != nil {
			return err
		}
		if err := update(c); err != nil {
			return err
		}
		if c.ID != id {
			return fmt.Errorf("the update changed the client id to %q", c.ID)
		}
		val, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		if err := txn.Set(badgerClientKey(id), val); err != nil {
			return err
		}
		out = c
		if c.Review != nil && c.Review.Status == asrv.ReviewApproved {
			return badgerClientUsed(txn, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("asrv: update client %q: %w", id, err)
	}
	return out, nil
}

// PendingClients returns the pending clients' ids and registration times.
func (s *Store) PendingClients(ctx context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(badgerPrefixPending), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var at time.Time
			if err := it.Item().Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("pending mark of %d bytes", len(v))
				}
				at = time.Unix(int64(binary.BigEndian.Uint64(v)), 0).UTC()
				return nil
			}); err != nil {
				return fmt.Errorf("decode %q: %w", it.Item().Key(), err)
			}
			out[strings.TrimPrefix(string(it.Item().Key()), badgerPrefixPending)] = at
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("asrv: list pending clients: %w", err)
	}
	return out, nil
}

// GetClient implements fosite.ClientManager.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := s.Client(ctx, id)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func badgerLoadClient(txn *badger.Txn, id string) (*asrv.Client, error) {
	if !store.ValidID(id) {
		return nil, fosite.ErrNotFound
	}
	item, err := txn.Get(badgerClientKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fosite.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	c := new(asrv.Client)
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, c) }); err != nil {
		return nil, fmt.Errorf("decode client: %w", err)
	}
	if c.ID != id {
		return nil, fmt.Errorf("decode client: stored id %q does not match key", c.ID)
	}
	return c, nil
}

// DeleteClient removes a client and every code and token issued to it. The
// client itself goes first, in its own transaction, so its tokens stop
// resolving at once (a token whose client is gone reads as not found); the
// tokens are then removed in batches. It returns fosite.ErrNotFound when no
// such client was registered (after sweeping any leftovers).
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if !store.ValidID(id) {
		return fmt.Errorf("asrv: delete client: %w", fosite.ErrNotFound)
	}
	existed, err := s.deleteClient(ctx, id, false)
	if err != nil {
		return err
	}
	if !existed {
		return fmt.Errorf("asrv: delete client %q: %w", id, fosite.ErrNotFound)
	}
	return nil
}

// deleteClient deletes a client (with onlyPending, only while it is
// pending) and sweeps its tokens; it reports whether it deleted it.
func (s *Store) deleteClient(ctx context.Context, id string, onlyPending bool) (bool, error) {
	existed := false
	err := s.update(ctx, func(txn *writeTxn, _ bool) error {
		existed = false
		if onlyPending {
			if _, err := txn.Get(badgerPendingKey(id)); errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			} else if err != nil {
				return err
			}
		}
		_, err := txn.Get(badgerClientKey(id))
		switch {
		case err == nil:
			existed = true
		case errors.Is(err, badger.ErrKeyNotFound):
			return txn.Delete(badgerPendingKey(id))
		default:
			return err
		}
		if err := txn.Delete(badgerPendingKey(id)); err != nil {
			return err
		}
		return txn.Delete(badgerClientKey(id))
	})
	if err != nil {
		return false, fmt.Errorf("asrv: delete client %q: %w", id, err)
	}
	if !existed && onlyPending {
		return false, nil
	}
	base := badgerIndexBase(badgerPrefixCliIndex, id)
	for {
		var keys [][]byte
		if err := s.view(ctx, func(txn *badger.Txn) error {
			keys = badgerScanKeys(txn, base, badgerSweepBatch)
			return nil
		}); err != nil {
			return existed, fmt.Errorf("asrv: delete tokens of client %q: %w", id, err)
		}
		if len(keys) == 0 {
			break
		}
		err := s.update(ctx, func(txn *writeTxn, _ bool) error {
			for _, ik := range keys {
				if err := badgerDeleteTokenByKey(txn, ik[len(base):]); err != nil {
					return err
				}
				// The index entry itself, in case the token was already gone
				// or unreadable.
				if err := txn.Delete(ik); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return existed, fmt.Errorf("asrv: delete tokens of client %q: %w", id, err)
		}
	}
	return existed, nil
}

// badgerScanKeys returns up to limit keys (copies) under prefix.
func badgerScanKeys(txn *badger.Txn, prefix []byte, limit int) [][]byte {
	o := badger.DefaultIteratorOptions
	o.PrefetchValues = false
	o.Prefix = prefix
	it := txn.NewIterator(o)
	defer it.Close()
	var keys [][]byte
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
		if limit > 0 && len(keys) >= limit {
			break
		}
	}
	return keys
}

// --- client assertion JTIs -----------------------------------------------

type badgerJTI struct {
	Exp time.Time `json:"exp"`
}

// ClientAssertionJWTValid returns fosite.ErrJTIKnown when jti was recorded
// and has not yet expired, nil otherwise.
func (s *Store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	err := s.view(ctx, func(txn *badger.Txn) error {
		known, err := s.jtiKnown(txn, jti)
		if err != nil {
			return err
		}
		if known {
			return fosite.ErrJTIKnown
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("asrv: check client assertion jti: %w", err)
	}
	return nil
}

// SetClientAssertionJWT records jti until exp; fosite.ErrJTIKnown if it is
// already recorded. An exp already in the past records nothing (such an
// assertion is rejected for its expiry anyway). Expired JTIs are removed by
// Badger's TTL, so there is no sweep.
func (s *Store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	err := s.update(ctx, func(txn *writeTxn, _ bool) error {
		known, err := s.jtiKnown(txn.Txn, jti)
		if err != nil {
			return err
		}
		if known {
			return fosite.ErrJTIKnown
		}
		if !exp.After(s.now()) {
			return nil
		}
		val, err := json.Marshal(badgerJTI{Exp: exp.UTC()})
		if err != nil {
			return err
		}
		e := badger.NewEntry(badgerJTIKey(jti), val)
		e.ExpiresAt = badgerExpiresAt(exp)
		return txn.SetEntry(e)
	})
	if err != nil {
		return fmt.Errorf("asrv: record client assertion jti: %w", err)
	}
	return nil
}

func (s *Store) jtiKnown(txn *badger.Txn, jti string) (bool, error) {
	item, err := txn.Get(badgerJTIKey(jti))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	var v badgerJTI
	if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &v) }); err != nil {
		// Unreadable: treat as known, the safe answer for replay protection.
		return true, nil
	}
	return v.Exp.After(s.now()), nil
}

// --- tokens ---------------------------------------------------------------

// CreateAuthorizeCodeSession stores the request of an authorization code.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createToken(ctx, badgerKindCode, sig, "", req)
}

// GetAuthorizeCodeSession returns the request of an authorization code. For
// an invalidated code it returns the request AND
// fosite.ErrInvalidatedAuthorizeCode, so fosite revokes the grant's tokens.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	req, rec, err := s.getToken(ctx, badgerKindCode, sig)
	if err != nil {
		return nil, err
	}
	if rec.Inactive {
		return req, fmt.Errorf("asrv: get authorization code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	return req, nil
}

// InvalidateAuthorizeCodeSession marks a code used. The code is kept (until
// it expires) so reuse is detected. Invalidating an already invalidated code
// fails with fosite.ErrInvalidatedAuthorizeCode: of two concurrent token
// requests redeeming one code, only one gets tokens.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, sig string) error {
	err := s.update(ctx, func(txn *writeTxn, _ bool) error {
		rec, item, err := s.loadRecord(txn.Txn, badgerKindCode, sig)
		if err != nil {
			return err
		}
		if rec.Inactive {
			return fosite.ErrInvalidatedAuthorizeCode
		}
		rec.Inactive = true
		return badgerRewriteRecord(txn, badgerKindCode.key(sig), rec, item.ExpiresAt())
	})
	if err != nil {
		return fmt.Errorf("asrv: invalidate authorization code: %w", err)
	}
	return nil
}

// CreatePKCERequestSession stores the PKCE request of an authorization code.
func (s *Store) CreatePKCERequestSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createToken(ctx, badgerKindPKCE, sig, "", req)
}

// GetPKCERequestSession returns the PKCE request of an authorization code.
func (s *Store) GetPKCERequestSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	req, _, err := s.getToken(ctx, badgerKindPKCE, sig)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// DeletePKCERequestSession deletes a PKCE request (nil if absent).
func (s *Store) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return s.deleteToken(ctx, badgerKindPKCE, sig)
}

// CreateAccessTokenSession stores the request of an access token.
func (s *Store) CreateAccessTokenSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createToken(ctx, badgerKindAccess, sig, "", req)
}

// GetAccessTokenSession returns the request of an access token, or
// fosite.ErrNotFound (absent, expired, or its client deleted).
func (s *Store) GetAccessTokenSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	req, _, err := s.getToken(ctx, badgerKindAccess, sig)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// DeleteAccessTokenSession deletes an access token (nil if absent).
func (s *Store) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	return s.deleteToken(ctx, badgerKindAccess, sig)
}

// ConsumeAccessToken deletes the access token and returns its request in one
// transaction. Of concurrent callers exactly one succeeds: a caller that
// loses the write conflict re-reads, finds the token gone and gets
// asrv.ErrConsumed; a caller that starts after the deletion gets
// fosite.ErrNotFound.
func (s *Store) ConsumeAccessToken(ctx context.Context, sig string) (fosite.Requester, error) {
	var req *fosite.Request
	err := s.update(ctx, func(txn *writeTxn, retry bool) error {
		rec, _, err := s.loadRecord(txn.Txn, badgerKindAccess, sig)
		if err != nil {
			if retry && errors.Is(err, fosite.ErrNotFound) {
				return asrv.ErrConsumed
			}
			return err
		}
		client, err := badgerLoadClient(txn.Txn, rec.ClientID)
		if err != nil {
			return err
		}
		if err := badgerActorsRegistered(txn.Txn, rec); err != nil {
			return err
		}
		req = rec.Request(client)
		return badgerDeleteRecord(txn, badgerKindAccess.key(sig), rec)
	})
	if err != nil {
		return nil, fmt.Errorf("asrv: consume access token: %w", err)
	}
	return req, nil
}

// CreateRefreshTokenSession stores the request of a refresh token together
// with the signature of the access token issued with it.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, req fosite.Requester) error {
	return s.createToken(ctx, badgerKindRefresh, sig, accessSig, req)
}

// GetRefreshTokenSession returns the request of a refresh token. For a
// rotated or revoked (inactive) one it returns the request AND
// fosite.ErrInactiveToken, which fosite treats as reuse and answers by
// revoking the whole grant.
func (s *Store) GetRefreshTokenSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	return s.GetRefreshTokenSessionWithin(ctx, sig, 0)
}

// GetRefreshTokenSessionWithin is GetRefreshTokenSession that returns a
// refresh token rotated less than grace ago (its family not revoked since)
// without error.
func (s *Store) GetRefreshTokenSessionWithin(ctx context.Context, sig string, grace time.Duration) (fosite.Requester, error) {
	req, rec, err := s.getToken(ctx, badgerKindRefresh, sig)
	if err != nil {
		return nil, err
	}
	if rec.Inactive && !store.InRotationGrace(rec.RotatedAt, s.now(), grace) {
		return req, fmt.Errorf("asrv: get refresh token: %w", fosite.ErrInactiveToken)
	}
	return req, nil
}

// DeleteRefreshTokenSession deletes a refresh token (nil if absent).
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.deleteToken(ctx, badgerKindRefresh, sig)
}

// RotateRefreshToken marks the refresh token inactive (kept for reuse
// detection) and deletes the access tokens of requestID, atomically. It
// fails with fosite.ErrNotFound for an unknown token and with
// fosite.ErrInactiveToken for one already rotated, so of two concurrent
// refreshes with one token only one succeeds.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	return s.RotateRefreshTokenWithin(ctx, requestID, sig, 0)
}

// RotateRefreshTokenWithin is RotateRefreshToken that also accepts a
// refresh token rotated less than grace ago, leaving it and the family's
// access tokens as they are. The record read puts the token in the
// transaction's read set: a revocation committed meanwhile rewrites it, so
// the rotation conflicts and its retry sees the family revoked.
func (s *Store) RotateRefreshTokenWithin(ctx context.Context, requestID, sig string, grace time.Duration) error {
	err := s.update(ctx, func(txn *writeTxn, _ bool) error {
		rec, item, err := s.loadRecord(txn.Txn, badgerKindRefresh, sig)
		if err != nil {
			return err
		}
		now := s.now()
		if rec.Inactive {
			if store.InRotationGrace(rec.RotatedAt, now, grace) {
				return nil
			}
			return fosite.ErrInactiveToken
		}
		rec.Inactive, rec.RotatedAt = true, now.UTC()
		if err := badgerRewriteRecord(txn, badgerKindRefresh.key(sig), rec, item.ExpiresAt()); err != nil {
			return err
		}
		return badgerRevokeFamily(txn, requestID, badgerKindAccess)
	})
	if err != nil {
		return fmt.Errorf("asrv: rotate refresh token: %w", err)
	}
	return nil
}

// RevokeRefreshToken marks every refresh token of requestID inactive,
// ending the rotation grace period of those already rotated, and deletes
// the access tokens delegated from the grant. It returns nil when there
// are none.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	err := s.update(ctx, func(txn *writeTxn, _ bool) error {
		if err := badgerRevokeFamily(txn, requestID, badgerKindRefresh); err != nil {
			return err
		}
		return badgerRevokeDescendants(txn, requestID)
	})
	if err != nil {
		return fmt.Errorf("asrv: revoke refresh tokens of request: %w", err)
	}
	return nil
}

// RevokeAccessToken deletes every access token of requestID and every
// access token delegated from the grant. It returns nil when there are
// none.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	err := s.update(ctx, func(txn *writeTxn, _ bool) error {
		if err := badgerRevokeFamily(txn, requestID, badgerKindAccess); err != nil {
			return err
		}
		return badgerRevokeDescendants(txn, requestID)
	})
	if err != nil {
		return fmt.Errorf("asrv: revoke access tokens of request: %w", err)
	}
	return nil
}

// badgerRevokeFamily deletes the access tokens, or deactivates the refresh tokens,
// of requestID, found through the request-id index.
func badgerRevokeFamily(txn *writeTxn, requestID string, kind badgerKind) error {
	if !store.ValidID(requestID) {
		return nil
	}
	base := badgerIndexBase(badgerPrefixReqIndex, requestID)
	for _, ik := range badgerScanKeys(txn.Txn, append(base, kind.prefix...), 0) {
		tk := ik[len(base):]
		item, err := txn.Get(tk)
		if errors.Is(err, badger.ErrKeyNotFound) {
			if err := txn.Delete(ik); err != nil {
				return err
			}
			continue
		} else if err != nil {
			return err
		}
		rec, err := badgerItemRecord(item)
		if err != nil {
			// Unreadable: it cannot be served anyway; remove it.
			if err := txn.Delete(tk); err != nil {
				return err
			}
			if err := txn.Delete(ik); err != nil {
				return err
			}
			continue
		}
		switch kind {
		case badgerKindRefresh:
			// A rotated token loses its grace period with its family.
			if rec.Endable() {
				rec.Inactive, rec.RotatedAt = true, time.Time{}
				if err := badgerRewriteRecord(txn, tk, rec, item.ExpiresAt()); err != nil {
					return err
				}
			}
		default:
			if err := badgerDeleteRecord(txn, tk, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// badgerRevokeDescendants deletes the access tokens delegated from a token
// of requestID, at any depth (each is indexed under every grant it
// descends from).
func badgerRevokeDescendants(txn *writeTxn, requestID string) error {
	if !store.ValidID(requestID) {
		return nil
	}
	if err := badgerTouchGrant(txn, requestID, 0, true); err != nil {
		return err
	}
	base := badgerIndexBase(badgerPrefixAncIndex, requestID)
	for _, ik := range badgerScanKeys(txn.Txn, base, 0) {
		if err := badgerDeleteTokenByKey(txn, ik[len(base):]); err != nil {
			return err
		}
		if err := txn.Delete(ik); err != nil {
			return err
		}
	}
	return nil
}

// badgerTouchGrant reads and writes (sets until exp, or with remove
// deletes) the grant key of requestID. Badger detects conflicts on keys a
// transaction read and another wrote, not on a range scan that would have
// found a key written meanwhile: without a key both touch, a revocation
// could miss a delegated token committed after it started, and a delegation
// could miss a refresh-side revocation committed after it started.
func badgerTouchGrant(txn *writeTxn, requestID string, exp uint64, remove bool) error {
	k := badgerIndexBase(badgerPrefixGrant, requestID)
	if _, err := txn.Get(k); err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return err
	}
	if remove {
		return txn.Delete(k)
	}
	e := badger.NewEntry(k, nil)
	e.ExpiresAt = exp
	return txn.SetEntry(e)
}

// CreateDelegatedAccessToken stores a token exchange's access token in one
// transaction with reading (and, with consumeSubject, deleting) the subject
// token and reading every client of the chain: a concurrent revocation,
// consumption or client deletion writes one of those keys, so one of the
// two transactions conflicts and its retry sees the other's outcome.
func (s *Store) CreateDelegatedAccessToken(ctx context.Context, sig string, req fosite.Requester, subjectSig string, consumeSubject bool) error {
	if !store.ValidSignature(sig) {
		return errors.New("asrv: create delegated access token: invalid signature")
	}
	rec, err := store.NewRecord(req)
	if err != nil {
		return fmt.Errorf("asrv: create delegated access token: %w", err)
	}
	exp := badgerExpiresAt(rec.Session.GetExpiresAt(fosite.AccessToken))
	key := badgerKindAccess.key(sig)
	err = s.update(ctx, func(txn *writeTxn, retry bool) error {
		subject, _, err := s.loadRecord(txn.Txn, badgerKindAccess, subjectSig)
		if err != nil {
			if retry && errors.Is(err, fosite.ErrNotFound) {
				return asrv.ErrConsumed
			}
			return fmt.Errorf("subject token: %w", err)
		}
		linked := *rec
		if err := linked.DelegatedFrom(subject); err != nil {
			return err
		}
		for _, id := range append(slices.Clone(linked.Actors), linked.ClientID) {
			if _, err := badgerLoadClient(txn.Txn, id); err != nil {
				return fmt.Errorf("client %q: %w", id, err)
			}
		}
		for _, id := range linked.Ancestors {
			if err := badgerTouchGrant(txn, id, exp, false); err != nil {
				return err
			}
		}
		if err := s.badgerSubjectAllowed(txn.Txn, &linked); err != nil {
			return err
		}
		if err := badgerClientUsed(txn, linked.ClientID); err != nil {
			return err
		}
		if consumeSubject {
			if err := badgerDeleteRecord(txn, badgerKindAccess.key(subjectSig), subject); err != nil {
				return err
			}
		}
		return badgerSetToken(txn, key, &linked, exp)
	})
	if err != nil {
		return fmt.Errorf("asrv: create delegated access token: %w", err)
	}
	return nil
}

func (s *Store) createToken(ctx context.Context, kind badgerKind, sig, accessSig string, req fosite.Requester) error {
	if !store.ValidSignature(sig) {
		return fmt.Errorf("asrv: create %s: invalid signature", kind.name)
	}
	rec, err := store.NewRecord(req)
	if err != nil {
		return fmt.Errorf("asrv: create %s: %w", kind.name, err)
	}
	rec.AccessSignature = accessSig
	exp := badgerExpiresAt(rec.Session.GetExpiresAt(kind.typ))
	key := kind.key(sig)
	err = s.update(ctx, func(txn *writeTxn, _ bool) error {
		// Reading the client puts it in this transaction's read set: a
		// concurrent DeleteClient makes this commit conflict and the retry
		// finds the client gone, so no token outlives its client.
		if _, err := badgerLoadClient(txn.Txn, rec.ClientID); err != nil {
			return fmt.Errorf("client %q: %w", rec.ClientID, err)
		}
		if err := s.badgerSubjectAllowed(txn.Txn, rec); err != nil {
			return err
		}
		if err := badgerClientUsed(txn, rec.ClientID); err != nil {
			return err
		}
		return badgerSetToken(txn, key, rec, exp)
	})
	if err != nil {
		return fmt.Errorf("asrv: create %s: %w", kind.name, err)
	}
	return nil
}

// badgerSetToken writes a token record and its index entries, all expiring
// at exp: by request id and client, and for a delegated token by every
// grant it descends from and every actor.
func badgerSetToken(txn *writeTxn, key []byte, rec *store.Record, exp uint64) error {
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	entries := []*badger.Entry{
		badger.NewEntry(key, val),
		badger.NewEntry(badgerIndexKey(badgerPrefixReqIndex, rec.ID, key), nil),
		badger.NewEntry(badgerIndexKey(badgerPrefixCliIndex, rec.ClientID, key), nil),
	}
	for _, id := range rec.Ancestors {
		entries = append(entries, badger.NewEntry(badgerIndexKey(badgerPrefixAncIndex, id, key), nil))
	}
	for _, id := range rec.Actors {
		entries = append(entries, badger.NewEntry(badgerIndexKey(badgerPrefixCliIndex, id, key), nil))
	}
	for _, e := range entries {
		e.ExpiresAt = exp
		if err := txn.SetEntry(e); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) getToken(ctx context.Context, kind badgerKind, sig string) (*fosite.Request, *store.Record, error) {
	var (
		req *fosite.Request
		rec *store.Record
	)
	cached := kind == badgerKindAccess
	var gen uint64
	if cached {
		if err := s.usable(ctx); err != nil {
			return nil, nil, err
		}
		var e accessEntry
		var hit bool
		if e, gen, hit = s.cache.get(sig); hit {
			if exp := e.rec.Session.GetExpiresAt(kind.typ); !exp.IsZero() && !s.now().Before(exp) {
				return nil, nil, fmt.Errorf("asrv: get %s: %w", kind.name, fosite.ErrNotFound)
			}
			return e.rec.Request(e.client), e.rec, nil
		}
	}
	var client *asrv.Client
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		rec, _, err = s.loadRecord(txn, kind, sig)
		if err != nil {
			return err
		}
		client, err = badgerLoadClient(txn, rec.ClientID)
		if err != nil {
			return err
		}
		if err := badgerActorsRegistered(txn, rec); err != nil {
			return err
		}
		req = rec.Request(client)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("asrv: get %s: %w", kind.name, err)
	}
	if cached {
		s.cache.put(sig, gen, accessEntry{rec: rec, client: client})
	}
	return req, rec, nil
}

func (s *Store) deleteToken(ctx context.Context, kind badgerKind, sig string) error {
	if !store.ValidSignature(sig) {
		return nil
	}
	err := s.update(ctx, func(txn *writeTxn, _ bool) error {
		return badgerDeleteTokenByKey(txn, kind.key(sig))
	})
	if err != nil {
		return fmt.Errorf("asrv: delete %s: %w", kind.name, err)
	}
	return nil
}

// loadRecord reads a token record; fosite.ErrNotFound when it is absent,
// expired (by Badger's TTL or the store's clock) or unreadable.
func (s *Store) loadRecord(txn *badger.Txn, kind badgerKind, sig string) (*store.Record, *badger.Item, error) {
	if !store.ValidSignature(sig) {
		return nil, nil, fosite.ErrNotFound
	}
	item, err := txn.Get(kind.key(sig))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil, fosite.ErrNotFound
	} else if err != nil {
		return nil, nil, err
	}
	rec, err := badgerItemRecord(item)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", fosite.ErrNotFound, err)
	}
	if exp := rec.Session.GetExpiresAt(kind.typ); !exp.IsZero() && !s.now().Before(exp) {
		return nil, nil, fosite.ErrNotFound
	}
	return rec, item, nil
}

func badgerItemRecord(item *badger.Item) (*store.Record, error) {
	var rec *store.Record
	err := item.Value(func(v []byte) error {
		var err error
		rec, err = store.DecodeRecord(v)
		return err
	})
	return rec, err
}

// badgerDeleteTokenByKey deletes a token record and its index entries; nothing if
// it is absent.
func badgerDeleteTokenByKey(txn *writeTxn, tk []byte) error {
	item, err := txn.Get(tk)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	rec, err := badgerItemRecord(item)
	if err != nil {
		rec = nil // unreadable: delete the record, indexes expire or are swept
	}
	return badgerDeleteRecord(txn, tk, rec)
}

// badgerActorsRegistered is fosite.ErrNotFound when a client of a
// delegated token's chain is gone: DeleteClient deletes the client before it
// sweeps the tokens indexed under it, and a token must not be served in
// between.
func badgerActorsRegistered(txn *badger.Txn, rec *store.Record) error {
	for _, id := range rec.Actors {
		if _, err := badgerLoadClient(txn, id); err != nil {
			return err
		}
	}
	return nil
}

func badgerDeleteRecord(txn *writeTxn, tk []byte, rec *store.Record) error {
	if err := txn.Delete(tk); err != nil {
		return err
	}
	if rec == nil {
		return nil
	}
	for _, id := range rec.Ancestors {
		if store.ValidID(id) {
			if err := txn.Delete(badgerIndexKey(badgerPrefixAncIndex, id, tk)); err != nil {
				return err
			}
		}
	}
	for _, id := range rec.Actors {
		if store.ValidID(id) {
			if err := txn.Delete(badgerIndexKey(badgerPrefixCliIndex, id, tk)); err != nil {
				return err
			}
		}
	}
	if store.ValidID(rec.ID) {
		if err := txn.Delete(badgerIndexKey(badgerPrefixReqIndex, rec.ID, tk)); err != nil {
			return err
		}
	}
	if store.ValidID(rec.ClientID) {
		if err := txn.Delete(badgerIndexKey(badgerPrefixCliIndex, rec.ClientID, tk)); err != nil {
			return err
		}
	}
	return nil
}

// badgerRewriteRecord stores rec under tk keeping its Badger expiry.
func badgerRewriteRecord(txn *writeTxn, tk []byte, rec *store.Record, expiresAt uint64) error {
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	e := badger.NewEntry(tk, val)
	e.ExpiresAt = expiresAt
	return txn.SetEntry(e)
}
