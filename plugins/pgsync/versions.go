package pgsync

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pbac-gateway/pbac/plugins"
)

// KeepVersions is how many versions Versions keeps.
const KeepVersions = 64

// versionsLock serialises appends across replicas (a transaction-scoped
// advisory lock).
const versionsLock = 0x7062_6163_7665_7273

// ErrNoVersion means no bundle is stored under the seq asked for.
var ErrNoVersion = errors.New("pgsync: no such policy version")

// Versions keeps the activated policy versions in PostgreSQL
// (pbac_policy_versions), shared by the replicas on the database: the
// plugins.Store of a gateway whose token store is PostgreSQL, so a replica
// with an empty data dir starts on the newest version too. Appends are
// serialised by an advisory lock and committed before Append returns. A
// version that is already the newest record is not recorded again: every
// replica following the shared head activates it, and the history says
// once who made it. Safe for concurrent use.
type Versions struct {
	pool *pgxpool.Pool
	keep int
}

var _ plugins.Store = (*Versions)(nil)

// OpenVersions connects to dsn and creates the tables when missing.
func OpenVersions(ctx context.Context, dsn string) (*Versions, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgsync: policy versions: %w", err) // pgconn redacts the password
	}
	pcfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("pgsync: policy versions: connect: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Versions{pool: pool, keep: KeepVersions}, nil
}

// Close closes the connections.
func (v *Versions) Close() { v.pool.Close() }

// Append records rec as the newest version, unless the newest record is
// that version already (then it returns that record), and drops the
// records beyond KeepVersions, in one committed transaction.
func (v *Versions) Append(ctx context.Context, rec plugins.Record) (plugins.Record, error) {
	if len(rec.Bundle) == 0 {
		return plugins.Record{}, fmt.Errorf("pgsync: store policy version %s: no bundle", short(rec.Version))
	}
	out := rec
	out.Bundle = nil
	err := pgx.BeginFunc(ctx, v.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(versionsLock)); err != nil {
			return err
		}
		var newest plugins.Record
		var seq int64
		err := tx.QueryRow(ctx, `SELECT seq, version, kind, source, author, at FROM pbac_policy_versions ORDER BY seq DESC LIMIT 1`).
			Scan(&seq, &newest.Version, &newest.Kind, &newest.Source, &newest.Author, &newest.At)
		switch {
		case err == nil && newest.Version == rec.Version:
			newest.Seq = uint64(seq)
			out = newest
			return nil
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if err := tx.QueryRow(ctx, `
			INSERT INTO pbac_policy_versions (version, kind, source, author, at, bundle)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq`,
			rec.Version, rec.Kind, rec.Source, rec.Author, rec.At, rec.Bundle).Scan(&seq); err != nil {
			return err
		}
		out.Seq = uint64(seq)
		_, err = tx.Exec(ctx, `
			DELETE FROM pbac_policy_versions WHERE seq NOT IN
				(SELECT seq FROM pbac_policy_versions ORDER BY seq DESC LIMIT $1)`, v.keep)
		return err
	})
	if err != nil {
		return plugins.Record{}, fmt.Errorf("pgsync: store policy version %s: %w", short(rec.Version), err)
	}
	return out, nil
}

// History returns the kept records, oldest first, without bundles.
func (v *Versions) History(ctx context.Context) ([]plugins.Record, error) {
	rows, err := v.pool.Query(ctx, `SELECT seq, version, kind, source, author, at FROM pbac_policy_versions ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("pgsync: read the policy versions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (plugins.Record, error) {
		var r plugins.Record
		var seq int64
		err := row.Scan(&seq, &r.Version, &r.Kind, &r.Source, &r.Author, &r.At)
		r.Seq = uint64(seq)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgsync: read the policy versions: %w", err)
	}
	return out, nil
}

// Bundle returns the bundle of record seq (ErrNoVersion when there is
// none).
func (v *Versions) Bundle(ctx context.Context, seq uint64) ([]byte, error) {
	var b []byte
	err := v.pool.QueryRow(ctx, `SELECT bundle FROM pbac_policy_versions WHERE seq = $1`, int64(seq)).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("pgsync: policy version %d: %w", seq, ErrNoVersion)
	}
	if err != nil {
		return nil, fmt.Errorf("pgsync: policy version %d: %w", seq, err)
	}
	return b, nil
}
