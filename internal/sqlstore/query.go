package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"

	"github.com/idflow/idflow"
)

// clock hands out the times a store writes: UTC at microsecond precision
// (what PostgreSQL keeps), each strictly after the one before, so that
// rows created one after the other by this process sort in creation order.
type clock struct {
	mu   sync.Mutex
	last time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := time.Now().UTC().Truncate(time.Microsecond)
	if !t.After(c.last) {
		t = c.last.Add(time.Microsecond)
	}
	c.last = t
	return t
}

// stored is t as a store keeps a time it is given: UTC, microseconds.
func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// storedPtr is stored for an optional time.
func storedPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := stored(*t)
	return &u
}

// getOne runs a query that answers at most one row; no row is
// NotFound(kind).
func getOne[T any](ctx context.Context, tx Tx, kind, query string, scan func(Row) (T, error), args ...any) (T, error) {
	v, err := scan(tx.QueryRow(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return v, idflow.NotFound(kind)
	}
	return v, err
}

// getOwned answers the one row of query ($1 owner, $2 id) as p, in a read
// transaction; no row is NotFound(kind).
func getOwned[T any](ctx context.Context, s *Store, p idflow.Principal, kind, query string, scan func(Row) (T, error), id string) (T, error) {
	var v, zero T
	owner, err := p.Owner()
	if err != nil {
		return zero, err
	}
	err = s.read(ctx, "get "+kind, owner, func(tx Tx) error {
		v, err = getOne(ctx, tx, kind, query, scan, owner, id)
		return err
	})
	if err != nil {
		return zero, err
	}
	return v, nil
}

// collect runs a query and scans every row; none is an empty, non-nil
// slice.
func collect[T any](ctx context.Context, tx Tx, query string, scan func(Row) (T, error), args ...any) ([]T, error) {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// owned reports whether table holds a row id owned by owner. table is
// always a constant of this package.
func owned(ctx context.Context, tx Tx, table, owner, id string) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE user_id = $1 AND id = $2)`, owner, id).Scan(&ok)
	return ok, err
}

// requireOwned answers NotFound(kind) unless id is empty or names a row of
// table owned by owner. A reference is also a composite foreign key on
// (user_id, id), so a row deleted concurrently still cannot be referenced.
func requireOwned(ctx context.Context, tx Tx, table, kind, owner, id string) error {
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
func deleteOwned(ctx context.Context, tx Tx, table, kind, owner, id string) error {
	n, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE user_id = $1 AND id = $2`, owner, id)
	return affectedOne(kind, n, err)
}

// affectedOne answers the error of a statement that changes one object of
// kind: its own, or NotFound(kind) when it changed no row (n).
func affectedOne(kind string, n int64, err error) error {
	switch {
	case err != nil:
		return err
	case n == 0:
		return idflow.NotFound(kind)
	}
	return nil
}

// nullable maps "" to SQL NULL: an unset reference.
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

func scanString(r Row) (string, error) {
	var s string
	err := r.Scan(&s)
	return s, err
}

func scanInt64(r Row) (int64, error) {
	var n int64
	err := r.Scan(&n)
	return n, err
}
