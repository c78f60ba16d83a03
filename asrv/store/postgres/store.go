// Package postgres is the networked token store: an asrv.Store in
// PostgreSQL that several authorization servers (or gateway replicas) share.
// Only a binary that imports this package links pgx.
package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store"
)

// Store is the networked asrv.Store: several authorization servers (or
// gateway replicas running one in process) share it. Tables (see
// migrations/):
//
//	asrv_clients  id, doc, pending_since       the Client as JSON (secrets as hashes); when an
//	                                           unverified client without a code or token yet,
//	                                           not approved by an operator, registered
//	asrv_tokens   kind, sig, request_id, client_id, inactive, expires_at, request,
//	              ancestors, actors (a delegated token's chain: grants and clients),
//	              subject (the person it acts for)
//	asrv_jtis     sha256(jti), expires_at
//	asrv_revoked_subjects  subject, revoked_at, expires_at   people whose tokens were revoked
//
// Tokens are keyed by signature, never by raw value; request is the same
// store.Record encoding the Badger store keeps (no secrets, no raw tokens).
// A token row references its client with ON DELETE CASCADE, so deleting a
// client deletes its tokens in the same transaction; the tokens delegated
// from them name it in actors and go in the same transaction too.
//
// Every operation that must have one winner is one conditional statement,
// so it is atomic across replicas without application locks:
//
//   - ConsumeAccessToken is DELETE … RETURNING: a concurrent DELETE of the
//     same row waits for the first and then finds nothing.
//   - InvalidateAuthorizeCodeSession and RotateRefreshToken are UPDATE … SET
//     inactive = true WHERE NOT inactive: a concurrent UPDATE waits on the
//     row lock, re-evaluates the condition on the committed row and matches
//     nothing. Rotation deletes the grant's access tokens in the same
//     transaction.
//   - SetClientAssertionJWT is INSERT … ON CONFLICT DO UPDATE … WHERE the
//     recorded one has expired.
//   - CreateDelegatedAccessToken locks (or, for a single-use subject,
//     deletes) the subject token's row and shares the chain's client rows
//     before it inserts; a revocation deletes the grant's rows first and
//     the delegated ones in a later statement, whose snapshot sees any
//     delegated token that got in first (READ COMMITTED), and a deletion
//     of a chain client likewise. So the two never cross.
//
// Expiry is judged by the store's clock (WithClock), passed to
// every statement, so replicas agree as far as their clocks do; expired rows
// are invisible at once and deleted by a periodic sweep.
//
// There is deliberately no read cache (unlike the Badger store's accessCache):
// that cache is coherent only because one process owns the Badger files and
// sees every write. Here other replicas write too, and a revocation or a
// consumption on one must be seen by all on their very next call, so every
// read goes to the database.
//
// Requests read back are *fosite.Request values whose Client is the
// *asrv.Client stored now and whose Session is freshly decoded; the session
// argument of the Get* methods is ignored, as in the Badger store.
type Store struct {
	pool *pgxpool.Pool
	cfg  postgresConfig
	desc string

	closed    atomic.Bool
	closeOnce sync.Once
	stopSweep context.CancelFunc
	sweepDone sync.WaitGroup
}

var _ asrv.Store = (*Store)(nil)

type postgresConfig struct {
	logger        *slog.Logger
	clock         func() time.Time
	sweepInterval time.Duration
}

// Option configures Open.
type Option func(*postgresConfig)

// WithLogger routes the store's logs to l.
func WithLogger(l *slog.Logger) Option {
	return func(c *postgresConfig) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithClock sets the clock expiry is judged by (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *postgresConfig) {
		if now != nil {
			c.clock = now
		}
	}
}

// WithSweepInterval sets how often expired rows are deleted
// (default 5 minutes; <= 0 disables the sweep). Replicas sweeping at once
// share the work (SKIP LOCKED).
func WithSweepInterval(d time.Duration) Option {
	return func(c *postgresConfig) { c.sweepInterval = d }
}

const (
	postgresDefaultSweepInterval = 5 * time.Minute
	// postgresSweepBatch is how many rows one sweep statement deletes.
	postgresSweepBatch = 1000
)

var errPostgresClosed = errors.New("asrv: postgres store is closed")

