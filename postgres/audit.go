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

// genesisHash is the prev_hash of the first event of the chain (and the
// hash of the chain head before any event).
const genesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

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

// AdminListAudit answers every event, newest first, on the admin path
// (admin_read policy); the caller has checked the admin role.
func (db *DB) AdminListAudit(ctx context.Context, admin idflow.Principal, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	out := idflow.List[idflow.AuditEvent]{Items: []idflow.AuditEvent{}}
	actor, err := admin.Owner()
	if err != nil {
		return out, err
	}
	err = db.asAdmin(ctx, "admin list audit", actor, func(tx pgx.Tx) error {
		var err error
		out, err = list(ctx, tx, `SELECT `+auditCols+` FROM audit_events WHERE true`, nil, bySeq, false, page, scanAudit, auditKey)
		return err
	})
	if out.Items == nil {
		out.Items = []idflow.AuditEvent{}
	}
	return out, err
}

// VerifyAuditChain walks the chain in seq order and recomputes every hash,
// in one read-only snapshot on the admin path (it has no Principal: it is a
// maintenance operation, and it logs that it ran). It detects an edited row
// (its hash), a deleted row (a gap in seq and the next row's prev_hash), a
// reordered row (seq is hashed), and — unlike SQLite — a cut-off tail: the
// newest event must match the chain head row.
func (db *DB) VerifyAuditChain(ctx context.Context) (int, error) {
	n := 0
	var broken error
	err := db.asAdmin(ctx, "verify audit", "", func(tx pgx.Tx) error {
		var headSeq int64
		var headHash string
		if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_chain_head`).Scan(&headSeq, &headHash); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+auditCols+` FROM audit_events ORDER BY seq`)
		if err != nil {
			return err
		}
		defer rows.Close()
		prev := genesisHash
		for rows.Next() {
			e, err := scanAudit(rows)
			if err != nil {
				return err
			}
			want := int64(n + 1)
			switch {
			case e.Seq != want:
				broken = idflow.Errorf(idflow.EINTERNAL, "audit chain broken at seq %d: event missing", want)
			case e.PrevHash != prev:
				broken = idflow.Errorf(idflow.EINTERNAL, "audit chain broken at seq %d: prev_hash does not match", e.Seq)
			case idflow.AuditHash(e) != e.Hash:
				broken = idflow.Errorf(idflow.EINTERNAL, "audit chain broken at seq %d: hash does not match", e.Seq)
			}
			if broken != nil {
				return nil
			}
			n, prev = n+1, e.Hash
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if int64(n) != headSeq || prev != headHash {
			broken = idflow.Errorf(idflow.EINTERNAL, "audit chain broken after seq %d: the chain head names seq %d", n, headSeq)
		}
		return nil
	})
	if err == nil {
		err = broken
	}
	db.log.InfoContext(ctx, "audit chain verified (maintenance path)", "events", n, "ok", err == nil)
	return n, err
}
