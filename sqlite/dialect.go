package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strconv"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/riverschema"
	"github.com/idflow/idflow/internal/sqlstore"
	modernc "modernc.org/sqlite"
)

// dialect is the SQL SQLite writes its own way (sqlstore.Dialect): there
// is one writer, so no row is locked; booleans are 0 and 1; a usage day is
// text; the audit chain's head is its newest event.
var dialect = sqlstore.Dialect{
	LockRow: "",
	// Each reads its own partial index (migrations/0005).
	RunsAdmitted: `SELECT count(*) FROM runs WHERE user_id = $1 AND waiting = 0 AND status IN ('queued', 'running')`,
	RunsWaiting: `SELECT id, owner_snapshot FROM runs
		WHERE user_id = $1 AND waiting = 1 AND status = 'queued' ORDER BY created_at, id LIMIT $2`,
	// The one process reads across users directly.
	StrandedRuns: `SELECT r.user_id, r.id FROM runs r
		WHERE r.waiting = 0 AND r.status IN ('queued', 'running') AND r.job_id IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = r.job_id AND j.state NOT IN ` + riverschema.FinishedStates + `)
		LIMIT $1`,
	// The write transaction is the one writer's: nothing to lock, and no
	// head row to keep (so a cut-off tail goes unseen).
	AuditHead:  `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`,
	AuditLinks: `SELECT seq, prev_hash, hash FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`,
	Stats: `SELECT
		(SELECT count(*) FROM users), (SELECT count(*) FROM sessions), (SELECT count(*) FROM messages),
		(SELECT count(*) FROM workflows), (SELECT count(*) FROM runs), (SELECT count(*) FROM documents),
		(SELECT count(*) FROM facts)`,
	RecordUsage: `INSERT INTO model_usage
			(user_id, day, model, tenant_id, prompt_tokens, completion_tokens, calls, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, 1, $7)
		ON CONFLICT (user_id, day, model) DO UPDATE SET
			prompt_tokens = prompt_tokens + excluded.prompt_tokens,
			completion_tokens = completion_tokens + excluded.completion_tokens,
			calls = calls + 1, tenant_id = excluded.tenant_id, updated_at = excluded.updated_at`,
	ListUsage: `SELECT user_id, day, model, prompt_tokens, completion_tokens, calls
		FROM model_usage WHERE user_id = $1 AND day >= $2 AND day <= $3 ORDER BY day, model`,
	AdminUsage: `SELECT CASE WHEN $1 = '' THEN '' ELSE min(user_id) END, tenant_id, day, model,
			sum(prompt_tokens), sum(completion_tokens), sum(calls), count(DISTINCT user_id)
		FROM model_usage
		WHERE day >= $2 AND day <= $3 AND ($4 OR tenant_id = $5) AND ($1 = '' OR user_id = $1)
		GROUP BY tenant_id, day, model ORDER BY day, tenant_id, model`,
	// Every user's expired sessions: the one process sees them all.
	SweepBrowserSessions: `DELETE FROM browser_sessions WHERE expires_at < $2`,
	// River keeps args as JSONB; 'optimize' rewrites the full-text index
	// into one segment, so no posting of a deleted fact's terms (which
	// carry the owner's namespace) stays behind.
	EraseJobs:     `DELETE FROM river_job WHERE json_extract(args, '$.owner.user_id') = $1`,
	EraseSearch:   `INSERT INTO facts_fts (facts_fts) VALUES ('optimize')`,
	DisabledUsers: `SELECT tenant_id, user_id FROM user_states WHERE disabled = 1`,
}

// insertMessages writes msgs one statement each (sqlstore.Backend).
func insertMessages(ctx context.Context, tx sqlstore.Tx, msgs []idflow.Message, calls []*string) error {
	for i, m := range msgs {
		if _, err := tx.Exec(ctx, `INSERT INTO messages (`+sqlstore.MessageCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			m.ID, m.UserID, m.SessionID, m.Role, m.Content, calls[i], m.ToolCallID, m.Name, m.CreatedAt, m.UpdatedAt); err != nil {
			return err
		}
	}
	return nil
}

// errorCode answers SQLite's primary result code of err as "sqlite/<n>"
// (sqlstore.Backend.ErrorCode).
func errorCode(err error) string {
	var e *modernc.Error
	if errors.As(err, &e) {
		return "sqlite/" + strconv.Itoa(e.Code()&0xff)
	}
	return ""
}

// RescueInterruptedJobs makes every River job that was running when the
// process died available again (riverschema.RescueSQL), so its run resumes
// at once instead of after River's stuck-job timeout. It is only safe
// because an embedded database has exactly one process (cmd/idflow holds a
// lock on the data dir). The runs of those jobs stay admitted: they keep
// their owner's slots.
func (db *DB) RescueInterruptedJobs(ctx context.Context) (int64, error) {
	var n int64
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, riverschema.RescueSQL)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, fail("rescue jobs", err)
}
