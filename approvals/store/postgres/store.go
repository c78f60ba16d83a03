// Package postgres keeps approvals (approvals.Store) in PostgreSQL, shared
// by gateway replicas: one may ask for an approval, another record the
// decision and a third take the retry. Only a binary that imports this
// package links pgx.
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/internal/pgmigrate"
)

// The schema is migrations/NNNN_name.sql, applied by internal/pgmigrate
// under the advisory lock "pbacappr" and recorded in
// approvals_schema_migrations.

//go:embed migrations/*.sql
var migrationFiles embed.FS

func migrations() pgmigrate.Set {
	return pgmigrate.Set{Files: migrationFiles, Dir: "migrations",
		Table: "approvals_schema_migrations", LockKey: 0x7062_6163_6170_7072}
}

// SchemaVersion is the schema version this binary migrates to.
func SchemaVersion() int { return migrations().Latest() }

// Store is the networked approvals.Store: table approvals (see
// migrations/), one row per approval, its JSON in doc (without the
// arguments, which are in args, byte for byte) and the columns List,
// CountOpen and Expire select on.
//
// Transition is SELECT … FOR UPDATE and UPDATE in one transaction: a
// concurrent Transition of the same row, on any replica, waits for the
// first to commit and then reads what it wrote, so of concurrent
// transitions from one status exactly one succeeds. Expire locks the due
// rows the same way; a replica expiring at the same moment waits, finds
// them no longer open, and skips them, so each expiry is returned (and
// audited) once.
//
// PostgreSQL keeps microseconds: created_at orders List (newest first,
// then id by bytes) and expires_at selects what Expire looks at, each
// truncated to the microsecond; the approval itself keeps its times
// exactly, and Expire judges them exactly. Strings holding NUL cannot be
// stored (jsonb refuses them): Create and Transition fail.
//
// Closed approvals are kept (without their arguments) until Prune deletes
// them. The partial indexes on open approvals keep CountOpen and Expire
// from reading closed ones.
type Store struct {
	pool     *pgxpool.Pool
	ownsPool bool
	desc     string
	log      *slog.Logger
	now      func() time.Time

	closeOnce sync.Once
}

var _ approvals.Store = (*Store)(nil)

// Option configures Open and New.
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

// Open connects to the database dsn names (a postgres:// URL or key=value
// string as libpq takes it), brings the schema to the current version and
// returns a store that closes its connections on Close. Errors never
// contain the password.
func Open(ctx context.Context, dsn string, logger *slog.Logger, opts ...Option) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("approvals: open postgres store: %w", err) // pgconn redacts the password
	}
	desc := describe(&pcfg.ConnConfig.Config)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("approvals: open postgres store %s: %w", desc, err)
	}
	s, err := newStore(ctx, pool, desc, logger, opts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownsPool = true
	return s, nil
}

// New uses pool (shared with another store; Close leaves it open), bringing
// the schema to the current version.
func New(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, opts ...Option) (*Store, error) {
	return newStore(ctx, pool, describe(&pool.Config().ConnConfig.Config), logger, opts)
}

func newStore(ctx context.Context, pool *pgxpool.Pool, desc string, logger *slog.Logger, opts []Option) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{pool: pool, desc: desc, log: logger, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	applied, err := migrations().Apply(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("approvals: open postgres store %s: %w", desc, err)
	}
	if len(applied) > 0 {
		logger.Info("approvals: postgres schema migrated", "store", desc, "versions", applied)
	}
	return s, nil
}

// describe names a database for logs and errors, without the password.
func describe(c *pgconn.Config) string {
	return fmt.Sprintf("postgres://%s@%s/%s", c.User, net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))), c.Database)
}

// String names the database (without the password).
func (s *Store) String() string { return s.desc }

// Close closes the connections, if Open made them. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.ownsPool {
			s.pool.Close()
		}
	})
	return nil
}

// --- rows -------------------------------------------------------------------

const columns = `doc, args`

