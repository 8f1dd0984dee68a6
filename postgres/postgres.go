// Package postgres is the idflow.Store for more than one machine: PostgreSQL
// through pgx, with row-level security as a second wall behind the owner
// predicate. The store itself is sqlstore.Store, shared with package
// sqlite; this package gives it PostgreSQL's transactions (each with its
// row-level security identity), the statements PostgreSQL writes its own
// way, batch inserts and full-text search (dialect.go, search.go), and
// keeps documents' bytes (blobs.go).
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
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

// DB is an idflow.Store (and an idflow.BlobStore) on PostgreSQL:
// sqlstore.Store over the backend below.
type DB struct {
	*sqlstore.Store
	pool *pgxpool.Pool
	log  *slog.Logger
}

var (
	_ idflow.Store              = (*DB)(nil)
	_ idflow.BlobStore          = (*DB)(nil)
	_ sqlstore.RunQueue[pgx.Tx] = (*DB)(nil)
)

// userTables are the tables that hold user data, each with its own user_id,
// ENABLE and FORCE ROW LEVEL SECURITY and the owner_rows policy.
var userTables = []string{"users", "apps", "agents", "sessions", "messages", "workflows", "workflow_versions",
	"documents", "document_blobs", "facts", "runs", "run_events", "connections", "connect_states", "browser_sessions", "model_usage",
	"personal_tokens"}

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
	db := &DB{pool: pool, log: log}
	db.Store = sqlstore.New(db.backend(), log)
	return db, nil
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

var (
	readOnly  = pgx.TxOptions{AccessMode: pgx.ReadOnly}
	readWrite = pgx.TxOptions{}
	// adminRead is one consistent snapshot (VerifyAuditChain reads the head,
	// the links and the events in it).
	adminRead = pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}
)

// asUser runs fn in a transaction whose row-level security identity is
// owner (set_config(..., true): it ends with the transaction), and commits
// when fn returns nil.
func (db *DB) asUser(ctx context.Context, owner string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, db.pool, opts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('idflow.user_id', $1, true)`, owner); err != nil {
			return err
		}
		return fn(tx)
	})
}

// asAdmin runs fn in a read-only snapshot on the explicit admin path, for
// the admin's scope: idflow.admin = 'all' (a platform admin) or 'tenant'
// with idflow.admin_tenant = the admin's tenant (transaction-local) opens
// the admin_read policies of users, facts, audit_events and model_usage
// for that scope, for SELECT only (migrations/0005_admin_tenant.sql).
// idflow.user_id is the admin's own id. sqlstore checked the scope against
// admin before.
func (db *DB) asAdmin(ctx context.Context, admin idflow.Principal, tenant string, all bool, fn func(pgx.Tx) error) error {
	mode := "tenant"
	if all {
		mode = "all"
	}
	return pgx.BeginTxFunc(ctx, db.pool, adminRead, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('idflow.admin', $1, true), set_config('idflow.admin_tenant', $2, true),
			set_config('idflow.user_id', $3, true)`, mode, tenant, admin.UserID); err != nil {
			return err
		}
		return fn(tx)
	})
}

// bySecret runs fn in a transaction that may see the one browser session
// whose id hashes to idHash (the by_secret policy), and, when owner is
// set, the owner's rows.
func (db *DB) bySecret(ctx context.Context, idHash, owner string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, db.pool, opts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('idflow.session_hash', $1, true), set_config('idflow.user_id', $2, true)`, idHash, owner); err != nil {
			return err
		}
		return fn(tx)
	})
}

// asTenant runs fn on the directory rows of tenant: idflow.directory =
// 'on' and idflow.tenant (transaction-local) open the tenant_rows policies
// of the SCIM and lifecycle tables (migrations/0020_directory.sql).
// sqlstore checked the caller's scope before.
func (db *DB) asTenant(ctx context.Context, tenant string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, db.pool, opts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('idflow.directory', 'on', true), set_config('idflow.tenant', $1, true)`, tenant); err != nil {
			return err
		}
		return fn(tx)
	})
}

// backend is how sqlstore.Store runs on PostgreSQL: every transaction of a
// user carries the user as its row-level security identity, admins read
// on the admin path, browser sessions are found by their secret, and what
// acts as nobody (the audit chain, Stats, finding stranded runs) sees no
// user table but through SECURITY DEFINER functions that answer no user
// data.
func (db *DB) backend() sqlstore.Backend {
	as := func(opts pgx.TxOptions) func(context.Context, string, func(sqlstore.Tx) error) error {
		return func(ctx context.Context, owner string, fn func(sqlstore.Tx) error) error {
			return db.asUser(ctx, owner, opts, func(tx pgx.Tx) error { return fn(txn{tx}) })
		}
	}
	mode := func(write bool) pgx.TxOptions {
		if write {
			return readWrite
		}
		return readOnly
	}
	return sqlstore.Backend{
		Name:      "postgres",
		ErrorCode: errorCode,
		ReadAs:    as(readOnly),
		WriteAs:   as(readWrite),
		ReadAsAdmin: func(ctx context.Context, admin idflow.Principal, tenant string, all bool, fn func(sqlstore.Tx) error) error {
			return db.asAdmin(ctx, admin, tenant, all, func(tx pgx.Tx) error { return fn(txn{tx}) })
		},
		BySecret: func(ctx context.Context, idHash, owner string, write bool, fn func(sqlstore.Tx) error) error {
			return db.bySecret(ctx, idHash, owner, mode(write), func(tx pgx.Tx) error { return fn(txn{tx}) })
		},
		AsTenant: func(ctx context.Context, tenant string, write bool, fn func(sqlstore.Tx) error) error {
			return db.asTenant(ctx, tenant, mode(write), func(tx pgx.Tx) error { return fn(txn{tx}) })
		},
		System: func(ctx context.Context, write bool, fn func(sqlstore.Tx) error) error {
			return pgx.BeginTxFunc(ctx, db.pool, mode(write), func(tx pgx.Tx) error { return fn(txn{tx}) })
		},
		LockOwner:      lockAdmission,
		InsertFacts:    insertFacts,
		InsertMessages: insertMessages,
		Search:         search,
		SQL:            dialect,
	}
}

// SetRunAdmission sets how runs are admitted (sqlstore.RunQueue); River
// enqueues a job through riverpgxv5's InsertTx in the store's own pgx.Tx.
func (db *DB) SetRunAdmission(a sqlstore.RunAdmission[pgx.Tx]) {
	sqlstore.SetRunAdmission(db.Store, a, func(tx sqlstore.Tx) pgx.Tx { return tx.(txn).tx })
}

// txn is a pgx transaction as sqlstore uses it; pgx's rows are its rows.
type txn struct{ tx pgx.Tx }

func (t txn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (t txn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	return t.tx.Query(ctx, query, args...)
}

func (t txn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return t.tx.QueryRow(ctx, query, args...)
}

// errorCode answers err's SQLSTATE (sqlstore.Backend.ErrorCode).
func errorCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// fail is sqlstore.Fail for this backend's own operations.
func fail(op string, err error) error { return sqlstore.Fail("postgres", errorCode, op, err) }
