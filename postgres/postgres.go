// Package postgres is the idflow.Store for more than one machine: PostgreSQL
// through pgx, with row-level security as a second wall behind the owner
// predicate.
//
// Every user-facing method first asks the Principal for its owner id
// (p.Owner refuses app-only and zero Principals), then runs in a transaction
// that begins with set_config('idflow.user_id', owner, true) — transaction
// local, so it is safe under transaction pooling — and binds the same owner
// into a "user_id = $n" predicate on every table it reads or writes. Were
// that predicate ever missing, the policies of migrations/0001_init.sql
// would still show the transaction nothing but the owner's rows.
//
// The schema belongs to a separate role (Migrate); Open refuses an app role
// that could step around the policies: a superuser, a BYPASSRLS role, or the
// owner of the tables. docs/POSTGRES.md describes the roles, the grants, the
// policies and the admin path.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

// DB is an idflow.Store (and an idflow.BlobStore) on PostgreSQL.
type DB struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu   sync.Mutex
	last time.Time // last timestamp handed out by now

	admission atomic.Pointer[sqlstore.RunAdmission[pgx.Tx]] // runs.go
}

var (
	_ idflow.Store     = (*DB)(nil)
	_ idflow.BlobStore = (*DB)(nil)
)

// userTables are the tables that hold user data, each with its own user_id,
// ENABLE and FORCE ROW LEVEL SECURITY and the owner_rows policy.
var userTables = []string{"users", "apps", "agents", "sessions", "messages", "workflows", "workflow_versions",
	"documents", "document_blobs", "facts", "runs", "run_events", "connections", "connect_states", "browser_sessions", "model_usage"}

// UserTables answers the tables that hold user data (audit_events included),
// for tests and tools that check the policies.
func UserTables() []string { return append(append([]string{}, userTables...), "audit_events") }

// ErrUnsafeRole is the cause of Open's refusal to run as a role that row-level
// security would not hold.
var ErrUnsafeRole = errors.New("postgres: unsafe database role")

// Open connects to appURL as the app role and checks that row-level
// security holds it: the role must be neither superuser nor BYPASSRLS (nor a
// member of such a role), must not own (or be a member of the owner of) the
// user tables, and every user table must have RLS enabled and forced.
// Migrations are not applied here; Migrate does that as the owner.
func Open(ctx context.Context, appURL string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(appURL)
	if err != nil {
		return nil, fmt.Errorf("postgres: invalid database URL: %w", err)
	}
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		utcTimestamps(conn)
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := checkRole(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &DB{pool: pool, log: log}, nil
}

// utcTimestamps makes timestamptz values scan as UTC times.
func utcTimestamps(conn *pgx.Conn) {
	conn.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID,
		Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
}

// checkRole refuses a connection whose role row-level security would not
// hold, and a schema whose user tables are missing or not protected.
func checkRole(ctx context.Context, pool *pgxpool.Pool) error {
	var role string
	var super, bypass, viaMember bool
	err := pool.QueryRow(ctx, `SELECT current_user, r.rolsuper, r.rolbypassrls,
		EXISTS (SELECT 1 FROM pg_roles s WHERE (s.rolsuper OR s.rolbypassrls) AND s.oid <> r.oid
			AND pg_has_role(r.oid, s.oid, 'MEMBER'))
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&role, &super, &bypass, &viaMember)
	if err != nil {
		return fmt.Errorf("postgres: checking the database role: %w", err)
	}
	refuse := func(why string) error {
		return fmt.Errorf("%w: refusing to start: role %q %s; IDFLOW_DATABASE_URL must name an app role that is neither "+
			"superuser nor BYPASSRLS nor the owner of the tables, and IDFLOW_MIGRATE_DATABASE_URL the owner (docs/POSTGRES.md)",
			ErrUnsafeRole, role, why)
	}
	switch {
	case super:
		return refuse("is a superuser, which row-level security does not hold")
	case bypass:
		return refuse("has BYPASSRLS")
	case viaMember:
		return refuse("is a member of a superuser or BYPASSRLS role")
	}
	rows, err := pool.Query(ctx, `SELECT t.name, c.oid IS NOT NULL,
			COALESCE(pg_has_role(current_user, c.relowner, 'MEMBER'), false),
			COALESCE(c.relrowsecurity AND c.relforcerowsecurity, false)
		FROM unnest($1::text[]) AS t(name)
		LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident(t.name))`, UserTables())
	if err != nil {
		return fmt.Errorf("postgres: checking the schema: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var exists, owns, rls bool
		if err := rows.Scan(&name, &exists, &owns, &rls); err != nil {
			return fmt.Errorf("postgres: checking the schema: %w", err)
		}
		switch {
		case !exists:
			return fmt.Errorf("postgres: table %s is missing: run `idflow migrate` (as the schema owner) first", name)
		case owns:
			return refuse(fmt.Sprintf("owns table %s (or is a member of its owner), and an owner can turn row-level security off", name))
		case !rls:
			return fmt.Errorf("%w: refusing to start: table %s does not have row-level security enabled and forced", ErrUnsafeRole, name)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: checking the schema: %w", err)
	}
	return nil
}

// Pool returns the connection pool (the app role), for River.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Ping checks the connection.
func (db *DB) Ping(ctx context.Context) error { return fail("ping", db.pool.Ping(ctx)) }

// Close closes the pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// now returns the current UTC time at microsecond precision, strictly after
// every time it returned before, so that rows created one after the other by
// this process sort in creation order (as the SQLite store does).
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

var (
	readOnly  = pgx.TxOptions{AccessMode: pgx.ReadOnly}
	readWrite = pgx.TxOptions{}
	// adminRead is one consistent snapshot (VerifyAuditChain reads the head,
	// the links and the events in it).
	adminRead = pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}
)

// asUser runs fn in a transaction whose row-level security identity is
// owner (set_config(..., true): it ends with the transaction), and commits
// when fn returns nil. Errors come back caller-safe.
func (db *DB) asUser(ctx context.Context, op, owner string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	return fail(op, pgx.BeginTxFunc(ctx, db.pool, opts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('idflow.user_id', $1, true)`, owner); err != nil {
			return err
		}
		return fn(tx)
	}))
}

