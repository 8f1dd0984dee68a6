package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

// cursor and pageLimit are sqlstore's, shared by both backends.
type cursor = sqlstore.Cursor

var (
	decodeCursor = sqlstore.DecodeCursor
	pageLimit    = sqlstore.PageLimit
)

// keyset names the two columns a list is ordered by.
type keyset struct{ key, id string }

var (
	byCreated = keyset{"created_at", "id"}
	bySeq     = keyset{"seq", "id"}
	byFirst   = keyset{"first_seen", "user_id"}
)

// listSQL completes base, a SELECT whose WHERE clause is already open (for a
// user list it starts with the owner predicate), with the keyset condition,
// the order and the limit. Only constants of this package reach it.
func listSQL(base string, ks keyset, asc, after bool) string {
	op, dir := "<", "DESC"
	if asc {
		op, dir = ">", "ASC"
	}
	var b strings.Builder
	b.WriteString(base)
	if after {
		fmt.Fprintf(&b, " AND (%s, %s) %s (?, ?)", ks.key, ks.id, op)
	}
	fmt.Fprintf(&b, " ORDER BY %s %s, %s %s LIMIT ?", ks.key, dir, ks.id, dir)
	return b.String()
}

// list answers one page of base (see listSQL), newest first unless asc.
// key gives the keyset position of an item.
func list[T any](ctx context.Context, q querier, base string, args []any, ks keyset, asc bool, page idflow.Page,
	scan func(rowScanner) (T, error), key func(T) cursor) (idflow.List[T], error) {
	out := idflow.List[T]{Items: []T{}}
	limit, err := pageLimit(page.Limit, idflow.DefaultPageLimit, idflow.MaxPageLimit)
	if err != nil {
		return out, err
	}
	args = append([]any(nil), args...)
	if page.Cursor != "" {
		c, err := decodeCursor(page.Cursor)
		if err != nil {
			return out, err
		}
		args = append(args, c.Key, c.ID)
	}
	args = append(args, limit+1)
	rows, err := q.QueryContext(ctx, listSQL(base, ks, asc, page.Cursor != ""), args...)
	if err != nil {
		return out, fail("list", err)
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return out, fail("list", err)
		}
		out.Items = append(out.Items, v)
	}
	if err := rows.Err(); err != nil {
		return out, fail("list", err)
	}
	if len(out.Items) > limit {
		out.Items = out.Items[:limit]
		out.NextCursor = key(out.Items[limit-1]).Encode()
	}
	return out, nil
}
