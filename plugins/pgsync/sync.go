// Package pgsync keeps the policy version of every replica that shares a
// PostgreSQL database the same: a change made on one replica (an admin
// upload, a data edit, a rollback, a dropped bundle) is published as the
// database's policy head, every replica hears of it at once (LISTEN/NOTIFY)
// and activates it, and the one that made the change can wait until every
// live replica has confirmed it. A data change therefore applies to the next
// call on every replica, not only on the one that took it.
//
// Tables (its own, versioned in pgsync_schema_migrations):
//
//	pbac_policy_head      one row: seq, version, the bundle (tar.gz, signed as pushed), who published it
//	pbac_policy_replicas  one row per running replica: the head seq and version it runs, a heartbeat
//
// What arrives from the database goes through the registry like any other
// bundle: validation, its decision vectors and, when signatures are
// required, the signature. A replica that refuses a head keeps its version,
// says so in Status, and shows as pending to whoever waits.
package pgsync

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
)

// channel is the NOTIFY channel a publication is announced on.
const channel = "pbac_policy"

// ErrNotConfirmed means not every live replica confirmed a version before
// the wait ended.
var ErrNotConfirmed = errors.New("pgsync: not every replica confirmed the policy version")

// Config configures a Sync.
type Config struct {
	// DSN is the PostgreSQL URL (the token store's).
	DSN string
	// Registry is this replica's policy registry.
	Registry *plugins.Registry
	// Replica names this replica among the others (default: host name,
	// process id and a random suffix).
	Replica string
	// Interval is the heartbeat and the fallback poll of the head, for
	// notifications lost while the connection was down (default 2 s). A
	// replica silent for three intervals no longer counts as live.
	Interval time.Duration
	Logger   *slog.Logger
}

// Sync is one replica's membership in the shared policy head.
type Sync struct {
	cfg  Config
	pool *pgxpool.Pool

	mu      sync.Mutex
	applied int64  // the head seq this replica has dealt with (applied or refused)
	version string // the version of that head
	lastErr string // why the latest head was refused, if it was

	beating sync.Mutex // one heartbeat at a time
}

// Replica is one replica's state as the database has it.
type Replica struct {
	ID      string `json:"id"`
	Seq     int64  `json:"seq"`
	Version string `json:"version"`
	// Refused says why the replica refused the head, if it did.
	Refused string    `json:"refused,omitempty"`
	SeenAt  time.Time `json:"seen_at"`
	// Live: heard from within three intervals.
	Live bool `json:"live"`
}

// Status is what /admin/status shows of the sync.
type Status struct {
	Replica string    `json:"replica"`
	HeadSeq int64     `json:"head_seq"`
	Applied int64     `json:"applied_seq"`
	Version string    `json:"head_version"`
	Error   string    `json:"error,omitempty"`
	Members []Replica `json:"replicas"`
}

// Open connects, creates the tables when missing and joins: if the database
// has a head, this replica activates it; if not, this replica's active
// version becomes the head. Call Run to follow later changes.
func Open(ctx context.Context, cfg Config) (*Sync, error) {
	if cfg.Registry == nil {
		return nil, errors.New("pgsync: no registry")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Replica == "" {
		host, _ := os.Hostname()
		cfg.Replica = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), rand.Text()[:6])
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("pgsync: %w", err) // pgconn redacts the password
	}
	pcfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("pgsync: connect: %w", err)
	}
	s := &Sync{cfg: cfg, pool: pool}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.join(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// join adopts the head, or publishes this replica's version when there is
// none yet.
func (s *Sync) join(ctx context.Context) error {
	if _, ok, err := s.head(ctx, false); err != nil {
		return err
	} else if !ok {
		if _, err := s.Publish(ctx); err != nil {
			return err
		}
	}
	if err := s.follow(ctx); err != nil {
		return err
	}
	return s.heartbeat(ctx)
}

// Close leaves: the replica's row is deleted, so nobody waits for it, and
// the connections close.
func (s *Sync) Close(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM pbac_policy_replicas WHERE replica = $1`, s.cfg.Replica)
	s.pool.Close()
	if err != nil {
		return fmt.Errorf("pgsync: leave: %w", err)
	}
	return nil
}

// Replica returns this replica's name.
func (s *Sync) Replica() string { return s.cfg.Replica }

type head struct {
	seq     int64
	version string
	bundle  []byte
	by      string
}

// head reads the policy head; withBundle fetches the bundle too.
func (s *Sync) head(ctx context.Context, withBundle bool) (head, bool, error) {
	var h head
	q := `SELECT seq, version, published_by, NULL::bytea FROM pbac_policy_head`
	if withBundle {
		q = `SELECT seq, version, published_by, bundle FROM pbac_policy_head`
	}
	err := s.pool.QueryRow(ctx, q).Scan(&h.seq, &h.version, &h.by, &h.bundle)
	if errors.Is(err, pgx.ErrNoRows) {
		return head{}, false, nil
	}
	if err != nil {
		return head{}, false, fmt.Errorf("pgsync: read the policy head: %w", err)
	}
	return h, true, nil
}

// Publish makes this replica's active version the head, unless it already
// is, and announces it. It returns the head's seq.
func (s *Sync) Publish(ctx context.Context) (int64, error) {
	info, ok := s.cfg.Registry.Active()
	b, _ := s.cfg.Registry.ActiveBundle()
	if !ok || b == nil {
		return 0, plugins.ErrNoPolicy
	}
	raw, err := b.TarGz() // the bytes as pushed, signature included
	if err != nil {
		return 0, fmt.Errorf("pgsync: encode the active bundle: %w", err)
	}
	var seq int64
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			INSERT INTO pbac_policy_head AS h (id, seq, version, bundle, source, published_by)
			VALUES (true, 1, $1, $2, $3, $4)
			ON CONFLICT (id) DO UPDATE SET seq = h.seq + 1, version = excluded.version,
				bundle = excluded.bundle, source = excluded.source,
				published_by = excluded.published_by, published_at = now()
			WHERE h.version <> excluded.version
			RETURNING seq`, info.Version, raw, info.Source, s.cfg.Replica).Scan(&seq)
		if errors.Is(err, pgx.ErrNoRows) {
			// The head is this version already.
			return tx.QueryRow(ctx, `SELECT seq FROM pbac_policy_head`).Scan(&seq)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, strconv.FormatInt(seq, 10))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgsync: publish policy %s: %w", short(info.Version), err)
	}
	s.mu.Lock()
	if seq > s.applied {
		s.applied, s.version, s.lastErr = seq, info.Version, ""
	}
	s.mu.Unlock()
	s.cfg.Logger.Info("policy published to the replicas", "version", short(info.Version), "seq", seq)
	return seq, s.heartbeat(ctx)
}

