package idflow

import (
	"context"
	"encoding/json"
	"fmt"
)

// RunStore keeps runs and their events, scoped to the owner like every store.
type RunStore interface {
	GetRun(ctx context.Context, p Principal, id string) (Run, error)
	ListRuns(ctx context.Context, p Principal, page Page) (List[Run], error)
	// UpdateRun moves a run to status (and sets error/output when given). A
	// run that already ended is never changed: it answers ECONFLICT. A run
	// that ends frees its owner's admission slot, and the owner's oldest
	// waiting run is admitted in the same transaction (RunQueue).
	UpdateRun(ctx context.Context, p Principal, id string, u RunUpdate) (Run, error)
	// AppendEvent stores e with the next seq of its run and returns it.
	AppendEvent(ctx context.Context, p Principal, e Event) (Event, error)
	// ListEvents answers a run's events with seq > afterSeq, in order.
	ListEvents(ctx context.Context, p Principal, runID string, afterSeq int64, limit int) ([]Event, error)
}

// RunUpdate is a status transition.
type RunUpdate struct {
	Status  string
	Error   string
	Output  json.RawMessage
	Attempt int
}

// RunQueue records runs and admits them to execution fairly: at most
// RunAdmission.PerUser runs of one user hold a job at once, whatever the
// number of workers; the others wait, queued, in the order they were
// started, until one of the owner's runs ends. Admission is decided in the
// database, in the transaction that records the run or its end, so it holds
// across replicas (docs/ARCHITECTURE.md, "Fair runs"). TTx is the backend's
// own transaction type (database/sql or pgx).
type RunQueue[TTx any] interface {
	// SetRunAdmission sets how runs are admitted. Until it is called, runs
	// are recorded and wait. Call it once, before the store runs anything.
	SetRunAdmission(a RunAdmission[TTx])
	// CreateRun records r as queued, with its run.queued event (seq 1) and
	// the Snapshot of p its job will carry, and admits the owner's oldest
	// waiting runs while fewer than PerUser of theirs are admitted: all in
	// one transaction, so a run is never recorded without being admitted
	// or waiting, nor a job enqueued for a run that was not recorded.
	CreateRun(ctx context.Context, p Principal, r Run) (Run, error)
	// FailStrandedRuns fails (with its run.failed event) each admitted run
	// whose job has ended without ending the run, at most limit of them —
	// e.g. a job River discarded after its worker's process died on the
	// last attempt — so that it stops holding its owner's slot, and admits
	// the owner's next run. It answers the events it wrote.
	FailStrandedRuns(ctx context.Context, limit int) ([]Event, error)
}

// RunAdmission is how a RunQueue hands an admitted run to execution.
type RunAdmission[TTx any] struct {
	// PerUser is how many runs of one user may be admitted at once.
	PerUser int
	// Enqueue inserts the job of runID, acting as owner, in tx, and answers
	// the job's id.
	Enqueue func(ctx context.Context, tx TTx, runID string, owner Snapshot) (jobID int64, err error)
}

// EventBus fans run events out to subscribers, on this process (memory) or
// across replicas (Redis). Topics are per (owner, run): a subscriber can only
// ever receive the events of runs its Principal owns.
type EventBus interface {
	Publish(ctx context.Context, e Event) error
	// Subscribe delivers p's events of runID until ctx ends or the
	// subscription is closed. A subscriber that falls behind by more than
	// its buffer is dropped (Dropped reports it), never blocking others.
	Subscribe(ctx context.Context, p Principal, runID string) (Subscription, error)
}

// Subscription is a live stream of one run's events.
type Subscription interface {
	Events() <-chan Event
	// Dropped reports whether the subscriber was dropped for being slow.
	Dropped() bool
	Close()
}

// RunStrandedError is the error of a run failed by FailStrandedRuns.
const RunStrandedError = "the run was interrupted and could not be resumed"

// DecodeSnapshot decodes the Snapshot a RunQueue stored with a run of
// owner, and refuses one that names anyone else: a job never carries another
// user's identity.
func DecodeSnapshot(raw, owner string) (Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return Snapshot{}, fmt.Errorf("run owner snapshot: %w", err)
	}
	if s.UserID != owner || owner == "" {
		return Snapshot{}, fmt.Errorf("run owner snapshot names %q, not the run's owner", s.UserID)
	}
	return s, nil
}
