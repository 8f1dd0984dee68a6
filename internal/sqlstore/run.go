package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/riverschema"
)

const (
	runCols     = `id, user_id, tenant_id, workflow_id, workflow_version, definition, status, input, output, error, attempt, created_at, updated_at, started_at, finished_at`
	ListRunsSQL = `SELECT ` + runCols + ` FROM runs WHERE user_id = $1`
)

func scanRun(r Row) (idflow.Run, error) {
	var run idflow.Run
	var def, input string
	var output *string
	if err := r.Scan(&run.ID, &run.UserID, &run.TenantID, &run.WorkflowID, &run.WorkflowVersion, &def, &run.Status,
		&input, &output, &run.Error, &run.Attempt, &run.CreatedAt, &run.UpdatedAt, &run.StartedAt, &run.FinishedAt); err != nil {
		return run, err
	}
	var err error
	if run.Definition, err = DecodeDefinition(def); err != nil {
		return run, err
	}
	run.Input = json.RawMessage(input)
	if output != nil {
		run.Output = json.RawMessage(*output)
	}
	return run, nil
}

func runKey(r idflow.Run) Cursor { return createdKey(r.CreatedAt, r.ID) }

// admission is a RunAdmission without the backend's transaction type.
type admission struct {
	perUser int
	enqueue func(ctx context.Context, tx Tx, runID string, owner idflow.Snapshot) (int64, error)
}

// SetRunAdmission sets how s admits runs (RunQueue.SetRunAdmission), for a
// backend whose own transactions are TTx: native answers the one under a
// Tx of the backend's.
func SetRunAdmission[TTx any](s *Store, a RunAdmission[TTx], native func(Tx) TTx) {
	s.admission.Store(&admission{perUser: a.PerUser, enqueue: func(ctx context.Context, tx Tx, runID string, owner idflow.Snapshot) (int64, error) {
		return a.Enqueue(ctx, native(tx), runID, owner)
	}})
}

// lockOwner takes owner's admission lock until tx ends (Backend.LockOwner).
func (s *Store) lockOwner(ctx context.Context, tx Tx, owner string) error {
	if s.b.LockOwner == nil {
		return nil
	}
	return s.b.LockOwner(ctx, tx, owner)
}

// CreateRun records run, its run.queued event (seq 1) and the owner's
// snapshot, and admits the owner's oldest waiting runs while there is room
// (their River jobs inserted in this transaction, through the runner's
// InsertTx), in one transaction: a run is never recorded without its job
// or its place in the queue, nor a job enqueued for a run that was not
// recorded.
func (s *Store) CreateRun(ctx context.Context, p idflow.Principal, run idflow.Run) (idflow.Run, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Run{}, err
	}
	def, decoded, err := EncodeDefinition(run.Definition)
	if err != nil {
		return idflow.Run{}, s.fail("create run", err)
	}
	snapshot, err := json.Marshal(p.Snapshot())
	if err != nil {
		return idflow.Run{}, s.fail("create run", err)
	}
	if err := run.Validate(); err != nil {
		return idflow.Run{}, err
	}
	if run.ID == "" {
		run.ID = idflow.NewID(idflow.PrefixRun)
	}
	run.UserID, run.Definition, run.Status = owner, decoded, idflow.RunQueued
	run.Output, run.Error, run.Attempt, run.StartedAt, run.FinishedAt = nil, "", 0, nil, nil
	err = s.write(ctx, "create run", owner, func(tx Tx) error {
		if err := s.lockOwner(ctx, tx, owner); err != nil {
			return err
		}
		if err := requireOwned(ctx, tx, "workflows", "workflow", owner, run.WorkflowID); err != nil {
			return err
		}
		// Taken under the owner's lock (or by the single writer), so the
		// owner's runs are created, and admitted, in the order they commit.
		now := s.clock.now()
		run.CreatedAt, run.UpdatedAt = now, now
		if _, err := tx.Exec(ctx, `INSERT INTO runs (`+runCols+`, next_seq, waiting, owner_snapshot)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, '', 0, $9, $9, NULL, NULL, 2, $10, $11)`,
			run.ID, owner, run.TenantID, run.WorkflowID, run.WorkflowVersion, def, run.Status, string(run.Input),
			now, true, string(snapshot)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO run_events (user_id, run_id, seq, type, step_id, data, at)
			VALUES ($1, $2, 1, $3, '', NULL, $4)`, owner, run.ID, idflow.EventRunQueued, now); err != nil {
			return err
		}
		return s.admit(ctx, tx, owner)
	})
	if err != nil {
		return idflow.Run{}, err
	}
	return run, nil
}

// admit admits owner's oldest waiting runs while fewer than PerUser of
// theirs are admitted and not ended, enqueueing each one's job in tx. The
// caller holds owner's admission lock (lockOwner), taken before any write
// of the transaction.
func (s *Store) admit(ctx context.Context, tx Tx, owner string) error {
	a := s.admission.Load()
	if a == nil {
		return nil
	}
	var active int
	if err := tx.QueryRow(ctx, s.b.SQL.RunsAdmitted, owner).Scan(&active); err != nil {
		return err
	}
	if active >= a.perUser {
		return nil
	}
	type waiting struct{ id, snapshot string }
	next, err := collect(ctx, tx, s.b.SQL.RunsWaiting, func(r Row) (waiting, error) {
		var w waiting
		return w, r.Scan(&w.id, &w.snapshot)
	}, owner, a.perUser-active)
	if err != nil {
		return err
	}
	for _, w := range next {
		snapshot, err := DecodeSnapshot(w.snapshot, owner)
		if err != nil {
			return err
		}
		jobID, err := a.enqueue(ctx, tx, w.id, snapshot)
		if err != nil {
			return fmt.Errorf("enqueue run %s: %w", w.id, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE runs SET waiting = $1, job_id = $2 WHERE user_id = $3 AND id = $4`,
			false, jobID, owner, w.id); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) GetRun(ctx context.Context, p idflow.Principal, id string) (idflow.Run, error) {
	return getOwned(ctx, s, p, "run", `SELECT `+runCols+` FROM runs WHERE user_id = $1 AND id = $2`, scanRun, id)
}

func (s *Store) ListRuns(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Run], error) {
	return listOwned(ctx, s, p, "list runs", ListRunsSQL, nil, ByCreated, page, scanRun, runKey)
}

