package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/idflow/idflow"
)

// genesisHash is the prev_hash of the first event of the chain.
var genesisHash = strings.Repeat("0", 64)

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
		prev := genesisHash
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

// AdminListAudit answers every event, newest first; the caller has checked
// the admin role.
func (db *DB) AdminListAudit(ctx context.Context, _ idflow.Principal, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	return list(ctx, db.r, `SELECT `+auditCols+` FROM audit_events WHERE 1 = 1`, nil, bySeq, false, page, scanAudit, auditKey)
}

// VerifyAuditChain walks the chain in seq order and recomputes every hash.
// It detects an edited row (its hash), a deleted row (a gap in seq and the
// next row's prev_hash) and a reordered row (seq is hashed). It cannot see
// the newest rows being cut off, nor a rewrite of every hash from some row
// on; anchoring the head hash elsewhere would.
func (db *DB) VerifyAuditChain(ctx context.Context) (int, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+auditCols+` FROM audit_events ORDER BY seq`)
	if err != nil {
		return 0, fail("verify audit", err)
	}
	defer rows.Close()
	n, prev := 0, genesisHash
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return n, fail("verify audit", err)
		}
		want := int64(n + 1)
		switch {
		case e.Seq != want:
			return n, idflow.Errorf(idflow.EINTERNAL, "audit chain broken at seq %d: event missing", want)
		case e.PrevHash != prev:
			return n, idflow.Errorf(idflow.EINTERNAL, "audit chain broken at seq %d: prev_hash does not match", e.Seq)
		case idflow.AuditHash(e) != e.Hash:
			return n, idflow.Errorf(idflow.EINTERNAL, "audit chain broken at seq %d: hash does not match", e.Seq)
		}
		n, prev = n+1, e.Hash
	}
	if err := rows.Err(); err != nil {
		return n, fail("verify audit", err)
	}
	return n, nil
}
