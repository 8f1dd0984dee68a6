package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/idflow/idflow"
)

const (
	auditCols    = `seq, id, at, user_id, tenant_id, action, resource, outcome, request_id, peer, detail, prev_hash, hash`
	listAuditSQL = `SELECT ` + auditCols + ` FROM audit_events WHERE user_id = ?`
)

func scanAudit(r rowScanner) (idflow.AuditEvent, error) {
	var e idflow.AuditEvent
	var at int64
	err := r.Scan(&e.Seq, &e.ID, &at, &e.UserID, &e.TenantID, &e.Action, &e.Resource, &e.Outcome,
		&e.RequestID, &e.Peer, &e.Detail, &e.PrevHash, &e.Hash)
	e.At = fromNanos(at)
	return e, err
}

func auditKey(e idflow.AuditEvent) cursor { return cursor{Key: e.Seq, ID: e.ID} }

// RecordAudit appends e to the chain. The write transaction serializes
// concurrent callers, so each event links to the one committed before it.
func (db *DB) RecordAudit(ctx context.Context, e idflow.AuditEvent) (idflow.AuditEvent, error) {
	e = e.Bounded() // every field within its bound, before it is hashed
	e.ID = idflow.NewID(idflow.PrefixAudit)
	if e.At.IsZero() {
		e.At = db.now()
	} else {
		e.At = e.At.UTC().Truncate(time.Microsecond)
	}
	err := db.tx(ctx, "record audit", func(tx *sql.Tx) error {
		var seq int64
		prev := idflow.AuditGenesisHash
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		e.Seq, e.PrevHash = seq+1, prev
		e.Hash = idflow.AuditHash(e)
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_events (`+auditCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.Seq, e.ID, nanos(e.At), e.UserID, e.TenantID, e.Action, e.Resource, e.Outcome,
			e.RequestID, e.Peer, e.Detail, e.PrevHash, e.Hash)
		return err
	})
	if err != nil {
		return idflow.AuditEvent{}, err
	}
	return e, nil
}

// ListAudit answers the events whose actor is the caller, newest first.
func (db *DB) ListAudit(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.AuditEvent]{Items: []idflow.AuditEvent{}}, err
	}
	return list(ctx, db.r, listAuditSQL, []any{owner}, bySeq, false, page, scanAudit, auditKey)
}

// Admin audit lists: the events of one tenant's actors, or every event for
// a platform admin. Events of requests nobody was authenticated for carry
// no tenant, so only an admin without a tenant, or a platform admin, reads
// them.
const (
	adminAuditTenantSQL = `SELECT ` + auditCols + ` FROM audit_events WHERE tenant_id = ?`
	adminAuditAllSQL    = `SELECT ` + auditCols + ` FROM audit_events WHERE 1 = 1`
)

// AdminListAudit answers the events of the admin's scope, newest first.
func (db *DB) AdminListAudit(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	tenant, all, err := scope.For(admin)
	if err != nil {
		return idflow.List[idflow.AuditEvent]{Items: []idflow.AuditEvent{}}, err
	}
	if all {
		return list(ctx, db.r, adminAuditAllSQL, nil, bySeq, false, page, scanAudit, auditKey)
	}
	return list(ctx, db.r, adminAuditTenantSQL, []any{tenant}, bySeq, false, page, scanAudit, auditKey)
}

// VerifyAuditChain runs idflow.AuditChainCheck in one read transaction (one
// snapshot): the links of every event, then the whole rows of the scope's
// events only. It detects an edited row of the scope (its hash), a deleted
// row anywhere (a gap in seq and the next row's prev_hash) and a reordered
// row (seq is hashed). It cannot see the newest rows being cut off, nor a
// rewrite of every hash from some row on; anchoring the head hash elsewhere
// would.
func (db *DB) VerifyAuditChain(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope) (int, error) {
	tenant, all, err := scope.For(admin)
	if err != nil {
		return 0, err
	}
	var check idflow.AuditChainCheck
	err = db.read(ctx, func(tx *sql.Tx) error {
		links, err := tx.QueryContext(ctx, `SELECT seq, prev_hash, hash FROM audit_events ORDER BY seq`)
		if err != nil {
			return err
		}
		defer links.Close()
		for links.Next() {
			var seq int64
			var prev, hash string
			if err := links.Scan(&seq, &prev, &hash); err != nil {
				return err
			}
			check.Link(seq, prev, hash)
		}
		if err := links.Err(); err != nil {
			return err
		}
		links.Close()
		query, args := `SELECT `+auditCols+` FROM audit_events WHERE tenant_id = ? ORDER BY seq`, []any{tenant}
		if all {
			query, args = `SELECT `+auditCols+` FROM audit_events ORDER BY seq`, nil
		}
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanAudit(rows)
			if err != nil {
				return err
			}
			check.Event(e)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fail("verify audit", err)
	}
	return check.Result()
}
