// Package sqlite is the embedded idflow.Store: one SQLite file in WAL mode,
// through modernc.org/sqlite (pure Go, no cgo). The store itself is
// sqlstore.Store, shared with package postgres; this package gives it
// SQLite's transactions, time encoding (txn.go), the statements SQLite
// writes its own way and full-text search with FTS5 (dialect.go,
// search.go).
//
// Every user-facing method first asks the Principal for its owner id
// (p.Owner refuses app-only and zero Principals) and binds it into a
// "user_id = $1" predicate on the table it reads or writes; no such
// predicate ever depends on a join. Writes go through a pool of exactly one
// connection, so writers queue in the process instead of failing with
// SQLITE_BUSY; reads use a separate, query-only pool, each in a read
// transaction (one snapshot).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is an idflow.Store backed by one SQLite file: sqlstore.Store over the
// backend below.
type DB struct {
	*sqlstore.Store
	w   *sql.DB   // the single writer connection
	r   *sql.DB   // read-only pool
	wp  *prepared // the writer's statements, prepared once (stmtcache.go)
	rp  *prepared // the read pool's statements, prepared once
	log *slog.Logger
}

var (
	_ idflow.Store               = (*DB)(nil)
	_ sqlstore.RunQueue[*sql.Tx] = (*DB)(nil)
)

const busyTimeoutMS = 10000

// Open opens (creating if needed) the database file at path and applies any
// pending migrations.
func Open(ctx context.Context, path string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if path == "" || strings.ContainsRune(path, '?') || strings.HasPrefix(path, ":") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: %q is not a plain file path", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// Create the file ourselves so it, and the -wal/-shm files SQLite derives
	// from it, are readable by the owner only.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	f.Close()

	pragmas := "?_pragma=busy_timeout(" + strconv.Itoa(busyTimeoutMS) + ")&_pragma=foreign_keys(ON)"
	// The writer gets a larger page cache (32 MiB): full-text indexing and
	// its segment merges are its heaviest work.
	w, err := sql.Open("sqlite", path+pragmas+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=cache_size(-32768)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	db := &DB{w: w, wp: &prepared{db: w}, log: log}
	if err := db.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}

	r, err := sql.Open("sqlite", path+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	db.r, db.rp = r, &prepared{db: r}
	if err := r.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db.Store = sqlstore.New(db.backend(), log)
	return db, nil
}

// backend is how sqlstore.Store runs on this file. There is one writer and
// nothing to set per transaction: the owner is bound by each statement's
// predicate (sqlstore), and the admin's scope by the admin statements'.
func (db *DB) backend() sqlstore.Backend {
	read := func(ctx context.Context, fn func(sqlstore.Tx) error) error {
		return db.read(ctx, func(tx *sql.Tx) error { return fn(txn{tx: tx, prep: db.rp}) })
	}
	write := func(ctx context.Context, fn func(sqlstore.Tx) error) error {
		err := db.WithTx(ctx, func(tx *sql.Tx) error { return fn(txn{tx: tx, prep: db.wp}) })
		db.wp.prepareMissed(ctx) // the one connection given back first: stmtcache.go
		return err
	}
	either := func(ctx context.Context, w bool, fn func(sqlstore.Tx) error) error {
		if w {
			return write(ctx, fn)
		}
		return read(ctx, fn)
	}
	return sqlstore.Backend{
		Name:      "sqlite",
		ErrorCode: errorCode,
		ReadAs:    func(ctx context.Context, _ string, fn func(sqlstore.Tx) error) error { return read(ctx, fn) },
		WriteAs:   func(ctx context.Context, _ string, fn func(sqlstore.Tx) error) error { return write(ctx, fn) },
		ReadAsAdmin: func(ctx context.Context, _ idflow.Principal, _ string, _ bool, fn func(sqlstore.Tx) error) error {
			return read(ctx, fn)
		},
		BySecret: func(ctx context.Context, _, _ string, w bool, fn func(sqlstore.Tx) error) error {
			return either(ctx, w, fn)
		},
		AsTenant: func(ctx context.Context, _ string, w bool, fn func(sqlstore.Tx) error) error {
			return either(ctx, w, fn)
		},
		System:         either,
		InsertFacts:    insertFacts,
		InsertMessages: insertMessages,
		Search:         search,
		SQL:            dialect,
	}
}

// SetRunAdmission sets how runs are admitted (sqlstore.RunQueue); River
// enqueues a job in the store's own *sql.Tx.
func (db *DB) SetRunAdmission(a sqlstore.RunAdmission[*sql.Tx]) {
	sqlstore.SetRunAdmission(db.Store, a, func(tx sqlstore.Tx) *sql.Tx { return tx.(txn).tx })
}

// SQL returns the write pool (one connection). It is there so that another
// package can write in the same transaction as the store, through WithTx;
// holding it outside a transaction blocks every store write.
func (db *DB) SQL() *sql.DB { return db.w }

// WithTx runs fn in a write transaction (BEGIN IMMEDIATE) and commits when fn
// returns nil. fn must use only tx: the write pool has one connection, which
// tx holds until WithTx returns.
func (db *DB) WithTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// read runs fn in a read transaction on the read pool: every statement of
// fn sees the same snapshot (WAL), whatever is committed meanwhile.
func (db *DB) read(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	err = func() error {
		defer func() { _ = tx.Rollback() }() // read-only: nothing to commit
		return fn(tx)
	}()
	db.rp.prepareMissed(ctx) // its connection given back first: stmtcache.go
	return err
}

// Ping checks both pools.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.w.PingContext(ctx); err != nil {
		return fail("ping", err)
	}
	return fail("ping", db.r.PingContext(ctx))
}

// Close closes both pools.
func (db *DB) Close() error {
	var errR error
	if db.r != nil {
		errR = db.r.Close()
	}
	return errors.Join(errR, db.w.Close())
}

// migrate applies the embedded migrations that schema_migrations does not
// list yet, in order, in one transaction.
func (db *DB) migrate(ctx context.Context) error {
	m := sqlstore.Migrations{FS: migrations, Table: "schema_migrations",
		Create: `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`}
	err := db.WithTx(ctx, func(tx *sql.Tx) error { return m.Apply(ctx, txn{tx: tx}, db.log) })
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

// fail is sqlstore.Fail for this backend's own operations.
func fail(op string, err error) error { return sqlstore.Fail("sqlite", errorCode, op, err) }
