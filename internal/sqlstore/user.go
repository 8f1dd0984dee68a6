package sqlstore

import (
	"context"

	"github.com/idflow/idflow"
)

// TouchUser records that p was seen: the first call sets first_seen, every
// call refreshes last_seen and the profile.
func (s *Store) TouchUser(ctx context.Context, p idflow.Principal) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	now := s.clock.now()
	return s.write(ctx, "touch user", owner, func(tx Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (user_id, tenant_id, email, name, issuer, first_seen, last_seen)
			VALUES ($1, $2, $3, $4, $5, $6, $6)
			ON CONFLICT (user_id) DO UPDATE SET tenant_id = excluded.tenant_id, email = excluded.email,
				name = excluded.name, issuer = excluded.issuer, last_seen = excluded.last_seen`,
			owner, p.TenantID, p.Email, p.Name, p.Issuer, now)
		return err
	})
}

const userCols = `user_id, tenant_id, email, name, issuer, first_seen, last_seen`

func scanUser(r Row) (idflow.User, error) {
	var u idflow.User
	err := r.Scan(&u.UserID, &u.TenantID, &u.Email, &u.Name, &u.Issuer, &u.FirstSeen, &u.LastSeen)
	return u, err
}

func userKey(u idflow.User) Cursor { return createdKey(u.FirstSeen, u.UserID) }

// Admin user lists: one tenant's users, or every user for a platform admin.
const (
	AdminUsersTenantSQL = `SELECT ` + userCols + ` FROM users WHERE tenant_id = $1`
	adminUsersAllSQL    = `SELECT ` + userCols + ` FROM users WHERE true`
)

// AdminListUsers lists the users of the admin's scope, most recently first
// seen first, on the admin path.
func (s *Store) AdminListUsers(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, page idflow.Page) (idflow.List[idflow.User], error) {
	out := idflow.List[idflow.User]{Items: []idflow.User{}}
	err := s.admin(ctx, "admin list users", admin, scope, func(tx Tx, tenant string, all bool) error {
		query, args := AdminUsersTenantSQL, []any{tenant}
		if all {
			query, args = adminUsersAllSQL, nil
		}
		var err error
		out, err = list(ctx, tx, query, args, ByFirstSeen, false, page, scanUser, userKey)
		return err
	})
	if err != nil {
		return idflow.List[idflow.User]{Items: []idflow.User{}}, err
	}
	return out, nil
}

// Stats answers aggregate counts (Dialect.Stats), acting as nobody: it
// reads no user's rows, only their number.
func (s *Store) Stats(ctx context.Context) (idflow.Stats, error) {
	var st idflow.Stats
	err := s.system(ctx, "stats", false, func(tx Tx) error {
		return tx.QueryRow(ctx, s.b.SQL.Stats).
			Scan(&st.Users, &st.Sessions, &st.Messages, &st.Workflows, &st.Runs, &st.Documents, &st.Facts)
	})
	return st, err
}
