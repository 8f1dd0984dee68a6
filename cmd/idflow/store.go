package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/idflow/idflow/httpapi"
	"github.com/idflow/idflow/internal/riverschema"
	"github.com/idflow/idflow/runner"
	"github.com/idflow/idflow/sqlite"
)

// sqlitePath returns the SQLite file of IDFLOW_DATABASE_URL (sqlite:///path),
// or the default in the data dir.
func sqlitePath(cfg *config) (string, bool) {
	switch {
	case cfg.DatabaseURL == "":
		return filepath.Join(cfg.DataDir, "idflow.db"), true
	case strings.HasPrefix(cfg.DatabaseURL, "sqlite://"):
		return strings.TrimPrefix(cfg.DatabaseURL, "sqlite://"), true
	}
	return "", false
}

// lockDataDir takes an exclusive lock on the data dir: an embedded database
// belongs to one process.
func lockDataDir(dir string) (func() error, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another idflow process", dir)
	}
	return f.Close, nil
}

// openSQLite opens the embedded store, with River's schema beside it, and
// makes jobs that a killed process left running available again.
func openSQLite(ctx context.Context, cfg *config, path string, log *slog.Logger) (*sqlite.DB, func() error, error) {
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	db, err := sqlite.Open(ctx, path, log)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	closeAll := func() error { db.Close(); return unlock() }
	if err := riverschema.Migrate(ctx, riversqlite.New(db.SQL()), log); err != nil {
		closeAll()
		return nil, nil, err
	}
	if n, err := db.RescueInterruptedJobs(ctx); err != nil {
		closeAll()
		return nil, nil, err
	} else if n > 0 {
		log.Warn("resuming runs interrupted by a previous stop", "jobs", n)
	}
	return db, closeAll, nil
}

// sqliteRunner builds the River client that works runs on the embedded store.
func sqliteRunner(cfg *config, db *sqlite.DB, ex *runner.Executor, log *slog.Logger) (httpapi.Runs, *river.Client[*sql.Tx], error) {
	rcfg := runner.Config{RunTimeout: cfg.runTimeout, RunsPerUser: cfg.runsPerUser}
	workers := river.NewWorkers()
	runner.Register(workers, ex, db, rcfg)
	client, err := river.NewClient(riversqlite.New(db.SQL()), riverConfig(rcfg, workers, log))
	if err != nil {
		return nil, nil, fmt.Errorf("river client: %w", err)
	}
	return runner.New[*sql.Tx](rcfg, db, ex, client), client, nil
}

// riverWorkers is how many jobs one process works at once: runs of every
// user together (one user holds at most IDFLOW_RUNS_PER_USER of them).
const riverWorkers = 8

func riverConfig(rcfg runner.Config, workers *river.Workers, log *slog.Logger) *river.Config {
	timeout := rcfg.RunTimeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	return &river.Config{
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: riverWorkers}},
		Workers:              workers,
		PeriodicJobs:         runner.PeriodicJobs(rcfg),
		Logger:               log,
		JobTimeout:           timeout,
		RescueStuckJobsAfter: timeout + time.Minute,
		FetchPollInterval:    100 * time.Millisecond,
		FetchCooldown:        20 * time.Millisecond,
	}
}
