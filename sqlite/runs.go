package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

var _ sqlstore.RunQueue[*sql.Tx] = (*DB)(nil)

const (
	runCols     = `id, user_id, tenant_id, workflow_id, workflow_version, definition, status, input, output, error, attempt, created_at, updated_at, started_at, finished_at`
	listRunsSQL = `SELECT ` + runCols + ` FROM runs WHERE user_id = ?`
)

func scanRun(r rowScanner) (idflow.Run, error) {
	var run idflow.Run
	var def, input string
	var output sql.NullString
	var created, updated int64
	var started, finished sql.NullInt64
	if err := r.Scan(&run.ID, &run.UserID, &run.TenantID, &run.WorkflowID, &run.WorkflowVersion, &def, &run.Status,
		&input, &output, &run.Error, &run.Attempt, &created, &updated, &started, &finished); err != nil {
		return run, err
	}
	var err error
	if run.Definition, err = sqlstore.DecodeDefinition(def); err != nil {
		return run, err
	}
	run.Input = json.RawMessage(input)
	if output.Valid {
		run.Output = json.RawMessage(output.String)
	}
	run.CreatedAt, run.UpdatedAt = fromNanos(created), fromNanos(updated)
	if started.Valid {
		t := fromNanos(started.Int64)
		run.StartedAt = &t
	}
	if finished.Valid {
		t := fromNanos(finished.Int64)
		run.FinishedAt = &t
	}
	return run, nil
}

func runKey(r idflow.Run) cursor { return cursor{Key: nanos(r.CreatedAt), ID: r.ID} }

// SetRunAdmission sets how runs are admitted (sqlstore.RunQueue).
func (db *DB) SetRunAdmission(a sqlstore.RunAdmission[*sql.Tx]) { db.admission.Store(&a) }

// CreateRun records run, its run.queued event (seq 1) and the owner's
// snapshot, and admits the owner's oldest waiting runs while there is room,
// in one transaction: a run is never recorded without its job or its place
// in the queue, nor a job enqueued for a run that was not recorded.
func (db *DB) CreateRun(ctx context.Context, p idflow.Principal, run idflow.Run) (idflow.Run, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Run{}, err
	}
	def, decoded, err := sqlstore.EncodeDefinition(run.Definition)
	if err != nil {
		return idflow.Run{}, fail("create run", err)
	}
	snapshot, err := json.Marshal(p.Snapshot())
	if err != nil {
		return idflow.Run{}, fail("create run", err)
	}
	if len(run.Input) == 0 {
		run.Input = json.RawMessage("null")
	}
	if !json.Valid(run.Input) {
		return idflow.Run{}, idflow.Errorf(idflow.EINVALID, "input must be JSON")
	}
	if run.ID == "" {
		run.ID = idflow.NewID(idflow.PrefixRun)
	}
	run.UserID, run.Definition, run.Status = owner, decoded, idflow.RunQueued
	run.Output, run.Error, run.Attempt, run.StartedAt, run.FinishedAt = nil, "", 0, nil, nil
	err = db.tx(ctx, "create run", func(tx *sql.Tx) error {
		if err := requireOwned(ctx, tx, "workflows", "workflow", owner, run.WorkflowID); err != nil {
			return err
		}
		// Taken by the single writer, so runs are created, and admitted,
		// in the order they commit.
		now := db.now()
		run.CreatedAt, run.UpdatedAt = now, now
		if _, err := tx.ExecContext(ctx, `INSERT INTO runs (`+runCols+`, next_seq, waiting, owner_snapshot)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, '', 0, ?, ?, NULL, NULL, 2, 1, ?)`,
			run.ID, owner, run.TenantID, run.WorkflowID, run.WorkflowVersion, def, run.Status, string(run.Input),
			nanos(now), nanos(now), string(snapshot)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO run_events (user_id, run_id, seq, type, step_id, data, at)
			VALUES (?, ?, 1, ?, '', NULL, ?)`, owner, run.ID, idflow.EventRunQueued, nanos(now)); err != nil {
			return err
		}
		return db.admit(ctx, tx, owner)
	})
	if err != nil {
		return idflow.Run{}, err
	}
	return run, nil
}

// admit admits owner's oldest waiting runs while fewer than PerUser of
// theirs are admitted and not ended, enqueueing each one's job in tx. The
// store has a single writer, so admissions are serialized by construction.
func (db *DB) admit(ctx context.Context, tx *sql.Tx, owner string) error {
	a := db.admission.Load()
	if a == nil {
		return nil
	}
	var active int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM runs
		WHERE user_id = ? AND waiting = 0 AND status IN ('queued', 'running')`, owner).Scan(&active); err != nil {
		return err
	}
	if active >= a.PerUser {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, owner_snapshot FROM runs
		WHERE user_id = ? AND waiting = 1 AND status = 'queued' ORDER BY created_at, id LIMIT ?`, owner, a.PerUser-active)
	if err != nil {
		return err
	}
	type waiting struct{ id, snapshot string }
	var next []waiting
	for rows.Next() {
		var w waiting
		if err := rows.Scan(&w.id, &w.snapshot); err != nil {
			rows.Close()
			return err
		}
		next = append(next, w)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, w := range next {
		snapshot, err := sqlstore.DecodeSnapshot(w.snapshot, owner)
		if err != nil {
			return err
		}
		jobID, err := a.Enqueue(ctx, tx, w.id, snapshot)
		if err != nil {
			return fmt.Errorf("enqueue run %s: %w", w.id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET waiting = 0, job_id = ? WHERE user_id = ? AND id = ?`,
			jobID, owner, w.id); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) GetRun(ctx context.Context, p idflow.Principal, id string) (idflow.Run, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Run{}, err
	}
	return getOne(ctx, db.r, "run", `SELECT `+runCols+` FROM runs WHERE user_id = ? AND id = ?`, scanRun, owner, id)
}