// follow activates the head if it is newer than what this replica has
// dealt with.
func (s *Sync) follow(ctx context.Context) error {
	h, ok, err := s.head(ctx, false)
	if err != nil || !ok {
		return err
	}
	s.mu.Lock()
	seen := s.applied
	s.mu.Unlock()
	if h.seq <= seen {
		return nil
	}
	if info, ok := s.cfg.Registry.Active(); ok && info.Version == h.version {
		s.settle(h, "")
		return nil
	}
	if h, _, err = s.head(ctx, true); err != nil {
		return err
	}
	b, err := rego.ReadTarGz(bytes.NewReader(h.bundle))
	if err == nil {
		_, err = s.cfg.Registry.Activate(ctx, b, headSource+h.by)
	}
	if err != nil {
		s.cfg.Logger.Error("the replicas' policy head was refused; this replica keeps its version",
			"seq", h.seq, "version", short(h.version), "published_by", h.by, "err", err)
		s.settle(h, err.Error())
		return nil
	}
	s.cfg.Logger.Info("policy from the replicas' head activated", "seq", h.seq, "version", short(h.version), "published_by", h.by)
	s.settle(h, "")
	return nil
}

func (s *Sync) settle(h head, refused string) {
	s.mu.Lock()
	s.applied, s.version, s.lastErr = h.seq, h.version, refused
	s.mu.Unlock()
}

// heartbeat records this replica's state; one at a time, so the state a
// beat reads is the state it writes.
func (s *Sync) heartbeat(ctx context.Context) error {
	s.beating.Lock()
	defer s.beating.Unlock()
	info, _ := s.cfg.Registry.Active()
	s.mu.Lock()
	seq, refused := s.applied, s.lastErr
	s.mu.Unlock()
	_, err := s.pool.Exec(ctx, `
		INSERT INTO pbac_policy_replicas (replica, seq, version, refused, seen_at) VALUES ($1, $2, $3, $4, now())
		ON CONFLICT (replica) DO UPDATE SET seq = excluded.seq, version = excluded.version,
			refused = excluded.refused, seen_at = now()`,
		s.cfg.Replica, seq, info.Version, refused)
	if err != nil {
		return fmt.Errorf("pgsync: heartbeat: %w", err)
	}
	// Replicas killed without leaving are forgotten after a day.
	if _, err := s.pool.Exec(ctx, `DELETE FROM pbac_policy_replicas WHERE seen_at < now() - interval '1 day'`); err != nil {
		return fmt.Errorf("pgsync: forget departed replicas: %w", err)
	}
	return nil
}