// Open connects to the database named by dsn (a postgres:// URL or
// key=value string as libpq takes it; pool settings such as pool_max_conns
// included), brings its schema to the current version and starts the
// expiry sweep. Errors never contain the password.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg := postgresConfig{
		logger:        slog.Default(),
		clock:         time.Now,
		sweepInterval: postgresDefaultSweepInterval,
	}
	for _, o := range opts {
		o(&cfg)
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn's parse errors redact the password.
		return nil, fmt.Errorf("asrv: open postgres store: %w", err)
	}
	desc := describePostgres(&pcfg.ConnConfig.Config)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("asrv: open postgres store %s: %w", desc, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("asrv: open postgres store %s: %w", desc, err)
	}
	applied, err := migratePostgres(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("asrv: open postgres store %s: %w", desc, err)
	}
	if len(applied) > 0 {
		cfg.logger.Info("postgres store schema migrated", "store", desc, "versions", applied)
	}
	sweepCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &Store{pool: pool, cfg: cfg, desc: desc, stopSweep: stop}
	if cfg.sweepInterval > 0 {
		s.sweepDone.Add(1)
		go s.sweepLoop(sweepCtx)
	}
	return s, nil
}

// describePostgres names a database for logs and errors: user, address and
// database, never the password.
func describePostgres(c *pgconn.Config) string {
	return fmt.Sprintf("postgres://%s@%s/%s", c.User, net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))), c.Database)
}

// String names the database (without the password).
func (s *Store) String() string { return s.desc }

// Close stops the sweep and closes the connection pool. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stopSweep()
		s.sweepDone.Wait()
		s.pool.Close()
	})
	return nil
}

// Ping asks the database for a round trip (pgxpool's ping on one pooled
// connection).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("asrv: ping %s: %w", s.desc, err)
	}
	return nil
}

func (s *Store) usable(ctx context.Context) error {
	if s.closed.Load() {
		return errPostgresClosed
	}
	return ctx.Err()
}

func (s *Store) now() time.Time { return s.cfg.clock() }

// sweepLoop sweeps every interval until ctx (cancelled by Close) ends.
func (s *Store) sweepLoop(ctx context.Context) {
	defer s.sweepDone.Done()
	t := time.NewTicker(s.cfg.sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.SweepExpired(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				s.cfg.logger.Warn("postgres store: sweeping expired rows failed", "store", s.desc, "err", err)
			case n > 0:
				s.cfg.logger.Debug("postgres store: swept expired rows", "store", s.desc, "rows", n)
			}
		}
	}
}

