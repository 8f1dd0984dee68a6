package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

var _ sqlstore.RunQueue[pgx.Tx] = (*DB)(nil)

const (
	// admittedSQL counts the owner's admitted runs that have not ended (the
	// slots in use); nextWaitingSQL lists the owner's waiting runs, oldest
	// first. Each reads its own partial index (migrations/0004).
	admittedSQL    = `SELECT count(*) FROM runs WHERE user_id = $1 AND NOT waiting AND status IN ('queued', 'running')`
	nextWaitingSQL = `SELECT id, owner_snapshot::text FROM runs
		WHERE user_id = $1 AND waiting AND status = 'queued' ORDER BY created_at, id LIMIT $2`

	runCols     = `id, user_id, tenant_id, workflow_id, workflow_version, definition, status, input, output, error, attempt, created_at, updated_at, started_at, finished_at`
	listRunsSQL = `SELECT ` + runCols + ` FROM runs WHERE user_id = $1`
)

func scanRun(r rowScanner) (idflow.Run, error) {
	var run idflow.Run
	var def, input string
	var output *string
	if err := r.Scan(&run.ID, &run.UserID, &run.TenantID, &run.WorkflowID, &run.WorkflowVersion, &def, &run.Status,
		&input, &output, &run.Error, &run.Attempt, &run.CreatedAt, &run.UpdatedAt, &run.StartedAt, &run.FinishedAt); err != nil {
		return run, err
	}
	var err error
	if run.Definition, err = sqlstore.DecodeDefinition(def); err != nil {
		return run, err
	}
	run.Input = json.RawMessage(input)
	if output != nil {
		run.Output = json.RawMessage(*output)
	}
	run.StartedAt, run.FinishedAt = utc(run.StartedAt), utc(run.FinishedAt)
	return run, nil
}

func runKey(r idflow.Run) cursor { return cursor{Key: timeKey(r.CreatedAt), ID: r.ID} }

// SetRunAdmission sets how runs are admitted (sqlstore.RunQueue).
func (db *DB) SetRunAdmission(a sqlstore.RunAdmission[pgx.Tx]) { db.admission.Store(&a) }

