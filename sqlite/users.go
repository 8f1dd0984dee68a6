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

// Admin user lists: one tenant's users, or every user for a platform admin.
const (
	adminUsersTenantSQL = `SELECT ` + userCols + ` FROM users WHERE tenant_id = ?`
	adminUsersAllSQL    = `SELECT ` + userCols + ` FROM users WHERE 1 = 1`
)

// AdminListUsers lists the users of the admin's scope, most recently first
// seen first.
func (db *DB) AdminListUsers(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, page idflow.Page) (idflow.List[idflow.User], error) {
	tenant, all, err := scope.For(admin)
	if err != nil {
		return idflow.List[idflow.User]{Items: []idflow.User{}}, err
	}
	if all {
		return list(ctx, db.r, adminUsersAllSQL, nil, byFirst, false, page, scanUser, userKey)
	}
	return list(ctx, db.r, adminUsersTenantSQL, []any{tenant}, byFirst, false, page, scanUser, userKey)
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