// UpdateRun moves a run to u.Status. An ended run is never changed again
// (ECONFLICT), so a late worker cannot overwrite a cancel: the row is
// locked (LockRow) between the check and the update. A run that ends
// admits the owner's next waiting run in the same transaction, under the
// owner's admission lock.
func (s *Store) UpdateRun(ctx context.Context, p idflow.Principal, id string, u idflow.RunUpdate) (idflow.Run, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Run{}, err
	}
	if err := u.Validate(); err != nil {
		return idflow.Run{}, err
	}
	var output any
	if len(u.Output) > 0 {
		output = string(u.Output)
	}
	now := s.clock.now()
	ends := u.Status != idflow.RunRunning
	var run idflow.Run
	err = s.write(ctx, "update run", owner, func(tx Tx) error {
		if ends {
			if err := s.lockOwner(ctx, tx, owner); err != nil {
				return err
			}
		}
		cur, err := getOne(ctx, tx, "run", `SELECT `+runCols+` FROM runs WHERE user_id = $1 AND id = $2`+s.b.SQL.LockRow,
			scanRun, owner, id)
		if err != nil {
			return err
		}
		if cur.Terminal() {
			return idflow.Errorf(idflow.ECONFLICT, "the run has already %s", cur.Status)
		}
		run, err = getOne(ctx, tx, "run", `UPDATE runs SET status = $1,
				error = CASE WHEN $2 = '' THEN error ELSE $2 END,
				output = COALESCE($3, output),
				attempt = CASE WHEN $4 > 0 THEN $4 ELSE attempt END,
				started_at = CASE WHEN $1 = 'running' THEN COALESCE(started_at, $5) ELSE started_at END,
				finished_at = CASE WHEN $1 IN ('succeeded', 'failed', 'cancelled') THEN $5 ELSE finished_at END,
				updated_at = $5
			WHERE user_id = $6 AND id = $7 RETURNING `+runCols, scanRun,
			u.Status, u.Error, output, u.Attempt, now, owner, id)
		if err != nil || !ends {
			return err
		}
		return s.admit(ctx, tx, owner) // the run's slot is free
	})
	return run, err
}

