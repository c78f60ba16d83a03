package cimd

import (
	"container/list"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Config configures a Resolver. The zero value fetches nothing: set Fetch,
// or pin documents.
type Config struct {
	// Fetch lets the Resolver fetch documents that are not pinned. Off
	// (air-gapped), only pinned documents resolve.
	Fetch bool
	// AllowNetworks are special-purpose address blocks (loopback, private,
	// link-local…) the Resolver may dial nonetheless: for tests and labs,
	// and for an AS on a loopback address fetching from the same one (the
	// draft's one exception).
	AllowNetworks []netip.Prefix
	// RootCAs, when set, is the only trust store for fetched documents and
	// key sets (a pinned CA pool; LoadTrustStore); nil: the system's.
	RootCAs *x509.CertPool
	// Pinned are documents by client id URL, used as they are and never
	// fetched, even with Fetch on (LoadPinnedDir reads a directory of them).
	// Each is validated by New.
	Pinned map[string][]byte

	// MaxBytes bounds a fetched document (default DefaultMaxBytes, 5 KiB),
	// MaxKeySetBytes a fetched key set (default 64 KiB).
	MaxBytes       int64
	MaxKeySetBytes int64
	// ConnectTimeout bounds the TCP and TLS handshakes (default 3 s);
	// Timeout a whole fetch, body included (default 5 s).
	ConnectTimeout time.Duration
	Timeout        time.Duration
	// CacheMin and CacheMax bound how long a fetched document or key set is
	// reused (defaults 1 min and 24 h, the ceiling SEP-991 recommends),
	// whatever its caching headers say; one whose headers say nothing is
	// kept CacheMin. A response with Cache-Control: no-store is never kept.
	CacheMin time.Duration
	CacheMax time.Duration
	// NegativeTTL, when positive, is how long a failed fetch is remembered
	// and answered without fetching again. The draft ("Metadata Caching")
	// says the AS MUST NOT cache error responses or invalid documents, so
	// it is 0 (off) by default; a few seconds trade that rule for
	// protection against being made to fetch one failing URL in a loop.
	NegativeTTL time.Duration
	// MaxEntries bounds the cached documents, and apart the cached key
	// sets (default 1024 each); the least recently used goes first.
	MaxEntries int
	// MaxConcurrentFetches bounds the fetches under way at once (default 8).
	MaxConcurrentFetches int

	Logger *slog.Logger
	Now    func() time.Time
}

func (c Config) withDefaults() Config {
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxKeySetBytes <= 0 {
		c.MaxKeySetBytes = 64 << 10
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 3 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.CacheMin <= 0 {
		c.CacheMin = time.Minute
	}
	if c.CacheMax <= 0 {
		c.CacheMax = 24 * time.Hour
	}
	c.CacheMax = max(c.CacheMax, c.CacheMin)
	if c.MaxEntries <= 0 {
		c.MaxEntries = 1024
	}
	if c.MaxConcurrentFetches <= 0 {
		c.MaxConcurrentFetches = 8
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Resolver resolves client id URLs to validated documents: pinned, cached,
// or fetched (one fetch per URL at a time, however many callers wait for
// it). It is safe for concurrent use. Close stops its fetches.
type Resolver struct {
	cfg        Config
	fetch      *fetcher
	pinned     map[string]*Document
	docs       *cache[*Document]
	keys       *cache[*jose.JSONWebKeySet]
	docFlights flights[*Document]
	keyFlights flights[*jose.JSONWebKeySet]
	sem        chan struct{}

	// base is cancelled by Close; every fetch runs under it, in a
	// goroutine wg joins.
	base   context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add against Close
	closed bool
	wg     sync.WaitGroup
}

// New builds a Resolver; an invalid pinned document fails here.
func New(cfg Config) (*Resolver, error) {
	cfg = cfg.withDefaults()
	r := &Resolver{
		cfg:    cfg,
		fetch:  newFetcher(&cfg),
		pinned: make(map[string]*Document, len(cfg.Pinned)),
		docs:   newCache[*Document](cfg.MaxEntries),
		keys:   newCache[*jose.JSONWebKeySet](cfg.MaxEntries),
		sem:    make(chan struct{}, cfg.MaxConcurrentFetches),
	}
	for id, body := range cfg.Pinned {
		d, err := ParseDocument(id, body)
		if err != nil {
			return nil, fmt.Errorf("cimd: pinned document: %w", err)
		}
		d.Pinned = true
		r.pinned[id] = d
	}
	r.base, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Close cancels the fetches under way and waits for them to end. Resolve
// then fails with ErrClosed (pinned documents still resolve).
func (r *Resolver) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.fetch.transport.CloseIdleConnections()
	return nil
}

// Fetching tells whether the Resolver fetches documents (Config.Fetch).
func (r *Resolver) Fetching() bool { return r.cfg.Fetch }

// Resolve returns the validated document of a client id URL: the pinned
// one, a cached one still fresh, or one fetched now. The caller's ctx
// bounds its wait; the fetch itself is bounded by Config.Timeout and
// shared with every caller asking for the same URL meanwhile. Errors wrap
// ErrInvalidClientID, ErrNotAllowed (fetching off and nothing pinned, or a
// refused address), ErrFetch, ErrInvalidDocument or ErrClosed.
func (r *Resolver) Resolve(ctx context.Context, clientID string) (*Document, error) {
	if _, err := ParseClientID(clientID); err != nil {
		return nil, err
	}
	if d, ok := r.pinned[clientID]; ok {
		return d.Clone(), nil
	}
	if !r.cfg.Fetch {
		return nil, fmt.Errorf("%w for %s", ErrNotPinned, clientID)
	}
	if e, ok := r.docs.get(clientID, r.cfg.Now()); ok {
		if e.err != nil {
			return nil, e.err
		}
		return e.val.Clone(), nil
	}
	d, err := r.docFlights.do(ctx, r, clientID, func(fctx context.Context) (*Document, error) {
		now := r.cfg.Now()
		resp, err := r.get(fctx, clientID, r.cfg.MaxBytes, now)
		var d *Document
		if err == nil {
			d, err = ParseDocument(clientID, resp.body)
		}
		if err != nil {
			r.cfg.Logger.WarnContext(fctx, "client metadata document refused", "client_id", clientID, "err", err)
			if r.cfg.NegativeTTL > 0 {
				r.docs.put(clientID, nil, err, now, now.Add(r.cfg.NegativeTTL))
			}
			return nil, err
		}
		d.FetchedAt = now
		if ttl, ok := r.lifetime(resp.freshness); ok {
			r.docs.put(clientID, d, nil, now, now.Add(ttl))
		}
		return d, nil
	})
	if err != nil {
		return nil, err
	}
	return d.Clone(), nil
}

// KeySet returns the signing keys of a private_key_jwt document: its jwks,
// or the set at its jwks_uri, fetched as documents are (same address
// rules, Config.MaxKeySetBytes) and cached per its headers. With refresh
// (a key id was not found: keys rotate), a cached set older than
// Config.CacheMin is fetched again. Errors wrap ErrNotAllowed, ErrFetch,
// ErrInvalidDocument or ErrClosed.
func (r *Resolver) KeySet(ctx context.Context, d *Document, refresh bool) (*jose.JSONWebKeySet, error) {
	if d.JWKS != nil {
		return d.JWKS, nil
	}
	uri := d.JWKSURI
	if uri == "" {
		return nil, fmt.Errorf("%w: %s has no keys", ErrInvalidDocument, d.ClientID)
	}
	if _, err := parseFetchURL(uri, false); err != nil {
		return nil, fmt.Errorf("%w: jwks_uri: %v", ErrInvalidDocument, err)
	}
	if !r.cfg.Fetch {
		return nil, fmt.Errorf("%w: fetching is off, so the key set at %s cannot be read (pin a document with jwks)", ErrNotAllowed, uri)
	}
	now := r.cfg.Now()
	if e, ok := r.keys.get(uri, now); ok && !(refresh && e.err == nil && now.Sub(e.fetched) >= r.cfg.CacheMin) {
		return e.val, e.err
	}
	return r.keyFlights.do(ctx, r, uri, func(fctx context.Context) (*jose.JSONWebKeySet, error) {
		now := r.cfg.Now()
		resp, err := r.get(fctx, uri, r.cfg.MaxKeySetBytes, now)
		var set *jose.JSONWebKeySet
		if err == nil {
			set, err = ParseKeySet(resp.body)
			if err != nil {
				err = fmt.Errorf("%w: key set at %s: %v", ErrInvalidDocument, uri, err)
			}
		}
		if err != nil {
			r.cfg.Logger.WarnContext(fctx, "client key set refused", "jwks_uri", uri, "err", err)
			if r.cfg.NegativeTTL > 0 {
				r.keys.put(uri, nil, err, now, now.Add(r.cfg.NegativeTTL))
			}
			return nil, err
		}
		if ttl, ok := r.lifetime(resp.freshness); ok {
			r.keys.put(uri, set, nil, now, now.Add(ttl))
		}
		return set, nil
	})
}

// get fetches within the bound on concurrent fetches.
func (r *Resolver) get(ctx context.Context, rawURL string, maxBytes int64, now time.Time) (*response, error) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: too many fetches under way: %w", ErrFetch, rawURL, ctx.Err())
	}
	defer func() { <-r.sem }()
	return r.fetch.get(ctx, rawURL, maxBytes, now)
}

// lifetime is how long to keep a response, within [CacheMin, CacheMax];
// false when it must not be kept.
func (r *Resolver) lifetime(f freshness) (time.Duration, bool) {
	if f.noStore {
		return 0, false
	}
	ttl := r.cfg.CacheMin
	if f.explicit {
		ttl = f.lifetime
	}
	return min(max(ttl, r.cfg.CacheMin), r.cfg.CacheMax), true
}

// flights makes concurrent callers for one key share one fetch.
type flights[T any] struct {
	mu sync.Mutex
	m  map[string]*flight[T]
}

type flight[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// do runs fn once for key at a time, in a goroutine of r bounded by
// Config.Timeout and r's life (never by one caller's ctx, so a caller that
// gives up does not fail the others); each caller waits at most until its
// own ctx ends.
func (fs *flights[T]) do(ctx context.Context, r *Resolver, key string, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	fs.mu.Lock()
	f, ok := fs.m[key]
	if !ok {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			fs.mu.Unlock()
			return zero, ErrClosed
		}
		r.wg.Add(1)
		r.mu.Unlock()
		f = &flight[T]{done: make(chan struct{})}
		if fs.m == nil {
			fs.m = make(map[string]*flight[T])
		}
		fs.m[key] = f
		go func() {
			defer r.wg.Done()
			fctx, cancel := context.WithTimeout(r.base, r.cfg.Timeout)
			f.val, f.err = fn(fctx)
			cancel()
			fs.mu.Lock()
			delete(fs.m, key)
			fs.mu.Unlock()
			close(f.done)
		}()
	}
	fs.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil && r.base.Err() != nil {
			return zero, ErrClosed
		}
		return f.val, f.err
	case <-ctx.Done():
		return zero, fmt.Errorf("%w: %s: gave up waiting: %w", ErrFetch, key, ctx.Err())
	}
}

// cache is a bounded LRU of fetch results (a value, or with NegativeTTL an
// error) that expire.
type cache[T any] struct {
	mu  sync.Mutex
	max int
	m   map[string]*list.Element
	lru list.List // front: most recently used
}

type cacheEntry[T any] struct {
	key              string
	val              T
	err              error
	fetched, expires time.Time
}

func newCache[T any](max int) *cache[T] {
	return &cache[T]{max: max, m: make(map[string]*list.Element)}
}

// get returns the entry for key unless it expired (then it is dropped).
func (c *cache[T]) get(key string, now time.Time) (cacheEntry[T], bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return cacheEntry[T]{}, false
	}
	e := el.Value.(*cacheEntry[T])
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.m, key)
		return cacheEntry[T]{}, false
	}
	c.lru.MoveToFront(el)
	return *e, true
}