// SweepExpired deletes the codes, tokens and JTIs that have expired by the
// store's clock, in batches, and returns how many rows it deleted. Expired
// rows are already invisible; this only reclaims the space. It runs
// periodically on its own (WithSweepInterval).
func (s *Store) SweepExpired(ctx context.Context) (int64, error) {
	var total int64
	for _, q := range []string{
		`DELETE FROM asrv_tokens WHERE (kind, sig) IN (
			SELECT kind, sig FROM asrv_tokens WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
		`DELETE FROM asrv_jtis WHERE hash IN (
			SELECT hash FROM asrv_jtis WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
		`DELETE FROM asrv_revoked_subjects WHERE subject IN (
			SELECT subject FROM asrv_revoked_subjects WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
	} {
		for {
			if err := s.usable(ctx); err != nil {
				return total, fmt.Errorf("asrv: sweep expired rows: %w", err)
			}
			tag, err := s.pool.Exec(ctx, q, s.now(), postgresSweepBatch)
			if err != nil {
				return total, fmt.Errorf("asrv: sweep expired rows: %w", err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < postgresSweepBatch {
				break
			}
		}
	}
	return total, nil
}

// --- token kinds ------------------------------------------------------------

// postgresKind is the value of asrv_tokens.kind.
type postgresKind string

const (
	postgresKindCode    postgresKind = "code"
	postgresKindPKCE    postgresKind = "pkce"
	postgresKindAccess  postgresKind = "at"
	postgresKindRefresh postgresKind = "rt"
)

// typ is the session expiry that bounds the kind.
func (k postgresKind) typ() fosite.TokenType {
	switch k {
	case postgresKindAccess:
		return fosite.AccessToken
	case postgresKindRefresh:
		return fosite.RefreshToken
	default:
		return fosite.AuthorizeCode
	}
}

func (k postgresKind) name() string {
	switch k {
	case postgresKindCode:
		return "authorization code"
	case postgresKindPKCE:
		return "PKCE request"
	case postgresKindAccess:
		return "access token"
	default:
		return "refresh token"
	}
}

// postgresExpiry is the expires_at column for t: NULL for no expiry.
// PostgreSQL keeps microseconds and pgx truncates, as it does the clock
// passed to each statement, so a row the database reads as live is live
// by the exact clock too (it may read as expired up to 1 µs early).
func postgresExpiry(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// --- clients ----------------------------------------------------------------

// CreateClient registers c; asrv.ErrClientExists if the id is taken.
func (s *Store) CreateClient(ctx context.Context, c *asrv.Client) error {
	if c == nil || !store.ValidID(c.ID) {
		return fmt.Errorf("asrv: create client: invalid client id")
	}
	doc, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("asrv: create client %q: encode: %w", c.ID, err)
	}
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("asrv: create client %q: %w", c.ID, err)
	}
	var pending *time.Time
	if !c.Agent.Verified {
		at := c.CreatedAt.UTC()
		pending = &at
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO asrv_clients (id, doc, pending_since) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`, c.ID, doc, pending)
	if err != nil {
		return fmt.Errorf("asrv: create client %q: %w", c.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("asrv: create client %q: %w", c.ID, asrv.ErrClientExists)
	}
	return nil
}

// Client returns the registered client, or fosite.ErrNotFound.
func (s *Store) Client(ctx context.Context, id string) (*asrv.Client, error) {
	c, err := s.loadClient(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("asrv: get client %q: %w", id, err)
	}
	return c, nil
}

func (s *Store) loadClient(ctx context.Context, id string) (*asrv.Client, error) {
	if !store.ValidID(id) {
		return nil, fosite.ErrNotFound
	}
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	var doc []byte
	err := s.pool.QueryRow(ctx, `SELECT doc FROM asrv_clients WHERE id = $1`, id).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fosite.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	return decodePostgresClient(id, doc)
}

func decodePostgresClient(id string, doc []byte) (*asrv.Client, error) {
	c := new(asrv.Client)
	if err := json.Unmarshal(doc, c); err != nil {
		return nil, fmt.Errorf("decode client: %w", err)
	}
	if c.ID != id {
		return nil, fmt.Errorf("decode client: stored id %q does not match row %q", c.ID, id)
	}
	return c, nil
}

// GetClient implements fosite.ClientManager.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := s.Client(ctx, id)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Clients lists the registered clients, ordered by id (byte order).
func (s *Store) Clients(ctx context.Context) ([]*asrv.Client, error) {
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("asrv: list clients: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT id, doc FROM asrv_clients ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("asrv: list clients: %w", err)
	}
	var out []*asrv.Client
	for rows.Next() {
		var (
			id  string
			doc []byte
		)
		if err := rows.Scan(&id, &doc); err != nil {
			rows.Close()
			return nil, fmt.Errorf("asrv: list clients: %w", err)
		}
		c, err := decodePostgresClient(id, doc)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("asrv: list clients: client %q: %w", id, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("asrv: list clients: %w", err)
	}
	return out, nil
}

// UpdateClient changes the stored client in one transaction that holds
// its row (SELECT … FOR UPDATE), so concurrent updates of one client queue
// and each sees the one before it.
func (s *Store) UpdateClient(ctx context.Context, id string, update func(*asrv.Client) error) (*asrv.Client, error) {
	if !store.ValidID(id) {
		return nil, fmt.Errorf("asrv: update client: %w", fosite.ErrNotFound)
	}
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("asrv: update client %q: %w", id, err)
	}
	var out *asrv.Client
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var doc []byte
		err := tx.QueryRow(ctx, `SELECT doc FROM asrv_clients WHERE id = $1 FOR UPDATE`, id).Scan(&doc)
		if errors.Is(err, pgx.ErrNoRows) {
			return fosite.ErrNotFound
		} else if err != nil {
			return err
		}
		c, err := decodePostgresClient(id, doc)
		if err != nil {
			return err
		}
		if err := update(c); err != nil {
			return err
		}
		if c.ID != id {
			return fmt.Errorf("the update changed the client id to %q", c.ID)
		}
		if doc, err = json.Marshal(c); err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		approved := c.Review != nil && c.Review.Status == asrv.ReviewApproved
		if _, err := tx.Exec(ctx, `UPDATE asrv_clients SET doc = $2, pending_since = CASE WHEN $3 THEN NULL ELSE pending_since END WHERE id = $1`, id, doc, approved); err != nil {
			return err
		}
		out = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("asrv: update client %q: %w", id, err)
	}
	return out, nil
}

// PendingClients returns the pending clients' ids and registration times.
func (s *Store) PendingClients(ctx context.Context) (map[string]time.Time, error) {
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("asrv: list pending clients: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT id, pending_since FROM asrv_clients WHERE pending_since IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("asrv: list pending clients: %w", err)
	}
	out := map[string]time.Time{}
	var (
		id string
		at time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error {
		out[id] = at.UTC()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("asrv: list pending clients: %w", err)
	}
	return out, nil
}

// DeleteClient removes a client and, by the foreign key's cascade in the
// same statement, every code and token issued to it. fosite.ErrNotFound
// when no such client was registered.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if !store.ValidID(id) {
		return fmt.Errorf("asrv: delete client: %w", fosite.ErrNotFound)
	}
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("asrv: delete client %q: %w", id, err)
	}
	var existed bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM asrv_clients WHERE id = $1`, id)
		if err != nil {
			return err
		}
		existed = tag.RowsAffected() > 0
		// A later statement: its snapshot sees a delegated token whose
		// insertion waited on the client row.
		_, err = tx.Exec(ctx, `DELETE FROM asrv_tokens WHERE actors @> ARRAY[$1::text]`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("asrv: delete client %q: %w", id, err)
	}
	if !existed {
		return fmt.Errorf("asrv: delete client %q: %w", id, fosite.ErrNotFound)
	}
	return nil
}

// CountClients counts the registered and the pending clients.
func (s *Store) CountClients(ctx context.Context) (total, pending int, err error) {
	if err := s.usable(ctx); err != nil {
		return 0, 0, fmt.Errorf("asrv: count clients: %w", err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT count(*), count(pending_since) FROM asrv_clients`).Scan(&total, &pending); err != nil {
		return 0, 0, fmt.Errorf("asrv: count clients: %w", err)
	}
	return total, pending, nil
}

