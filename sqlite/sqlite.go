// Package sqlite is the embedded idflow.Store: one SQLite file in WAL mode,
// through modernc.org/sqlite (pure Go, no cgo).
//
// Every user-facing method first asks the Principal for its owner id
// (p.Owner refuses app-only and zero Principals) and binds it into a
// "user_id = ?" predicate on the table it reads or writes; no such predicate
// ever depends on a join. Writes go through a pool of exactly one connection,
// so writers queue in the process instead of failing with SQLITE_BUSY; reads
// use a separate, query-only pool.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is an idflow.Store backed by one SQLite file.
type DB struct {
	w   *sql.DB   // the single writer connection
	r   *sql.DB   // read-only pool
	rp  *prepared // the read pool, statements prepared once (stmtcache.go)
	log *slog.Logger

	mu   sync.Mutex
	last time.Time // last timestamp handed out by now

	admission atomic.Pointer[sqlstore.RunAdmission[*sql.Tx]] // runs.go
}

var _ idflow.Store = (*DB)(nil)

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

	db := &DB{w: w, log: log}
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
	return db, nil
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

// tx is WithTx for the store's own methods: errors come back caller-safe.
func (db *DB) tx(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	return fail(op, db.WithTx(ctx, fn))
}

// read runs fn in a read transaction on the read pool: every statement of
// fn sees the same snapshot (WAL), whatever is committed meanwhile.
func (db *DB) read(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to commit
	return fn(tx)
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

// now returns the current UTC time at microsecond precision (what PostgreSQL
// keeps), strictly after every time it returned before, so that rows created
// one after the other sort in creation order.
func (db *DB) now() time.Time {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := time.Now().UTC().Truncate(time.Microsecond)
	if !t.After(db.last) {
		t = db.last.Add(time.Microsecond)
	}
	db.last = t
	return t
}

// migrate applies the embedded migrations that schema_migrations does not
// list yet, in order, in one transaction.
func (db *DB) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	sort.Strings(names)
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`); err != nil {
			return fmt.Errorf("sqlite: migrations: %w", err)
		}
		for _, name := range names {
			base := filepath.Base(name)
			version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
			if err != nil {
				return fmt.Errorf("sqlite: migration %s: name must start with a version number", base)
			}
			var applied bool
			err = tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`, version).Scan(&applied)
			if err != nil {
				return fmt.Errorf("sqlite: migrations: %w", err)
			}
			if applied {
				continue
			}
			body, err := migrations.ReadFile(name)
			if err != nil {
				return fmt.Errorf("sqlite: migration %s: %w", base, err)
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("sqlite: migration %s: %w", base, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				version, base, db.now().UnixNano()); err != nil {
				return fmt.Errorf("sqlite: migration %s: %w", base, err)
			}
			db.log.InfoContext(ctx, "sqlite migration applied", "version", version, "name", base)
		}
		return nil
	})
}

// fail turns an error for the caller: an *idflow.Error passes through, any
// other error becomes an internal error whose message names no SQL (the
// cause stays in the chain for logs).
func fail(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *idflow.Error
	if errors.As(err, &e) {
		return err
	}
	return idflow.WrapError(idflow.EINTERNAL, "storage error", fmt.Errorf("sqlite: %s: %w", op, err))
}

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// querier is a pool or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// getOne runs a query that answers at most one row; no row is NotFound(kind).
func getOne[T any](ctx context.Context, q querier, kind, query string, scan func(rowScanner) (T, error), args ...any) (T, error) {
	v, err := scan(q.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return v, idflow.NotFound(kind)
	}
	return v, fail("get "+kind, err)
}

// owned reports whether table holds a row id owned by owner. table is always
// a constant of this package.
func owned(ctx context.Context, tx *sql.Tx, table, owner, id string) (bool, error) {
	var ok bool
	err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE user_id = ? AND id = ?)`, owner, id).Scan(&ok)
	return ok, err
}

// requireOwned answers NotFound(kind) unless id is empty or names a row of
// table owned by owner.
func requireOwned(ctx context.Context, tx *sql.Tx, table, kind, owner, id string) error {
	if id == "" {
		return nil
	}
	ok, err := owned(ctx, tx, table, owner, id)
	if err != nil {
		return err
	}
	if !ok {
		return idflow.NotFound(kind)
	}
	return nil
}

// deleteOwned deletes one row of table; no row is NotFound(kind).
func deleteOwned(ctx context.Context, tx *sql.Tx, table, kind, owner, id string) error {
	res, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE user_id = ? AND id = ?`, owner, id)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return idflow.NotFound(kind)
	}
	return nil
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// nullable maps "" to SQL NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// optional maps a nil patch field to SQL NULL, for "COALESCE(?, column)".
func optional(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}
