package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/idflow/idflow"
)

// What directories provision (SCIM users and groups) and users' lifecycle
// state. Every statement is bound to one tenant: the directory's
// (DirectoryScope) or, for an admin, the tenants of their AdminScope; on
// PostgreSQL the transaction's tenant is the tenant_rows policies' too
// (Backend.AsTenant).

// tenant runs fn in a transaction of tenant's directory rows.
func (s *Store) tenant(ctx context.Context, op, tenant string, write bool, fn func(Tx) error) error {
	return s.fail(op, s.b.AsTenant(ctx, tenant, write, fn))
}

// directory checks that scope is p's, then runs fn for its tenant.
func (s *Store) directory(ctx context.Context, op string, p idflow.Principal, scope idflow.DirectoryScope, write bool, fn func(tx Tx, tenant string) error) error {
	tenant, err := scope.For(p)
	if err != nil {
		return err
	}
	err = s.tenant(ctx, op, tenant, write, func(tx Tx) error { return fn(tx, tenant) })
	return s.uniqueness(err)
}

// uniqueness answers a unique-key violation (two writers racing past the
// checks below) as the conflict the checks would have answered.
func (s *Store) uniqueness(err error) error {
	var e *idflow.Error
	if errors.As(err, &e) && e.Code == idflow.EINTERNAL && e.Err != nil {
		switch s.b.ErrorCode(e.Err) {
		case "23505", "sqlite/19": // unique_violation; SQLITE_CONSTRAINT
			return idflow.WrapError(idflow.ECONFLICT, "a resource with this name already exists", e.Err)
		}
	}
	return err
}

// fold is how SCIM compares userName and displayName: case-insensitively.
func fold(s string) string { return strings.ToLower(s) }

const directoryUserCols = `u.id, u.tenant_id, u.user_id, u.user_name, u.external_id, u.display_name, u.attributes,
	u.version, u.created_at, u.updated_at, COALESCE(st.disabled, false)`

const directoryUserFrom = ` FROM directory_users AS u LEFT JOIN user_states AS st
	ON st.tenant_id = u.tenant_id AND st.user_id = u.user_id`

func scanDirectoryUser(r Row) (idflow.DirectoryUser, error) {
	var u idflow.DirectoryUser
	var attrs string
	var disabled bool
	err := r.Scan(&u.ID, &u.TenantID, &u.UserID, &u.UserName, &u.ExternalID, &u.DisplayName, &attrs,
		&u.Version, &u.CreatedAt, &u.UpdatedAt, &disabled)
	u.Attributes, u.Active = []byte(attrs), !disabled
	return u, err
}

func attrsText(b []byte) string {
	if len(b) == 0 {
		return "{}"
	}
	return string(b)
}

func getDirectoryUser(ctx context.Context, tx Tx, tenant, id string) (idflow.DirectoryUser, error) {
	return getOne(ctx, tx, "user", `SELECT `+directoryUserCols+directoryUserFrom+` WHERE u.tenant_id = $1 AND u.id = $2`,
		scanDirectoryUser, tenant, id)
}

// checkUserUnique refuses a second user of the tenant with u's userName or
// user id (SCIM uniqueness, 409).
func checkUserUnique(ctx context.Context, tx Tx, tenant string, u idflow.DirectoryUser) error {
	var taken string
	err := tx.QueryRow(ctx, `SELECT id FROM directory_users WHERE tenant_id = $1 AND id <> $2
		AND (user_name_key = $3 OR user_id = $4) LIMIT 1`, tenant, u.ID, fold(u.UserName), u.UserID).Scan(&taken)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	return idflow.Errorf(idflow.ECONFLICT, "a user with this userName or externalId already exists")
}

// setState records whether the tenant's user is disabled.
func (s *Store) setState(ctx context.Context, tx Tx, tenant, userID string, disabled bool) error {
	_, err := tx.Exec(ctx, `INSERT INTO user_states (tenant_id, user_id, disabled, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (tenant_id, user_id) DO UPDATE SET disabled = excluded.disabled, updated_at = excluded.updated_at`,
		tenant, userID, disabled, s.clock.now())
	return err
}