// DeletePendingClients deletes the pending clients registered before the
// cutoff in one statement: a client whose first token is being issued
// holds its row (the token's insertion clears pending_since first), and
// the DELETE re-checks the condition on the row it waited for.
func (s *Store) DeletePendingClients(ctx context.Context, registeredBefore time.Time) (int, error) {
	if err := s.usable(ctx); err != nil {
		return 0, fmt.Errorf("asrv: delete pending clients: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM asrv_clients WHERE pending_since IS NOT NULL AND pending_since < $1`, registeredBefore)
	if err != nil {
		return 0, fmt.Errorf("asrv: delete pending clients: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// --- client assertion JTIs ------------------------------------------------

func postgresJTIHash(jti string) []byte {
	h := sha256.Sum256([]byte(jti))
	return h[:]
}

// ClientAssertionJWTValid returns fosite.ErrJTIKnown when jti was recorded
// and has not yet expired, nil otherwise.
func (s *Store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	known, err := s.jtiKnown(ctx, jti)
	if err != nil {
		return fmt.Errorf("asrv: check client assertion jti: %w", err)
	}
	if known {
		return fmt.Errorf("asrv: check client assertion jti: %w", fosite.ErrJTIKnown)
	}
	return nil
}

func (s *Store) jtiKnown(ctx context.Context, jti string) (bool, error) {
	if err := s.usable(ctx); err != nil {
		return false, err
	}
	var one int
	err := s.pool.QueryRow(ctx, `SELECT 1 FROM asrv_jtis WHERE hash = $1 AND expires_at > $2`, postgresJTIHash(jti), s.now()).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return true, nil
}

// SetClientAssertionJWT records jti until exp; fosite.ErrJTIKnown if it is
// already recorded and live. Of concurrent recordings of one jti exactly one
// succeeds. An exp already in the past records nothing.
func (s *Store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	now := s.now()
	if !exp.After(now) {
		known, err := s.jtiKnown(ctx, jti)
		if err != nil {
			return fmt.Errorf("asrv: record client assertion jti: %w", err)
		}
		if known {
			return fmt.Errorf("asrv: record client assertion jti: %w", fosite.ErrJTIKnown)
		}
		return nil
	}
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("asrv: record client assertion jti: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO asrv_jtis AS j (hash, expires_at) VALUES ($1, $2)
		ON CONFLICT (hash) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE j.expires_at <= $3`,
		postgresJTIHash(jti), exp, now)
	if err != nil {
		return fmt.Errorf("asrv: record client assertion jti: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("asrv: record client assertion jti: %w", fosite.ErrJTIKnown)
	}
	return nil
}

// --- tokens -----------------------------------------------------------------

// CreateAuthorizeCodeSession stores the request of an authorization code.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createToken(ctx, postgresKindCode, sig, "", req)
}

// GetAuthorizeCodeSession returns the request of an authorization code. For
// an invalidated code it returns the request AND
// fosite.ErrInvalidatedAuthorizeCode, so fosite revokes the grant's tokens.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	req, st, err := s.getToken(ctx, postgresKindCode, sig)
	if err != nil {
		return nil, err
	}
	if st.inactive {
		return req, fmt.Errorf("asrv: get authorization code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	return req, nil
}

// InvalidateAuthorizeCodeSession marks a code used, keeping it until it
// expires so reuse is detected. Of concurrent redemptions of one code, on
// any number of replicas, exactly one succeeds; the others get
// fosite.ErrInvalidatedAuthorizeCode.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, sig string) error {
	if err := s.deactivate(ctx, postgresKindCode, sig, fosite.ErrInvalidatedAuthorizeCode); err != nil {
		return fmt.Errorf("asrv: invalidate authorization code: %w", err)
	}
	return nil
}

// CreatePKCERequestSession stores the PKCE request of an authorization code.
func (s *Store) CreatePKCERequestSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createToken(ctx, postgresKindPKCE, sig, "", req)
}

// GetPKCERequestSession returns the PKCE request of an authorization code.
func (s *Store) GetPKCERequestSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	req, _, err := s.getToken(ctx, postgresKindPKCE, sig)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// DeletePKCERequestSession deletes a PKCE request (nil if absent).
func (s *Store) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return s.deleteToken(ctx, postgresKindPKCE, sig)
}

// CreateAccessTokenSession stores the request of an access token.
func (s *Store) CreateAccessTokenSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createToken(ctx, postgresKindAccess, sig, "", req)
}

// GetAccessTokenSession returns the request of an access token, or
// fosite.ErrNotFound (absent, expired, or its client deleted).
func (s *Store) GetAccessTokenSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	req, _, err := s.getToken(ctx, postgresKindAccess, sig)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// DeleteAccessTokenSession deletes an access token (nil if absent).
func (s *Store) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	return s.deleteToken(ctx, postgresKindAccess, sig)
}

// ConsumeAccessToken deletes the access token and returns its request in one
// statement (DELETE … RETURNING). Of concurrent callers on any number of
// replicas exactly one gets the row; the others wait for its deletion to
// commit and get fosite.ErrNotFound, as does any later caller.
func (s *Store) ConsumeAccessToken(ctx context.Context, sig string) (fosite.Requester, error) {
	if !store.ValidSignature(sig) {
		return nil, fmt.Errorf("asrv: consume access token: %w", fosite.ErrNotFound)
	}
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("asrv: consume access token: %w", err)
	}
	now := s.now()
	var (
		clientID   string
		raw, cdoc  []byte
		consumeErr error
	)
	err := s.pool.QueryRow(ctx, `DELETE FROM asrv_tokens t USING asrv_clients c
		WHERE t.kind = $1 AND t.sig = $2 AND c.id = t.client_id AND (t.expires_at IS NULL OR t.expires_at > $3)
		RETURNING t.client_id, t.request, c.doc`, postgresKindAccess, sig, now).Scan(&clientID, &raw, &cdoc)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		consumeErr = fosite.ErrNotFound
	case err != nil:
		consumeErr = err
	}
	if consumeErr != nil {
		return nil, fmt.Errorf("asrv: consume access token: %w", consumeErr)
	}
	// The row is gone whatever follows: a record that does not decode, or
	// that has expired by the exact clock, could not have been served anyway.
	req, err := s.toRequest(postgresKindAccess, clientID, raw, cdoc, false, now)
	if err != nil {
		return nil, fmt.Errorf("asrv: consume access token: %w", err)
	}
	return req, nil
}

// CreateRefreshTokenSession stores the request of a refresh token together
// with the signature of the access token issued with it.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, req fosite.Requester) error {
	return s.createToken(ctx, postgresKindRefresh, sig, accessSig, req)
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
	req, st, err := s.getToken(ctx, postgresKindRefresh, sig)
	if err != nil {
		return nil, err
	}
	if st.inactive && !store.InRotationGrace(st.rotatedAt, s.now(), grace) {
		return req, fmt.Errorf("asrv: get refresh token: %w", fosite.ErrInactiveToken)
	}
	return req, nil
}

// DeleteRefreshTokenSession deletes a refresh token (nil if absent).
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.deleteToken(ctx, postgresKindRefresh, sig)
}

// RotateRefreshToken marks the refresh token inactive (kept for reuse
// detection) and deletes the access tokens of requestID, in one
// transaction. fosite.ErrNotFound for an unknown or expired token,
// fosite.ErrInactiveToken for one already rotated: of concurrent refreshes
// with one token, on any number of replicas, exactly one succeeds.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	return s.RotateRefreshTokenWithin(ctx, requestID, sig, 0)
}

// RotateRefreshTokenWithin is RotateRefreshToken that also accepts a
// refresh token rotated less than grace ago, leaving it and the family's
// access tokens as they are. The token's row is locked (FOR UPDATE) for
// the decision: concurrent rotations, and a revocation of the family, wait
// for each other, on any number of replicas, and each sees what the one
// before it committed.
func (s *Store) RotateRefreshTokenWithin(ctx context.Context, requestID, sig string, grace time.Duration) error {
	if !store.ValidSignature(sig) {
		return fmt.Errorf("asrv: rotate refresh token: %w", fosite.ErrNotFound)
	}
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("asrv: rotate refresh token: %w", err)
	}
	now := s.now()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var (
			inactive  bool
			rotatedAt *time.Time
		)
		err := tx.QueryRow(ctx, `SELECT inactive, rotated_at FROM asrv_tokens
			WHERE kind = $1 AND sig = $2 AND (expires_at IS NULL OR expires_at > $3) FOR UPDATE`,
			postgresKindRefresh, sig, now).Scan(&inactive, &rotatedAt)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fosite.ErrNotFound
		case err != nil:
			return err
		case inactive:
			if rotatedAt != nil && store.InRotationGrace(*rotatedAt, now, grace) {
				return nil
			}
			return fosite.ErrInactiveToken
		}
		if _, err := tx.Exec(ctx, `UPDATE asrv_tokens SET inactive = true, rotated_at = $3 WHERE kind = $1 AND sig = $2`,
			postgresKindRefresh, sig, now); err != nil {
			return err
		}
		if store.ValidID(requestID) {
			if _, err := tx.Exec(ctx, `DELETE FROM asrv_tokens WHERE request_id = $1 AND kind = $2`, requestID, postgresKindAccess); err != nil {
				return err
			}
		}
		return nil
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
	if err := s.revokeGrant(ctx, requestID, `UPDATE asrv_tokens SET inactive = true, rotated_at = NULL
		WHERE request_id = $1 AND kind = $2 AND (NOT inactive OR rotated_at IS NOT NULL)`,
		postgresKindRefresh); err != nil {
		return fmt.Errorf("asrv: revoke refresh tokens of request: %w", err)
	}
	return nil
}

// RevokeAccessToken deletes every access token of requestID and every
// access token delegated from the grant. It returns nil when there are
// none.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	if err := s.revokeGrant(ctx, requestID, `DELETE FROM asrv_tokens WHERE request_id = $1 AND kind = $2`,
		postgresKindAccess); err != nil {
		return fmt.Errorf("asrv: revoke access tokens of request: %w", err)
	}
	return nil
}

// revokeGrant runs revoke (on request_id $1 and kind $2) and then, in a
// later statement of the same transaction, deletes the access tokens
// delegated from the grant: the revocation's row locks make a racing
// CreateDelegatedAccessToken either wait and fail, or commit first and be
// seen by the later statement.
func (s *Store) revokeGrant(ctx context.Context, requestID, revoke string, kind postgresKind) error {
	if !store.ValidID(requestID) {
		return nil
	}
	if err := s.usable(ctx); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, revoke, requestID, kind); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM asrv_tokens WHERE kind = $1 AND ancestors @> ARRAY[$2::text]`, postgresKindAccess, requestID)
		return err
	})
}

// CreateDelegatedAccessToken stores a token exchange's access token in one
// transaction: the chain's client rows are locked FOR SHARE, the subject
// token's row is locked (FOR SHARE) or, with consumeSubject, deleted (one
// winner among concurrent exchanges, as ConsumeAccessToken), and the token
// is inserted with its chain.
func (s *Store) CreateDelegatedAccessToken(ctx context.Context, sig string, req fosite.Requester, subjectSig string, consumeSubject bool) error {
	if !store.ValidSignature(sig) {
		return errors.New("asrv: create delegated access token: invalid signature")
	}
	rec, err := store.NewRecord(req)
	if err != nil {
		return fmt.Errorf("asrv: create delegated access token: %w", err)
	}
	if !store.ValidSignature(subjectSig) {
		return fmt.Errorf("asrv: create delegated access token: subject token: %w", fosite.ErrNotFound)
	}
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("asrv: create delegated access token: %w", err)
	}
	now := s.now()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The person's revocation lock comes first of all (see
		// RevokeSubject).
		if err := s.subjectAllowed(ctx, tx, rec); err != nil {
			return err
		}
		// Lock order, as DeleteClient's (client row, then its token rows
		// by the cascade): the client rows first — the new token's client
		// updated (no longer pending) before the chain's are shared, so
		// that two delegations to one pending client queue rather than
		// deadlock — then the subject's row. The chain is read first
		// without a lock; a token's chain never changes.
		if _, err := tx.Exec(ctx, `UPDATE asrv_clients SET pending_since = NULL WHERE id = $1 AND pending_since IS NOT NULL`, rec.ClientID); err != nil {
			return err
		}
		var holder string
		var actors []string
		err := tx.QueryRow(ctx, `SELECT client_id, actors FROM asrv_tokens
			WHERE kind = $1 AND sig = $2 AND (expires_at IS NULL OR expires_at > $3)`,
			postgresKindAccess, subjectSig, now).Scan(&holder, &actors)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("subject token: %w", fosite.ErrNotFound)
		} else if err != nil {
			return err
		}
		chain := slices.Compact(slices.Sorted(slices.Values(append(actors, holder, rec.ClientID))))
		rows, err := tx.Query(ctx, `SELECT id FROM asrv_clients WHERE id = ANY($1) ORDER BY id FOR SHARE`, chain)
		if err != nil {
			return err
		}
		found := 0
		for rows.Next() {
			found++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if found != len(chain) {
			return fmt.Errorf("a client of the delegation chain: %w", fosite.ErrNotFound)
		}
		q := `SELECT request_id, client_id, ancestors, actors FROM asrv_tokens
			WHERE kind = $1 AND sig = $2 AND (expires_at IS NULL OR expires_at > $3) FOR SHARE`
		if consumeSubject {
			q = `DELETE FROM asrv_tokens WHERE kind = $1 AND sig = $2 AND (expires_at IS NULL OR expires_at > $3)
				RETURNING request_id, client_id, ancestors, actors`
		}
		var subject store.Record
		err = tx.QueryRow(ctx, q, postgresKindAccess, subjectSig, now).Scan(&subject.ID, &subject.ClientID, &subject.Ancestors, &subject.Actors)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("subject token: %w", asrv.ErrConsumed)
		} else if err != nil {
			return err
		}
		if err := rec.DelegatedFrom(&subject); err != nil {
			return err
		}
		val, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO asrv_tokens (kind, sig, request_id, client_id, expires_at, request, ancestors, actors, subject)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			postgresKindAccess, sig, rec.ID, rec.ClientID, postgresExpiry(rec.Session.GetExpiresAt(fosite.AccessToken)), val,
			rec.Ancestors, rec.Actors, postgresSubject(rec))
		return err
	})
	if err != nil {
		return fmt.Errorf("asrv: create delegated access token: %w", err)
	}
	return nil
}

