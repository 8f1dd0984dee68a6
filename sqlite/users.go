package sqlite

import (
	"context"

	"github.com/idflow/idflow"
)

// TouchUser records that p was seen: the first call sets first_seen, every
// call refreshes last_seen and the profile.
func (db *DB) TouchUser(ctx context.Context, p idflow.Principal) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	now := nanos(db.now())
	_, err = db.w.ExecContext(ctx, `INSERT INTO users (user_id, tenant_id, email, name, issuer, first_seen, last_seen)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET tenant_id = excluded.tenant_id, email = excluded.email,
			name = excluded.name, issuer = excluded.issuer, last_seen = excluded.last_seen`,
		owner, p.TenantID, p.Email, p.Name, p.Issuer, now, now)
	return fail("touch user", err)
}

const userCols = `user_id, tenant_id, email, name, issuer, first_seen, last_seen`

func scanUser(r rowScanner) (idflow.User, error) {
	var u idflow.User
	var first, last int64
	err := r.Scan(&u.UserID, &u.TenantID, &u.Email, &u.Name, &u.Issuer, &first, &last)
	u.FirstSeen, u.LastSeen = fromNanos(first), fromNanos(last)
	return u, err
}

func userKey(u idflow.User) cursor { return cursor{Key: nanos(u.FirstSeen), ID: u.UserID} }

// AdminListUsers lists every user, most recently first seen first; the
// caller has checked the admin role.
func (db *DB) AdminListUsers(ctx context.Context, _ idflow.Principal, page idflow.Page) (idflow.List[idflow.User], error) {
	return list(ctx, db.r, `SELECT `+userCols+` FROM users WHERE 1 = 1`, nil, byFirst, false, page, scanUser, userKey)
}

// Stats answers aggregate counts.
func (db *DB) Stats(ctx context.Context) (idflow.Stats, error) {
	var s idflow.Stats
	err := db.r.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM users), (SELECT count(*) FROM sessions), (SELECT count(*) FROM messages),
		(SELECT count(*) FROM workflows), (SELECT count(*) FROM documents), (SELECT count(*) FROM facts),
		(SELECT count(*) FROM runs)`).
		Scan(&s.Users, &s.Sessions, &s.Messages, &s.Workflows, &s.Documents, &s.Facts, &s.Runs)
	return s, fail("stats", err)
}
