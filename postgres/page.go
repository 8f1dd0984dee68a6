package postgres

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
)

// cursor is the keyset position after which the next page starts: the sort
// key (a timestamp in unix nanoseconds, or the audit seq) and the row's id.
// It encodes exactly as the SQLite store's, so a cursor means the same on
// both backends.
type cursor struct {
	Key int64
	ID  string
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Key, 10) + "." + c.ID))
}

func decodeCursor(s string) (cursor, error) {
	bad := idflow.Errorf(idflow.EINVALID, "invalid cursor")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, bad
	}
	key, id, ok := strings.Cut(string(b), ".")
	if !ok || id == "" {
		return cursor{}, bad
	}
	n, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return cursor{}, bad
	}
	return cursor{Key: n, ID: id}, nil
}

// timeKey is the cursor key of a timestamp.
func timeKey(t time.Time) int64 { return t.UnixNano() }

// pageLimit applies the default and the maximum; a negative limit is invalid.
func pageLimit(limit, def, maxLimit int) (int, error) {
	switch {
	case limit < 0:
		return 0, idflow.Errorf(idflow.EINVALID, "limit must not be negative")
	case limit == 0:
		return def, nil
	default:
		return min(limit, maxLimit), nil
	}
}

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
		out.NextCursor = key(out.Items[limit-1]).encode()
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