// AppendEvent stores e as the next event of its run. The event's owner is
// the Principal's, whatever e says. Incrementing next_seq locks the run's
// row, so concurrent appends to one run get consecutive seqs.
func (s *Store) AppendEvent(ctx context.Context, p idflow.Principal, e idflow.Event) (idflow.Event, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Event{}, err
	}
	if err := e.Validate(); err != nil {
		return idflow.Event{}, err
	}
	var data any
	if len(e.Data) > 0 {
		data = string(e.Data)
	}
	e.UserID = owner
	e.At = s.clock.now()
	err = s.write(ctx, "append event", owner, func(tx Tx) error {
		var err error
		e.Seq, err = nextSeq(ctx, tx, owner, e.RunID)
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

// nextSeq takes the next event seq of owner's run id; no such run is
// NotFound("run").
func nextSeq(ctx context.Context, tx Tx, owner, id string) (int64, error) {
	return getOne(ctx, tx, "run", `UPDATE runs SET next_seq = next_seq + 1 WHERE user_id = $1 AND id = $2
		RETURNING next_seq - 1`, scanInt64, owner, id)
}

func scanEvent(r Row) (idflow.Event, error) {
	var e idflow.Event
	var data *string
	if err := r.Scan(&e.RunID, &e.Seq, &e.Type, &e.StepID, &e.UserID, &data, &e.At); err != nil {
		return e, err
	}
	if data != nil {
		e.Data = json.RawMessage(*data)
	}
	return e, nil
}

// ListEvents answers a run's events after afterSeq; another user's run, or
// none, is NotFound.
func (s *Store) ListEvents(ctx context.Context, p idflow.Principal, runID string, afterSeq int64, limit int) ([]idflow.Event, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	var out []idflow.Event
	err = s.read(ctx, "list events", owner, func(tx Tx) error {
		ok, err := owned(ctx, tx, "runs", owner, runID)
		if err != nil {
			return err
		}
		if !ok {
			return idflow.NotFound("run")
		}
		out, err = collect(ctx, tx, `SELECT run_id, seq, type, step_id, user_id, CAST(data AS TEXT), at FROM run_events
			WHERE user_id = $1 AND run_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`, scanEvent, owner, runID, afterSeq, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// FailStrandedRuns fails each admitted run whose River job has finished
// (or is gone) without ending the run — River discards the job of a
// worker that died on its last attempt — writes its run.failed event, and
// admits the owner's next run (RunQueue). Finding them is a look across
// users (Dialect.StrandedRuns); each is then re-checked and ended in a
// transaction of its owner, under the owner's admission lock.
func (s *Store) FailStrandedRuns(ctx context.Context, limit int) ([]idflow.Event, error) {
	var found []idflow.Event
	err := s.system(ctx, "find stranded runs", false, func(tx Tx) error {
		var err error
		found, err = collect(ctx, tx, s.b.SQL.StrandedRuns, func(r Row) (idflow.Event, error) {
			var e idflow.Event
			return e, r.Scan(&e.UserID, &e.RunID)
		}, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(map[string]string{"error": RunStrandedError})
	if err != nil {
		return nil, s.fail("fail stranded runs", err)
	}
	var out []idflow.Event
	for _, e := range found {
		ended := false
		err := s.write(ctx, "fail stranded run", e.UserID, func(tx Tx) error {
			ended = false
			if err := s.lockOwner(ctx, tx, e.UserID); err != nil {
				return err
			}
			if stranded, err := s.stranded(ctx, tx, e.UserID, e.RunID); err != nil || !stranded {
				return err // ended, or retried, meanwhile
			}
			e.At = s.clock.now()
			var err error
			e.Seq, err = getOne(ctx, tx, "run", `UPDATE runs SET status = 'failed', error = $1, finished_at = $2, updated_at = $2,
				next_seq = next_seq + 1 WHERE user_id = $3 AND id = $4 RETURNING next_seq - 1`,
				scanInt64, RunStrandedError, e.At, e.UserID, e.RunID)
			if err != nil {
				return err
			}
			e.Type, e.Data = idflow.EventRunFailed, data
			if _, err := tx.Exec(ctx, `INSERT INTO run_events (user_id, run_id, seq, type, step_id, data, at)
				VALUES ($1, $2, $3, $4, '', $5, $6)`, e.UserID, e.RunID, e.Seq, e.Type, string(data), e.At); err != nil {
				return err
			}
			ended = true
			return s.admit(ctx, tx, e.UserID)
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

// stranded re-checks, with the run's row locked, that owner's run id is
// still there, admitted and not ended, while its job has finished or is
// gone.
func (s *Store) stranded(ctx context.Context, tx Tx, owner, id string) (bool, error) {
	var status string
	var waiting bool
	var jobID *int64
	err := tx.QueryRow(ctx, `SELECT status, waiting, job_id FROM runs WHERE user_id = $1 AND id = $2`+s.b.SQL.LockRow,
		owner, id).Scan(&status, &waiting, &jobID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil // deleted meanwhile
	}
	if err != nil {
		return false, err
	}
	if waiting || jobID == nil || (status != idflow.RunQueued && status != idflow.RunRunning) {
		return false, nil
	}
	state, err := scanString(tx.QueryRow(ctx, riverschema.JobStateSQL, *jobID))
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	return err == nil && riverschema.Finished(state), err
}
