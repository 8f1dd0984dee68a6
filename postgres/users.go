package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
)

// TouchUser records that p was seen: the first call sets first_seen, every
// call refreshes last_seen and the profile.
func (db *DB) TouchUser(ctx context.Context, p idflow.Principal) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	now := db.now()
	return db.asUser(ctx, "touch user", owner, readWrite, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (user_id, tenant_id, email, name, issuer, first_seen, last_seen)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (user_id) DO UPDATE SET tenant_id = excluded.tenant_id, email = excluded.email,
				name = excluded.name, issuer = excluded.issuer, last_seen = excluded.last_seen`,
			owner, p.TenantID, p.Email, p.Name, p.Issuer, now, now)
		return err
	})
}

const userCols = `user_id, tenant_id, email, name, issuer, first_seen, last_seen`

func scanUser(r rowScanner) (idflow.User, error) {
	var u idflow.User
	err := r.Scan(&u.UserID, &u.TenantID, &u.Email, &u.Name, &u.Issuer, &u.FirstSeen, &u.LastSeen)
	return u, err
}

func userKey(u idflow.User) cursor { return cursor{Key: timeKey(u.FirstSeen), ID: u.UserID} }

// Admin user lists: one tenant's users, or every user for a platform admin.
const (
	adminUsersTenantSQL = `SELECT ` + userCols + ` FROM users WHERE tenant_id = $1`
	adminUsersAllSQL    = `SELECT ` + userCols + ` FROM users WHERE true`
)

// AdminListUsers lists the users of the admin's scope, most recently first
// seen first, on the admin path (admin_read policy).
func (db *DB) AdminListUsers(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, page idflow.Page) (idflow.List[idflow.User], error) {
	out := idflow.List[idflow.User]{Items: []idflow.User{}}
	err := db.asAdmin(ctx, "admin list users", admin, scope, func(tx pgx.Tx, tenant string, all bool) error {
		var err error
		if all {
			out, err = list(ctx, tx, adminUsersAllSQL, nil, byFirst, false, page, scanUser, userKey)
		} else {
			out, err = list(ctx, tx, adminUsersTenantSQL, []any{tenant}, byFirst, false, page, scanUser, userKey)
		}
		return err
	})
	if out.Items == nil {
		out.Items = []idflow.User{}
	}
	return out, err
}

// Stats answers aggregate counts through idflow_stats(), a SECURITY DEFINER
// function that sees every row and returns nothing but counts.
func (db *DB) Stats(ctx context.Context) (idflow.Stats, error) {
	var s idflow.Stats
	err := db.pool.QueryRow(ctx, `SELECT users, sessions, messages, workflows, runs, documents, facts FROM idflow_stats()`).
		Scan(&s.Users, &s.Sessions, &s.Messages, &s.Workflows, &s.Runs, &s.Documents, &s.Facts)
	return s, fail("stats", err)
}
