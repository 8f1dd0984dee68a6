package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/idflow/idflow/internal/riverschema"
	"github.com/idflow/idflow/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

//go:embed grants.sql
var grantsSQL string

// migrateLockKey is the advisory lock that serializes Migrate across
// replicas starting at once ("idflow:m" in ASCII).
const migrateLockKey = 0x6964666c6f773a6d

// Migrate brings the database at ownerURL up to date, as the role that owns
// (or will own) the schema:
//
//  1. idflow's embedded, versioned migrations (migrations/NNNN_*.sql) that
//     idflow_schema_migrations does not list yet, in order, in one
//     transaction;
//  2. River's migrations (riverschema.Migrate, the riverpgxv5 driver);
//  3. grants.sql, which grants appRole exactly what the store and River need
//     (idempotent, so it runs every time).
//
// Concurrent callers (replicas starting at once) take turns on a session
// advisory lock. appRole must be an
// existing role; when it is the owner itself, the grants change nothing and
// Open will refuse to run as it, which is intended: production needs two
// roles (docs/POSTGRES.md).
func Migrate(ctx context.Context, ownerURL string, appRole string) error {
	if appRole == "" {
		return errors.New("postgres: migrate: the app role is required")
	}
	cfg, err := pgxpool.ParseConfig(ownerURL)
	if err != nil {
		return fmt.Errorf("postgres: migrate: invalid database URL: %w", err)
	}
	cfg.MaxConns = 4 // one holds the lock; River's migrator takes others
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: migrate: connect: %w", err)
	}
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: connect: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrateLockKey)); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrateLockKey))
	}()

	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, appRole).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if !exists {
		return fmt.Errorf("postgres: migrate: app role %q does not exist (create it first: docs/POSTGRES.md)", appRole)
	}
	if err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if err := schema.Apply(ctx, txn{tx}, nil); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		return nil
	}); err != nil {
		return err
	}
	// River applies each of its versions in a transaction of its own (one
	// adds an enum value that the next one uses).
	if err := riverschema.Migrate(ctx, riverpgxv5.New(pool), nil); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('idflow.app_role', $1, true)`, appRole); err != nil {
			return fmt.Errorf("postgres: migrate: grants: %w", err)
		}
		if _, err := tx.Exec(ctx, grantsSQL); err != nil {
			return fmt.Errorf("postgres: migrate: grants: %w", err)
		}
		return nil
	})
}

// schema is idflow's migrations; idflow_schema_migrations records them.
var schema = sqlstore.Migrations{FS: migrations, Table: "idflow_schema_migrations",
	Create: `CREATE TABLE IF NOT EXISTS idflow_schema_migrations (
		version integer NOT NULL PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`}
