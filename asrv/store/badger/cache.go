package badger

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store"
)

// accessCache keeps decoded access-token records and their clients, so that
// introspecting a token does not decode two JSON documents from Badger on
// every call. It is coherent because Badger is opened by this process alone
// and every write goes through Store.update, which empties the cache
// after it commits: an entry never outlives a write that could have changed
// or removed it (a revocation, a consumption, a deleted client). Expiry is
// checked on every hit. Policy is not cached: the decision is made on every
// call from the record.
type accessCache struct {
	mu      sync.Mutex
	gen     uint64
	entries map[string]accessEntry
}

type accessEntry struct {
	rec    *store.Record
	client *asrv.Client
}

// maxAccessCacheEntries bounds the cache; a full cache starts over.
const maxAccessCacheEntries = 1 << 16

func newAccessCache() *accessCache {
	return &accessCache{entries: map[string]accessEntry{}}
}

// get returns the entry for an access-token signature and the generation a
// fill after a miss must present.
func (c *accessCache) get(sig string) (accessEntry, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[sig]
	return e, c.gen, ok
}

// put stores an entry read at generation gen, unless a write came since.
func (c *accessCache) put(sig string, gen uint64, e accessEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.entries) >= maxAccessCacheEntries {
		c.entries = map[string]accessEntry{}
	}
	// The key is copied: a caller's string may alias a buffer it reuses
	// (fasthttp's request buffers do), and a key that changes under the map
	// would hand one agent's record to another agent's token.
	c.entries[strings.Clone(sig)] = e
}

// invalidate empties the cache; called after every committed write.
func (c *accessCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if len(c.entries) > 0 {
		c.entries = map[string]accessEntry{}
	}
}

// ViewAccessToken is GetAccessTokenSession for a caller that only reads the
// request and keeps nothing of it (introspection): on a cache hit the
// request shares the cached record's slices and session instead of copying
// them, which is most of a hit's allocations. The cached record is never
// written to (a write replaces the cache), so readers may share it.
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