func (s *Store) CreateDirectoryUser(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, u idflow.DirectoryUser) (idflow.DirectoryUser, error) {
	var out idflow.DirectoryUser
	err := s.directory(ctx, "create directory user", p, scope, true, func(tx Tx, tenant string) error {
		u.ID, u.TenantID, u.Version = idflow.NewID(idflow.PrefixDirectoryUser), tenant, 1
		if err := u.Validate(); err != nil {
			return err
		}
		if err := checkUserUnique(ctx, tx, tenant, u); err != nil {
			return err
		}
		now := s.clock.now()
		if _, err := tx.Exec(ctx, `INSERT INTO directory_users (id, tenant_id, user_id, user_name, user_name_key, external_id,
			display_name, attributes, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)`,
			u.ID, tenant, u.UserID, u.UserName, fold(u.UserName), u.ExternalID, u.DisplayName, attrsText(u.Attributes), u.Version, now); err != nil {
			return err
		}
		// Provisioning again a user deleted before re-enables them, as
		// the directory says.
		if err := s.setState(ctx, tx, tenant, u.UserID, !u.Active); err != nil {
			return err
		}
		var err error
		out, err = getDirectoryUser(ctx, tx, tenant, u.ID)
		return err
	})
	return out, err
}

func (s *Store) GetDirectoryUser(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, id string) (idflow.DirectoryUser, error) {
	var out idflow.DirectoryUser
	err := s.directory(ctx, "get directory user", p, scope, false, func(tx Tx, tenant string) error {
		var err error
		out, err = getDirectoryUser(ctx, tx, tenant, id)
		return err
	})
	return out, err
}

// where builds the filter's predicates after "tenant_id = $1": each set
// field an equality on its column (a *_key column for the names SCIM
// compares case-insensitively).
type where struct {
	sql  strings.Builder
	args []any
}

func (w *where) eq(col string, v *string, f func(string) string) {
	if v == nil {
		return
	}
	val := *v
	if f != nil {
		val = f(val)
	}
	w.args = append(w.args, val)
	w.sql.WriteString(" AND " + col + " = $" + strconv.Itoa(len(w.args)))
}

func (w *where) page(pg idflow.DirectoryPage) string {
	count := pg.Count
	if count < 0 {
		count = 0
	}
	count = min(count, idflow.MaxDirectoryPage)
	w.args = append(w.args, count, max(pg.StartIndex, 1)-1)
	return " LIMIT $" + strconv.Itoa(len(w.args)-1) + " OFFSET $" + strconv.Itoa(len(w.args))
}

