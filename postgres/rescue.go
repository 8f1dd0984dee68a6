package postgres

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

// FailStrandedRuns fails each admitted run whose River job has ended (or is
// gone) without ending the run — River's rescuer discards the job of a
// replica that died on its last attempt — writes its run.failed event, and
// admits the owner's next run (sqlstore.RunQueue). idflow_stranded_runs
// (migrations/0004) finds them across users; each is then re-checked and
// ended in a transaction of its owner, under the owner's admission lock.
func (db *DB) FailStrandedRuns(ctx context.Context, limit int) ([]idflow.Event, error) {
	rows, err := db.pool.Query(ctx, `SELECT user_id, run_id FROM idflow_stranded_runs($1)`, limit)
	if err != nil {
		return nil, fail("find stranded runs", err)
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (idflow.Event, error) {
		var e idflow.Event
		return e, r.Scan(&e.UserID, &e.RunID)
	})
	if err != nil {
		return nil, fail("find stranded runs", err)
	}
	data, err := json.Marshal(map[string]string{"error": sqlstore.RunStrandedError})
	if err != nil {
		return nil, fail("fail stranded runs", err)
	}
	var out []idflow.Event
	for _, e := range found {
		ended := false
		err := db.asUser(ctx, "fail stranded run", e.UserID, readWrite, func(tx pgx.Tx) error {
			ended = false
			if err := lockAdmission(ctx, tx, e.UserID); err != nil {
				return err
			}
			var status string
			var waiting bool
			var jobID *int64
			if err := tx.QueryRow(ctx, `SELECT status, waiting, job_id FROM runs WHERE user_id = $1 AND id = $2 FOR NO KEY UPDATE`,
				e.UserID, e.RunID).Scan(&status, &waiting, &jobID); err != nil {
				return err
			}
			if waiting || jobID == nil || (status != idflow.RunQueued && status != idflow.RunRunning) {
				return nil // ended meanwhile
			}
			var state string
			err := tx.QueryRow(ctx, `SELECT state::text FROM river_job WHERE id = $1`, *jobID).Scan(&state)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				return err
			case state != "completed" && state != "cancelled" && state != "discarded":
				return nil // retried meanwhile
			}
			e.At = db.now()
			if err := tx.QueryRow(ctx, `UPDATE runs SET status = 'failed', error = $1, finished_at = $2, updated_at = $2,
				next_seq = next_seq + 1 WHERE user_id = $3 AND id = $4 RETURNING next_seq - 1`,
				sqlstore.RunStrandedError, e.At, e.UserID, e.RunID).Scan(&e.Seq); err != nil {
				return err
			}
			e.Type, e.Data = idflow.EventRunFailed, data
			if _, err := tx.Exec(ctx, `INSERT INTO run_events (user_id, run_id, seq, type, step_id, data, at)
				VALUES ($1, $2, $3, $4, '', $5, $6)`, e.UserID, e.RunID, e.Seq, e.Type, string(data), e.At); err != nil {
				return err
			}
			ended = true
			return db.admit(ctx, tx, e.UserID)
		})
		if err != nil {
			return out, err
		}
		if ended {
			out = append(out, e)
		}
	}
	return out, nil
}