// asAdmin runs fn in a read-only snapshot on the explicit admin path, for
// the admin's scope: idflow.admin = 'all' (a platform admin) or 'tenant'
// with idflow.admin_tenant = the admin's tenant (transaction-local) opens
// the admin_read policies of users, facts and audit_events for that scope,
// for SELECT only (migrations/0005_admin_tenant.sql). idflow.user_id is the
// admin's own id.
func (db *DB) asAdmin(ctx context.Context, op string, admin idflow.Principal, scope idflow.AdminScope, fn func(tx pgx.Tx, tenant string, all bool) error) error {
	tenant, all, err := scope.For(admin)
	if err != nil {
		return err
	}
	mode := "tenant"
	if all {
		mode = "all"
	}
	return fail(op, pgx.BeginTxFunc(ctx, db.pool, adminRead, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('idflow.admin', $1, true), set_config('idflow.admin_tenant', $2, true),
			set_config('idflow.user_id', $3, true)`, mode, tenant, admin.UserID); err != nil {
			return err
		}
		return fn(tx, tenant, all)
	}))
}

// SQLSTATE codes the store maps to caller errors.
const (
	codeCharacterNotInRepertoire = "22021" // invalid UTF-8, or a NUL byte
	codeProgramLimitExceeded     = "54000" // e.g. a text too long for its tsvector
)

// fail turns an error for the caller: an *idflow.Error passes through, bad
// text becomes EINVALID, anything else an internal error whose message names
// no SQL (the cause stays in the chain for logs).
func fail(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *idflow.Error
	if errors.As(err, &e) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case codeCharacterNotInRepertoire:
			return idflow.WrapError(idflow.EINVALID, "text must be valid UTF-8 without NUL characters", fmt.Errorf("postgres: %s: %w", op, err))
		case codeProgramLimitExceeded:
			return idflow.WrapError(idflow.EINVALID, "text is too long", fmt.Errorf("postgres: %s: %w", op, err))
		}
	}
	return idflow.WrapError(idflow.EINTERNAL, "storage error", fmt.Errorf("postgres: %s: %w", op, err))
}

// rowScanner is a pgx.Row or pgx.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// getOne runs a query that answers at most one row; no row is NotFound(kind).
func getOne[T any](ctx context.Context, tx pgx.Tx, kind, query string, scan func(rowScanner) (T, error), args ...any) (T, error) {
	v, err := scan(tx.QueryRow(ctx, query, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return v, idflow.NotFound(kind)
	}
	return v, err
}

// owned reports whether table holds a row id owned by owner. table is always
// a constant of this package.
func owned(ctx context.Context, tx pgx.Tx, table, owner, id string) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE user_id = $1 AND id = $2)`, owner, id).Scan(&ok)
	return ok, err
}

// requireOwned answers NotFound(kind) unless id is empty or names a row of
// table owned by owner. The reference is also a composite foreign key, so a
// row deleted concurrently still cannot be referenced.
func requireOwned(ctx context.Context, tx pgx.Tx, table, kind, owner, id string) error {
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
func deleteOwned(ctx context.Context, tx pgx.Tx, table, kind, owner, id string) error {
	tag, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE user_id = $1 AND id = $2`, owner, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return idflow.NotFound(kind)
	}
	return nil
}

// nullable maps "" to SQL NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// optional maps a nil patch field to SQL NULL, for "COALESCE($n, column)".
func optional(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// utc returns *t in UTC, or nil.
func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
