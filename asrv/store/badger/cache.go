package badger

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store"
)

// accessCache keeps decoded access-token records and their clients, so that
// introspecting a token does not decode two JSON documents from Badger on
// every call. It is coherent because Badger is opened by this process alone
// and every write goes through Store.update, whose transaction (writeTxn)
// notes the access tokens and clients it writes or deletes; after the
// commit the cache forgets exactly the entries those keys could have
// changed: the token's own, and every token of a client written or deleted
// (as the client or as an actor of a delegated token). Any other write (a
// code, a refresh token, a JTI, an index) leaves the cache as it is. An
// entry never outlives a write that could have changed or removed it (a
// revocation, a consumption, a deleted client). Expiry is checked on every
// hit. Policy is not cached: the decision is made on every call from the
// record.
type accessCache struct {
	mu sync.Mutex
	// gen counts the commits that touched an access token or a client: a
	// fill read before one of them is dropped (it may predate the write).
	gen     uint64
	entries map[string]accessEntry
	// byClient finds the entries of a client (the token's own, or an actor
	// of its chain).
	byClient map[string]map[string]struct{}
}

type accessEntry struct {
	rec    *store.Record
	client *asrv.Client
}

// maxAccessCacheEntries bounds the cache; a full cache starts over.
const maxAccessCacheEntries = 1 << 16

func newAccessCache() *accessCache {
	return &accessCache{entries: map[string]accessEntry{}, byClient: map[string]map[string]struct{}{}}
}

// get returns the entry for an access-token signature and the generation a
// fill after a miss must present.
func (c *accessCache) get(sig string) (accessEntry, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[sig]
	return e, c.gen, ok
}

// put stores an entry read at generation gen, unless a write that could
// have changed it came since.
func (c *accessCache) put(sig string, gen uint64, e accessEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.entries) >= maxAccessCacheEntries {
		c.entries, c.byClient = map[string]accessEntry{}, map[string]map[string]struct{}{}
	}
	// The key is copied: a caller's string may alias a buffer it reuses
	// (fasthttp's request buffers do), and a key that changes under the map
	// would hand one agent's record to another agent's token.
	sig = strings.Clone(sig)
	c.entries[sig] = e
	for _, id := range e.clients() {
		set := c.byClient[id]
		if set == nil {
			set = map[string]struct{}{}
			c.byClient[id] = set
		}
		set[sig] = struct{}{}
	}
}

// clients are the ids whose client records the entry depends on.
func (e accessEntry) clients() []string {
	return append([]string{e.rec.ClientID}, e.rec.Actors...)
}

// forget drops the entries a committed write may have changed: those of
// the access-token signatures and of the clients it wrote or deleted.
func (c *accessCache) forget(access, clients []string) {
	if len(access) == 0 && len(clients) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, sig := range access {
		c.drop(sig)
	}
	for _, id := range clients {
		for sig := range c.byClient[id] {
			c.drop(sig)
		}
		delete(c.byClient, id)
	}
}

func (c *accessCache) drop(sig string) {
	e, ok := c.entries[sig]
	if !ok {
		return
	}
	delete(c.entries, sig)
	for _, id := range e.clients() {
		if set := c.byClient[id]; set != nil {
			delete(set, sig)
			if len(set) == 0 {
				delete(c.byClient, id)
			}
		}
	}
}

// writeTxn is a read-write transaction that notes the access tokens and
// clients it writes or deletes, for accessCache.forget after the commit.
// Every write of the store goes through it (Store.update).
type writeTxn struct {
	*badger.Txn
	access  []string
	clients []string
}

func (t *writeTxn) note(key []byte) {
	switch {
	case bytes.HasPrefix(key, []byte(badgerKindAccess.prefix)):
		t.access = append(t.access, string(key[len(badgerKindAccess.prefix):]))
	case bytes.HasPrefix(key, []byte(badgerPrefixClient)):
		t.clients = append(t.clients, string(key[len(badgerPrefixClient):]))
	}
}

// Set notes key and sets it.
func (t *writeTxn) Set(key, val []byte) error {
	t.note(key)
	return t.Txn.Set(key, val)
}

// SetEntry notes the entry's key and sets it.
func (t *writeTxn) SetEntry(e *badger.Entry) error {
	t.note(e.Key)
	return t.Txn.SetEntry(e)
}

// Delete notes key and deletes it.
func (t *writeTxn) Delete(key []byte) error {
	t.note(key)
	return t.Txn.Delete(key)
}

// ViewAccessToken is GetAccessTokenSession for a caller that only reads the
// request and keeps nothing of it (introspection): on a cache hit the
// request shares the cached record's slices and session instead of copying
// them, which is most of a hit's allocations. The cached record is never
// written to (a write drops the entry), so readers may share it.
func (s *Store) ViewAccessToken(ctx context.Context, sig string) (fosite.Requester, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	if e, _, hit := s.cache.get(sig); hit {
		if exp := e.rec.Session.GetExpiresAt(badgerKindAccess.typ); !exp.IsZero() && !s.now().Before(exp) {
			return nil, fmt.Errorf("asrv: get %s: %w", badgerKindAccess.name, fosite.ErrNotFound)
		}
		return view(e.rec, e.client), nil
	}
	return s.GetAccessTokenSession(ctx, sig, nil)
}

// view is the record as a request that shares its slices and session: for
// reading only.
func view(rec *store.Record, client *asrv.Client) *fosite.Request {
	sess := rec.Session
	if sess == nil {
		sess = &asrv.Session{}
	}
	return &fosite.Request{
		ID:                rec.ID,
		RequestedAt:       rec.RequestedAt,
		Client:            client,
		RequestedScope:    rec.RequestedScope,
		GrantedScope:      rec.GrantedScope,
		RequestedAudience: rec.RequestedAudience,
		GrantedAudience:   rec.GrantedAudience,
		Form:              rec.Form,
		Session:           sess,
	}
}