// deactivate sets inactive on a live, active code. The UPDATE's condition
// makes it the single winner among concurrent callers; a caller that
// matched nothing learns why: the row is inactive (inactiveErr) or absent
// or expired (fosite.ErrNotFound).
func (s *Store) deactivate(ctx context.Context, kind postgresKind, sig string, inactiveErr error) error {
	if !store.ValidSignature(sig) {
		return fosite.ErrNotFound
	}
	if err := s.usable(ctx); err != nil {
		return err
	}
	now := s.now()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE asrv_tokens SET inactive = true
			WHERE kind = $1 AND sig = $2 AND NOT inactive AND (expires_at IS NULL OR expires_at > $3)`, kind, sig, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var inactive bool
			err := tx.QueryRow(ctx, `SELECT inactive FROM asrv_tokens
				WHERE kind = $1 AND sig = $2 AND (expires_at IS NULL OR expires_at > $3)`, kind, sig, now).Scan(&inactive)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				return fosite.ErrNotFound
			case err != nil:
				return err
			case inactive:
				return inactiveErr
			default: // cannot happen: the UPDATE would have matched
				return fosite.ErrSerializationFailure
			}
		}
		return nil
	})
}

func (s *Store) createToken(ctx context.Context, kind postgresKind, sig, accessSig string, req fosite.Requester) error {
	if !store.ValidSignature(sig) {
		return fmt.Errorf("asrv: create %s: invalid signature", kind.name())
	}
	rec, err := store.NewRecord(req)
	if err != nil {
		return fmt.Errorf("asrv: create %s: %w", kind.name(), err)
	}
	rec.AccessSignature = accessSig
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("asrv: create %s: encode: %w", kind.name(), err)
	}
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("asrv: create %s: %w", kind.name(), err)
	}
	// The foreign key refuses a token of an unknown client, and a
	// concurrent DeleteClient either waits for this insert and then deletes
	// the token with its client, or commits first and the insert fails.
	// The client is no longer pending: cleared in the same statement (a
	// data-modifying CTE always runs), which locks its row against a
	// concurrent DeletePendingClients.
	insert := func(ctx context.Context, db interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	}) error {
		_, err := db.Exec(ctx, `WITH used AS (UPDATE asrv_clients SET pending_since = NULL WHERE id = $4 AND pending_since IS NOT NULL)
		INSERT INTO asrv_tokens (kind, sig, request_id, client_id, expires_at, request, subject)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			kind, sig, rec.ID, rec.ClientID, postgresExpiry(rec.Session.GetExpiresAt(kind.typ())), val, postgresSubject(rec))
		return err
	}
	if postgresSubject(rec) == nil {
		err = insert(ctx, s.pool)
	} else {
		// A person's token: under their revocation lock (shared), after
		// checking they were not revoked since the grant began.
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if err := s.subjectAllowed(ctx, tx, rec); err != nil {
				return err
			}
			return insert(ctx, tx)
		})
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			switch pgErr.Code {
			case "23503": // foreign_key_violation
				err = fmt.Errorf("client %q: %w", rec.ClientID, fosite.ErrNotFound)
			case "23505": // unique_violation
				err = errors.New("a token with this signature is already stored")
			}
		}
		return fmt.Errorf("asrv: create %s: %w", kind.name(), err)
	}
	return nil
}

