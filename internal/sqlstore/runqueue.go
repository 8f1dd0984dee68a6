package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/idflow/idflow"
)

// RunQueue records runs and admits them to execution fairly: at most
// RunAdmission.PerUser runs of one user hold a job at once, whatever the
// number of workers; the others wait, queued, in the order they were
// started, until one of the owner's runs ends. Admission is decided in the
// database, in the transaction that records the run or its end, so it holds
// across replicas (docs/ARCHITECTURE.md, "Fair runs"). TTx is the backend's
// own transaction type (database/sql or pgx), the one River's InsertTx
// takes; the runner drives it (runner.New), both backends implement it.
type RunQueue[TTx any] interface {
	// SetRunAdmission sets how runs are admitted. Until it is called, runs
	// are recorded and wait. Call it once, before the store runs anything.
	SetRunAdmission(a RunAdmission[TTx])
	// CreateRun records r as queued, with its run.queued event (seq 1) and
	// the Snapshot of p its job will carry, and admits the owner's oldest
	// waiting runs while fewer than PerUser of theirs are admitted: all in
	// one transaction, so a run is never recorded without being admitted
	// or waiting, nor a job enqueued for a run that was not recorded.
	CreateRun(ctx context.Context, p idflow.Principal, r idflow.Run) (idflow.Run, error)
	// FailStrandedRuns fails (with its run.failed event) each admitted run
	// whose job has ended without ending the run, at most limit of them —
	// e.g. a job River discarded after its worker's process died on the
	// last attempt — so that it stops holding its owner's slot, and admits
	// the owner's next run. It answers the events it wrote.
	FailStrandedRuns(ctx context.Context, limit int) ([]idflow.Event, error)
}

// RunAdmission is how a RunQueue hands an admitted run to execution.
type RunAdmission[TTx any] struct {
	// PerUser is how many runs of one user may be admitted at once.
	PerUser int
	// Enqueue inserts the job of runID, acting as owner, in tx, and answers
	// the job's id.
	Enqueue func(ctx context.Context, tx TTx, runID string, owner idflow.Snapshot) (jobID int64, err error)
}

// RunStrandedError is the error of a run failed by FailStrandedRuns.
const RunStrandedError = "the run was interrupted and could not be resumed"

// DecodeSnapshot decodes the Snapshot a RunQueue stored with a run of
// owner, and refuses one that names anyone else: a job never carries another
// user's identity.
func DecodeSnapshot(raw, owner string) (idflow.Snapshot, error) {
	var s idflow.Snapshot
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return idflow.Snapshot{}, fmt.Errorf("run owner snapshot: %w", err)
	}
	if s.UserID != owner || owner == "" {
		return idflow.Snapshot{}, fmt.Errorf("run owner snapshot names %q, not the run's owner", s.UserID)
	}
	return s, nil
}
