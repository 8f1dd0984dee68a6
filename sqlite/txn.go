package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/idflow/idflow/internal/sqlstore"
)

// txn is a database/sql transaction as sqlstore uses it. SQLite keeps a
// time as INTEGER unix nanoseconds, UTC (the migrations' columns): txn
// writes a time.Time or *time.Time argument so, and reads into a
// *time.Time or **time.Time destination so; every other value passes
// through. (The driver's own time encoding stays unset: River's tables,
// on the same connection, keep their times as text.)
type txn struct {
	tx   *sql.Tx
	prep *prepared // the pool's statements, prepared once per connection (nil: none)
}

func (t txn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := t.stmt(ctx, query).ExecContext(ctx, encodeTimes(args)...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t txn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := t.stmt(ctx, query).QueryContext(ctx, encodeTimes(args)...)
	if err != nil {
		return nil, err
	}
	return txnRows{rows}, nil
}

func (t txn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return txnRow{t.stmt(ctx, query).QueryRowContext(ctx, encodeTimes(args)...)}
}

// querier is what Exec, Query and QueryRow run on: a statement of the
// pool's cache bound to this transaction, or the transaction itself.
type querier interface {
	ExecContext(ctx context.Context, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, args ...any) *sql.Row
}

func (t txn) stmt(ctx context.Context, query string) querier {
	if t.prep != nil {
		if st := t.prep.stmt(query); st != nil {
			return t.tx.StmtContext(ctx, st)
		}
	}
	return unprepared{t.tx, query}
}

type unprepared struct {
	tx    *sql.Tx
	query string
}

func (u unprepared) ExecContext(ctx context.Context, args ...any) (sql.Result, error) {
	return u.tx.ExecContext(ctx, u.query, args...)
}

func (u unprepared) QueryContext(ctx context.Context, args ...any) (*sql.Rows, error) {
	return u.tx.QueryContext(ctx, u.query, args...)
}

func (u unprepared) QueryRowContext(ctx context.Context, args ...any) *sql.Row {
	return u.tx.QueryRowContext(ctx, u.query, args...)
}

type txnRow struct{ row *sql.Row }

func (r txnRow) Scan(dest ...any) error { return r.row.Scan(decodeTimes(dest)...) }

type txnRows struct{ rows *sql.Rows }

func (r txnRows) Scan(dest ...any) error { return r.rows.Scan(decodeTimes(dest)...) }
func (r txnRows) Next() bool             { return r.rows.Next() }
func (r txnRows) Err() error             { return r.rows.Err() }
func (r txnRows) Close()                 { _ = r.rows.Close() } // its error is Err's

// encodeTimes answers args with every time as unix nanoseconds.
func encodeTimes(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case time.Time:
			out[i] = v.UnixNano()
		case *time.Time:
			if v != nil {
				out[i] = v.UnixNano()
			}
		default:
			out[i] = a
		}
	}
	return out
}

// decodeTimes answers dest with every time destination read from unix
// nanoseconds.
func decodeTimes(dest []any) []any {
	out := make([]any, len(dest))
	for i, d := range dest {
		switch v := d.(type) {
		case *time.Time:
			out[i] = nanos{v}
		case **time.Time:
			out[i] = nullNanos{v}
		default:
			out[i] = d
		}
	}
	return out
}

// nanos scans an INTEGER of unix nanoseconds into a time.Time (UTC).
type nanos struct{ t *time.Time }

func (n nanos) Scan(src any) error {
	v, ok := src.(int64)
	if !ok {
		return fmt.Errorf("sqlite: a time is stored as %T, not as integer nanoseconds", src)
	}
	*n.t = time.Unix(0, v).UTC()
	return nil
}

// nullNanos is nanos for a time that may be NULL.
type nullNanos struct{ t **time.Time }

func (n nullNanos) Scan(src any) error {
	if src == nil {
		*n.t = nil
		return nil
	}
	var t time.Time
	if err := (nanos{&t}).Scan(src); err != nil {
		return err
	}
	*n.t = &t
	return nil
}