func (db *DB) ListRuns(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Run], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.Run]{Items: []idflow.Run{}}, err
	}
	return list(ctx, db.r, listRunsSQL, []any{owner}, byCreated, false, page, scanRun, runKey)
}

// UpdateRun moves a run to u.Status. An ended run is never changed again
// (ECONFLICT), so a late worker cannot overwrite a cancel. A run that ends
// admits the owner's next waiting run in the same transaction.
func (db *DB) UpdateRun(ctx context.Context, p idflow.Principal, id string, u idflow.RunUpdate) (idflow.Run, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Run{}, err
	}
	switch u.Status {
	case idflow.RunRunning, idflow.RunSucceeded, idflow.RunFailed, idflow.RunCancelled:
	default:
		return idflow.Run{}, idflow.Errorf(idflow.EINVALID, "invalid run status %q", u.Status)
	}
	var output any
	if len(u.Output) > 0 {
		if !json.Valid(u.Output) {
			return idflow.Run{}, idflow.Errorf(idflow.EINVALID, "output must be JSON")
		}
		output = string(u.Output)
	}
	now := nanos(db.now())
	var run idflow.Run
	err = db.tx(ctx, "update run", func(tx *sql.Tx) error {
		cur, err := getOne(ctx, tx, "run", `SELECT `+runCols+` FROM runs WHERE user_id = ? AND id = ?`, scanRun, owner, id)
		if err != nil {
			return err
		}
		if cur.Terminal() {
			return idflow.Errorf(idflow.ECONFLICT, "the run has already %s", cur.Status)
		}
		run, err = getOne(ctx, tx, "run", `UPDATE runs SET status = ?,
				error = CASE WHEN ? = '' THEN error ELSE ? END,
				output = COALESCE(?, output),
				attempt = CASE WHEN ? > 0 THEN ? ELSE attempt END,
				started_at = CASE WHEN ? = 'running' THEN COALESCE(started_at, ?) ELSE started_at END,
				finished_at = CASE WHEN ? IN ('succeeded', 'failed', 'cancelled') THEN ? ELSE finished_at END,
				updated_at = ?
			WHERE user_id = ? AND id = ? RETURNING `+runCols, scanRun,
			u.Status, u.Error, u.Error, output, u.Attempt, u.Attempt, u.Status, now, u.Status, now, now, owner, id)
		if err != nil || !run.Terminal() {
			return err
		}
		return db.admit(ctx, tx, owner) // the run's slot is free
	})
	return run, err
}

// AppendEvent stores e as the next event of its run. The event's owner is
// the Principal's, whatever e says.
func (db *DB) AppendEvent(ctx context.Context, p idflow.Principal, e idflow.Event) (idflow.Event, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Event{}, err
	}
	var data any
	if len(e.Data) > 0 {
		if !json.Valid(e.Data) {
			return idflow.Event{}, idflow.Errorf(idflow.EINVALID, "event data must be JSON")
		}
		data = string(e.Data)
	}
	e.UserID = owner
	e.At = db.now()
	err = db.tx(ctx, "append event", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE runs SET next_seq = next_seq + 1 WHERE user_id = ? AND id = ?
			RETURNING next_seq - 1`, owner, e.RunID).Scan(&e.Seq)
		if errors.Is(err, sql.ErrNoRows) {
			return idflow.NotFound("run")
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO run_events (user_id, run_id, seq, type, step_id, data, at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, owner, e.RunID, e.Seq, e.Type, e.StepID, data, nanos(e.At))
		return err
	})
	if err != nil {
		return idflow.Event{}, err
	}
	return e, nil
}

// ListEvents answers a run's events after afterSeq; another user's run, or
// none, is NotFound.
func (db *DB) ListEvents(ctx context.Context, p idflow.Principal, runID string, afterSeq int64, limit int) ([]idflow.Event, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	var exists bool
	if err := db.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM runs WHERE user_id = ? AND id = ?)`, owner, runID).Scan(&exists); err != nil {
		return nil, fail("list events", err)
	}
	if !exists {
		return nil, idflow.NotFound("run")
	}
	rows, err := db.r.QueryContext(ctx, `SELECT run_id, seq, type, step_id, user_id, data, at FROM run_events
		WHERE user_id = ? AND run_id = ? AND seq > ? ORDER BY seq LIMIT ?`, owner, runID, afterSeq, limit)
	if err != nil {
		return nil, fail("list events", err)
	}
	defer rows.Close()
	out := []idflow.Event{}
	for rows.Next() {
		var e idflow.Event
		var data sql.NullString
		var at int64
		if err := rows.Scan(&e.RunID, &e.Seq, &e.Type, &e.StepID, &e.UserID, &data, &at); err != nil {
			return nil, fail("list events", err)
		}
		if data.Valid {
			e.Data = json.RawMessage(data.String)
		}
		e.At = fromNanos(at)
		out = append(out, e)
	}
	return out, fail("list events", rows.Err())
}
