package pgsync

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pbac-gateway/pbac/internal/pgmigrate"
)

// The tables are embedded migrations, migrations/NNNN_name.sql, applied by
// internal/pgmigrate under the advisory lock "pbacsync" and recorded in
// pgsync_schema_migrations, apart from the token store's.

//go:embed migrations/*.sql
var migrationFiles embed.FS

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	set := pgmigrate.Set{Files: migrationFiles, Dir: "migrations", Table: "pgsync_schema_migrations", LockKey: 0x7062_6163_7379_6e63}
	if _, err := set.Apply(ctx, pool); err != nil {
		return fmt.Errorf("pgsync: %w", err)
	}
	return nil
}
