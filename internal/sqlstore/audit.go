package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/idflow/idflow"
)

const (
	auditCols           = `seq, id, at, user_id, tenant_id, action, resource, outcome, request_id, peer, detail, prev_hash, hash`
	ListAuditSQL        = `SELECT ` + auditCols + ` FROM audit_events WHERE user_id = $1`
	AdminAuditTenantSQL = `SELECT ` + auditCols + ` FROM audit_events WHERE tenant_id = $1`
	adminAuditAllSQL    = `SELECT ` + auditCols + ` FROM audit_events WHERE true`
)

func scanAudit(r Row) (idflow.AuditEvent, error) {
	var e idflow.AuditEvent
	err := r.Scan(&e.Seq, &e.ID, &e.At, &e.UserID, &e.TenantID, &e.Action, &e.Resource, &e.Outcome,
		&e.RequestID, &e.Peer, &e.Detail, &e.PrevHash, &e.Hash)
	return e, err
}

func auditKey(e idflow.AuditEvent) Cursor { return Cursor{Key: e.Seq, ID: e.ID} }

// RecordAudit appends e to the chain. The chain's head is locked for the
// transaction (Dialect.AuditHead), so appends take turns and each event
// links to the one committed before it.
func (s *Store) RecordAudit(ctx context.Context, e idflow.AuditEvent) (idflow.AuditEvent, error) {
	e = e.Bounded() // every field within its bound, before it is hashed
	e.ID = idflow.NewID(idflow.PrefixAudit)
	if e.At.IsZero() {
		e.At = s.clock.now()
	} else {
		e.At = stored(e.At)
	}
	err := s.system(ctx, "record audit", true, func(tx Tx) error {
		var seq int64
		prev := idflow.AuditGenesisHash
		if err := tx.QueryRow(ctx, s.b.SQL.AuditHead).Scan(&seq, &prev); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		e.Seq, e.PrevHash = seq+1, prev
		e.Hash = idflow.AuditHash(e)
		if _, err := tx.Exec(ctx, `INSERT INTO audit_events (`+auditCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			e.Seq, e.ID, e.At, e.UserID, e.TenantID, e.Action, e.Resource, e.Outcome,
			e.RequestID, e.Peer, e.Detail, e.PrevHash, e.Hash); err != nil {
			return err
		}
		if s.b.SQL.AuditAdvance == "" {
			return nil
		}
		_, err := tx.Exec(ctx, s.b.SQL.AuditAdvance, e.Seq, e.Hash)
		return err
	})
	if err != nil {
		return idflow.AuditEvent{}, err
	}
	return e, nil
}

// ListAudit answers the events whose actor is the caller, newest first.
func (s *Store) ListAudit(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	return listOwned(ctx, s, p, "list audit", ListAuditSQL, nil, BySeq, page, scanAudit, auditKey)
}

// AdminListAudit answers the events of the admin's scope, newest first:
// the events of one tenant's actors, or every event for a platform admin.
// Events of requests nobody was authenticated for carry no tenant, so only
// an admin without a tenant, or a platform admin, reads them.
func (s *Store) AdminListAudit(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	out := idflow.List[idflow.AuditEvent]{Items: []idflow.AuditEvent{}}
	err := s.admin(ctx, "admin list audit", admin, scope, func(tx Tx, tenant string, all bool) error {
		query, args := AdminAuditTenantSQL, []any{tenant}
		if all {
			query, args = adminAuditAllSQL, nil
		}
		var err error
		out, err = list(ctx, tx, query, args, BySeq, false, page, scanAudit, auditKey)
		return err
	})
	if err != nil {
		return idflow.List[idflow.AuditEvent]{Items: []idflow.AuditEvent{}}, err
	}
	return out, nil
}

// auditLinksPage is how many links one Dialect.AuditLinks read answers.
const auditLinksPage = 10000

// VerifyAuditChain runs idflow.AuditChainCheck in one read-only snapshot
// on the admin path: the links of every event (seq, prev_hash and hash
// only, a page at a time), the head where the backend keeps one, then the
// whole rows of the scope's events. It detects an edited event of the
// scope (its hash), a deleted event anywhere (a gap in seq and the next
// event's prev_hash) and a reordered one (seq is hashed); with a head row
// (PostgreSQL), a cut-off tail too. A rewrite of every hash from some
// event on would need the head anchored elsewhere.
func (s *Store) VerifyAuditChain(ctx context.Context, admin idflow.Principal, scope idflow.AdminScope) (int, error) {
	var check idflow.AuditChainCheck
	err := s.admin(ctx, "verify audit", admin, scope, func(tx Tx, tenant string, all bool) error {
		check = idflow.AuditChainCheck{}
		var headSeq int64
		var headHash string
		if s.b.SQL.AuditCheckHead != "" {
			if err := tx.QueryRow(ctx, s.b.SQL.AuditCheckHead).Scan(&headSeq, &headHash); err != nil {
				return err
			}
		}
		type link struct {
			seq        int64
			prev, hash string
		}
		for after := int64(0); ; {
			links, err := collect(ctx, tx, s.b.SQL.AuditLinks, func(r Row) (link, error) {
				var l link
				return l, r.Scan(&l.seq, &l.prev, &l.hash)
			}, after, auditLinksPage)
			if err != nil {
				return err
			}
			for _, l := range links {
				check.Link(l.seq, l.prev, l.hash)
				after = l.seq
			}
			if len(links) < auditLinksPage {
				break
			}
		}
		if s.b.SQL.AuditCheckHead != "" {
			check.Head(headSeq, headHash)
		}
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
	s.log.InfoContext(ctx, "audit chain verified", "scope", scope.String(), "events", n, "ok", broken == nil)
	return n, broken
}