func (s *Store) ListDirectoryUsers(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, f idflow.DirectoryFilter, pg idflow.DirectoryPage) (idflow.DirectoryList[idflow.DirectoryUser], error) {
	out := idflow.DirectoryList[idflow.DirectoryUser]{Items: []idflow.DirectoryUser{}}
	err := s.directory(ctx, "list directory users", p, scope, false, func(tx Tx, tenant string) error {
		w := &where{args: []any{tenant}}
		w.eq("u.id", f.ID, nil)
		w.eq("u.user_name_key", f.UserName, fold)
		w.eq("u.external_id", f.ExternalID, nil)
		if f.DisplayName != nil {
			w.args = append(w.args, fold(*f.DisplayName))
			w.sql.WriteString(" AND lower(u.display_name) = $" + strconv.Itoa(len(w.args)))
		}
		if f.Member != nil {
			return idflow.Errorf(idflow.EINVALID, "users have no members")
		}
		cond := ` WHERE u.tenant_id = $1` + w.sql.String()
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM directory_users AS u`+cond, w.args...).Scan(&out.Total); err != nil {
			return err
		}
		limit := w.page(pg)
		var err error
		out.Items, err = collect(ctx, tx, `SELECT `+directoryUserCols+directoryUserFrom+cond+` ORDER BY u.created_at, u.id`+limit,
			scanDirectoryUser, w.args...)
		return err
	})
	return out, err
}

func (s *Store) ReplaceDirectoryUser(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, u idflow.DirectoryUser) (idflow.DirectoryUser, error) {
	var out idflow.DirectoryUser
	err := s.directory(ctx, "replace directory user", p, scope, true, func(tx Tx, tenant string) error {
		cur, err := getDirectoryUser(ctx, tx, tenant, u.ID)
		if err != nil {
			return err
		}
		if cur.Version != u.Version {
			return idflow.WrapError(idflow.ECONFLICT, "the user changed since it was read", idflow.ErrStale)
		}
		u.TenantID = tenant
		if err := u.Validate(); err != nil {
			return err
		}
		if err := checkUserUnique(ctx, tx, tenant, u); err != nil {
			return err
		}
		n, err := tx.Exec(ctx, `UPDATE directory_users SET user_id = $1, user_name = $2, user_name_key = $3, external_id = $4,
			display_name = $5, attributes = $6, version = version + 1, updated_at = $7
			WHERE tenant_id = $8 AND id = $9 AND version = $10`,
			u.UserID, u.UserName, fold(u.UserName), u.ExternalID, u.DisplayName, attrsText(u.Attributes), s.clock.now(), tenant, u.ID, u.Version)
		if err != nil {
			return err
		}
		if n == 0 {
			return idflow.WrapError(idflow.ECONFLICT, "the user changed since it was read", idflow.ErrStale)
		}
		if u.UserID != cur.UserID {
			// A new externalId names another idflow user: memberships and
			// the lifecycle state follow it.
			if _, err := tx.Exec(ctx, `UPDATE directory_members SET user_id = $1 WHERE tenant_id = $2 AND member_id = $3`,
				u.UserID, tenant, u.ID); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM user_states WHERE tenant_id = $1 AND user_id = $2`, tenant, cur.UserID); err != nil {
				return err
			}
		}
		if err := s.setState(ctx, tx, tenant, u.UserID, !u.Active); err != nil {
			return err
		}
		out, err = getDirectoryUser(ctx, tx, tenant, u.ID)
		return err
	})
	return out, err
}

// DeleteDirectoryUser forgets the user and their memberships; the user
// stays disabled (a deleted user's tokens still live until they expire).
func (s *Store) DeleteDirectoryUser(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, id string) (idflow.DirectoryUser, error) {
	var out idflow.DirectoryUser
	err := s.directory(ctx, "delete directory user", p, scope, true, func(tx Tx, tenant string) error {
		var err error
		if out, err = getDirectoryUser(ctx, tx, tenant, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM directory_members WHERE tenant_id = $1 AND member_id = $2`, tenant, id); err != nil {
			return err
		}
		n, err := tx.Exec(ctx, `DELETE FROM directory_users WHERE tenant_id = $1 AND id = $2`, tenant, id)
		if err := affectedOne("user", n, err); err != nil {
			return err
		}
		return s.setState(ctx, tx, tenant, out.UserID, true)
	})
	return out, err
}

const directoryGroupCols = `id, tenant_id, display_name, external_id, attributes, version, created_at, updated_at`

func scanDirectoryGroup(r Row) (idflow.DirectoryGroup, error) {
	var g idflow.DirectoryGroup
	var attrs string
	err := r.Scan(&g.ID, &g.TenantID, &g.DisplayName, &g.ExternalID, &attrs, &g.Version, &g.CreatedAt, &g.UpdatedAt)
	g.Attributes = []byte(attrs)
	return g, err
}

func getDirectoryGroup(ctx context.Context, tx Tx, tenant, id string, withMembers bool) (idflow.DirectoryGroup, error) {
	g, err := getOne(ctx, tx, "group", `SELECT `+directoryGroupCols+` FROM directory_groups WHERE tenant_id = $1 AND id = $2`,
		scanDirectoryGroup, tenant, id)
	if err != nil || !withMembers {
		return g, err
	}
	g.Members, err = groupMembers(ctx, tx, tenant, id)
	return g, err
}

func groupMembers(ctx context.Context, tx Tx, tenant, groupID string) ([]idflow.GroupMember, error) {
	return collect(ctx, tx, `SELECT m.member_id, m.user_id, u.display_name FROM directory_members AS m
		JOIN directory_users AS u ON u.id = m.member_id WHERE m.tenant_id = $1 AND m.group_id = $2 ORDER BY m.member_id`,
		func(r Row) (idflow.GroupMember, error) {
			var m idflow.GroupMember
			err := r.Scan(&m.Value, &m.UserID, &m.Display)
			return m, err
		}, tenant, groupID)
}

func checkGroupUnique(ctx context.Context, tx Tx, tenant string, g idflow.DirectoryGroup) error {
	var taken string
	err := tx.QueryRow(ctx, `SELECT id FROM directory_groups WHERE tenant_id = $1 AND id <> $2 AND display_name_key = $3 LIMIT 1`,
		tenant, g.ID, fold(g.DisplayName)).Scan(&taken)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	return idflow.Errorf(idflow.ECONFLICT, "a group with this displayName already exists")
}

// addMembers makes the tenant's users named by their directory ids members
// of the group; an id that is not a user of the tenant is refused.
func addMembers(ctx context.Context, tx Tx, tenant, groupID string, ids []string) error {
	for _, id := range ids {
		var userID string
		err := tx.QueryRow(ctx, `SELECT user_id FROM directory_users WHERE tenant_id = $1 AND id = $2`, tenant, id).Scan(&userID)
		if errors.Is(err, sql.ErrNoRows) {
			return idflow.Errorf(idflow.EINVALID, "member %q is not a user of this directory", id)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO directory_members (tenant_id, group_id, member_id, user_id) VALUES ($1, $2, $3, $4)
			ON CONFLICT (group_id, member_id) DO NOTHING`, tenant, groupID, id, userID); err != nil {
			return err
		}
	}
	return nil
}

func memberIDs(ms []idflow.GroupMember) []string {
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.Value)
	}
	return ids
}

