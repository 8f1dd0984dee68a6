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
	// run that already ended is never changed: it answers ECONFLICT. A run
	// that ends frees its owner's admission slot, and the owner's oldest
	// waiting run is admitted in the same transaction (sqlstore.RunQueue).
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