// tokenState is what a row says of its code or token beside the request.
type tokenState struct {
	inactive bool
	// rotatedAt is when an inactive refresh token was rotated (zero:
	// never, or its family revoked).
	rotatedAt time.Time
}

// getToken reads a live code or token with its client in one query and
// reports whether it is inactive, and since when a refresh token is
// rotated.
func (s *Store) getToken(ctx context.Context, kind postgresKind, sig string) (*fosite.Request, tokenState, error) {
	if !store.ValidSignature(sig) {
		return nil, tokenState{}, fmt.Errorf("asrv: get %s: %w", kind.name(), fosite.ErrNotFound)
	}
	if err := s.usable(ctx); err != nil {
		return nil, tokenState{}, fmt.Errorf("asrv: get %s: %w", kind.name(), err)
	}
	now := s.now()
	var (
		clientID  string
		raw, cdoc []byte
		st        tokenState
		rotatedAt *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT t.client_id, t.request, t.inactive, t.rotated_at, c.doc
		FROM asrv_tokens t JOIN asrv_clients c ON c.id = t.client_id
		WHERE t.kind = $1 AND t.sig = $2 AND (t.expires_at IS NULL OR t.expires_at > $3)`,
		kind, sig, now).Scan(&clientID, &raw, &st.inactive, &rotatedAt, &cdoc)
	if errors.Is(err, pgx.ErrNoRows) {
		err = fosite.ErrNotFound
	}
	if err != nil {
		return nil, tokenState{}, fmt.Errorf("asrv: get %s: %w", kind.name(), err)
	}
	if rotatedAt != nil {
		st.rotatedAt = *rotatedAt
	}
	req, err := s.toRequest(kind, clientID, raw, cdoc, st.inactive, now)
	if err != nil {
		return nil, tokenState{}, fmt.Errorf("asrv: get %s: %w", kind.name(), err)
	}
	return req, st, nil
}

// toRequest decodes a row. The bytes are untrusted: a record that does not
// decode, names another client than its row, or has expired by the exact
// clock reads as fosite.ErrNotFound.
func (s *Store) toRequest(kind postgresKind, clientID string, raw, cdoc []byte, inactive bool, now time.Time) (*fosite.Request, error) {
	rec, err := store.DecodeRecord(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", fosite.ErrNotFound, err)
	}
	if rec.ClientID != clientID {
		return nil, fmt.Errorf("%w: record names client %q, row %q", fosite.ErrNotFound, rec.ClientID, clientID)
	}
	if exp := rec.Session.GetExpiresAt(kind.typ()); !exp.IsZero() && !now.Before(exp) {
		return nil, fosite.ErrNotFound
	}
	client, err := decodePostgresClient(clientID, cdoc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", fosite.ErrNotFound, err)
	}
	rec.Inactive = inactive
	return rec.Request(client), nil
}

func (s *Store) deleteToken(ctx context.Context, kind postgresKind, sig string) error {
	if !store.ValidSignature(sig) {
		return nil
	}
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("asrv: delete %s: %w", kind.name(), err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM asrv_tokens WHERE kind = $1 AND sig = $2`, kind, sig); err != nil {
		return fmt.Errorf("asrv: delete %s: %w", kind.name(), err)
	}
	return nil
}