func (s *Store) CreateDirectoryGroup(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, g idflow.DirectoryGroup) (idflow.DirectoryGroup, error) {
	var out idflow.DirectoryGroup
	err := s.directory(ctx, "create directory group", p, scope, true, func(tx Tx, tenant string) error {
		g.ID, g.TenantID, g.Version = idflow.NewID(idflow.PrefixDirectoryGroup), tenant, 1
		if err := g.Validate(); err != nil {
			return err
		}
		if err := checkGroupUnique(ctx, tx, tenant, g); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO directory_groups (id, tenant_id, display_name, display_name_key, external_id,
			attributes, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
			g.ID, tenant, g.DisplayName, fold(g.DisplayName), g.ExternalID, attrsText(g.Attributes), g.Version, s.clock.now()); err != nil {
			return err
		}
		if err := addMembers(ctx, tx, tenant, g.ID, memberIDs(g.Members)); err != nil {
			return err
		}
		var err error
		out, err = getDirectoryGroup(ctx, tx, tenant, g.ID, true)
		return err
	})
	return out, err
}

func (s *Store) GetDirectoryGroup(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, id string, withMembers bool) (idflow.DirectoryGroup, error) {
	var out idflow.DirectoryGroup
	err := s.directory(ctx, "get directory group", p, scope, false, func(tx Tx, tenant string) error {
		var err error
		out, err = getDirectoryGroup(ctx, tx, tenant, id, withMembers)
		return err
	})
	return out, err
}

