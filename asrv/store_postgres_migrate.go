package asrv

import (
	"context"
	"embed"
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

// The PostgreSQL store's schema is a sequence of embedded SQL files,
// migrations/NNNN_name.sql, numbered from 1 without gaps. OpenPostgres
// applies the ones a database lacks, in order, in one transaction that
// first takes a transaction-scoped advisory lock: replicas starting together
// migrate once, the others wait and find the schema current. The versions
// applied are rows of asrv_schema_migrations (prefixed, like every table of
// this store, so the database can be shared with other components).

//go:embed migrations/*.sql
var postgresMigrationFiles embed.FS

// postgresMigrateLockKey is the advisory lock migrations hold ("pbacasrv").
const postgresMigrateLockKey int64 = 0x7062_6163_6173_7276

type postgresMigration struct {
	version int
	name    string
	sql     string
}

var postgresMigrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// postgresMigrations reads the embedded migrations in version order.
func postgresMigrations() ([]postgresMigration, error) {
	entries, err := fs.ReadDir(postgresMigrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var out []postgresMigration
	for _, e := range entries {
		m := postgresMigrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("embedded migration %q: name is not NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := postgresMigrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read embedded migration %s: %w", e.Name(), err)
		}
		out = append(out, postgresMigration{version: v, name: m[2], sql: string(b)})
	}
	slices.SortFunc(out, func(a, b postgresMigration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("embedded migrations: version %d where %d was expected", m.version, i+1)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("embedded migrations: none")
	}
	return out, nil
}

// PostgresSchemaVersion is the schema version this binary migrates to.
func PostgresSchemaVersion() int {
	ms, err := postgresMigrations()
	if err != nil {
		return 0
	}
	return ms[len(ms)-1].version
}

// migratePostgres brings the schema to the latest embedded version and
// returns the versions it applied. A database already at a later version
// (migrated by a newer binary) is refused rather than written with an old
// idea of the schema.
func migratePostgres(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	ms, err := postgresMigrations()
	if err != nil {
		return nil, err
	}
	latest := ms[len(ms)-1].version
	var applied []int
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, postgresMigrateLockKey); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS asrv_schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create asrv_schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM asrv_schema_migrations`).Scan(&current); err != nil {
			return fmt.Errorf("read the schema version: %w", err)
		}
		if current > latest {
			return fmt.Errorf("the database's schema is at version %d, newer than this binary's %d: upgrade pbac", current, latest)
		}
		for _, m := range ms[current:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %04d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO asrv_schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("record migration %04d_%s: %w", m.version, m.name, err)
			}
			applied = append(applied, m.version)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return applied, nil
}
