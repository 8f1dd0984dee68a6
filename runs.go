package idflow

import (
	"context"
	"encoding/json"
)

// RunStore keeps runs and their events, scoped to the owner like every store.
type RunStore interface {
	GetRun(ctx context.Context, p Principal, id string) (Run, error)
	ListRuns(ctx context.Context, p Principal, page Page) (List[Run], error)
	// UpdateRun moves a run to status (and sets error/output when given). A
	// run that already ended is never changed: it answers ECONFLICT.
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

// RunCreator records a run together with enqueueing its job, in one
// transaction of the backend's own type (database/sql or pgx).
type RunCreator[TTx any] interface {
	CreateRun(ctx context.Context, p Principal, r Run, enqueue func(ctx context.Context, tx TTx, r Run) error) (Run, error)
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
