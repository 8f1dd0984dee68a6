package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

// cursor and pageLimit are sqlstore's, shared by both backends.
type cursor = sqlstore.Cursor

var (
	decodeCursor = sqlstore.DecodeCursor
	pageLimit    = sqlstore.PageLimit
)

// timeKey is the cursor key of a timestamp.
func timeKey(t time.Time) int64 { return t.UnixNano() }

// keyset names the two columns a list is ordered by, and whether the first
// is a timestamp (its cursor key then counts nanoseconds).
type keyset struct {
	key, id string
	time    bool
}

var (
	byCreated = keyset{"created_at", "id", true}
	bySeq     = keyset{"seq", "id", false}
	byFirst   = keyset{"first_seen", "user_id", true}
)

// arg is the SQL value of a cursor key.
func (ks keyset) arg(key int64) any {
	if ks.time {
		return time.Unix(0, key).UTC()
	}
	return key
}

// listSQL completes base, a SELECT whose WHERE clause is already open (for a
// user list it starts with the owner predicate) and uses n parameters, with
// the keyset condition, the order and the limit. Only constants of this
// package reach it.
func listSQL(base string, n int, ks keyset, asc, after bool) string {
	op, dir := "<", "DESC"
	if asc {
		op, dir = ">", "ASC"
	}
	var b strings.Builder
	b.WriteString(base)
	if after {
		fmt.Fprintf(&b, " AND (%s, %s) %s ($%d, $%d)", ks.key, ks.id, op, n+1, n+2)
		n += 2
	}
	fmt.Fprintf(&b, " ORDER BY %s %s, %s %s LIMIT $%d", ks.key, dir, ks.id, dir, n+1)
	return b.String()
}

// list answers one page of base (see listSQL), newest first unless asc.
// key gives the keyset position of an item.
func list[T any](ctx context.Context, tx pgx.Tx, base string, args []any, ks keyset, asc bool, page idflow.Page,
	scan func(rowScanner) (T, error), key func(T) cursor) (idflow.List[T], error) {
	out := idflow.List[T]{Items: []T{}}
	limit, err := pageLimit(page.Limit, idflow.DefaultPageLimit, idflow.MaxPageLimit)
	if err != nil {
		return out, err
	}
	n := len(args)
	args = append([]any(nil), args...)
	if page.Cursor != "" {
		c, err := decodeCursor(page.Cursor)
		if err != nil {
			return out, err
		}
		args = append(args, ks.arg(c.Key), c.ID)
	}
	args = append(args, limit+1)
	rows, err := tx.Query(ctx, listSQL(base, n, ks, asc, page.Cursor != ""), args...)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return out, err
		}
		out.Items = append(out.Items, v)
	}
	if err := rows.Err(); err != nil {
		return out, err
	}
	if len(out.Items) > limit {
		out.Items = out.Items[:limit]
		out.NextCursor = key(out.Items[limit-1]).Encode()
	}
	return out, nil
}

// listAs answers one page as owner, in its own read-only transaction.
func listAs[T any](ctx context.Context, db *DB, op, owner, base string, args []any, ks keyset, asc bool, page idflow.Page,
	scan func(rowScanner) (T, error), key func(T) cursor) (idflow.List[T], error) {
	var out idflow.List[T]
	err := db.asUser(ctx, op, owner, readOnly, func(tx pgx.Tx) error {
		var err error
		out, err = list(ctx, tx, base, args, ks, asc, page, scan, key)
		return err
	})
	if out.Items == nil {
		out.Items = []T{}
	}
	return out, err
}