func scan(row pgx.Row) (approvals.Approval, error) {
	var doc, args []byte
	if err := row.Scan(&doc, &args); err != nil {
		return approvals.Approval{}, err
	}
	var a approvals.Approval
	if err := json.Unmarshal(doc, &a); err != nil {
		return approvals.Approval{}, fmt.Errorf("decode approval: %w", err)
	}
	a.Args = args
	return a, nil
}

// encode is a's doc: its JSON without the arguments.
func encode(a approvals.Approval) ([]byte, error) {
	a.Args = nil
	doc, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode approval %s: %w", a.ID, err)
	}
	return doc, nil
}

// args is the args column of a: NULL when it has none.
func args(a approvals.Approval) []byte {
	if a.Args == nil {
		return nil
	}
	return a.Args
}

// closedAt is the closed_at column of a: NULL while it is open.
func closedAt(a approvals.Approval) *time.Time {
	if a.Status.Open() {
		return nil
	}
	return &a.ClosedAt
}

func openStatuses() []string { return []string{string(approvals.Pending), string(approvals.Granted)} }

// --- reading ----------------------------------------------------------------

// Get returns the approval id, or approvals.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (approvals.Approval, error) {
	a, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM approvals WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return approvals.Approval{}, fmt.Errorf("approvals: get %s: %w", id, approvals.ErrNotFound)
	}
	if err != nil {
		return approvals.Approval{}, fmt.Errorf("approvals: get %s: %w", id, err)
	}
	return a, nil
}

// List returns what f selects, newest first.
func (s *Store) List(ctx context.Context, f approvals.Filter) ([]approvals.Approval, error) {
	var where []string
	var params []any
	arg := func(v any) string {
		params = append(params, v)
		return "$" + strconv.Itoa(len(params))
	}
	if len(f.Statuses) > 0 {
		st := make([]string, len(f.Statuses))
		for i, x := range f.Statuses {
			st[i] = string(x)
		}
		where = append(where, "status = ANY("+arg(st)+")")
	}
	if f.ClientID != "" {
		where = append(where, "client_id = "+arg(f.ClientID))
	}
	if f.Binding != "" {
		where = append(where, "binding = "+arg(f.Binding))
	}
	q := `SELECT ` + columns + ` FROM approvals`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at DESC, id LIMIT ` + arg(f.EffectiveLimit())
	rows, err := s.pool.Query(ctx, q, params...)
	if err != nil {
		return nil, fmt.Errorf("approvals: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (approvals.Approval, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("approvals: list: %w", err)
	}
	return out, nil
}

// CountOpen counts the open approvals of clientID for subject (of
// everyone when clientID is "").
func (s *Store) CountOpen(ctx context.Context, clientID, subject string) (int, error) {
	q := `SELECT count(*) FROM approvals WHERE status = ANY($1)`
	params := []any{openStatuses()}
	if clientID != "" {
		q += ` AND client_id = $2 AND subject = $3`
		params = append(params, clientID, subject)
	}
	var n int
	if err := s.pool.QueryRow(ctx, q, params...).Scan(&n); err != nil {
		return 0, fmt.Errorf("approvals: count open: %w", err)
	}
	return n, nil
}

// --- writing ----------------------------------------------------------------

// Create stores a new pending approval with Rev 1; approvals.ErrExists if
// the id is taken.
func (s *Store) Create(ctx context.Context, a approvals.Approval) error {
	if err := approvals.CheckNew(&a); err != nil {
		return fmt.Errorf("approvals: create: %w", err)
	}
	doc, err := encode(a)
	if err != nil {
		return fmt.Errorf("approvals: create: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO approvals (id, status, binding, client_id, subject, created_at, expires_at, rev, doc, args)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING`,
		a.ID, string(a.Status), a.Binding, a.ClientID, a.Subject, a.CreatedAt, a.ExpiresAt, int64(a.Rev), doc, args(a))
	if err != nil {
		return fmt.Errorf("approvals: create %s: %w", a.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("approvals: create: approval %s: %w", a.ID, approvals.ErrExists)
	}
	return nil
}

