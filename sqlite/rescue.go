package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

// RescueInterruptedJobs makes every River job that was running when the
// process died available again, so its run resumes at once instead of after
// River's stuck-job timeout. It is only safe because an embedded database
// has exactly one process (cmd/idflow holds a lock on the data dir); on
// PostgreSQL, River's own rescuer does this job across replicas. The runs
// of those jobs stay admitted: they keep their owner's slots.
func (db *DB) RescueInterruptedJobs(ctx context.Context) (int64, error) {
	var n int64
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE river_job SET state = 'available',
			max_attempts = max(max_attempts, attempt + 1) WHERE state = 'running'`)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, fail("rescue jobs", err)
}

// FailStrandedRuns fails each admitted run whose River job has ended (or is
// gone) without ending the run, writes its run.failed event, and admits the
// owner's next run, all in one transaction (sqlstore.RunQueue).
func (db *DB) FailStrandedRuns(ctx context.Context, limit int) ([]idflow.Event, error) {
	data, err := json.Marshal(map[string]string{"error": sqlstore.RunStrandedError})
	if err != nil {
		return nil, fail("fail stranded runs", err)
	}
	var out []idflow.Event
	err = db.tx(ctx, "fail stranded runs", func(tx *sql.Tx) error {
		out = nil
		rows, err := tx.QueryContext(ctx, `SELECT r.user_id, r.id FROM runs r
			WHERE r.waiting = 0 AND r.status IN ('queued', 'running') AND r.job_id IS NOT NULL
			  AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = r.job_id
			                  AND j.state NOT IN ('completed', 'cancelled', 'discarded'))
			LIMIT ?`, limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			var e idflow.Event
			if err := rows.Scan(&e.UserID, &e.RunID); err != nil {
				rows.Close()
				return err
			}
			out = append(out, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i, e := range out {
			now := db.now()
			err := tx.QueryRowContext(ctx, `UPDATE runs SET status = 'failed', error = ?, finished_at = ?, updated_at = ?,
				next_seq = next_seq + 1 WHERE user_id = ? AND id = ? RETURNING next_seq - 1`,
				sqlstore.RunStrandedError, nanos(now), nanos(now), e.UserID, e.RunID).Scan(&e.Seq)
			if err != nil {
				return err
			}
			e.Type, e.Data, e.At = idflow.EventRunFailed, data, now
			if _, err := tx.ExecContext(ctx, `INSERT INTO run_events (user_id, run_id, seq, type, step_id, data, at)
				VALUES (?, ?, ?, ?, '', ?, ?)`, e.UserID, e.RunID, e.Seq, e.Type, string(data), nanos(now)); err != nil {
				return err
			}
			if err := db.admit(ctx, tx, e.UserID); err != nil {
				return err
			}
			out[i] = e
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