// Run follows the head until ctx ends: on every notification, on every
// local change (which it publishes), and every interval as a fallback. A
// lost connection is retried with backoff; meanwhile the replica keeps its
// version.
func (s *Sync) Run(ctx context.Context) error {
	local, cancel := s.cfg.Registry.Subscribe()
	defer cancel()
	notes := make(chan struct{}, 1)
	go s.listen(ctx, notes)
	var beats sync.WaitGroup
	defer beats.Wait()
	beats.Go(func() { s.beat(ctx) })
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-local:
			info, ok := s.cfg.Registry.Active()
			s.mu.Lock()
			ours := s.version
			s.mu.Unlock()
			if ok && info.Version != ours && !fromHead(info.Source) {
				if _, err := s.Publish(ctx); err != nil && ctx.Err() == nil {
					s.cfg.Logger.Error("publish the local policy change", "err", err)
				}
			}
			continue
		case <-notes:
		case <-tick.C:
		}
		if err := s.follow(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("follow the replicas' policy head", "err", err)
		}
		if err := s.heartbeat(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("policy sync", "err", err)
		}
	}
}

// beat records this replica's state every interval on its own, so a slow
// apply in Run (a bundle's checks on a loaded machine) does not make the
// replica look gone to a Propagate waiting for it: it stays live, pending
// on the version it runs, until it runs the new one.
func (s *Sync) beat(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.heartbeat(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("policy sync heartbeat", "err", err)
		}
	}
}

// headSource prefixes the registry source of a version activated from the
// head, so that activation is not published back.
const headSource = "postgres:"

func fromHead(source string) bool { return strings.HasPrefix(source, headSource) }

// listen holds a connection that LISTENs on the channel and signals notes
// for every notification; it reconnects with backoff.
func (s *Sync) listen(ctx context.Context, notes chan<- struct{}) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, notes)
		if ctx.Err() != nil {
			return
		}
		s.cfg.Logger.Warn("policy sync: lost the notification connection; polling until it is back", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Sync) listenOnce(ctx context.Context, notes chan<- struct{}) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return err
	}
	// A head published while we were not listening.
	signal(notes)
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			// The connection is in an unknown state: do not return it.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
			return err
		}
		signal(notes)
	}
}

func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Replicas lists the replicas the database knows, live ones first.
func (s *Sync) Replicas(ctx context.Context) ([]Replica, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT replica, seq, version, refused, seen_at, live FROM (
			SELECT *, seen_at > now() - make_interval(secs => $1) AS live FROM pbac_policy_replicas) r
		ORDER BY live DESC, replica`, (3 * s.cfg.Interval).Seconds())
	if err != nil {
		return nil, fmt.Errorf("pgsync: list replicas: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Replica, error) {
		var r Replica
		err := row.Scan(&r.ID, &r.Seq, &r.Version, &r.Refused, &r.SeenAt, &r.Live)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgsync: list replicas: %w", err)
	}
	return out, nil
}

// Confirmation says which live replicas run a version.
type Confirmation struct {
	Version   string    `json:"version"`
	Seq       int64     `json:"seq"`
	Confirmed []string  `json:"confirmed"`
	Pending   []Replica `json:"pending,omitempty"`
	// Complete: every live replica runs the version.
	Complete bool `json:"complete"`
}

// Propagate publishes this replica's active version (if it is not the head
// yet) and waits until every live replica runs it, or until ctx ends. The
// wait ending early is ErrNotConfirmed, with the confirmation saying who is
// pending (a replica that refused the bundle, or one that stopped answering
// without leaving).
func (s *Sync) Propagate(ctx context.Context) (Confirmation, error) {
	seq, err := s.Publish(ctx)
	if err != nil {
		return Confirmation{}, err
	}
	info, _ := s.cfg.Registry.Active()
	c := Confirmation{Version: info.Version, Seq: seq}
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		// A read cut short by the end of the wait keeps the last answer.
		switch members, err := s.Replicas(ctx); {
		case err == nil:
			c.Confirmed, c.Pending = nil, nil
			for _, m := range members {
				switch {
				case !m.Live:
				case m.Version == c.Version:
					c.Confirmed = append(c.Confirmed, m.ID)
				default:
					c.Pending = append(c.Pending, m)
				}
			}
			if len(c.Pending) == 0 {
				c.Complete = true
				return c, nil
			}
		case ctx.Err() == nil:
			return c, err
		}
		select {
		case <-ctx.Done():
			return c, fmt.Errorf("%w: %d pending: %w", ErrNotConfirmed, len(c.Pending), ctx.Err())
		case <-poll.C:
		}
	}
}

// Status reports the sync for /admin/status.
func (s *Sync) Status(ctx context.Context) Status {
	s.mu.Lock()
	st := Status{Replica: s.cfg.Replica, Applied: s.applied, Version: s.version, Error: s.lastErr}
	s.mu.Unlock()
	if h, ok, err := s.head(ctx, false); err == nil && ok {
		st.HeadSeq, st.Version = h.seq, h.version
	} else if err != nil {
		st.Error = err.Error()
	}
	if m, err := s.Replicas(ctx); err == nil {
		st.Members = m
	}
	return st
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}