// update writes a over the row of its id, within tx.
func update(ctx context.Context, tx pgx.Tx, a approvals.Approval) error {
	doc, err := encode(a)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `
		UPDATE approvals SET status = $2, created_at = $3, expires_at = $4, rev = $5, doc = $6, args = $7, closed_at = $8
		WHERE id = $1`,
		a.ID, string(a.Status), a.CreatedAt, a.ExpiresAt, int64(a.Rev), doc, args(a), closedAt(a))
	if err != nil {
		return fmt.Errorf("write approval %s: %w", a.ID, err)
	}
	return nil
}

// Transition is the compare-and-set (approvals.Store): SELECT … FOR UPDATE,
// the status check and change, and UPDATE, in one transaction.
func (s *Store) Transition(ctx context.Context, id string, from []approvals.Status, change func(*approvals.Approval) error) (approvals.Approval, error) {
	var was, out approvals.Approval
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		was, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM approvals WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("approval %s: %w", id, approvals.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read approval %s: %w", id, err)
		}
		if !slices.Contains(from, was.Status) {
			return fmt.Errorf("%w: it is %s", approvals.ErrStatus, was.Status)
		}
		if out, err = approvals.ApplyChange(was, change, s.now()); err != nil {
			return err
		}
		return update(ctx, tx, out)
	})
	if err != nil {
		// Rolled back: the approval is as it was read (zero if it was not).
		return was, fmt.Errorf("approvals: transition %s: %w", id, err)
	}
	return out, nil
}

// expireBatch bounds the rows one Expire transaction locks.
const expireBatch = 500

// Expire moves every open approval whose ExpiresAt is not after now to
// Expired (ClosedAt now) and returns them as stored, in transactions of up
// to expireBatch rows each. One that fails stops it; the ones committed are
// returned with the error.
func (s *Store) Expire(ctx context.Context, now time.Time) ([]approvals.Approval, error) {
	var out []approvals.Approval
	for {
		var batch []approvals.Approval
		full := false
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			batch = batch[:0]
			rows, err := tx.Query(ctx, `
				SELECT `+columns+` FROM approvals WHERE status = ANY($1) AND expires_at <= $2
				ORDER BY expires_at, id LIMIT $3 FOR UPDATE`, openStatuses(), now, expireBatch)
			if err != nil {
				return err
			}
			due, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (approvals.Approval, error) { return scan(r) })
			if err != nil {
				return err
			}
			full = len(due) == expireBatch
			for _, was := range due {
				a, err := approvals.ApplyChange(was, approvals.ExpireChange(now), s.now())
				if errors.Is(err, approvals.ErrNotExpired) {
					continue // due by the microsecond, not yet by the nanosecond
				}
				if err != nil {
					return err
				}
				if err := update(ctx, tx, a); err != nil {
					return err
				}
				batch = append(batch, a)
			}
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("approvals: expire: %w", err)
		}
		out = append(out, batch...)
		if !full || len(batch) == 0 {
			return out, nil
		}
	}
}

// pruneBatch bounds the rows one Prune statement deletes.
const pruneBatch = 1000

// Prune deletes the closed approvals whose ClosedAt is before closedBefore,
// pruneBatch rows per statement (replicas pruning at once share the work:
// SKIP LOCKED). closed_at keeps microseconds: an approval closed less than
// a microsecond before closedBefore may be kept until the next Prune.
func (s *Store) Prune(ctx context.Context, closedBefore time.Time) (int, error) {
	cutoff := closedBefore.Truncate(time.Microsecond)
	if cutoff.After(closedBefore) { // before 1970 Truncate rounds up
		cutoff = cutoff.Add(-time.Microsecond)
	}
	n := 0
	for {
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM approvals WHERE id IN (
				SELECT id FROM approvals WHERE closed_at < $1 AND NOT (status = ANY($2))
				ORDER BY closed_at LIMIT $3 FOR UPDATE SKIP LOCKED)`, cutoff, openStatuses(), pruneBatch)
		if err != nil {
			return n, fmt.Errorf("approvals: prune: %w", err)
		}
		n += int(tag.RowsAffected())
		if tag.RowsAffected() < pruneBatch {
			return n, nil
		}
	}
}