func (c *cache[T]) put(key string, val T, err error, fetched, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry[T]{key: key, val: val, err: err, fetched: fetched, expires: expires}
	if el, ok := c.m[key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.m[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.m, last.Value.(*cacheEntry[T]).key)
	}
}

// len is the number of entries, expired ones included.
func (c *cache[T]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// maxPinnedFileBytes bounds a pinned document file.
const maxPinnedFileBytes = 1 << 20

// LoadPinnedDir reads the pinned documents of an air-gapped deployment:
// every *.json file of dir is a client metadata document, keyed by its own
// client_id (its URL). Two files for one URL are an error; each is
// validated by New.
func LoadPinnedDir(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cimd: pinned documents: %w", err)
	}
	out := make(map[string][]byte)
	from := make(map[string]string)
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("cimd: pinned document %s: %w", path, err)
		}
		if info.Size() > maxPinnedFileBytes {
			return nil, fmt.Errorf("cimd: pinned document %s: larger than %d bytes", path, maxPinnedFileBytes)
		}
		body, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("cimd: pinned document %s: %w", path, err)
		}
		var head struct {
			ClientID string `json:"client_id"`
		}
		if err := json.Unmarshal(body, &head); err != nil || head.ClientID == "" {
			return nil, fmt.Errorf("cimd: pinned document %s: no client_id", path)
		}
		if prev, dup := from[head.ClientID]; dup {
			return nil, fmt.Errorf("cimd: pinned documents %s and %s are both for %s", prev, path, head.ClientID)
		}
		from[head.ClientID] = path
		out[head.ClientID] = body
	}
	return out, nil
}

// LoadTrustStore reads a PEM file of CA certificates: the only roots a
// Resolver with it trusts (Config.RootCAs).
func LoadTrustStore(path string) (*x509.CertPool, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cimd: trust store: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("cimd: trust store %s: no PEM certificate in it", path)
	}
	return pool, nil
}
