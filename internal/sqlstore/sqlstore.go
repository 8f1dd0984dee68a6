// Package sqlstore is the one implementation of idflow.Store over SQL that
// the sqlite and postgres packages share. Store holds every rule that does
// not depend on the database — the owner predicate and owner checks of
// every statement, id and time assignment, patches, keyset lists, run
// admission, the audit chain, error mapping — and each statement's SQL
// where both databases read it the same. A Backend gives it the rest: how
// a transaction is run for each kind of caller (on PostgreSQL with the
// row-level security identity, on SQLite through the one writer), the
// statements its dialect writes its own way (Dialect), and what it alone
// does (full-text search, batch inserts). None of it is for callers of the
// domain: they see idflow.Store, idflow.Page, idflow.List.
package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/idflow/idflow"
)

// Tx is one transaction of a backend, as Store uses it. Statements use
// numbered placeholders ($1, $2, …, which SQLite reads too); a time.Time
// (or *time.Time) argument or destination is the backend's to encode.
type Tx interface {
	// Exec runs a statement and answers how many rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Row is one row of a result: QueryRow's, or Rows' current one. Scanning
// no row answers an error that errors.Is sql.ErrNoRows.
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result being read.
type Rows interface {
	Row
	Next() bool
	Err() error
	Close()
}

// Backend is what one database gives Store. Its transaction runners answer
// errors as they come (Store turns them for the caller).
type Backend struct {
	// Name prefixes the cause of an error in logs: "sqlite", "postgres".
	Name string
	// ErrorCode answers a driver error's code for the failures table:
	// PostgreSQL's SQLSTATE, or SQLite's primary result code as
	// "sqlite/<n>"; "" for any other error.
	ErrorCode func(error) string

	// ReadAs runs fn in a read-only transaction (one snapshot) acting as
	// owner, WriteAs in a read-write one, committed when fn returns nil.
	ReadAs, WriteAs func(ctx context.Context, owner string, fn func(Tx) error) error
	// ReadAsAdmin runs fn in a read-only snapshot on the admin path of an
	// admin whose scope is tenant, or every tenant (all).
	ReadAsAdmin func(ctx context.Context, admin idflow.Principal, tenant string, all bool, fn func(Tx) error) error
	// BySecret runs fn in a transaction that may see the browser session
	// whose id hashes to idHash and, when owner is set, owner's sessions.
	BySecret func(ctx context.Context, idHash, owner string, write bool, fn func(Tx) error) error
	// AsTenant runs fn on the directory rows of one tenant (directory.go):
	// SCIM users and groups, users' lifecycle states.
	AsTenant func(ctx context.Context, tenant string, write bool, fn func(Tx) error) error
	// System runs fn acting as nobody: appending to the audit chain, which
	// every request does, and the looks across users that answer no user
	// data (Stats, finding stranded runs).
	System func(ctx context.Context, write bool, fn func(Tx) error) error
	// LockOwner serializes, until tx ends, owner's transactions that count
	// and admit runs; nil where the database has a single writer.
	LockOwner func(ctx context.Context, tx Tx, owner string) error

	// InsertFacts writes complete facts (at least one) of one owner, with
	// their full-text entries.
	InsertFacts func(ctx context.Context, tx Tx, facts []idflow.Fact) error
	// InsertMessages writes complete messages (at least one) of one
	// session; calls[i] is msgs[i]'s tool calls as stored (JSON text), or
	// nil.
	InsertMessages func(ctx context.Context, tx Tx, msgs []idflow.Message, calls []*string) error
	// Search answers the statement, and its arguments, that ranks owner's
	// facts against text, best first: at most limit rows of the fact
	// columns (id, user_id, content, source document id or '', created_at,
	// updated_at) and a positive score. ok is false when text has no word
	// to search for.
	Search func(owner, text string, limit int) (query string, args []any, ok bool)

	SQL Dialect
}

// Dialect is the SQL a backend writes its own way: where the types differ
// (booleans, dates, enums), where its indexes or its row-level security
// want another form, or where only one database has the feature.
type Dialect struct {
	// LockRow ends a SELECT of the one row the transaction goes on to
	// update: " FOR NO KEY UPDATE" where writers run concurrently, "" where
	// there is a single writer.
	LockRow string
	// RunsAdmitted counts $1's admitted runs that have not ended (the slots
	// in use); RunsWaiting lists $1's waiting runs (id, owner snapshot),
	// oldest first, at most $2. Each reads its own partial index.
	RunsAdmitted, RunsWaiting string
	// StrandedRuns lists the (user_id, id) of at most $1 admitted runs
	// that have not ended although their River job has, or is gone.
	StrandedRuns string
	// AuditHead reads the chain's last (seq, hash), locked until the
	// transaction ends; no row is the empty chain. AuditAdvance, where the
	// backend keeps a head row, moves it to ($1, $2).
	AuditHead, AuditAdvance string
	// AuditLinks pages the chain's links (seq, prev_hash, hash) after seq
	// $1, at most $2, by seq. AuditCheckHead, where the backend keeps a
	// head row, reads it, so that a cut-off tail is seen too.
	AuditLinks, AuditCheckHead string
	// Stats counts users, sessions, messages, workflows, runs, documents
	// and facts.
	Stats string
	// RecordUsage adds one call to ($1 user, $2 day, $3 model): tenant $4,
	// tokens $5 and $6, at $7. ListUsage reads $1's days $2 to $3 (user,
	// day, model, tokens, calls); AdminUsage the scope's (see usage.go).
	// A day is a date on PostgreSQL, text on SQLite.
	RecordUsage, ListUsage, AdminUsage string
	// SweepBrowserSessions deletes expired sessions (expires_at < $2) when
	// $1 signs in: every user's, or $1's where the transaction sees no
	// other user's.
	SweepBrowserSessions string
	// EraseAudit, where set, replaces $1 by the mark $2 in the audit chain
	// and re-chains it, answering how many events it re-chained (a
	// function: the app role cannot edit events); unset, EraseUser does it
	// in Go. EraseJobs deletes River's jobs carrying $1's snapshot;
	// EraseSearch, where set, rewrites the search index so that no deleted
	// term stays in it; EraseBlobs, where set, deletes $1's document bytes
	// kept in the database.
	EraseAudit, EraseJobs, EraseSearch, EraseBlobs string
	// DisabledUsers lists (tenant_id, user_id) of every disabled user.
	DisabledUsers string
}

// Store is idflow.Store (and RunQueue) over a Backend. A backend's DB
// embeds it, so its methods are the DB's.
type Store struct {
	b         Backend
	log       *slog.Logger
	clock     clock
	admission atomic.Pointer[admission] // run.go
}

// New returns the store of b.
func New(b Backend, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{b: b, log: log}
}

// read, write, admin, bySecret and system run fn as their Backend
// counterparts do, and answer caller-safe errors (Fail); op names the
// operation in the cause.
func (s *Store) read(ctx context.Context, op, owner string, fn func(Tx) error) error {
	return s.fail(op, s.b.ReadAs(ctx, owner, fn))
}

func (s *Store) write(ctx context.Context, op, owner string, fn func(Tx) error) error {
	return s.fail(op, s.b.WriteAs(ctx, owner, fn))
}

// admin checks that scope is admin's before anything is read.
func (s *Store) admin(ctx context.Context, op string, admin idflow.Principal, scope idflow.AdminScope, fn func(tx Tx, tenant string, all bool) error) error {
	tenant, all, err := scope.For(admin)
	if err != nil {
		return err
	}
	return s.fail(op, s.b.ReadAsAdmin(ctx, admin, tenant, all, func(tx Tx) error { return fn(tx, tenant, all) }))
}

func (s *Store) system(ctx context.Context, op string, write bool, fn func(Tx) error) error {
	return s.fail(op, s.b.System(ctx, write, fn))
}

func (s *Store) fail(op string, err error) error { return Fail(s.b.Name, s.b.ErrorCode, op, err) }

// Caller errors a backend's error codes stand for: the same failure has
// the same answer on either database.
var failures = map[string]struct{ code, message string }{
	"22021":     {idflow.EINVALID, "text must be valid UTF-8 without NUL characters"}, // PostgreSQL character_not_in_repertoire
	"54000":     {idflow.EINVALID, "text is too long"},                                // PostgreSQL program_limit_exceeded, e.g. a text too long for its tsvector
	"sqlite/18": {idflow.EINVALID, "text is too long"},                                // SQLITE_TOOBIG
}

// Fail turns err for the caller of a store: an *idflow.Error passes
// through; a driver error of the failures table becomes its caller error;
// anything else an internal error whose message names no SQL. The cause
// stays in the chain, for logs, prefixed with backend and op. code answers
// the backend's code of a driver error (Backend.ErrorCode).
func Fail(backend string, code func(error) string, op string, err error) error {
	if err == nil {
		return nil
	}
	var e *idflow.Error
	if errors.As(err, &e) {
		return err
	}
	cause := fmt.Errorf("%s: %s: %w", backend, op, err)
	if f, ok := failures[code(err)]; ok {
		return idflow.WrapError(f.code, f.message, cause)
	}
	return idflow.WrapError(idflow.EINTERNAL, "storage error", cause)
}
