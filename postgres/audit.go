package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
)

const (
	auditCols    = `seq, id, at, user_id, tenant_id, action, resource, outcome, request_id, peer, detail, prev_hash, hash`
	listAuditSQL = `SELECT ` + auditCols + ` FROM audit_events WHERE user_id = $1`
)

func scanAudit(r rowScanner) (idflow.AuditEvent, error) {
	var e idflow.AuditEvent
	err := r.Scan(&e.Seq, &e.ID, &e.At, &e.UserID, &e.TenantID, &e.Action, &e.Resource, &e.Outcome,
		&e.RequestID, &e.Peer, &e.Detail, &e.PrevHash, &e.Hash)
	return e, err
}

func auditKey(e idflow.AuditEvent) cursor { return cursor{Key: e.Seq, ID: e.ID} }

// RecordAudit appends e to the chain. The chain head row is locked
// (SELECT … FOR UPDATE) for the transaction, so appends from every
// connection of every replica take turns and each event links to the one
// committed before it. The audit_insert policy lets any session append; no
// policy or privilege lets the app role change or remove an event.
func (db *DB) RecordAudit(ctx context.Context, e idflow.AuditEvent) (idflow.AuditEvent, error) {
	e = e.Bounded() // every field within its bound, before it is hashed
	e.ID = idflow.NewID(idflow.PrefixAudit)
	if e.At.IsZero() {
		e.At = db.now()
	} else {
		e.At = e.At.UTC().Truncate(time.Microsecond)
	}
	err := pgx.BeginTxFunc(ctx, db.pool, readWrite, func(tx pgx.Tx) error {
		var seq int64
		var prev string
		if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_chain_head FOR UPDATE`).Scan(&seq, &prev); err != nil {
			return err
		}
		e.Seq, e.PrevHash = seq+1, prev
		e.Hash = idflow.AuditHash(e)
		if _, err := tx.Exec(ctx, `INSERT INTO audit_events (`+auditCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			e.Seq, e.ID, e.At, e.UserID, e.TenantID, e.Action, e.Resource, e.Outcome,
			e.RequestID, e.Peer, e.Detail, e.PrevHash, e.Hash); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE audit_chain_head SET seq = $1, hash = $2`, e.Seq, e.Hash)
		return err
	})
	if err != nil {
		return idflow.AuditEvent{}, fail("record audit", err)
	}
	return e, nil
}

// ListAudit answers the events whose actor is the caller, newest first.
func (db *DB) ListAudit(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.AuditEvent]{Items: []idflow.AuditEvent{}}, err
	}
	return listAs(ctx, db, "list audit", owner, listAuditSQL, []any{owner}, bySeq, false, page, scanAudit, auditKey)
}

// Admin audit lists: the events of one tenant's actors, or every event for
// a platform admin. Events of requests nobody was authenticated for carry
// no tenant, so only an admin without a tenant, or a platform admin, reads
// them.
const (
	adminAuditTenantSQL = `SELECT ` + auditCols + ` FROM audit_events WHERE tenant_id = $1`
	adminAuditAllSQL    = `SELECT ` + auditCols + ` FROM audit_events WHERE true`
)

// AdminListAudit answers the events of the admin's scope, newest first, on
// the admin path (admin_read policy).
func (db *DB) AdminListAudit(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	out := idflow.List[idflow.AuditEvent]{Items: []idflow.AuditEvent{}}
	err := db.asAdmin(ctx, "admin list audit", admin, scope, func(tx pgx.Tx, tenant string, all bool) error {
		var err error
		if all {
			out, err = list(ctx, tx, adminAuditAllSQL, nil, bySeq, false, page, scanAudit, auditKey)
		} else {
			out, err = list(ctx, tx, adminAuditTenantSQL, []any{tenant}, bySeq, false, page, scanAudit, auditKey)
		}
		return err
	})
	if out.Items == nil {
		out.Items = []idflow.AuditEvent{}
	}
	return out, err
}

// auditLinksPage is how many links one idflow_audit_links() call answers.
const auditLinksPage = 10000

// VerifyAuditChain runs idflow.AuditChainCheck in one read-only snapshot on
// the admin path: the chain head, the links of every event (through
// idflow_audit_links(), which answers seq, prev_hash and hash only), then
// the whole rows of the scope's events (admin_read policy). It detects an
// edited event of the scope (its hash), a deleted event anywhere (a gap in
// seq and the next event's prev_hash), a reordered event (seq is hashed),
// and — unlike SQLite — a cut-off tail: the newest event must match the
// chain head row.
func (db *DB) VerifyAuditChain(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope) (int, error) {
	var check idflow.AuditChainCheck
	err := db.asAdmin(ctx, "verify audit", admin, scope, func(tx pgx.Tx, tenant string, all bool) error {
		var headSeq int64
		var headHash string
		if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_chain_head`).Scan(&headSeq, &headHash); err != nil {
			return err
		}
		for after := int64(0); ; {
			rows, err := tx.Query(ctx, `SELECT seq, prev_hash, hash FROM idflow_audit_links($1, $2) ORDER BY seq`, after, auditLinksPage)
			if err != nil {
				return err
			}
			n := 0
			var seq int64
			var prev, hash string
			_, err = pgx.ForEachRow(rows, []any{&seq, &prev, &hash}, func() error {
				check.Link(seq, prev, hash)
				after, n = seq, n+1
				return nil
			})
			if err != nil {
				return err
			}
			if n < auditLinksPage {
				break
			}
		}
		check.Head(headSeq, headHash)
		query, args := `SELECT `+auditCols+` FROM audit_events WHERE tenant_id = $1 ORDER BY seq`, []any{tenant}
		if all {
			query, args = `SELECT `+auditCols+` FROM audit_events ORDER BY seq`, nil
		}
		rows, err := tx.Query(ctx, query, args...)
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
		return 0, err
	}
	n, broken := check.Result()
	db.log.InfoContext(ctx, "audit chain verified", "scope", scope.String(), "events", n, "ok", broken == nil)
	return n, broken
}
