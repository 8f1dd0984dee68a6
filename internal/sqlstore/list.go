package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/idflow/idflow"
)

// Keyset names the two columns a list is ordered by, and whether the first
// is a timestamp (its cursor key then counts nanoseconds).
type Keyset struct {
	key, id string
	time    bool
}

// The orders of the lists.
var (
	ByCreated   = Keyset{"created_at", "id", true}
	BySeq       = Keyset{"seq", "id", false}
	ByFirstSeen = Keyset{"first_seen", "user_id", true}
)

// arg is the SQL value of a cursor key.
func (ks Keyset) arg(key int64) any {
	if ks.time {
		return time.Unix(0, key).UTC()
	}
	return key
}

// createdKey is the keyset position of a row ordered ByCreated.
func createdKey(created time.Time, id string) Cursor {
	return Cursor{Key: created.UnixNano(), ID: id}
}

// Each entity's List…SQL is the start of its owner's list (its admin's,
// for Admin…SQL), for ListSQL to complete; they are exported for the
// backends' query-plan tests, which check that each reads an index led by
// user_id (tenant_id) without sorting.

// ListSQL completes base, a SELECT whose WHERE clause is already open (for
// a user list it starts with the owner predicate) and uses n parameters,
// with the keyset condition (after a cursor), the order (newest first
// unless asc) and the limit. Only constants of this package reach it.
func ListSQL(base string, n int, ks Keyset, asc, after bool) string {
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

// list answers one page of base (see ListSQL) in tx, newest first unless
// asc; key gives the keyset position of an item.
func list[T any](ctx context.Context, tx Tx, base string, args []any, ks Keyset, asc bool, page idflow.Page,
	scan func(Row) (T, error), key func(T) Cursor) (idflow.List[T], error) {
	out := idflow.List[T]{Items: []T{}}
	limit, err := PageLimit(page.Limit, idflow.DefaultPageLimit, idflow.MaxPageLimit)
	if err != nil {
		return out, err
	}
	n := len(args)
	args = append([]any(nil), args...)
	if page.Cursor != "" {
		c, err := DecodeCursor(page.Cursor)
		if err != nil {
			return out, err
		}
		args = append(args, ks.arg(c.Key), c.ID)
	}
	args = append(args, limit+1)
	items, err := collect(ctx, tx, ListSQL(base, n, ks, asc, page.Cursor != ""), scan, args...)
	if err != nil {
		return out, err
	}
	out.Items = items
	if len(out.Items) > limit {
		out.Items = out.Items[:limit]
		out.NextCursor = key(out.Items[limit-1]).Encode()
	}
	return out, nil
}

// listOwned answers one page of base, newest first, as p: its owner is
// base's $1, args the parameters after it. It reads in a transaction of
// its own; an error answers an empty page.
func listOwned[T any](ctx context.Context, s *Store, p idflow.Principal, op, base string, args []any, ks Keyset, page idflow.Page,
	scan func(Row) (T, error), key func(T) Cursor) (idflow.List[T], error) {
	out := idflow.List[T]{Items: []T{}}
	owner, err := p.Owner()
	if err != nil {
		return out, err
	}
	err = s.read(ctx, op, owner, func(tx Tx) error {
		var err error
		out, err = list(ctx, tx, base, append([]any{owner}, args...), ks, false, page, scan, key)
		return err
	})
	if err != nil {
		return idflow.List[T]{Items: []T{}}, err
	}
	return out, nil
}
