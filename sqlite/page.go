package sqlite

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/idflow/idflow"
)

// cursor is the keyset position after which the next page starts: the sort
// key (a timestamp in unix nanoseconds, or the audit seq) and the row's id.
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
		out.NextCursor = key(out.Items[limit-1]).encode()
	}
	return out, nil
}
