package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/idflow/idflow"
)

// ErasedTables are the tables that hold a user's rows, each with its own
// user_id, in the order erasure deletes them (children before the rows
// they reference). A table that holds user data and is not listed here is
// found by the erasure tests, which scan every table for the id. A
// backend's own tables go first (Dialect.EraseBlobs).
var ErasedTables = []string{"run_events", "runs", "messages", "sessions", "facts", "documents",
	"workflow_versions", "workflows", "agents", "apps", "connections", "connect_states", "browser_sessions",
	"model_usage", "personal_tokens", "users"}

// AdminGetUser answers the user id of the admin's scope: a user seen in
// the admin's tenant (any tenant for a platform admin); anyone else, seen
// or not, is NotFound("user").
func (s *Store) AdminGetUser(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, userID string) (idflow.User, error) {
	var u idflow.User
	err := s.admin(ctx, "admin get user", admin, scope, func(tx Tx, tenant string, all bool) error {
		query, args := `SELECT `+userCols+` FROM users WHERE user_id = $1 AND tenant_id = $2`, []any{userID, tenant}
		if all {
			query, args = `SELECT `+userCols+` FROM users WHERE user_id = $1`, []any{userID}
		}
		var err error
		u, err = getOne(ctx, tx, "user", query, scanUser, args...)
		return err
	})
	return u, err
}

// EraseUser deletes every row of p's in every user table and p's River
// jobs, and in the audit chain replaces p's id by mark (the keyed hash
// service.EraseUser computes) wherever it stands — the actor of an event,
// or inside its resource, request id or detail — then re-chains the
// events from the first one it changed, so that the chain verifies. It
// answers the ids of p's chat sessions (the cache keeps them by id) and
// how many events were re-chained. One transaction: all of it or nothing.
func (s *Store) EraseUser(ctx context.Context, p idflow.Principal, mark string) (idflow.Erased, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Erased{}, err
	}
	if !idflow.IsErasedMark(mark) {
		return idflow.Erased{}, idflow.Errorf(idflow.EINVALID, "not an erasure mark")
	}
	var out idflow.Erased
	err = s.write(ctx, "erase user", owner, func(tx Tx) error {
		var err error
		if out.Sessions, err = collect(ctx, tx, `SELECT id FROM sessions WHERE user_id = $1`, scanString, owner); err != nil {
			return err
		}
		if s.b.SQL.EraseBlobs != "" {
			if _, err := tx.Exec(ctx, s.b.SQL.EraseBlobs, owner); err != nil {
				return err
			}
		}
		for _, table := range ErasedTables {
			if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE user_id = $1`, owner); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, s.b.SQL.EraseJobs, owner); err != nil {
			return err
		}
		if s.b.SQL.EraseSearch != "" {
			if _, err := tx.Exec(ctx, s.b.SQL.EraseSearch); err != nil {
				return err
			}
		}
		if s.b.SQL.EraseAudit != "" {
			return tx.QueryRow(ctx, s.b.SQL.EraseAudit, owner, mark).Scan(&out.AuditEvents)
		}
		out.AuditEvents, err = rechainErased(ctx, tx, owner, mark)
		return err
	})
	if err != nil {
		return idflow.Erased{}, err
	}
	return out, nil
}

// rechainErased is the audit half of EraseUser where the backend has no
// function for it (SQLite, one writer): the same steps as PostgreSQL's
// idflow_audit_erase, in Go.
func rechainErased(ctx context.Context, tx Tx, owner, mark string) (int64, error) {
	const names = `user_id = $1 OR instr(resource, $1) > 0 OR instr(request_id, $1) > 0 OR instr(detail, $1) > 0`
	var first sql.NullInt64
	if err := tx.QueryRow(ctx, `SELECT min(seq) FROM audit_events WHERE `+names, owner).Scan(&first); err != nil || !first.Valid {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_events SET user_id = CASE WHEN user_id = $1 THEN $2 ELSE user_id END,
		resource = replace(resource, $1, $2), request_id = replace(request_id, $1, $2), detail = replace(detail, $1, $2)
		WHERE `+names, owner, mark); err != nil {
		return 0, err
	}
	prev := idflow.AuditGenesisHash
	if err := tx.QueryRow(ctx, `SELECT hash FROM audit_events WHERE seq = $1`, first.Int64-1).Scan(&prev); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	events, err := collect(ctx, tx, `SELECT `+auditCols+` FROM audit_events WHERE seq >= $1 ORDER BY seq`, scanAudit, first.Int64)
	if err != nil {
		return 0, err
	}
	for _, e := range events {
		e.PrevHash = prev
		e.Hash = idflow.AuditHash(e)
		if _, err := tx.Exec(ctx, `UPDATE audit_events SET prev_hash = $1, hash = $2 WHERE seq = $3`, e.PrevHash, e.Hash, e.Seq); err != nil {
			return 0, err
		}
		prev = e.Hash
	}
	return int64(len(events)), nil
}
