package postgres

import (
	"context"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

// dialect is the SQL PostgreSQL writes its own way (sqlstore.Dialect):
// writers on every replica run concurrently, so rows are locked; booleans
// are boolean; a usage day is a date; the audit chain keeps a head row;
// looks across users go through SECURITY DEFINER functions, since
// row-level security shows a transaction only its user's rows.
var dialect = sqlstore.Dialect{
	LockRow: " FOR NO KEY UPDATE",
	// Each reads its own partial index (migrations/0004).
	RunsAdmitted: `SELECT count(*) FROM runs WHERE user_id = $1 AND NOT waiting AND status IN ('queued', 'running')`,
	RunsWaiting: `SELECT id, owner_snapshot FROM runs
		WHERE user_id = $1 AND waiting AND status = 'queued' ORDER BY created_at, id LIMIT $2`,
	// idflow_stranded_runs (migrations/0004) answers (user_id, run id)
	// pairs only.
	StrandedRuns: `SELECT user_id, run_id FROM idflow_stranded_runs($1)`,
	// The head row, locked, serializes appends from every connection of
	// every replica; the audit_insert policy lets any session append, and
	// no policy or privilege lets the app role change or remove an event.
	AuditHead:    `SELECT seq, hash FROM audit_chain_head FOR UPDATE`,
	AuditAdvance: `UPDATE audit_chain_head SET seq = $1, hash = $2`,
	// idflow_audit_links() answers seq, prev_hash and hash only, across
	// tenants; the head row shows a cut-off tail.
	AuditLinks:     `SELECT seq, prev_hash, hash FROM idflow_audit_links($1, $2) ORDER BY seq`,
	AuditCheckHead: `SELECT seq, hash FROM audit_chain_head`,
	// idflow_stats() sees every row and answers nothing but counts.
	Stats: `SELECT users, sessions, messages, workflows, runs, documents, facts FROM idflow_stats()`,
	RecordUsage: `INSERT INTO model_usage
			(user_id, day, model, tenant_id, prompt_tokens, completion_tokens, calls, updated_at)
		VALUES ($1, $2::date, $3, $4, $5, $6, 1, $7)
		ON CONFLICT (user_id, day, model) DO UPDATE SET
			prompt_tokens = model_usage.prompt_tokens + excluded.prompt_tokens,
			completion_tokens = model_usage.completion_tokens + excluded.completion_tokens,
			calls = model_usage.calls + 1, tenant_id = excluded.tenant_id, updated_at = excluded.updated_at`,
	ListUsage: listUsageSQL,
	// The admin_read policy of model_usage holds the tenant a second time.
	AdminUsage: `SELECT CASE WHEN $1 = '' THEN '' ELSE min(user_id) END, tenant_id, to_char(day, 'YYYY-MM-DD'), model,
			sum(prompt_tokens)::bigint, sum(completion_tokens)::bigint, sum(calls)::bigint, count(DISTINCT user_id)
		FROM model_usage
		WHERE day >= $2::date AND day <= $3::date AND ($4 OR tenant_id = $5) AND ($1 = '' OR user_id = $1)
		GROUP BY tenant_id, day, model ORDER BY day, tenant_id, model`,
	// The transaction sees $1's sessions only (and one by its secret).
	SweepBrowserSessions: `DELETE FROM browser_sessions WHERE user_id = $1 AND expires_at < $2`,
	// The app role cannot edit audit events: idflow_audit_erase() (SECURITY
	// DEFINER, 0026_erasure.sql) replaces the id and re-chains.
	EraseAudit:    `SELECT idflow_audit_erase($1, $2)`,
	EraseJobs:     `DELETE FROM river_job WHERE args->'owner'->>'user_id' = $1`,
	EraseBlobs:    `DELETE FROM document_blobs WHERE user_id = $1`,
	DisabledUsers: `SELECT tenant_id, user_id FROM idflow_disabled_users()`,
}

// listUsageSQL reads one user's rows of a range of days, in primary-key
// order.
const listUsageSQL = `SELECT user_id, to_char(day, 'YYYY-MM-DD'), model, prompt_tokens, completion_tokens, calls
	FROM model_usage WHERE user_id = $1 AND day >= $2::date AND day <= $3::date ORDER BY day, model`

// insertMessages writes msgs, of one session, in one statement
// (sqlstore.Backend).
func insertMessages(ctx context.Context, tx sqlstore.Tx, msgs []idflow.Message, calls []*string) error {
	n := len(msgs)
	ids, roles, contents := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	callIDs, names := make([]string, 0, n), make([]string, 0, n)
	times := make([]time.Time, 0, n)
	for _, m := range msgs {
		ids, roles, contents, times = append(ids, m.ID), append(roles, m.Role), append(contents, m.Content), append(times, m.CreatedAt)
		callIDs, names = append(callIDs, m.ToolCallID), append(names, m.Name)
	}
	_, err := tx.Exec(ctx, `INSERT INTO messages (`+sqlstore.MessageCols+`)
		SELECT m.id, $1, $2, m.role, m.content, m.calls::json, m.call_id, m.name, m.at, m.at
		FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[])
			AS m(id, role, content, calls, call_id, name, at)`,
		msgs[0].UserID, msgs[0].SessionID, ids, roles, contents, calls, callIDs, names, times)
	return err
}

// admissionLockClass is the first key of the per-user advisory locks that
// serialize admission ("idfr"); the second is a hash of the user id. A
// collision of two users' hashes only makes them take turns.
const admissionLockClass = 0x69646672

// lockAdmission takes owner's admission lock until the transaction ends,
// on every replica (sqlstore.Backend.LockOwner): counting the owner's
// admitted runs and admitting the next ones cannot interleave with another
// transaction doing the same.
func lockAdmission(ctx context.Context, tx sqlstore.Tx, owner string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, int32(admissionLockClass), owner)
	return err
}