func (s *Store) ListDirectoryGroups(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, f idflow.DirectoryFilter, pg idflow.DirectoryPage) (idflow.DirectoryList[idflow.DirectoryGroup], error) {
	out := idflow.DirectoryList[idflow.DirectoryGroup]{Items: []idflow.DirectoryGroup{}}
	err := s.directory(ctx, "list directory groups", p, scope, false, func(tx Tx, tenant string) error {
		if f.UserName != nil {
			return idflow.Errorf(idflow.EINVALID, "groups have no userName")
		}
		w := &where{args: []any{tenant}}
		w.eq("id", f.ID, nil)
		w.eq("display_name_key", f.DisplayName, fold)
		w.eq("external_id", f.ExternalID, nil)
		if f.Member != nil {
			w.args = append(w.args, *f.Member)
			w.sql.WriteString(` AND EXISTS (SELECT 1 FROM directory_members AS m WHERE m.tenant_id = directory_groups.tenant_id
				AND m.group_id = directory_groups.id AND m.member_id = $` + strconv.Itoa(len(w.args)) + `)`)
		}
		cond := ` WHERE tenant_id = $1` + w.sql.String()
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM directory_groups`+cond, w.args...).Scan(&out.Total); err != nil {
			return err
		}
		limit := w.page(pg)
		var err error
		if out.Items, err = collect(ctx, tx, `SELECT `+directoryGroupCols+` FROM directory_groups`+cond+` ORDER BY created_at, id`+limit,
			scanDirectoryGroup, w.args...); err != nil {
			return err
		}
		if f.WithMembers {
			for i := range out.Items {
				if out.Items[i].Members, err = groupMembers(ctx, tx, tenant, out.Items[i].ID); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out, err
}

// bumpGroup moves the group's version on if it is still version (0: any).
func (s *Store) bumpGroup(ctx context.Context, tx Tx, tenant, id string, version int64) error {
	cur, err := getDirectoryGroup(ctx, tx, tenant, id, false)
	if err != nil {
		return err
	}
	if version != 0 && cur.Version != version {
		return idflow.WrapError(idflow.ECONFLICT, "the group changed since it was read", idflow.ErrStale)
	}
	_, err = tx.Exec(ctx, `UPDATE directory_groups SET version = version + 1, updated_at = $1 WHERE tenant_id = $2 AND id = $3`,
		s.clock.now(), tenant, id)
	return err
}

func (s *Store) ReplaceDirectoryGroup(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, g idflow.DirectoryGroup, members bool) (idflow.DirectoryGroup, error) {
	var out idflow.DirectoryGroup
	err := s.directory(ctx, "replace directory group", p, scope, true, func(tx Tx, tenant string) error {
		if err := g.Validate(); err != nil {
			return err
		}
		if err := s.bumpGroup(ctx, tx, tenant, g.ID, g.Version); err != nil {
			return err
		}
		if err := checkGroupUnique(ctx, tx, tenant, g); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE directory_groups SET display_name = $1, display_name_key = $2, external_id = $3, attributes = $4
			WHERE tenant_id = $5 AND id = $6`, g.DisplayName, fold(g.DisplayName), g.ExternalID, attrsText(g.Attributes), tenant, g.ID); err != nil {
			return err
		}
		if members {
			if _, err := tx.Exec(ctx, `DELETE FROM directory_members WHERE tenant_id = $1 AND group_id = $2`, tenant, g.ID); err != nil {
				return err
			}
			if err := addMembers(ctx, tx, tenant, g.ID, memberIDs(g.Members)); err != nil {
				return err
			}
		}
		var err error
		out, err = getDirectoryGroup(ctx, tx, tenant, g.ID, members)
		return err
	})
	return out, err
}