// CreateRun records run, its run.queued event (seq 1) and the owner's
// snapshot, and admits the owner's oldest waiting runs while there is room
// (their River jobs inserted through riverpgxv5's InsertTx), in one
// transaction: a run is never recorded without its job or its place in the
// queue, nor a job enqueued for a run that was not recorded.
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
	err = db.asUser(ctx, "create run", owner, readWrite, func(tx pgx.Tx) error {
		if err := lockAdmission(ctx, tx, owner); err != nil {
			return err
		}
		if err := requireOwned(ctx, tx, "workflows", "workflow", owner, run.WorkflowID); err != nil {
			return err
		}
		// Taken under the lock, so the owner's runs are created, and
		// admitted, in the order they commit.
		now := db.now()
		run.CreatedAt, run.UpdatedAt = now, now
		if _, err := tx.Exec(ctx, `INSERT INTO runs (`+runCols+`, next_seq, waiting, owner_snapshot)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, '', 0, $9, $10, NULL, NULL, 2, true, $11)`,
			run.ID, owner, run.TenantID, run.WorkflowID, run.WorkflowVersion, def, run.Status, string(run.Input),
			now, now, string(snapshot)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO run_events (user_id, run_id, seq, type, step_id, data, at)
			VALUES ($1, $2, 1, $3, '', NULL, $4)`, owner, run.ID, idflow.EventRunQueued, now); err != nil {
			return err
		}
		return db.admit(ctx, tx, owner)
	})
	if err != nil {
		return idflow.Run{}, err
	}
	return run, nil
}

// admissionLockClass is the first key of the per-user advisory locks that
// serialize admission ("idfr"); the second is a hash of the user id. A
// collision of two users' hashes only makes them take turns.
const admissionLockClass = 0x69646672

// lockAdmission takes owner's admission lock until the transaction ends, on
// every replica: counting the owner's admitted runs and admitting the next
// ones cannot interleave with another transaction doing the same.
func lockAdmission(ctx context.Context, tx pgx.Tx, owner string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, int32(admissionLockClass), owner)
	return err
}

// admit admits owner's oldest waiting runs while fewer than PerUser of
// theirs are admitted and not ended, enqueueing each one's job in tx. The
// caller holds owner's admission lock (lockAdmission), taken before any
// write of the transaction.
func (db *DB) admit(ctx context.Context, tx pgx.Tx, owner string) error {
	a := db.admission.Load()
	if a == nil {
		return nil
	}
	var active int
	if err := tx.QueryRow(ctx, admittedSQL, owner).Scan(&active); err != nil {
		return err
	}
	if active >= a.PerUser {
		return nil
	}
	rows, err := tx.Query(ctx, nextWaitingSQL, owner, a.PerUser-active)
	if err != nil {
		return err
	}
	type waiting struct{ id, snapshot string }
	next, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (waiting, error) {
		var w waiting
		return w, r.Scan(&w.id, &w.snapshot)
	})
	if err != nil {
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
		if _, err := tx.Exec(ctx, `UPDATE runs SET waiting = false, job_id = $1 WHERE user_id = $2 AND id = $3`,
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
	var run idflow.Run
	err = db.asUser(ctx, "get run", owner, readOnly, func(tx pgx.Tx) error {
		var err error
		run, err = getOne(ctx, tx, "run", `SELECT `+runCols+` FROM runs WHERE user_id = $1 AND id = $2`, scanRun, owner, id)
		return err
	})
	return run, err
}

func (db *DB) ListRuns(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Run], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.Run]{Items: []idflow.Run{}}, err
	}
	return listAs(ctx, db, "list runs", owner, listRunsSQL, []any{owner}, byCreated, false, page, scanRun, runKey)
}

// UpdateRun moves a run to u.Status. An ended run is never changed again
// (ECONFLICT), so a late worker cannot overwrite a cancel: the row is locked
// (FOR NO KEY UPDATE) between the check and the update, across replicas. A
// run that ends admits the owner's next waiting run in the same
// transaction, under the owner's admission lock.
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
	now := db.now()
	var run idflow.Run
	ends := u.Status != idflow.RunRunning
	err = db.asUser(ctx, "update run", owner, readWrite, func(tx pgx.Tx) error {
		if ends {
			if err := lockAdmission(ctx, tx, owner); err != nil {
				return err
			}
		}
		cur, err := getOne(ctx, tx, "run", `SELECT `+runCols+` FROM runs WHERE user_id = $1 AND id = $2 FOR NO KEY UPDATE`,
			scanRun, owner, id)
		if err != nil {
			return err
		}
		if cur.Terminal() {
			return idflow.Errorf(idflow.ECONFLICT, "the run has already %s", cur.Status)
		}
		run, err = getOne(ctx, tx, "run", `UPDATE runs SET status = $1,
				error = CASE WHEN $2 = '' THEN error ELSE $2 END,
				output = COALESCE($3::json, output),
				attempt = CASE WHEN $4 > 0 THEN $4 ELSE attempt END,
				started_at = CASE WHEN $1 = 'running' THEN COALESCE(started_at, $5) ELSE started_at END,
				finished_at = CASE WHEN $1 IN ('succeeded', 'failed', 'cancelled') THEN $5 ELSE finished_at END,
				updated_at = $5
			WHERE user_id = $6 AND id = $7 RETURNING `+runCols, scanRun,
			u.Status, u.Error, output, u.Attempt, now, owner, id)
		if err != nil || !ends {
			return err
		}
		return db.admit(ctx, tx, owner) // the run's slot is free
	})
	return run, err
}

// AppendEvent stores e as the next event of its run. The event's owner is
// the Principal's, whatever e says. Incrementing next_seq locks the run row,
// so concurrent appends to one run get consecutive seqs.
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
	err = db.asUser(ctx, "append event", owner, readWrite, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE runs SET next_seq = next_seq + 1 WHERE user_id = $1 AND id = $2
			RETURNING next_seq - 1`, owner, e.RunID).Scan(&e.Seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return idflow.NotFound("run")
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO run_events (user_id, run_id, seq, type, step_id, data, at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, owner, e.RunID, e.Seq, e.Type, e.StepID, data, e.At)
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
	out := []idflow.Event{}
	err = db.asUser(ctx, "list events", owner, readOnly, func(tx pgx.Tx) error {
		ok, err := owned(ctx, tx, "runs", owner, runID)
		if err != nil {
			return err
		}
		if !ok {
			return idflow.NotFound("run")
		}
		rows, err := tx.Query(ctx, `SELECT run_id, seq, type, step_id, user_id, data, at FROM run_events
			WHERE user_id = $1 AND run_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`, owner, runID, afterSeq, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e idflow.Event
			var data *string
			if err := rows.Scan(&e.RunID, &e.Seq, &e.Type, &e.StepID, &e.UserID, &data, &e.At); err != nil {
				return err
			}
			if data != nil {
				e.Data = json.RawMessage(*data)
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
