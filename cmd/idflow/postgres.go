package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/httpapi"
	"github.com/idflow/idflow/postgres"
	"github.com/idflow/idflow/runner"
)

// backend is one database: its store, the blob store that goes with it
// (nil: local files in the data dir), and how runs execute on it (River on
// the same database, so that a run and its job commit together).
type backend struct {
	store  idflow.Store
	blobs  idflow.BlobStore
	runner func(ex *runner.Executor) (httpapi.Runs, riverClient, error)
	close  func() error
}

// riverClient is what serve does with a River client, whatever the
// transaction type of its driver.
type riverClient interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// isPostgresURL reports whether IDFLOW_DATABASE_URL names PostgreSQL.
func isPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// openBackend opens the database IDFLOW_DATABASE_URL names: SQLite (the
// default, in the data dir) or PostgreSQL.
func openBackend(ctx context.Context, cfg *config, log *slog.Logger) (*backend, error) {
	if isPostgresURL(cfg.DatabaseURL) {
		return openPostgres(ctx, cfg, log)
	}
	path, ok := sqlitePath(cfg)
	if !ok {
		return nil, fmt.Errorf("IDFLOW_DATABASE_URL: unsupported database %q (use sqlite:///path or postgres://…)", redactURL(cfg.DatabaseURL))
	}
	db, closeDB, err := openSQLite(ctx, cfg, path, log)
	if err != nil {
		return nil, err
	}
	return &backend{store: db, close: closeDB, runner: func(ex *runner.Executor) (httpapi.Runs, riverClient, error) {
		runs, client, err := sqliteRunner(cfg, db, ex, log)
		if err != nil {
			return nil, nil, err
		}
		return runs, client, nil
	}}, nil
}

// migrateURL is the schema owner's URL: IDFLOW_MIGRATE_DATABASE_URL, or
// IDFLOW_DATABASE_URL when unset (then Open refuses to serve as that role,
// since it owns the tables: production needs two roles).
func migrateURL(cfg *config) string {
	if cfg.MigrateDatabaseURL != "" {
		return cfg.MigrateDatabaseURL
	}
	return cfg.DatabaseURL
}

// appRole is the role IDFLOW_DATABASE_URL connects as: the role Migrate
// grants the app's privileges to.
func appRole(cfg *config) (string, error) {
	pc, err := pgx.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return "", fmt.Errorf("IDFLOW_DATABASE_URL: %w", err)
	}
	return pc.User, nil
}

// migratePostgres applies idflow's and River's migrations as the schema
// owner and grants the app role what it needs.
func migratePostgres(ctx context.Context, cfg *config) error {
	role, err := appRole(cfg)
	if err != nil {
		return err
	}
	if !isPostgresURL(migrateURL(cfg)) {
		return fmt.Errorf("IDFLOW_MIGRATE_DATABASE_URL: %q is not a postgres:// URL", redactURL(migrateURL(cfg)))
	}
	if err := postgres.Migrate(ctx, migrateURL(cfg), role); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// openPostgres migrates (as the owner), then opens the store as the app
// role, which Open refuses when row-level security would not hold it. The
// document bytes live in PostgreSQL too: replicas share no disk.
func openPostgres(ctx context.Context, cfg *config, log *slog.Logger) (*backend, error) {
	if err := migratePostgres(ctx, cfg); err != nil {
		return nil, err
	}
	db, err := postgres.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return nil, err
	}
	return &backend{store: db, blobs: db, close: db.Close, runner: func(ex *runner.Executor) (httpapi.Runs, riverClient, error) {
		runs, client, err := postgresRunner(cfg, db, ex, log)
		if err != nil {
			return nil, nil, err
		}
		return runs, client, nil
	}}, nil
}

// postgresRunner builds the River client that works runs on PostgreSQL, as
// the app role. River's own rescuer makes a job that a dead replica left
// running available again after RescueStuckJobsAfter (the run timeout plus
// a margin, riverConfig), or discards it after its last attempt (the
// stranded-run sweep then fails its run); its reindexer is off, because
// REINDEX needs table ownership (docs/POSTGRES.md).
func postgresRunner(cfg *config, db *postgres.DB, ex *runner.Executor, log *slog.Logger) (httpapi.Runs, *river.Client[pgx.Tx], error) {
	rcfg := runner.Config{RunTimeout: cfg.runTimeout, RunsPerUser: cfg.runsPerUser}
	workers := river.NewWorkers()
	runner.Register(workers, ex, db, rcfg)
	rc := riverConfig(rcfg, workers, log)
	rc.ReindexerIndexNames = []string{}
	client, err := river.NewClient(riverpgxv5.New(db.Pool()), rc)
	if err != nil {
		return nil, nil, fmt.Errorf("river client: %w", err)
	}
	return runner.New[pgx.Tx](rcfg, db, ex, client), client, nil
}

// cmdMigrate applies the migrations of the configured database and exits:
// on PostgreSQL, idflow's and River's as IDFLOW_MIGRATE_DATABASE_URL, with
// the grants to IDFLOW_DATABASE_URL's role; on SQLite, it opens (and so
// migrates) the file.
func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, _, err := loadConfig("migrate", args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	if isPostgresURL(cfg.DatabaseURL) {
		if err := migratePostgres(ctx, cfg); err != nil {
			return err
		}
		role, _ := appRole(cfg) // parsed by migratePostgres already
		fmt.Fprintf(stdout, "migrated %s; app role %s granted\n", redactURL(migrateURL(cfg)), role)
		if cfg.MigrateDatabaseURL == "" {
			fmt.Fprintln(stdout, "note: IDFLOW_MIGRATE_DATABASE_URL is unset, so the app role is the schema owner; "+
				"serve will refuse it. Use two roles (docs/POSTGRES.md).")
		}
		return nil
	}
	path, ok := sqlitePath(cfg)
	if !ok {
		return fmt.Errorf("IDFLOW_DATABASE_URL: unsupported database %q (use sqlite:///path or postgres://…)", redactURL(cfg.DatabaseURL))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	_, closeDB, err := openSQLite(ctx, cfg, path, log)
	if err != nil {
		return err
	}
	if err := closeDB(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "migrated %s\n", path)
	return nil
}