func (s *Store) ChangeGroupMembers(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, groupID string, add, remove []string) (idflow.DirectoryGroup, error) {
	var out idflow.DirectoryGroup
	err := s.directory(ctx, "change group members", p, scope, true, func(tx Tx, tenant string) error {
		if err := s.bumpGroup(ctx, tx, tenant, groupID, 0); err != nil {
			return err
		}
		for _, id := range remove {
			if _, err := tx.Exec(ctx, `DELETE FROM directory_members WHERE tenant_id = $1 AND group_id = $2 AND member_id = $3`,
				tenant, groupID, id); err != nil {
				return err
			}
		}
		if err := addMembers(ctx, tx, tenant, groupID, add); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM directory_members WHERE tenant_id = $1 AND group_id = $2`, tenant, groupID).Scan(&n); err != nil {
			return err
		}
		if n > idflow.MaxGroupMembers {
			return idflow.Errorf(idflow.ETOOLARGE, "a group has at most %d members", idflow.MaxGroupMembers)
		}
		var err error
		out, err = getDirectoryGroup(ctx, tx, tenant, groupID, false)
		return err
	})
	return out, err
}

func (s *Store) DeleteDirectoryGroup(ctx context.Context, p idflow.Principal, scope idflow.DirectoryScope, id string) (idflow.DirectoryGroup, error) {
	var out idflow.DirectoryGroup
	err := s.directory(ctx, "delete directory group", p, scope, true, func(tx Tx, tenant string) error {
		var err error
		if out, err = getDirectoryGroup(ctx, tx, tenant, id, false); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM directory_members WHERE tenant_id = $1 AND group_id = $2`, tenant, id); err != nil {
			return err
		}
		n, err := tx.Exec(ctx, `DELETE FROM directory_groups WHERE tenant_id = $1 AND id = $2`, tenant, id)
		return affectedOne("group", n, err)
	})
	return out, err
}

// AdminSetUserDisabled finds the tenants of the admin's scope that know
// userID (seen by idflow, or provisioned by their directory) and records
// the state in each; none is ENOTFOUND, as for a user of another tenant.
func (s *Store) AdminSetUserDisabled(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, userID string, disabled bool) (idflow.UserState, error) {
	var tenants []string
	err := s.admin(ctx, "find user tenants", admin, scope, func(tx Tx, tenant string, all bool) error {
		q := `SELECT tenant_id FROM users WHERE user_id = $1 AND (tenant_id = $2 OR $3)
			UNION SELECT tenant_id FROM directory_users WHERE user_id = $1 AND (tenant_id = $2 OR $3)`
		var err error
		tenants, err = collect(ctx, tx, q, func(r Row) (string, error) {
			var t string
			return t, r.Scan(&t)
		}, userID, tenant, all)
		return err
	})
	if err != nil {
		return idflow.UserState{}, err
	}
	if len(tenants) == 0 {
		return idflow.UserState{}, idflow.NotFound("user")
	}
	slices.Sort(tenants)
	var st idflow.UserState
	for i, t := range tenants {
		err := s.tenant(ctx, "set user state", t, true, func(tx Tx) error { return s.setState(ctx, tx, t, userID, disabled) })
		if err != nil {
			return idflow.UserState{}, err
		}
		if i == 0 {
			st = idflow.UserState{UserRef: idflow.UserRef{TenantID: t, UserID: userID}, Disabled: disabled, UpdatedAt: s.clock.now()}
		}
	}
	return st, nil
}

// DirectoryGroupsOf reads, in p's tenant, the groups of p's user.
func (s *Store) DirectoryGroupsOf(ctx context.Context, p idflow.Principal) ([]string, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	var out []string
	err = s.tenant(ctx, "directory groups of", p.TenantID, false, func(tx Tx) error {
		rows, err := tx.Query(ctx, `SELECT g.external_id, g.display_name FROM directory_members AS m
			JOIN directory_groups AS g ON g.id = m.group_id WHERE m.tenant_id = $1 AND m.user_id = $2
			ORDER BY g.display_name_key`, p.TenantID, owner)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ext, name string
			if err := rows.Scan(&ext, &name); err != nil {
				return err
			}
			for _, g := range []string{ext, name} {
				if g != "" && !slices.Contains(out, g) {
					out = append(out, g)
				}
			}
		}
		return rows.Err()
	})
	return out, err
}

// DisabledUsers answers every disabled user of every tenant
// (Dialect.DisabledUsers), acting as nobody: it answers who, nothing of
// their data.
func (s *Store) DisabledUsers(ctx context.Context) ([]idflow.UserRef, error) {
	var out []idflow.UserRef
	err := s.system(ctx, "disabled users", false, func(tx Tx) error {
		var err error
		out, err = collect(ctx, tx, s.b.SQL.DisabledUsers, func(r Row) (idflow.UserRef, error) {
			var u idflow.UserRef
			return u, r.Scan(&u.TenantID, &u.UserID)
		})
		return err
	})
	return out, err
}
