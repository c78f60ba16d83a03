// Package pgmigrate applies a component's embedded SQL migrations to
// PostgreSQL: files NNNN_name.sql, numbered from 1 without gaps, applied in
// order in one transaction that first takes a transaction-scoped advisory
// lock — replicas starting together migrate once, the others wait and find
// the schema current — and recorded in the component's own table. A
// database migrated by a newer binary (a version this one does not know) is
// refused rather than written with an old idea of the schema.
package pgmigrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Set is one component's migrations.
type Set struct {
	// Files holds the migrations under Dir.
	Files fs.FS
	Dir   string
	// Table records the versions applied (e.g. asrv_schema_migrations).
	Table string
	// LockKey is the component's advisory lock.
	LockKey int64
}

// Migration is one embedded SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

var fileName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migrations reads the set's files in version order.
func (s Set) Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(s.Files, s.Dir)
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("embedded migration %q: name is not NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(s.Files, path.Join(s.Dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read embedded migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: m[2], SQL: string(b)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("embedded migrations: version %d where %d was expected", m.Version, i+1)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("embedded migrations: none")
	}
	return out, nil
}

// Latest is the version the set migrates to (0 if its files are unreadable).
func (s Set) Latest() int {
	ms, err := s.Migrations()
	if err != nil {
		return 0
	}
	return ms[len(ms)-1].Version
}

// Apply brings the schema to the latest version and returns the versions
// it applied.
func (s Set) Apply(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	ms, err := s.Migrations()
	if err != nil {
		return nil, err
	}
	latest := ms[len(ms)-1].Version
	var applied []int
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.LockKey); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		table := pgx.Identifier{s.Table}.Sanitize()
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create %s: %w", s.Table, err)
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+table).Scan(&current); err != nil {
			return fmt.Errorf("read the schema version: %w", err)
		}
		if current > latest {
			return fmt.Errorf("the database's schema (%s) is at version %d, newer than this binary's %d: upgrade pbac", s.Table, current, latest)
		}
		for _, m := range ms[current:] {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
				return fmt.Errorf("record migration %04d_%s: %w", m.Version, m.Name, err)
			}
			applied = append(applied, m.Version)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return applied, nil
}
