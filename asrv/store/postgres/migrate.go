package postgres

import (
	"context"
	"embed"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pbac-gateway/pbac/internal/pgmigrate"
)

// The PostgreSQL store's schema is a sequence of embedded SQL files,
// migrations/NNNN_name.sql, applied by internal/pgmigrate under the
// advisory lock "pbacasrv" and recorded in asrv_schema_migrations
// (prefixed, like every table of this store, so the database can be shared
// with other components).

//go:embed migrations/*.sql
var postgresMigrationFiles embed.FS

// postgresMigrations is the store's migration set.
func postgresMigrations() pgmigrate.Set {
	return pgmigrate.Set{Files: postgresMigrationFiles, Dir: "migrations",
		Table: "asrv_schema_migrations", LockKey: 0x7062_6163_6173_7276}
}

// SchemaVersion is the schema version this binary migrates to.
func SchemaVersion() int { return postgresMigrations().Latest() }

// migratePostgres brings the schema to the latest embedded version and
// returns the versions it applied; a database already at a later version
// is refused.
func migratePostgres(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	return postgresMigrations().Apply(ctx, pool)
}
